//! The `rest` connector end to end, through the host's HTTP capability, on
//! 127.0.0.1 only:
//!
//! - against json-server 0.17.4 (npm; common/json_server.rs), a real REST server
//!   nobody here wrote: as a source paged three ways (`_page`/`_limit`,
//!   `_start`/`_limit`, and its `Link: rel="next"` header) into JSON Lines, run
//!   twice; incrementally (`updatedAt_gte`); as a destination that upserts and
//!   whose refusals (a `--middlewares` validation answering 422) become record
//!   errors with the server's message; and as the server a plugin may not reach;
//! - against a purpose-built counting server (common/http_server.rs) only for
//!   what json-server cannot do on demand: 429 with `Retry-After`, a burst of
//!   500s, a cursor in the body, and a `Link` pointing outside the allow-list.
//!
//! Tests skip with a note when json-server is not installed (they panic when `CI`
//! is set): `.ci/run` installs it.

mod common;
#[path = "common/http_server.rs"]
mod http_server;
#[path = "common/json_server.rs"]
mod json_server;
#[path = "common/tcp_proxy.rs"]
mod tcp_proxy;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_server::{Reply, TestServer};
use json_server::JsonServer;
use serde_json::{Value as Json, json};
use tcp_proxy::TcpProxy;
use weir_host::engine::{
    Checkpoint, Engine, NoRecorder, Quiet, Recorder, RunOptions, Stage, Status,
};
use weir_host::project::{Connection, EntityTask, Mapping, PluginRef, Project, RetryPolicy};
use weir_host::runtime::{Grants, Limits};
use weir_types::{Config, FieldType};

fn rest() -> PluginRef {
    PluginRef::file(common::plugin_path("rest"))
}

