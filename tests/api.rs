//! The HTTP API over a real loopback socket: authentication (none, wrong, right),
//! JSON errors without internals, the OpenAPI document, and a sweep proving that no
//! response carries a secret value — after a connection with secrets was stored, a
//! project using it was applied, validated, previewed and run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::plugin_path;
use reqwest::StatusCode;
use serde_json::{Value, json};
use weir_host::api::{ApiState, router};
use weir_host::daemon::{Daemon, DaemonSettings};
use weir_host::service::Service;
use weir_host::store::{SecretKey, Store};

const TOKEN: &str = "test-admin-token-0123456789";
const SECRET: &str = "S3CRET-value-never-shown-9f2c";

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

async fn start(data: &Path, base_dir: &Path) -> Api {
    let key =
        SecretKey::from_material("an api test key that is long enough for the store").unwrap();
    let service = Service::new(Store::open(data, Some(key)).unwrap(), common::runtime());
    let daemon = Daemon::new(service, DaemonSettings::default(), None).unwrap();
    daemon.start();
    // These tests send wrong tokens on purpose; the limit has a test of its own.
    let web = weir_host::daemon::config::WebSettings {
        login_attempts_per_minute: 1000,
        ..Default::default()
    };
    let app = router(ApiState::with_web(
        daemon,
        TOKEN,
        base_dir.to_path_buf(),
        web,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_wrong_token_right_token() {
    let tmp = tempfile::tempdir().unwrap();
    let api = start(&tmp.path().join("data"), tmp.path()).await;

    let (s, body) = api.get("/health", None).await;
    assert_eq!(s, StatusCode::OK, "health needs no token");
    assert!(body.contains("ok"));

    for path in [
        "/api/v1/projects",
        "/api/v1/executions",
        "/api/v1/connections",
        "/api/v1/openapi.json",
    ] {
        let (s, body) = api.get(path, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} without a token");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            json!({"code": "unauthorized", "message": "unauthorized"}),
            "no details"
        );
        let (s, _) = api.get(path, Some("wrong-token-wrong-token-00")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} with a wrong token");
        let (s, _) = api.get(path, Some(&TOKEN[..TOKEN.len() - 1])).await;
        assert_eq!(
            s,
            StatusCode::UNAUTHORIZED,
            "{path} with a prefix of the token"
        );
        let (s, _) = api.get(path, Some(TOKEN)).await;
        assert_eq!(s, StatusCode::OK, "{path} with the token");
    }
    // The dashboard without a session shows the login form, not data.
    let (s, body) = api.get("/", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        body.contains("name=\"token\"") || body.contains("name=token"),
        "{body}"
    );

    // The OpenAPI document describes the paths the router serves.
    let (s, doc) = api.get("/api/v1/openapi.json", Some(TOKEN)).await;
    assert_eq!(s, StatusCode::OK);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    for p in [
        "/api/v1/projects/{name}/run",
        "/api/v1/executions/{id}/errors",
        "/api/v1/summary",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} documented");
    }

    // Errors are JSON with a code and a message a person can act on.
    let (s, v) = api
        .send(reqwest::Method::GET, "/api/v1/executions/99999", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["code"], "not-found");
    let (s, v) = api
        .send(
            reqwest::Method::GET,
            "/api/v1/executions?status=Bogus",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("Bogus"), "{v}");
    let (s, v) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/connections/c",
            Some(json!({"plugin": "csv", "colour": "red"})),
        )
        .await;
    assert!(s.is_client_error(), "{s} {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_contains_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    let api = start(&tmp.path().join("data"), tmp.path()).await;
    let testkit = plugin_path("testkit-connector").display().to_string();
    use reqwest::Method;

    // A source connection with a secret that the plugin sees as config.
    let (s, v) = api
        .send(
            Method::PUT,
            "/api/v1/connections/crm",
            Some(json!({"plugin": testkit, "config": {"count": "30"}, "secrets": {"api_token": SECRET}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["secret_names"], json!(["api_token"]));
    let (s, v) = api
        .send(
            Method::PUT,
            "/api/v1/connections/files",
            Some(json!({"plugin": testkit, "directory": dst, "config": {"reject_contains": "3"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");

    let project = r#"
[connection_sets.s]
source = "crm"
destination = "files"

[project]
name = "sync"
connection_set = "s"
batch_size = 10

[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [
  { destination = "id", source = "id" },
  { destination = "email", source = "email" },
]
"#;
    let resp = api
        .client
        .put(format!("{}/api/v1/projects/sync", api.base))
        .bearer_auth(TOKEN)
        .body(project)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    // The name in the URL must match the file's.
    let resp = api
        .client
        .put(format!("{}/api/v1/projects/other", api.base))
        .bearer_auth(TOKEN)
        .body(project)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let (s, v) = api
        .send(Method::POST, "/api/v1/projects/sync/validate", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    let (s, v) = api
        .send(Method::POST, "/api/v1/projects/sync/run", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["execution"].as_u64().unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let detail = loop {
        let (_, v) = api
            .send(Method::GET, &format!("/api/v1/executions/{id}"), None)
            .await;
        if v["status"] != "Running" {
            break v;
        }
        assert!(Instant::now() < end, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        detail["status"], "Warning",
        "records with a 3 are rejected: {detail}"
    );
    let (s, v) = api
        .send(
            Method::POST,
            &format!("/api/v1/executions/{id}/rerun"),
            Some(json!({"failed_only": true})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Sweep every read endpoint; none may carry the secret.
    let paths = [
        "/api/v1/connections".to_string(),
        "/api/v1/connections/crm".into(),
        "/api/v1/projects".into(),
        "/api/v1/projects/sync".into(),
        "/api/v1/projects/sync/preview?limit=5".into(),
        "/api/v1/executions".into(),
        format!("/api/v1/executions/{id}"),
        format!("/api/v1/executions/{id}/errors"),
        format!("/api/v1/executions/{id}/staging"),
        format!("/api/v1/executions/{id}/log"),
        format!("/api/v1/executions/{}", id + 1),
        "/api/v1/summary".into(),
        "/api/v1/scheduler".into(),
    ];
    let mut seen_records = false;
    for p in &paths {
        let (s, body) = api.get(p, Some(TOKEN)).await;
        assert_eq!(s, StatusCode::OK, "{p}: {body}");
        assert!(!body.contains(SECRET), "{p} leaked the secret: {body}");
        seen_records |= p.ends_with("/errors") && body.contains("\"key\"");
    }
    assert!(
        seen_records,
        "the sweep saw record errors (so it looked at real data)"
    );
    for p in [
        "/api/v1/projects/sync/validate",
        "/api/v1/connections/crm/check",
    ] {
        let (_, v) = api.send(Method::POST, p, None).await;
        assert!(!v.to_string().contains(SECRET), "{p} leaked the secret");
    }
}
