//! Helpers shared by the integration tests: plugin paths, temporary folders,
//! projects built in code around the test plugins.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use weir_host::bundled::PLUGIN_BUILD_DIR;
use weir_host::engine::{Engine, ExecutionReport, Quiet};
use weir_host::project::{Connection, EntityTask, Mapping, PluginRef, Project, TransformStep};
use weir_host::runtime::{Limits, Runtime, RuntimeConfig};

/// The path of a plugin built by host/engine/build.rs (`testkit-connector` →
/// `weir_plugin_testkit_connector.wasm`).
pub fn plugin_path(name: &str) -> PathBuf {
    Path::new(PLUGIN_BUILD_DIR).join(format!("weir_plugin_{}.wasm", name.replace('-', "_")))
}

pub fn testkit() -> PluginRef {
    PluginRef::file(plugin_path("testkit-connector"))
}

pub fn testkit_transform() -> PluginRef {
    PluginRef::file(plugin_path("testkit-transform"))
}

/// A temporary folder for the whole test binary (never removed while it runs).
fn binary_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap().keep())
}

/// One runtime for a whole test binary, with a cache in a temporary folder: the
/// tests also prove that one runtime keeps serving after any plugin misbehaves.
/// Like `weir run` and `weir serve`, it keeps key indexes (`weir:kv/index`) in an
/// index directory ([`index_dir`]).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(binary_dir().join("cache")),
            index_dir: Some(index_dir().to_owned()),
            ..RuntimeConfig::default()
        })
        .unwrap()
    })
}

/// Where [`runtime`] keeps its key indexes.
pub fn index_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| binary_dir().join("index"))
}

/// A runtime that keeps no key index, as an embedding host without a data
/// directory: file writers keep their own.
pub fn runtime_without_index() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(binary_dir().join("cache")),
            ..RuntimeConfig::default()
        })
        .unwrap()
    })
}

/// testkit source (`count` people) → testkit destination, mapping id/name/email.
pub fn testkit_project(count: usize) -> Project {
    let source = Connection::new("source", testkit()).with_config("count", &count.to_string());
    let destination = Connection::new("destination", testkit());
    Project {
        name: "testkit".into(),
        connection_set: "set".into(),
        source,
        destination,
        organization: None,
        lookups: Default::default(),
        batch_size: 100,
        schedule: None,
        retry: Default::default(),
        notify: Default::default(),
        tasks: vec![EntityTask {
            incremental: false,
            stop_on_failures: Default::default(),
            schema_change: Default::default(),
            duplicate_check: Default::default(),
            name: "people".into(),
            source_entity: "people".into(),
            destination_entity: "people".into(),
            key: vec!["id".into()],
            mappings: vec![
                Mapping::new("id", "id"),
                Mapping::new("name", "name"),
                Mapping::new("email", "email"),
            ],
            transforms: vec![],
        }],
    }
}

/// Adds a testkit-transform step with the given options.
pub fn with_transform(mut project: Project, options: &[(&str, &str)], limits: Limits) -> Project {
    let mut config = weir_types::Config::default();
    for (k, v) in options {
        config.set(k, v);
    }
    project.tasks[0].transforms.push(TransformStep {
        plugin: testkit_transform(),
        config,
        limits,
    });
    project
}

pub fn run(project: &Project) -> ExecutionReport {
    run_on(runtime(), project)
}

/// [`run`] on another runtime.
pub fn run_on(runtime: &Runtime, project: &Project) -> ExecutionReport {
    Engine::new(runtime)
        .run(project, &mut Quiet)
        .expect("project starts")
}

/// The error text of the first task, or a panic naming the status.
pub fn task_error(report: &ExecutionReport) -> String {
    report.tasks[0]
        .error
        .clone()
        .unwrap_or_else(|| panic!("expected a task error, got {report}"))
}

/// Starts the daemon (started, default settings) and the API router on a loopback
/// port over a store in `data` (with a secret key); returns `http://127.0.0.1:PORT`.
/// The caller must be inside a multi-threaded tokio runtime.
pub async fn serve_api(data: &Path, base_dir: &Path, token: &str) -> String {
    use weir_host::api::{ApiState, router};
    use weir_host::daemon::{Daemon, DaemonSettings};
    use weir_host::service::Service;
    use weir_host::store::{SecretKey, Store};
    let key = SecretKey::from_material("a test key that is long enough for the store").unwrap();
    let service = Service::new(Store::open(data, Some(key)).unwrap(), runtime());
    let daemon = Daemon::new(service, DaemonSettings::default(), None).unwrap();
    daemon.start();
    let app = router(ApiState::new(daemon, token, base_dir.to_path_buf()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A project file between two stored connections, `src` and `dst`: task `people`
/// keyed on `id`, mapping `id`, `name` and `email`.
pub fn people_project_toml(name: &str, batch_size: u32) -> String {
    format!(
        r#"[connection_sets.main]
source = "src"
destination = "dst"

[project]
name = "{name}"
connection_set = "main"
batch_size = {batch_size}

[[project.tasks]]
name = "people"
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
  {{ destination = "email", source = "email" }},
]
"#
    )
}

/// A project file: testkit source (`source_config`, e.g. `count = "1000"`) → testkit
/// destination (`destination_config`), task `people` keyed by `id`, mapping id, name and
/// email, in batches of `batch_size`.
pub fn testkit_project_file(
    name: &str,
    source_config: &str,
    destination_config: &str,
    batch_size: u32,
) -> String {
    let testkit = plugin_path("testkit-connector");
    let testkit = testkit.display();
    format!(
        r#"[connections.src]
plugin = "{testkit}"
config = {{ {source_config} }}

[connections.dst]
plugin = "{testkit}"
config = {{ {destination_config} }}

[connection_sets.main]
source = "src"
destination = "dst"

[project]
name = "{name}"
connection_set = "main"
batch_size = {batch_size}

[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
  {{ destination = "email", source = "email" }},
]
"#
    )
}

/// Calls the API's router without a socket: the status and the JSON answer
/// (`Null` when the body is not JSON).
pub async fn oneshot_json(
    app: &axum::Router,
    request: axum::http::Request<axum::body::Body>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt as _;
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, body)
}
