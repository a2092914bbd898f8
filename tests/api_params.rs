//! The API refuses what it does not understand (issue 20, item 9): an unknown query
//! parameter or body field is a 400 naming it and what the route accepts; `since`
//! and the CLI's other filters work in the API too; limits out of range are a 400
//! with the range. Table-driven per endpoint family, plus one sweep over every
//! documented token operation, so a route added later gets the same check. No
//! socket: the router is called directly (`oneshot`), as in tests/openapi.rs.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use weir_host::api::{ApiState, openapi_document, router};
use weir_host::daemon::{Daemon, DaemonSettings};
use weir_host::service::Service;
use weir_host::store::{NewExecution, Store, Trigger};

const TOKEN: &str = "api-params-test-token-0123456789";

fn app(tmp: &std::path::Path) -> axum::Router {
    let store = Store::open(&tmp.join("data"), None).unwrap();
    // One execution, started now, so the filters have something to keep or drop.
    store
        .begin_execution(NewExecution {
            project: "p".into(),
            project_version: 1,
            trigger: Trigger::Manual,
            parent: None,
            rerun: None,
            tasks: vec!["t".into()],
        })
        .unwrap();
    let daemon = Daemon::new(
        Service::new(store, common::runtime()),
        DaemonSettings::default(),
        None,
    )
    .unwrap();
    daemon.start();
    router(ApiState::new(daemon, TOKEN, tmp.to_path_buf()))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
    token: bool,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    if token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    let body = match body {
        Some(b) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_owned())
        }
        None => Body::empty(),
    };
    common::oneshot_json(app, request.body(body).unwrap()).await
}

/// `(method, uri, JSON body, status, code, words the message must contain)`.
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
    &'static [&'static str],
);