fn config(pairs: &[(&str, &str)]) -> Config {
    Config::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A REST connection to `base_url`, granted `hosts`.
fn rest_connection(
    name: &str,
    base_url: &str,
    hosts: &[String],
    pairs: &[(&str, &str)],
) -> Connection {
    let mut c = Connection::new(name, rest());
    c.config = config(pairs);
    c.config.set("base_url", base_url);
    c.grants.http_hosts = hosts.to_vec();
    c
}

/// REST `contacts` at `base_url` (granted `hosts`, with options `pairs`) → a
/// jsonl `contacts` in a new folder, by `contact_id`.
fn contacts_to_jsonl(
    base_url: &str,
    hosts: &[String],
    pairs: &[(&str, &str)],
) -> (tempfile::TempDir, Project) {
    let out = tempfile::tempdir().unwrap();
    let source = rest_connection("crm", base_url, hosts, pairs);
    let p = project(
        source,
        jsonl_destination(out.path()),
        ("contacts", "contacts"),
        "contact_id",
        contact_mappings(),
    );
    (out, p)
}

fn jsonl_destination(dir: &Path) -> Connection {
    let mut c = Connection::new("files", PluginRef::file(common::plugin_path("jsonl")));
    c.grants = Grants::directory(dir);
    c
}

/// `source` → `destination`, one task from `source_entity` to `destination_entity`.
fn project(
    source: Connection,
    destination: Connection,
    entity: (&str, &str),
    key: &str,
    mappings: Vec<Mapping>,
) -> Project {
    let mut p = common::testkit_project(1);
    p.name = "rest".into();
    p.source = source;
    p.destination = destination;
    p.batch_size = 50;
    p.tasks = vec![EntityTask {
        name: entity.0.into(),
        source_entity: entity.0.into(),
        destination_entity: entity.1.into(),
        key: vec![key.into()],
        mappings,
        transforms: vec![],
        incremental: false,
        stop_on_failures: Default::default(),
        schema_change: Default::default(),
        duplicate_check: Default::default(),
    }];
    p
}

fn contact_mappings() -> Vec<Mapping> {
    vec![
        Mapping::new("contact_id", "id"),
        Mapping::expr("name", r#".firstName + " " + .lastName"#),
        Mapping::new("email", "email"),
        Mapping::new("updated_at", "updatedAt"),
    ]
}

/// `count` contacts, `updatedAt` one second apart from 2024-01-01T00:00:01Z.
fn contacts(count: usize) -> Json {
    let items: Vec<Json> = (1..=count)
        .map(|i| {
            json!({
                "id": i,
                "firstName": format!("First{i}"),
                "lastName": format!("Last{i}"),
                "email": format!("c{i}@example.com"),
                "updatedAt": format!("2024-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
            })
        })
        .collect();
    json!(items)
}

/// The JSON Lines a jsonl destination wrote, by `contact_id`.
fn written(dir: &Path, entity: &str) -> BTreeMap<i64, Json> {
    let text = std::fs::read_to_string(dir.join(format!("{entity}.jsonl"))).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Json = serde_json::from_str(line).unwrap();
        let id = v["contact_id"].as_i64().unwrap();
        assert!(out.insert(id, v).is_none(), "contact {id} written twice");
    }
    out
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        pause_after_errors: 0,
    }
}

#[test]
fn json_server_source_pages_three_ways_and_a_second_run_updates() {
    let Some(server) = JsonServer::start(&json!({ "contacts": contacts(23) }), None) else {
        return;
    };
    for mode in ["page", "offset", "link"] {
        let (out, p) = contacts_to_jsonl(
            &server.url(""),
            &[server.host()],
            &[
                ("entities", "contacts"),
                ("pagination", mode),
                ("page_size", "5"),
            ],
        );

        let before = server.requests().len();
        let report = common::run(&p);
        assert_eq!(report.status, Status::Completed, "{mode}: {report}");
        let t = report.totals();
        assert_eq!(
            (t.read, t.inserted, t.updated, t.failed),
            (23, 23, 0, 0),
            "{mode}"
        );
        // Five pages of at most five (5+5+5+5+3): the last short page (page,
        // offset) or the missing `rel="next"` (link) ends the listing.
        let pages: Vec<String> = server.requests()[before..]
            .iter()
            .filter(|l| l.contains("_limit=5"))
            .cloned()
            .collect();
        assert_eq!(pages.len(), 5, "{mode}: {pages:#?}");
        let expected_last = match mode {
            "offset" => "_start=20&_limit=5",
            _ => "_page=5&_limit=5",
        };
        assert!(pages[4].contains(expected_last), "{mode}: {pages:#?}");

        let rows = written(out.path(), "contacts");
        assert_eq!(rows.len(), 23);
        assert_eq!(rows[&7]["name"], "First7 Last7");
        assert_eq!(rows[&7]["email"], "c7@example.com");

        // Again: every record already there with its values, none duplicated.
        let report = common::run(&p);
        assert_eq!(report.status, Status::Completed, "{mode}: {report}");
        let t = report.totals();
        assert_eq!(
            (t.read, t.inserted, t.updated, t.unchanged, t.failed),
            (23, 0, 0, 23, 0),
            "{mode}"
        );
        assert_eq!(written(out.path(), "contacts").len(), 23);
    }
}

#[test]
fn incremental_read_picks_up_only_what_changed_since_the_cursor() {
    let Some(server) = JsonServer::start(&json!({ "contacts": contacts(12) }), None) else {
        return;
    };
    let (out, p) = contacts_to_jsonl(
        &server.url(""),
        &[server.host()],
        &[
            ("entities", "contacts"),
            ("pagination", "page"),
            ("page_size", "5"),
            ("contacts.updated_field", "updatedAt"),
        ],
    );
    let first = common::run(&p);
    assert_eq!(first.status, Status::Completed, "{first}");
    assert_eq!(first.totals().read, 12);
    let cursor = first.tasks[0]
        .cursor
        .clone()
        .expect("an incremental cursor");
    assert_eq!(
        cursor, r#"{"since":"2024-01-01T00:00:12Z"}"#,
        "the largest updatedAt seen"
    );

    // Three contacts change on the server.
    for id in [2, 5, 9] {
        server.patch(
            &format!("/contacts/{id}"),
            &json!({ "firstName": format!("Changed{id}"), "updatedAt": format!("2024-02-01T00:00:{id:02}Z") }),
        );
    }
    let resume = |cursor: &str| RunOptions {
        resume: HashMap::from([("contacts".to_owned(), cursor.to_owned())]),
        ..RunOptions::default()
    };
    let before = server.requests().len();
    let second = Engine::new(common::runtime())
        .execute(&p, &resume(&cursor), &mut Quiet, &mut NoRecorder)
        .unwrap();
    assert_eq!(second.status, Status::Completed, "{second}");
    // The three changed, plus contact 12 whose updatedAt is the cursor itself:
    // `_gte` reads the boundary again (at least once; an upsert makes it harmless:
    // the destination finds it unchanged).
    let t = second.totals();
    assert_eq!(
        (t.read, t.inserted, t.updated, t.unchanged),
        (4, 0, 3, 1),
        "{second}"
    );
    let listed: Vec<String> = server.requests()[before..]
        .iter()
        .filter(|l| l.contains("_limit=5"))
        .cloned()
        .collect();
    assert!(
        listed.len() == 1 && listed[0].contains("updatedAt_gte=2024-01-01T00%3A00%3A12Z"),
        "{listed:#?}"
    );
    let rows = written(out.path(), "contacts");
    assert_eq!(rows.len(), 12);
    assert_eq!(rows[&5]["name"], "Changed5 Last5");
    assert_eq!(rows[&6]["name"], "First6 Last6");
    let cursor = second.tasks[0].cursor.clone().unwrap();
    assert_eq!(cursor, r#"{"since":"2024-02-01T00:00:09Z"}"#);

    // Nothing changed since: only the boundary record comes back.
    let third = Engine::new(common::runtime())
        .execute(&p, &resume(&cursor), &mut Quiet, &mut NoRecorder)
        .unwrap();
    assert_eq!(third.totals().read, 1, "{third}");
}

/// json-server `--middlewares`: refuses people without an `@` in their email,
/// with a JSON error, as an API's validation would.
const VALIDATE_PEOPLE: &str = r#"
module.exports = (req, res, next) => {
  if (["POST", "PUT", "PATCH"].includes(req.method) && req.path.startsWith("/people")) {
    const email = req.body && req.body.email;
    if (typeof email !== "string" || !email.includes("@")) {
      return res.status(422).json({ error: `email "${email}" is not an address` });
    }
  }
  next();
};
"#;

#[test]
fn json_server_as_destination_upserts_and_its_refusals_are_record_errors() {
    let Some(server) = JsonServer::start(&json!({ "people": [] }), Some(VALIDATE_PEOPLE)) else {
        return;
    };
    let input = tempfile::tempdir().unwrap();
    let write_source = |suffix: &str| {
        let lines: Vec<String> = (1..=6)
            .map(|i| {
                let email = if i == 4 {
                    "nobody".to_owned()
                } else {
                    format!("p{i}@example.com")
                };
                json!({ "id": i, "name": format!("Person {i}{suffix}"), "email": email })
                    .to_string()
            })
            .collect();
        std::fs::write(input.path().join("people.jsonl"), lines.join("\n") + "\n").unwrap();
    };
    write_source("");
    let mut source = Connection::new("files", PluginRef::file(common::plugin_path("jsonl")));
    source.grants = Grants::directory(input.path());
    let destination = rest_connection(
        "api",
        &server.url("/"),
        &[server.host()],
        &[("entities", "people")],
    );
    let p = project(
        source,
        destination,
        ("people", "people"),
        "id",
        vec![
            Mapping::new("id", "id"),
            Mapping::new("name", "name"),
            Mapping::new("email", "email"),
        ],
    );

    let report = common::run(&p);
    assert_eq!(report.status, Status::Warning, "{report}");
    let t = report.totals();
    assert_eq!(
        (t.read, t.inserted, t.updated, t.failed),
        (6, 5, 0, 1),
        "{report}"
    );
    let failure = &report.tasks[0].failures[0];
    assert_eq!(failure.stage, Stage::Upsert);
    assert_eq!(failure.key.as_deref(), Some("4"));
    assert_eq!(
        failure.message,
        r#"HTTP 422: email "nobody" is not an address"#
    );

    let stored = server.get("/people");
    let stored = stored.as_array().unwrap();
    assert_eq!(stored.len(), 5);
    assert_eq!(
        stored[0],
        json!({ "id": 1, "name": "Person 1", "email": "p1@example.com" })
    );

    // Changed names: updates by key (GET /people/ID, then PUT), no duplicates.
    write_source(" (renamed)");
    let before = server.requests().len();
    let report = common::run(&p);
    let t = report.totals();
    assert_eq!(
        (t.read, t.inserted, t.updated, t.failed),
        (6, 0, 5, 1),
        "{report}"
    );
    let stored = server.get("/people");
    let stored = stored.as_array().unwrap();
    assert_eq!(stored.len(), 5);
    assert!(
        stored
            .iter()
            .all(|p| p["name"].as_str().unwrap().ends_with("(renamed)")),
        "{stored:?}"
    );
    let writes: Vec<String> = server.requests()[before..]
        .iter()
        .filter(|l| !l.starts_with("GET "))
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        writes.contains(&"PUT /people/2 200".to_owned()),
        "{writes:#?}"
    );
    assert!(
        writes.contains(&"POST /people 422".to_owned()),
        "{writes:#?}"
    );
    assert!(
        !writes.contains(&"POST /people 201".to_owned()),
        "{writes:#?}"
    );
}

#[test]
fn a_429_with_retry_after_and_a_burst_of_500s_are_retried_and_the_run_completes() {
    // 12 contacts under `data.items`, five a page, the next page named by a
    // cursor in the body (`meta.next`). The first request is told to wait a
    // second; the second page fails with 500 three times first.
    let hits = Arc::new(AtomicUsize::new(0));
    let page_two_failures = Arc::new(AtomicUsize::new(0));
    let (h, f) = (hits.clone(), page_two_failures.clone());
    let server = TestServer::start(move |r| {
        if h.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::new(429, "slow down").header("Retry-After", "1");
        }
        let query = r.path.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_owned)
        };
        let limit: usize = param("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
        let start: usize = param("cursor")
            .and_then(|c| c.strip_prefix("after-")?.parse().ok())
            .unwrap_or(0);
        if start > 0 && start < 10 && f.fetch_add(1, Ordering::SeqCst) < 3 {
            return Reply::new(500, "database hiccup");
        }
        let end = (start + limit).min(12);
        let items: Vec<Json> = (start + 1..=end)
            .map(|i| json!({ "id": i, "firstName": "F", "lastName": format!("L{i}"), "email": format!("c{i}@x.test"), "updatedAt": "2024-01-01T00:00:00Z" }))
            .collect();
        let next = if end < 12 {
            json!(format!("after-{end}"))
        } else {
            Json::Null
        };
        Reply::new(
            200,
            json!({ "data": { "items": items }, "meta": { "next": next } }).to_string(),
        )
        .header("Content-Type", "application/json")
    });
    let (out, mut p) = contacts_to_jsonl(
        &server.url("/api"),
        &[server.host()],
        &[
            ("entities", "contacts"),
            ("pagination", "cursor"),
            ("cursor_field", "meta.next"),
            ("limit_param", "limit"),
            ("records", "data.items"),
            ("page_size", "5"),
        ],
    );
    p.retry = fast_retries(5);
    // The retry notes go to the execution's recorded log.
    struct Log(Vec<String>);
    impl Recorder for Log {
        fn checkpoint(&mut self, cp: Checkpoint) -> Result<(), weir_host::engine::TaskStop> {
            self.0.extend(cp.log);
            Ok(())
        }
    }
    let mut log = Log(Vec::new());
    let report = Engine::new(common::runtime())
        .execute(&p, &RunOptions::default(), &mut Quiet, &mut log)
        .unwrap();
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(report.totals().read, 12);
    assert_eq!(written(out.path(), "contacts").len(), 12);

    let seen = server.requests();
    // The host waited out the 429 itself, a second, and asked again.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950));
    // The 500s came back to the plugin as transient errors, and the engine retried.
    assert_eq!(
        page_two_failures.load(Ordering::SeqCst),
        4,
        "three 500s, then the page"
    );
    let retried: Vec<&String> = log
        .0
        .iter()
        .filter(|l| l.contains("transient failure"))
        .collect();
    assert_eq!(retried.len(), 3, "{:#?}", log.0);
    assert!(retried[0].contains("HTTP 500"), "{}", retried[0]);
    let pages: Vec<&str> = seen
        .iter()
        .map(|r| r.path.as_str())
        .filter(|p| p.contains("limit=5"))
        .collect();
    assert_eq!(
        pages,
        [
            "/api/contacts?limit=5",
            "/api/contacts?limit=5&cursor=after-5",
            "/api/contacts?limit=5&cursor=after-5",
            "/api/contacts?limit=5&cursor=after-5",
            "/api/contacts?limit=5&cursor=after-5",
            "/api/contacts?limit=5&cursor=after-10",
        ]
    );
}

