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
    assert_eq!(doc["openapi"], "3.1.0");
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

/// Like [`start`], served with the client's address known (as `weir serve` does)
/// and the given web settings.
async fn start_web(
    data: &Path,
    base_dir: &Path,
    web: weir_host::daemon::config::WebSettings,
) -> Api {
    let key =
        SecretKey::from_material("an api test key that is long enough for the store").unwrap();
    let service = Service::new(Store::open(data, Some(key)).unwrap(), common::runtime());
    let daemon = Daemon::new(service, DaemonSettings::default(), None).unwrap();
    daemon.start();
    let app = router(ApiState::with_web(
        daemon,
        TOKEN,
        base_dir.to_path_buf(),
        web,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Api {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

/// Issue 18, items 5 and 7 through the API: a project sent through the API reads
/// no environment variable (weir's own or not), a credential given as a plain
/// connection option is refused; nothing of either is stored or shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_projects_read_no_environment_and_credentials_are_never_plain_options() {
    let tmp = tempfile::tempdir().unwrap();
    let api = start(&tmp.path().join("data"), tmp.path()).await;
    let project = |var: &str| {
        format!(
            r#"
[connections.src]
plugin = "rest"
grants = {{ http_hosts = ["api.example.com"] }}
auth = {{ kind = "bearer", token_env = "{var}" }}
config = {{ base_url = "https://api.example.com", entities = "contacts" }}

[connections.dst]
plugin = "jsonl"

[connection_sets.s]
source = "src"
destination = "dst"

[project]
name = "leak"
connection_set = "s"

[[project.tasks]]
source_entity = "contacts"
destination_entity = "contacts"
key = ["id"]
mappings = [{{ destination = "id", source = "id" }}]
"#
        )
    };
    for (var, why) in [
        (
            "WEIR_SECRET_KEY",
            "a project sent through the API cannot read",
        ),
        (
            "WEIR_ENV_CRM_TOKEN",
            "a project sent through the API cannot read",
        ),
    ] {
        let resp = api
            .client
            .put(format!("{}/api/v1/projects/leak", api.base))
            .bearer_auth(TOKEN)
            .body(project(var))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "invalid-project", "{v}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains(&format!(
                "connections.src.auth.token_env: environment variable `{var}`"
            )) && message.contains(why),
            "{message}"
        );
        let (s, _) = api.get("/api/v1/projects/leak", Some(TOKEN)).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "nothing stored");
    }

    let (s, v) = api
        .send(
            reqwest::Method::PUT,
            "/api/v1/connections/plain",
            Some(json!({
                "plugin": "rest",
                "config": {"base_url": "http://127.0.0.1:9", "auth.kind": "bearer", "auth.token": SECRET},
            })),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("`auth.token` is a secret") && message.contains("`secrets`"),
        "{message}"
    );
    assert!(!v.to_string().contains(SECRET), "{v}");
    let (s, body) = api.get("/api/v1/connections/plain", Some(TOKEN)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing stored: {body}");
    let (_, list) = api.get("/api/v1/connections", Some(TOKEN)).await;
    assert!(!list.contains(SECRET) && !list.contains("plain"), "{list}");
}

/// Issue 18, item 9: wrong tokens are limited per client address (then 429 with
/// Retry-After, even for the right token, so guessing learns nothing), the
/// responses carry the browser protections, and a Host the server does not
/// answer for (DNS rebinding) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_limited_responses_are_hardened_and_foreign_hosts_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let web = weir_host::daemon::config::WebSettings {
        allowed_hosts: vec!["weir.example.com".into()],
        ..Default::default()
    };
    let api = start_web(&tmp.path().join("data"), tmp.path(), web).await;
    let port = api.base.rsplit(':').next().unwrap().to_owned();

    // Headers, on the login page and on an API answer.
    for (path, token) in [("/", None), ("/api/v1/projects", Some(TOKEN))] {
        let mut r = api.client.get(format!("{}{path}", api.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'")
                && csp.contains("script-src 'sha256-")
                && !csp.contains("script-src 'unsafe-inline'")
                && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }

    // Host names: the attacker's name is refused, ours and addresses are not.
    for (host, expected) in [
        (
            format!("evil.example:{port}"),
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (format!("localhost:{port}"), StatusCode::OK),
        (format!("127.0.0.1:{port}"), StatusCode::OK),
        (format!("weir.example.com:{port}"), StatusCode::OK),
    ] {
        let resp = api
            .client
            .get(format!("{}/api/v1/projects", api.base))
            .header(reqwest::header::HOST, &host)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected, "{host}");
        if expected != StatusCode::OK {
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["code"], "wrong-host", "{v}");
        }
    }

    // Five wrong tokens in the login form, then 429 — for the right one too.
    let login = |token: &str| {
        api.client
            .post(format!("{}/login", api.base))
            .form(&[("token", token)])
            .send()
    };
    for i in 0..5 {
        let resp = login("wrong-token-wrong-token").await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let started = Instant::now();
    let resp = login("wrong-token-wrong-token").await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "too-many-attempts", "{v}");
    let resp = login(TOKEN).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "locked out");
    // Bearer guesses count against the same address.
    let (s, _) = api.get("/api/v1/projects", Some(TOKEN)).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// Issue 18, item 9: a dashboard session ends after its idle time unused, and
/// after its lifetime however used (short ones here; 30 min and 12 h by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_when_idle_and_at_their_lifetime() {
    let tmp = tempfile::tempdir().unwrap();
    let web = weir_host::daemon::config::WebSettings {
        session_idle: Duration::from_millis(1_000),
        session_max: Duration::from_millis(2_500),
        ..Default::default()
    };
    let api = start_web(&tmp.path().join("data"), tmp.path(), web).await;
    async fn login(api: &Api) -> String {
        let resp = api
            .client
            .post(format!("{}/login", api.base))
            .form(&[("token", TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(cookie.contains("Max-Age=2"), "{cookie}");
        cookie.split(';').next().unwrap().to_owned()
    }
    async fn with(api: &Api, cookie: &str) -> StatusCode {
        api.client
            .get(format!("{}/api/v1/projects", api.base))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap()
            .status()
    }
    // Used every 0.4 s: alive past its idle time, ended at its lifetime.
    let cookie = login(&api).await;
    let opened = Instant::now();
    let mut alive_past_idle = false;
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let status = with(&api, &cookie).await;
        let age = opened.elapsed();
        if status == StatusCode::OK {
            assert!(age < Duration::from_millis(2_500), "alive at {age:?}");
            alive_past_idle |= age > Duration::from_millis(1_200);
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(
                age >= Duration::from_millis(2_500),
                "ended early, at {age:?}"
            );
            break;
        }
        assert!(age < Duration::from_secs(10));
    }
    assert!(
        alive_past_idle,
        "use kept the session alive past its idle time"
    );
    // Unused for longer than its idle time: ended.
    let cookie = login(&api).await;
    assert_eq!(with(&api, &cookie).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(with(&api, &cookie).await, StatusCode::UNAUTHORIZED);
}