const CASES: &[Case] = &[
    // Executions: the issue's three, and the filters the CLI has.
    (
        "POST",
        "/api/v1/executions/4/rerun?failed_onyl=true",
        None,
        400,
        "unknown-parameter",
        &["`failed_onyl`", "`failed_only`"],
    ),
    (
        "POST",
        "/api/v1/executions/4/rerun?failed_only=true",
        Some(r#"{"failed_only": false}"#),
        400,
        "bad-request",
        &["`failed_only`", "give it once"],
    ),
    (
        "POST",
        "/api/v1/executions/4/rerun?failed_only=maybe",
        None,
        400,
        "bad-query",
        &["failed_only"],
    ),
    (
        "POST",
        "/api/v1/executions/4/rerun",
        Some(r#"{"failedOnly": true}"#),
        400,
        "unknown-field",
        &["`failedOnly`", "`failed_only`"],
    ),
    (
        "POST",
        "/api/v1/executions/424242/rerun?failed_only=true",
        None,
        404,
        "not-found",
        &["424242"],
    ),
    (
        "GET",
        "/api/v1/executions?since=banana",
        None,
        400,
        "bad-query",
        &["`since`", "banana", "RFC 3339", "7d"],
    ),
    (
        "GET",
        "/api/v1/executions?limit=0",
        None,
        400,
        "bad-query",
        &["`limit`", "1 to 1000"],
    ),
    (
        "GET",
        "/api/v1/executions?limit=1001",
        None,
        400,
        "bad-query",
        &["`limit`", "1 to 1000"],
    ),
    (
        "GET",
        "/api/v1/executions?colour=red",
        None,
        400,
        "unknown-parameter",
        &["`colour`", "`since`", "`limit`", "`project`", "`status`"],
    ),
    (
        "GET",
        "/api/v1/executions?status=sleeping",
        None,
        400,
        "bad-request",
        &["sleeping", "Completed"],
    ),
    (
        "GET",
        "/api/v1/executions/1/errors?limit=0",
        None,
        400,
        "bad-query",
        &["`limit`", "1 to 1000"],
    ),
    (
        "GET",
        "/api/v1/executions/1/errors?page=2",
        None,
        400,
        "unknown-parameter",
        &["`page`", "`offset`", "`limit`"],
    ),
    (
        "GET",
        "/api/v1/executions/1/staging?limit=5000",
        None,
        400,
        "bad-query",
        &["1 to 1000"],
    ),
    (
        "GET",
        "/api/v1/executions/1/log?tail=5",
        None,
        400,
        "unknown-parameter",
        &["`tail`", "takes no query parameters"],
    ),
    (
        "GET",
        "/api/v1/summary?days=0",
        None,
        400,
        "bad-query",
        &["`days`", "1 to 366"],
    ),
    (
        "GET",
        "/api/v1/summary?day=3",
        None,
        400,
        "unknown-parameter",
        &["`day`", "`days`"],
    ),
    // Projects.
    (
        "GET",
        "/api/v1/projects?paused=true",
        None,
        400,
        "unknown-parameter",
        &["`paused`", "takes no query parameters"],
    ),
    (
        "GET",
        "/api/v1/projects/p/preview?limit=0",
        None,
        400,
        "bad-query",
        &["`limit`", "1 to 1000"],
    ),
    (
        "GET",
        "/api/v1/projects/p/preview?rows=5",
        None,
        400,
        "unknown-parameter",
        &["`rows`", "`limit`"],
    ),
    (
        "POST",
        "/api/v1/projects/p/pause",
        Some(r#"{"reasn": "x"}"#),
        400,
        "unknown-field",
        &["`reasn`", "`reason`"],
    ),
    (
        "POST",
        "/api/v1/projects/p/run?dryrun=true",
        None,
        400,
        "unknown-parameter",
        &["`dryrun`", "`dry_run`"],
    ),
    (
        "POST",
        "/api/v1/projects/p/run?dry_run=maybe",
        None,
        400,
        "bad-query",
        &["dry_run"],
    ),
    // Connections.
    (
        "GET",
        "/api/v1/connections?all=1",
        None,
        400,
        "unknown-parameter",
        &["`all`"],
    ),
    (
        "PUT",
        "/api/v1/connections/c?force=true",
        Some(r#"{"plugin": "csv"}"#),
        400,
        "unknown-parameter",
        &["`force`"],
    ),
    (
        "POST",
        "/api/v1/connections/c/check?timeout=5",
        None,
        400,
        "unknown-parameter",
        &["`timeout`"],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_parameters_and_fields_bad_filters_and_limits_are_400s_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app(tmp.path());
    let mut wrong = Vec::new();
    for &(method, uri, body, status, code, words) in CASES {
        let (got, answer) = call(&app, method, uri, body, true).await;
        let message = answer["message"].as_str().unwrap_or("");
        let ok = got.as_u16() == status
            && answer["code"] == code
            && words.iter().all(|w| message.contains(w))
            && !message.contains("weir_host")
            && !message.contains("::");
        if !ok {
            wrong.push(format!("{method} {uri}: {got} {answer}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "answers not as expected:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filters_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app(tmp.path());
    let total = |v: &Value| v["total"].as_u64();
    for (query, expected) in [
        ("since=7d", 1),
        ("since=2999-01-01", 0),
        ("since=2000-01-01T00:00:00Z", 1),
        ("project=p&status=running&since=1h&limit=1&offset=0", 1),
        ("project=other", 0),
        ("status=error", 0),
    ] {
        let (status, answer) = call(
            &app,
            "GET",
            &format!("/api/v1/executions?{query}"),
            None,
            true,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{query}: {answer}");
        assert_eq!(total(&answer), Some(expected), "{query}: {answer}");
    }
}

/// Every documented operation behind the token refuses a parameter it does not
/// document, and says so only to a caller with the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_route_refuses_an_undocumented_parameter() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app(tmp.path());
    let doc = serde_json::to_value(openapi_document()).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, _) in item.as_object().unwrap() {
            let uri = format!(
                "{}?zz_not_a_parameter=1",
                path.replace("{name}", "nothing-here")
                    .replace("{id}", "424242")
            );
            let method = method.to_uppercase();
            let (status, answer) = call(&app, &method, &uri, None, true).await;
            if status != StatusCode::BAD_REQUEST
                || answer["code"] != "unknown-parameter"
                || !answer["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("`zz_not_a_parameter`")
            {
                wrong.push(format!("{method} {uri}: {status} {answer}"));
            }
            let (status, _) = call(&app, &method, &uri, None, false).await;
            if status != StatusCode::UNAUTHORIZED {
                wrong.push(format!("{method} {uri} without the token: {status}"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} operations found");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
