//! The OpenAPI document against the live router, without a socket: every documented
//! operation is served (answers something other than "no such route" or 405), every
//! documented method is the only one its path takes, the document's auth scheme is
//! the one the router enforces, and the routes are exactly the documented ones.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use weir_host::api::{ApiState, openapi_document, router};
use weir_host::daemon::{Daemon, DaemonSettings};
use weir_host::service::Service;
use weir_host::store::Store;

const TOKEN: &str = "openapi-test-token-0123456789";

/// Every route the router serves, as `METHOD path`. A new route is documented by
/// construction (`routes!`); this list says the document did not lose one.
const ROUTES: [&str; 37] = [
    "GET /",
    "GET /health",
    "GET /metrics",
    "POST /login",
    "POST /logout",
    "GET /api/v1/openapi.json",
    "GET /api/v1/summary",
    "GET /api/v1/scheduler",
    "GET /api/v1/workers",
    "GET /api/v1/projects",
    "GET /api/v1/projects/{name}",
    "PUT /api/v1/projects/{name}",
    "GET /api/v1/projects/{name}/mappings",
    "PUT /api/v1/projects/{name}/mappings",
    "POST /api/v1/projects/{name}/mappings/check",
    "DELETE /api/v1/projects/{name}",
    "POST /api/v1/projects/{name}/pause",
    "POST /api/v1/projects/{name}/resume",
    "POST /api/v1/projects/{name}/run",
    "POST /api/v1/projects/{name}/validate",
    "GET /api/v1/projects/{name}/preview",
    "GET /api/v1/executions",
    "GET /api/v1/executions/{id}",
    "GET /api/v1/executions/{id}/errors",
    "GET /api/v1/executions/{id}/staging",
    "GET /api/v1/executions/{id}/log",
    "POST /api/v1/executions/{id}/rerun",
    "GET /api/v1/connections",
    "GET /api/v1/connections/{name}",
    "PUT /api/v1/connections/{name}",
    "DELETE /api/v1/connections/{name}",
    "POST /api/v1/connections/{name}/check",
    // For the CLI while the daemon holds the store (api/store_commands.rs).
    "GET /api/v1/project-versions",
    "GET /api/v1/projects/{name}/versions/{version}",
    "POST /api/v1/executions/prune",
    "GET /api/v1/plugins",
    "POST /api/v1/plugins",
];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// `(method, path, needs the token)` for every documented operation.
fn operations(doc: &Value) -> Vec<(String, String, bool)> {
    let global_security = doc["security"].as_array().is_some_and(|s| !s.is_empty());
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            // An operation's own `security` replaces the global one; a list with an
            // empty requirement in it means the token is optional.
            let needs_token = match op.get("security").and_then(Value::as_array) {
                None => global_security,
                Some(reqs) => !reqs.is_empty() && !reqs.iter().any(|r| r == &serde_json::json!({})),
            };
            out.push((method.to_uppercase(), path.clone(), needs_token));
        }
    }
    out
}

fn app(tmp: &std::path::Path) -> axum::Router {
    let service = Service::new(
        Store::open(&tmp.join("data"), None).unwrap(),
        common::runtime(),
    );
    let daemon = Daemon::new(service, DaemonSettings::default(), None).unwrap();
    daemon.start();
    router(ApiState::new(daemon, TOKEN, tmp.to_path_buf()))
}

async fn call(app: &axum::Router, method: &str, path: &str, token: bool) -> (StatusCode, Value) {
    // Path parameters name nothing that exists: a handler answers "no such …".
    let uri = path
        .replace("{name}", "nothing-here")
        .replace("{id}", "424242");
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(&uri);
    if token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    common::oneshot_json(app, request.body(Body::empty()).unwrap()).await
}

/// Whether the router itself found no route (rather than a handler finding no project).
fn no_route(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND
            && body["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no route for")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_and_every_route_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let app = app(tmp.path());
    let doc = serde_json::to_value(openapi_document()).unwrap();

    let ops = operations(&doc);
    let mut documented: Vec<String> = ops.iter().map(|(m, p, _)| format!("{m} {p}")).collect();
    documented.sort();
    let mut expected: Vec<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    expected.sort();
    assert_eq!(
        documented, expected,
        "the documented operations are the routes"
    );

    for (method, path, needs_token) in &ops {
        let (status, body) = call(&app, method, path, true).await;
        assert!(!no_route(status, &body), "{method} {path}: {status} {body}");
        if *needs_token {
            let (status, _) = call(&app, method, path, false).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without the token"
            );
        } else if path != "/" {
            let (status, _) = call(&app, method, path, false).await;
            assert_ne!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} is documented open"
            );
        }
        // Every other method on a documented path is refused (no undocumented route).
        let item = &doc["paths"][path.as_str()];
        for other in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let (status, body) = call(&app, &other.to_uppercase(), path, true).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{other} {path} is not documented, so not served: {body}"
            );
        }
    }

    // The live document is this one, and it is served.
    let (status, served) = call(&app, "GET", "/api/v1/openapi.json", true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, doc);
}

#[test]
fn the_document_describes_auth_errors_and_parameters() {
    let doc = serde_json::to_value(openapi_document()).unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["cookie"]["in"], "cookie");
    assert_eq!(schemes["cookie"]["name"], "weir_session");
    assert!(doc["components"]["schemas"]["Error"]["properties"]["code"].is_object());
    assert!(
        doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("login_attempts_per_minute")
    );
    let list = &doc["paths"]["/api/v1/executions"]["get"];
    let params: Vec<&str> = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in ["project", "status", "day", "limit", "offset"] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    for (method, path, needs_token) in operations(&doc) {
        let op = &doc["paths"][path.as_str()][method.to_lowercase()];
        assert!(
            op["summary"].is_string() || op["description"].is_string(),
            "{method} {path} described"
        );
        if needs_token {
            assert!(
                op["responses"]["401"].is_object(),
                "{method} {path} documents its 401"
            );
        }
    }
}