#[test]
fn a_url_outside_the_allow_list_is_refused_and_json_server_sees_no_request() {
    let Some(server) = JsonServer::start(&json!({ "contacts": contacts(3) }), None) else {
        return;
    };
    // The connection points at json-server but grants another host.
    let elsewhere = TestServer::start(|_| Reply::new(200, "[]"));
    let (_out, p) = contacts_to_jsonl(
        &server.url(""),
        &[elsewhere.host()],
        &[("entities", "contacts")],
    );
    let refused = Engine::new(common::runtime())
        .run(&p, &mut Quiet)
        .expect_err("validation refuses");
    let text = refused.to_string();
    assert!(text.contains("host not in allow-list"), "{text}");

    // A granted server whose `Link: rel="next"` points at json-server: the first
    // page is read, the next is refused before anything is sent.
    let next = server.url("/contacts?_page=2");
    let granted = TestServer::start(move |_| {
        Reply::new(200, json!([{ "id": 1, "firstName": "A", "lastName": "B", "email": "a@b.c", "updatedAt": "x" }]).to_string())
            .header("Link", &format!("<{next}>; rel=\"next\""))
    });
    let (_out, p) = contacts_to_jsonl(
        &granted.url(""),
        &[granted.host()],
        &[("entities", "contacts"), ("pagination", "link")],
    );
    let report = common::run(&p);
    assert_eq!(report.status, Status::Error, "{report}");
    let error = common::task_error(&report);
    assert!(error.contains("host not in allow-list"), "{error}");

    assert_eq!(elsewhere.accepted(), 0, "nothing was granted there either");
    assert_eq!(
        server.requests(),
        Vec::<String>::new(),
        "json-server logged no request"
    );
    assert!(
        server.log().contains("Resources"),
        "json-server was up: {}",
        server.log()
    );
}

