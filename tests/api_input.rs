//! Bad input to the HTTP API (issue 8): malformed JSON, wrong content types, huge
//! bodies, unknown fields, path traversal in names, ids that are not numbers,
//! invalid UTF-8, TOML bombs in a project PUT, unknown routes and wrong methods.
//! Every answer is a 4xx JSON `{code, message}` that carries no internals (no
//! server paths, no Rust type names, no backtraces), nothing is stored, and the
//! daemon keeps serving throughout.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

const TOKEN: &str = "api-input-test-token-0123456789";

/// One request to send.
struct Case {
    name: String,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
}

fn case(name: &str, method: Method, path: &str, ct: Option<&'static str>, body: &[u8]) -> Case {
    Case {
        name: name.to_owned(),
        method,
        path: path.to_owned(),
        content_type: ct,
        body: body.to_vec(),
    }
}

const JSON: Option<&str> = Some("application/json");
const TEXT: Option<&str> = Some("text/plain");
const TOML: Option<&str> = Some("application/toml");

/// What came back.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
    took: Duration,
}

async fn send(client: &reqwest::Client, base: &str, c: &Case) -> Result<Answer, String> {
    let mut r = client
        .request(c.method.clone(), format!("{base}{}", c.path))
        .bearer_auth(TOKEN)
        .body(c.body.clone());
    if let Some(ct) = c.content_type {
        r = r.header("content-type", ct);
    }
    let started = Instant::now();
    let resp = r.send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp.text().await.map_err(|e| format!("{e:?}"))?;
    Ok(Answer {
        status,
        content_type,
        body,
        took: started.elapsed(),
    })
}