#[test]
fn discovery_infers_a_sample_or_takes_declared_fields_and_organizations_come_from_an_endpoint() {
    let db = json!({
        "contacts": contacts(3),
        "deals": [{ "id": "d1", "amount": 10, "won": true }, { "id": "d2", "amount": 12.5, "won": false, "tags": ["x"] }],
        "empty": [],
        "regions": [{ "code": "eu", "label": "Europe" }, { "code": "us", "label": "United States" }],
    });
    let Some(server) = JsonServer::start(&db, None) else {
        return;
    };
    let plugin = common::runtime()
        .load_file(&common::plugin_path("rest"))
        .unwrap();
    let mut instance = plugin
        .connector(
            Grants {
                http_hosts: vec![server.host()],
                ..Grants::none()
            },
            Limits::default(),
        )
        .unwrap();
    let c = config(&[
        ("base_url", &server.url("")),
        ("entities", "contacts,deals,empty,declared"),
        ("declared.path", "/empty"),
        ("declared.fields", "id:integer,name:text,at:timestamp"),
        ("declared.key", "id"),
        ("deals.key", "id"),
        ("organizations_path", "/regions"),
        ("organizations_id_field", "code"),
        ("organizations_name_field", "label"),
    ]);
    instance.check(&c).unwrap();
    let orgs = instance.organizations(&c).unwrap();
    let orgs: Vec<(&str, &str)> = orgs
        .iter()
        .map(|o| (o.id.as_str(), o.name.as_str()))
        .collect();
    assert_eq!(orgs, [("eu", "Europe"), ("us", "United States")]);

    let found = instance.discover(&c, Some("eu")).unwrap();
    let names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["contacts", "deals", "declared"],
        "an empty entity without `fields` is not discovered"
    );
    let types = |i: usize| -> Vec<(String, FieldType)> {
        found[i]
            .fields
            .iter()
            .map(|f| (f.name.clone(), f.field_type))
            .collect()
    };
    assert_eq!(
        types(1),
        // In the server's order (json-server keeps the db file's, sorted here).
        [
            ("amount".to_owned(), FieldType::Float),
            ("id".to_owned(), FieldType::Text),
            ("won".to_owned(), FieldType::Boolean),
            ("tags".to_owned(), FieldType::Text),
        ]
    );
    assert_eq!(types(2)[2], ("at".to_owned(), FieldType::Timestamp));
    assert_eq!(found[0].key_fields, ["id"]);

    // A typo is refused by name, before any request.
    let before = server.requests().len();
    let mut bad = c.clone();
    bad.set("contacts.pagnation", "page");
    let e = instance.check(&bad).unwrap_err().to_string();
    assert!(e.contains("did you mean `pagination`?"), "{e}");
    assert_eq!(server.requests().len(), before);
}