fn connection_body(extra: &str) -> Vec<u8> {
    format!(r#"{{"plugin": "csv"{extra}}}"#).into_bytes()
}

/// A valid project file named `name`, over connections that do not exist.
fn project(name: &str, extra: &str) -> String {
    format!(
        r#"
[connection_sets.s]
source = "src"
destination = "dst"

[project]
name = "{name}"
connection_set = "s"
{extra}

[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [{{ destination = "id", source = "id" }}]
"#
    )
}

/// Every bad request this file sends.
fn cases() -> Vec<Case> {
    use Method as M;
    let mut v = vec![
        // Malformed JSON and wrong content types.
        case("json: truncated", M::PUT, "/api/v1/connections/c", JSON, br#"{"plugin": "#),
        case("json: not an object", M::PUT, "/api/v1/connections/c", JSON, b"[1, 2, 3]"),
        case("json: empty body", M::PUT, "/api/v1/connections/c", JSON, b""),
        case("json: trailing garbage", M::PUT, "/api/v1/connections/c", JSON, br#"{"plugin": "csv"} xyz"#),
        case("json: as text/plain", M::PUT, "/api/v1/connections/c", TEXT, &connection_body("")),
        case("json: no content type", M::PUT, "/api/v1/connections/c", None, &connection_body("")),
        case("json: as form", M::PUT, "/api/v1/connections/c", Some("application/x-www-form-urlencoded"), b"plugin=csv"),
        case("json: unknown field", M::PUT, "/api/v1/connections/c", JSON, &connection_body(r#", "colour": "red""#)),
        case("json: wrong type", M::PUT, "/api/v1/connections/c", JSON, &connection_body(r#", "config": 5"#)),
        case("json: null plugin", M::PUT, "/api/v1/connections/c", JSON, br#"{"plugin": null}"#),
        case("json: invalid UTF-8", M::PUT, "/api/v1/connections/c", JSON, b"{\"plugin\": \"\xff\xfe\"}"),
        case("json: lone surrogate", M::PUT, "/api/v1/connections/c", JSON, br#"{"plugin": "\ud800"}"#),
        case("json: 100,000 nested arrays", M::PUT, "/api/v1/connections/c", JSON,
            format!("{{\"plugin\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes()),
        case("json: relative directory", M::PUT, "/api/v1/connections/c", JSON, &connection_body(r#", "directory": "../../etc""#)),
        case("json: rerun body malformed", M::POST, "/api/v1/executions/1/rerun", JSON, b"{bad"),
        case("json: pause body wrong type", M::POST, "/api/v1/projects/p/pause", JSON, br#"{"reason": 5}"#),
        // Huge bodies: the router caps what it buffers.
        case("huge: 3 MiB JSON", M::PUT, "/api/v1/connections/c", JSON,
            &connection_body(&format!(r#", "config": {{"x": "{}"}}"#, "a".repeat(3 << 20)))),
        case("huge: 64 MiB JSON", M::PUT, "/api/v1/connections/c", JSON, &vec![b' '; 64 << 20]),
        case("huge: 3 MiB project", M::PUT, "/api/v1/projects/big", TOML,
            project("big", &format!("# {}", "a".repeat(3 << 20))).as_bytes()),
        case("huge: 3 MiB login form", M::POST, "/login", Some("application/x-www-form-urlencoded"),
            format!("token={}", "a".repeat(3 << 20)).as_bytes()),
        // Project files: not UTF-8, not TOML, unknown fields, bombs.
        case("toml: invalid UTF-8", M::PUT, "/api/v1/projects/p", TOML, b"[project]\nname = \"\xff\xfe\"\n"),
        case("toml: not TOML", M::PUT, "/api/v1/projects/p", TOML, b"{\"project\": 1}"),
        case("toml: empty", M::PUT, "/api/v1/projects/p", TOML, b""),
        case("toml: unknown field", M::PUT, "/api/v1/projects/p", TOML, project("p", "colour = \"red\"").as_bytes()),
        case("toml: name mismatch", M::PUT, "/api/v1/projects/p", TOML, project("q", "").as_bytes()),
        case("toml: unknown connections", M::PUT, "/api/v1/projects/p", TOML, project("p", "").as_bytes()),
        case("toml: wrong type", M::PUT, "/api/v1/projects/p", TOML, project("p", "batch_size = \"many\"").as_bytes()),
        case("toml: absurd batch size", M::PUT, "/api/v1/projects/p", TOML, project("p", "batch_size = 99999999999999").as_bytes()),
        case("toml: bad schedule", M::PUT, "/api/v1/projects/p", TOML, project("p", "schedule = \"* * * * * * * * *\"").as_bytes()),
        case("toml: relative base_dir", M::PUT, "/api/v1/projects/p?base_dir=../..", TOML, project("p", "").as_bytes()),
        case("toml bomb: 500,000 nested arrays", M::PUT, "/api/v1/projects/p", TOML,
            format!("x = {}{}\n", "[".repeat(500_000), "]".repeat(500_000)).as_bytes()),
        case("toml bomb: 200,000 nested inline tables", M::PUT, "/api/v1/projects/p", TOML,
            format!("x = {}1{}\n", "{a=".repeat(200_000), "}".repeat(200_000)).as_bytes()),
        case("toml bomb: 400,000-part dotted key", M::PUT, "/api/v1/projects/p", TOML,
            format!("{}a = 1\n", "a.".repeat(400_000)).as_bytes()),
        case("toml bomb: 400,000-part table header", M::PUT, "/api/v1/projects/p", TOML,
            format!("[{}a]\n", "a.".repeat(400_000)).as_bytes()),
        case("toml bomb: 100,000 keys", M::PUT, "/api/v1/projects/p", TOML,
            (0..100_000).map(|i| format!("k{i} = {i}\n")).collect::<String>().as_bytes()),
        case("toml bomb: 20,000 tasks", M::PUT, "/api/v1/projects/p", TOML,
            (project("p", "") + &"[[project.tasks]]\nsource_entity = \"a\"\ndestination_entity = \"a\"\nkey = []\nmappings = []\n".repeat(20_000)).as_bytes()),
        case("toml bomb: 1.9 MB string", M::PUT, "/api/v1/projects/p", TOML,
            project("p", &format!("schedule = \"{}\"", "*".repeat(1_900_000))).as_bytes()),
        // Path traversal and odd names.
        case("path: traversal in a project name", M::GET, "/api/v1/projects/..%2F..%2F..%2Fetc%2Fpasswd", None, b""),
        case("path: traversal PUT project", M::PUT, "/api/v1/projects/..%2Fevil", TOML, project("../evil", "").as_bytes()),
        case("path: traversal in a connection name", M::GET, "/api/v1/connections/..%2F..%2Fetc%2Fshadow", None, b""),
        case("path: traversal in an execution id", M::GET, "/api/v1/executions/..%2F1", None, b""),
        case("path: invalid UTF-8 in a name", M::GET, "/api/v1/projects/%FF%FE", None, b""),
        case("path: NUL in a name", M::GET, "/api/v1/projects/a%00b", None, b""),
        case("path: 16 KiB name", M::GET, &format!("/api/v1/projects/{}", "n".repeat(16 << 10)), None, b""),
        case("path: run an unknown project", M::POST, "/api/v1/projects/..%2Fx/run", None, b""),
        case("path: check an unknown connection", M::POST, "/api/v1/connections/..%2Fx/check", None, b""),
        // Query strings.
        case("query: limit not a number", M::GET, "/api/v1/executions/1/errors?limit=abc", None, b""),
        case("query: negative offset", M::GET, "/api/v1/executions/1/staging?offset=-5", None, b""),
        case("query: unknown status", M::GET, "/api/v1/executions?status=Bogus", None, b""),
        case("query: days not a number", M::GET, "/api/v1/summary?days=many", None, b""),
        case("query: preview limit huge", M::GET, "/api/v1/projects/none/preview?limit=99999999999999999999", None, b""),
        // Routes and methods that do not exist.
        case("route: unknown", M::GET, "/api/v1/nothing-here", None, b""),
        case("route: wrong method", M::PATCH, "/api/v1/projects", None, b""),
    ];
    for id in [
        "abc",
        "-1",
        "1.5",
        "18446744073709551616",
        "%20",
        "0x10",
        "1e3",
    ] {
        for tail in ["", "/errors", "/staging", "/log"] {
            v.push(case(
                &format!("id: `{id}`{tail}"),
                Method::GET,
                &format!("/api/v1/executions/{id}{tail}"),
                None,
                b"",
            ));
        }
        v.push(case(
            &format!("id: rerun `{id}`"),
            Method::POST,
            &format!("/api/v1/executions/{id}/rerun"),
            None,
            b"",
        ));
    }
    v
}

/// Text that would betray the server's insides.
fn internals(body: &str, server_dir: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    for (needle, what) in [
        ("::", "a Rust path"),
        ("panicked", "a panic"),
        ("backtrace", "a backtrace"),
        ("RUST_BACKTRACE", "a backtrace"),
        (".rs:", "a source location"),
        ("/root/", "a server path"),
        ("/home/", "a server path"),
        ("/tmp/", "a server path"),
        ("weir_host", "a crate name"),
        ("Error {", "a Debug-printed error"),
        ("Utf8Error", "a Rust type"),
        ("JoinError", "a Rust type"),
        ("serde", "a crate name"),
        ("sled", "a crate name"),
        ("expected struct", "a Rust type"),
        ("expected enum", "a Rust type"),
        ("expected u64", "a Rust type"),
    ] {
        if body.contains(needle) {
            found.push(what);
        }
    }
    if body.contains(server_dir) {
        found.push("the server's data directory");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_a_4xx_without_internals_and_the_daemon_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let server_dir = tmp.path().display().to_string();
    let base = common::serve_api(&tmp.path().join("data"), tmp.path(), TOKEN).await;
    // No connection reuse: the server closes a connection whose body it refused
    // unread, and a pooled one would fail the next request for the client's reason.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut problems = Vec::new();
    let mut not_json = Vec::new();
    for c in cases() {
        let answer = match send(&client, &base, &c).await {
            Ok(a) => a,
            Err(e) => {
                // The server may close a connection whose body it refused before
                // reading it all; that is a refusal too, but say so.
                if c.name.starts_with("huge") {
                    eprintln!("{:<45} connection closed before the answer ({e})", c.name);
                    continue;
                }
                problems.push(format!("{}: no answer: {e}", c.name));
                continue;
            }
        };
        let shown: String = answer.body.chars().take(110).collect();
        eprintln!(
            "{:<45} {} {:<26} {:>7.1?} {}",
            c.name,
            answer.status.as_u16(),
            answer.content_type,
            answer.took,
            shown.replace('\n', " ")
        );
        if !answer.status.is_client_error() {
            problems.push(format!("{}: status {}", c.name, answer.status));
        }
        let leaks = internals(&answer.body, &server_dir);
        if !leaks.is_empty() {
            problems.push(format!("{}: {leaks:?} in {shown}", c.name));
        }
        let is_json = serde_json::from_str::<Value>(&answer.body)
            .ok()
            .is_some_and(|v| v["code"].is_string() && v["message"].is_string());
        if !is_json {
            not_json.push(format!(
                "{} → {} {:?}",
                c.name,
                answer.status.as_u16(),
                shown
            ));
        }
        // Still serving after each one.
        let health = client.get(format!("{base}/health")).send().await.unwrap();
        assert!(health.status().is_success(), "after {}", c.name);
    }
    // Every refusal, axum's own included (extractors, unknown routes, wrong
    // methods), is JSON `{code, message}` like the API's other errors (was F3).
    problems.extend(not_json.iter().map(|n| format!("not JSON: {n}")));
    // Nothing was stored.
    for path in [
        "/api/v1/projects",
        "/api/v1/connections",
        "/api/v1/executions",
    ] {
        let v: Value = client
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() {
            problems.push(format!(
                "{path} holds {} items after bad input: {v}",
                items.len()
            ));
        }
    }
    assert!(problems.is_empty(), "problems:\n{}", problems.join("\n"));
}

/// axum's own refusals answer with their status and a stable code, like `ApiError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_by_the_router_have_their_status_and_code() {
    use Method as M;
    let tmp = tempfile::tempdir().unwrap();
    let base = common::serve_api(&tmp.path().join("data"), tmp.path(), TOKEN).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let form = Some("application/x-www-form-urlencoded");
    #[rustfmt::skip]
    let expected = [
        (case("truncated JSON", M::PUT, "/api/v1/connections/c", JSON, br#"{"plugin": "#), 400, "malformed-body"),
        (case("JSON as text/plain", M::PUT, "/api/v1/connections/c", TEXT, &connection_body("")), 415, "unsupported-media-type"),
        (case("unknown field", M::PUT, "/api/v1/connections/c", JSON, &connection_body(r#", "colour": "red""#)), 400, "unknown-field"),
        (case("a number for an object", M::PUT, "/api/v1/connections/c", JSON, b"5"), 422, "invalid-body"),
        (case("3 MiB JSON", M::PUT, "/api/v1/connections/c", JSON,
            &connection_body(&format!(r#", "config": {{"x": "{}"}}"#, "a".repeat(3 << 20)))), 413, "too-large"),
        (case("TOML not UTF-8", M::PUT, "/api/v1/projects/p", TOML, b"[project]\nname = \"\xff\"\n"), 400, "malformed-body"),
        (case("query not a number", M::GET, "/api/v1/executions/1/errors?limit=abc", None, b""), 400, "bad-query"),
        (case("path not UTF-8", M::GET, "/api/v1/projects/%FF%FE", None, b""), 400, "bad-path"),
        (case("login as JSON", M::POST, "/login", JSON, b"{}"), 415, "unsupported-media-type"),
        (case("login without a token", M::POST, "/login", form, b"nothing=1"), 422, "invalid-body"),
        (case("unknown route", M::GET, "/api/v1/nothing-here", None, b""), 404, "not-found"),
        (case("unknown route outside the API", M::GET, "/nothing-here", None, b""), 404, "not-found"),
        (case("wrong method", M::PATCH, "/api/v1/projects", None, b""), 405, "method-not-allowed"),
        (case("wrong method on /health", M::POST, "/health", None, b""), 405, "method-not-allowed"),
    ];
    let mut problems = Vec::new();
    for (c, status, code) in expected {
        let a = match send(&client, &base, &c).await {
            Ok(a) => a,
            // Refused unread: allowed for the huge body (see above).
            Err(e) if status == 413 => {
                eprintln!("{}: connection closed before the answer ({e})", c.name);
                continue;
            }
            Err(e) => panic!("{}: no answer: {e}", c.name),
        };
        eprintln!("{:<32} {} {}", c.name, a.status.as_u16(), a.body);
        let v: Value = serde_json::from_str(&a.body).unwrap_or_default();
        if a.status.as_u16() != status
            || v["code"] != code
            || !a.content_type.starts_with("application/json")
        {
            problems.push(format!(
                "{}: expected {status} `{code}`, got {} {} {}",
                c.name, a.status, a.content_type, a.body
            ));
        }
    }
    assert!(problems.is_empty(), "problems:\n{}", problems.join("\n"));

    // 405 says what the route takes; without the token, a wrong method is 401.
    let r = client
        .patch(format!("{base}/api/v1/projects"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "GET,HEAD");
    let r = client
        .patch(format!("{base}/api/v1/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// FINDING (issue 8): names are only checked for emptiness, length and NUL, so a
/// connection or project may be called `../../x`. Names are store keys, not paths,
/// but a project's name also becomes the file label its relative paths resolve
/// against (`<base_dir>/<name>.toml`), so `../../x` moves that base outside
/// `base_dir`. Ignored until names refuse `/`, `\\` and `..`; run with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_path_separators_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = common::serve_api(&tmp.path().join("data"), tmp.path(), TOKEN).await;
    let client = reqwest::Client::new();
    for name in ["..%2F..%2Fx", "a%2Fb", "..", "a%5Cb"] {
        let c = case(
            name,
            Method::PUT,
            &format!("/api/v1/connections/{name}"),
            JSON,
            &connection_body(""),
        );
        let a = send(&client, &base, &c).await.unwrap();
        eprintln!("PUT connection {name}: {} {}", a.status, a.body);
        assert!(
            a.status.is_client_error(),
            "{name}: {} {}",
            a.status,
            a.body
        );
    }
}