/// The issue's fault case "destination going down mid-run", against a real REST
/// server behind a TCP proxy the test takes down (common/tcp_proxy.rs: the network
/// failing, the server keeping what it acknowledged — json-server itself loses its
/// last acknowledged record when killed, so killing it would test json-server).
/// - Down for a moment (back within the project's retry budget): the failed batch
///   is retried and the run completes — every record once.
/// - Down for good: the run ends in Error naming the refused connection, after the
///   checkpoints it made; with the network back, a run resuming from the last
///   committed cursor completes — every record once, nothing lost.
#[test]
fn a_destination_going_down_mid_run_is_retried_or_fails_cleanly_and_nothing_is_lost() {
    const COUNT: usize = 300;
    let setup = |attempts: u32| {
        let server = JsonServer::start(&json!({ "people": [] }), None)?;
        let proxy = TcpProxy::start(server.port);
        let mut p = common::testkit_project(COUNT);
        p.destination = rest_connection(
            "api",
            &proxy.url("/"),
            &[proxy.host()],
            &[("entities", "people")],
        );
        p.batch_size = 20;
        p.retry = RetryPolicy {
            attempts,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_millis(400),
            pause_after_errors: 0,
        };
        Some((server, proxy, p))
    };
    let stored = |server: &JsonServer| -> Vec<i64> {
        let people = server.get("/people");
        let mut ids: Vec<i64> = people
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["id"]
                    .as_str()
                    .map_or_else(|| p["id"].as_i64().unwrap(), |s| s.parse().unwrap())
            })
            .collect();
        ids.sort_unstable();
        ids
    };
    let all: Vec<i64> = (1..=COUNT as i64).collect();
    let wait_for = |server: &JsonServer, at_least: usize| {
        let started = std::time::Instant::now();
        while stored(server).len() < at_least {
            assert!(started.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    struct Cursors(Arc<std::sync::Mutex<Vec<String>>>);
    impl Recorder for Cursors {
        fn checkpoint(&mut self, cp: Checkpoint) -> Result<(), weir_host::engine::TaskStop> {
            if let Some(c) = cp.tasks.iter().find_map(|t| t.cursor.clone()) {
                self.0.lock().unwrap().push(c);
            }
            Ok(())
        }
    }
    let checkpointed = RunOptions {
        checkpoint_every: 1,
        ..RunOptions::default()
    };

    // A blip: down for 0.5 s, inside 16 attempts 200–400 ms apart (~6 s).
    let Some((server, mut proxy, p)) = setup(16) else {
        return;
    };
    let report = std::thread::scope(|s| {
        let run = s.spawn(|| {
            Engine::new(common::runtime())
                .execute(&p, &checkpointed, &mut Quiet, &mut NoRecorder)
                .unwrap()
        });
        wait_for(&server, 60);
        proxy.down();
        std::thread::sleep(Duration::from_millis(500));
        proxy.up();
        run.join().unwrap()
    });
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(stored(&server), all, "every record exactly once");
    println!("blip: {report}");

    // Down for good: 2 attempts only.
    let Some((server, mut proxy, p)) = setup(2) else {
        return;
    };
    let cursors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let report = std::thread::scope(|s| {
        let run = s.spawn(|| {
            Engine::new(common::runtime())
                .execute(&p, &checkpointed, &mut Quiet, &mut Cursors(cursors.clone()))
                .unwrap()
        });
        wait_for(&server, 60);
        proxy.down();
        run.join().unwrap()
    });
    assert_eq!(report.status, Status::Error, "{report}");
    let error = report.tasks[0].error.clone().unwrap_or_default();
    println!("down for good: {error}");
    assert!(
        error.contains("weir_plugin_rest")
            && (error.contains("Connection refused") || error.contains("reset")),
        "{error}"
    );
    let committed = report.totals().inserted + report.totals().updated;
    assert!(
        (60..COUNT as u64).contains(&committed),
        "{committed} upserted before the network went: {report}"
    );
    let last = cursors
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("a checkpoint");

    proxy.up();
    let resume = RunOptions {
        resume: HashMap::from([("people".to_owned(), last)]),
        ..RunOptions::default()
    };
    let second = Engine::new(common::runtime())
        .execute(&p, &resume, &mut Quiet, &mut NoRecorder)
        .unwrap();
    assert_eq!(second.status, Status::Completed, "{second}");
    assert!(
        second.totals().read < COUNT as u64,
        "resumed, not restarted: {second}"
    );
    assert_eq!(stored(&server), all, "every record exactly once");
}
