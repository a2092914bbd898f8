//! Schema drift with the store: the baseline recorded at a run, the difference recorded
//! on the execution and shown by `weir validate` and `weir executions show` (the CLI
//! binary), the API's execution, and a `pause` policy pausing the project through the
//! daemon with an alert that names the differences.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_host::daemon::{Alert, AlertKind, Alerter, Daemon, DaemonSettings};
use weir_host::project::{EnvPolicy, Notify};
use weir_host::service::Service;
use weir_host::store::{
    ExecStatus, ExecutionFilter, Store, StoredChangeKind, StoredDriftOutcome, StoredSchemaPolicy,
    StoredSchemaSide, Trigger,
};

const BASE: &str = "id,name,age\n1,Ada,36\n2,Bob,41\n";
const GAINED: &str = "id,name,age,city\n1,Ada,36,Paris\n2,Bob,41,\n";

fn project_text(policy: &str, schedule: &str) -> String {
    format!(
        r#"[connections.src]
plugin = "csv"
config = {{ types = "id:integer,age:integer" }}
grants = {{ directory = "in" }}

[connections.dst]
plugin = "jsonl"
grants = {{ directory = "out" }}

[connection_sets.main]
source = "src"
destination = "dst"

[project]
name = "drift"
connection_set = "main"
{schedule}

[[project.tasks]]
name = "people"
source_entity = "people"
destination_entity = "people"
key = ["id"]
schema_change = "{policy}"
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
]
"#
    )
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(policy: &str, schedule: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("in")).unwrap();
        std::fs::write(dir.path().join("in/people.csv"), BASE).unwrap();
        std::fs::write(
            dir.path().join("project.toml"),
            project_text(policy, schedule),
        )
        .unwrap();
        Fixture { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn data(&self) -> PathBuf {
        self.root().join("data")
    }

    fn gain_a_field(&self) {
        std::fs::write(self.root().join("in/people.csv"), GAINED).unwrap();
    }

    fn weir(&self, args: &[&str]) -> Output {
        let data = self.data();
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .current_dir(self.root())
            .env_remove("WEIR_DATA_DIR")
            .output()
            .expect("run weir")
    }

    fn service(&self) -> Service {
        let svc = Service::new(Store::open(&self.data(), None).unwrap(), common::runtime());
        svc.apply_project_text(
            &self.root().join("project.toml"),
            &std::fs::read_to_string(self.root().join("project.toml")).unwrap(),
            self.root(),
            &EnvPolicy::default(),
        )
        .unwrap();
        svc
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn freeze_through_the_cli_records_the_difference_and_shows_it_in_validate_and_executions_show() {
    let fx = Fixture::new("freeze", "");
    let apply = fx.weir(&["project", "apply", "--file", "project.toml"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let first = fx.weir(&["run", "drift"]);
    assert!(first.status.success(), "{}", text(&first));

    // Obeyed: nothing changed, nothing to show.
    let validate = fx.weir(&["validate", "drift"]);
    assert!(validate.status.success(), "{}", text(&validate));
    assert!(
        !text(&validate).contains("schema changes"),
        "{}",
        text(&validate)
    );

    // Violated: `validate` shows the drift since the last run, and the run stops.
    fx.gain_a_field();
    let validate = fx.weir(&["validate", "drift"]);
    assert!(
        text(&validate).contains(
            "schema changes since the last successful validation:\ntask `people` (schema_change = \"freeze\"): task stopped\n  source `people`: field `city` added (text)\n"
        ),
        "{}",
        text(&validate)
    );
    let second = fx.weir(&["run", "drift"]);
    assert!(
        !second.status.success(),
        "a frozen task that stopped is an Error"
    );

    let store = Store::open(&fx.data().join("store"), None).unwrap();
    let last = store.last_execution("drift").unwrap().unwrap();
    assert_eq!(last.status, ExecStatus::Error);
    assert_eq!(last.schema_changes.len(), 1);
    let d = &last.schema_changes[0];
    assert_eq!(
        (d.task.as_str(), d.policy, d.outcome),
        (
            "people",
            StoredSchemaPolicy::Freeze,
            StoredDriftOutcome::Stopped
        )
    );
    assert_eq!(d.changes[0].side, StoredSchemaSide::Source);
    assert_eq!(
        d.changes[0].kind,
        StoredChangeKind::Added {
            field_type: "text".into()
        }
    );
    assert!(
        last.error
            .as_deref()
            .unwrap_or_default()
            .contains("field `city` added (text)"),
        "{last:?}\n{}",
        text(&second)
    );
    // The baseline was kept: it does not know `city`, so the next run stops too.
    let baseline = store.schema_baseline("drift").unwrap().unwrap();
    let source = baseline
        .entities
        .iter()
        .find(|e| e.side == StoredSchemaSide::Source)
        .unwrap();
    assert!(!source.fields.iter().any(|f| f.name == "city"));
    drop(store);

    let show = fx.weir(&["executions", "show", &last.id.to_string()]);
    assert!(
        text(&show).contains(
            "schema changes since the last successful validation:\n  task `people` (schema_change = \"freeze\"): task stopped\n    source `people`: field `city` added (text)\n"
        ),
        "{}",
        text(&show)
    );
    let json = fx.weir(&["executions", "show", &last.id.to_string(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["schema_changes"][0]["changes"][0]["kind"], "added", "{v}");
    assert_eq!(v["schema_changes"][0]["outcome"], "stopped");
}

#[test]
fn evolve_records_the_difference_and_moves_the_baseline() {
    let fx = Fixture::new("evolve", "");
    let svc = fx.service();
    let (_, first) = svc
        .run("drift", Trigger::Manual, &mut weir_host::engine::Quiet)
        .unwrap();
    assert!(first.schema_changes.is_empty());
    fx.gain_a_field();
    let before = svc.store.schema_baseline("drift").unwrap().unwrap();
    // A dry run sees the difference and records it on itself, but accepts nothing:
    // the baseline stays, so the real run below still finds the change.
    let mut dry = weir_host::service::RunRequest::new(Trigger::Manual);
    dry.dry_run = true;
    let (dry_id, _) = svc
        .run_with("drift", &mut dry, &mut weir_host::engine::Quiet)
        .unwrap();
    let d = svc.store.execution(dry_id).unwrap().unwrap();
    assert!(d.dry_run);
    assert_eq!(d.schema_changes[0].changes[0].field, "city");
    assert_eq!(svc.store.schema_baseline("drift").unwrap().unwrap(), before);
    let (id, second) = svc
        .run("drift", Trigger::Manual, &mut weir_host::engine::Quiet)
        .unwrap();
    assert_eq!(second.status, weir_host::engine::Status::Completed);
    let e = svc.store.execution(id).unwrap().unwrap();
    assert_eq!(e.schema_changes[0].outcome, StoredDriftOutcome::Accepted);
    assert_eq!(e.schema_changes[0].changes[0].field, "city");
    let baseline = svc.store.schema_baseline("drift").unwrap().unwrap();
    assert_eq!(baseline.execution, Some(id));
    assert!(
        baseline.entities.iter().any(
            |e| e.side == StoredSchemaSide::Source && e.fields.iter().any(|f| f.name == "city")
        )
    );
    // Accepted: a third run finds nothing new.
    let (id, _) = svc
        .run("drift", Trigger::Manual, &mut weir_host::engine::Quiet)
        .unwrap();
    assert!(
        svc.store
            .execution(id)
            .unwrap()
            .unwrap()
            .schema_changes
            .is_empty()
    );
    assert!(!svc.store.project_state("drift").unwrap().paused);
}

#[derive(Default)]
struct Collected(Mutex<Vec<Alert>>);
impl Alerter for Collected {
    fn alert(&self, _: &Notify, a: Alert) {
        self.0.lock().unwrap().push(a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_the_task_pauses_the_project_and_alerts_with_the_differences() {
    let fx = Fixture::new("pause", "schedule = \"* * * * * *\"");
    let svc = fx.service();
    // The baseline, from a run before the daemon starts (off the async thread: a
    // plugin call never runs on one).
    std::thread::scope(|s| {
        s.spawn(|| {
            svc.run("drift", Trigger::Manual, &mut weir_host::engine::Quiet)
                .unwrap()
        })
        .join()
        .unwrap()
    });
    fx.gain_a_field();
    let alerts = Arc::new(Collected::default());
    let daemon = Daemon::new(
        svc,
        DaemonSettings {
            concurrency: 1,
            tick: Duration::from_millis(200),
        },
        Some(alerts.clone()),
    )
    .unwrap();
    let scheduler = daemon.start();
    let end = Instant::now() + Duration::from_secs(20);
    let alert = loop {
        let found = alerts
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.kind == AlertKind::SchemaPaused)
            .cloned();
        if let Some(a) = found {
            break a;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for the pause alert"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        alert.schema_change_lines(),
        ["task people (pause): source `people`: field `city` added (text)"]
    );
    assert_eq!(alert.execution.status, ExecStatus::Error);
    assert_eq!(alert.execution.tasks[0].read, 0, "no record moved");
    // One alert for it: the pause, not an Error besides.
    let kinds: Vec<AlertKind> = alerts.0.lock().unwrap().iter().map(|a| a.kind).collect();
    assert!(!kinds.contains(&AlertKind::Error), "{kinds:?}");

    let view = daemon.project("drift").unwrap().unwrap();
    assert!(view.paused, "{view:?}");
    let reason = view.paused_reason.unwrap();
    assert!(
        reason.starts_with("paused by schema_change = \"pause\""),
        "{reason}"
    );
    assert!(
        reason.contains("task `people`: source `people`: field `city` added (text)"),
        "{reason}"
    );
    // Paused: the schedule runs it no more.
    let count = |d: &Daemon| {
        d.service()
            .store
            .executions(&ExecutionFilter {
                project: Some("drift".into()),
                ..Default::default()
            })
            .unwrap()
            .len()
    };
    let before = count(&daemon);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(count(&daemon), before);

    // The API's execution carries the same differences (the dashboard shows them).
    let app = weir_host::api::router(weir_host::api::ApiState::new(
        daemon.clone(),
        "drift-token",
        fx.root().to_path_buf(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "http://{addr}/api/v1/executions/{}",
            alert.execution.id
        ))
        .bearer_auth("drift-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let d = &v["schema_changes"][0];
    assert_eq!(
        (&d["task"], &d["policy"], &d["outcome"]),
        (
            &serde_json::json!("people"),
            &serde_json::json!("pause"),
            &serde_json::json!("paused")
        ),
        "{v}"
    );
    assert_eq!(
        d["changes"][0],
        serde_json::json!({"side": "source", "entity": "people", "field": "city",
            "kind": "added", "field_type": "text"})
    );
    scheduler.abort();
    daemon.shutdown(Duration::from_secs(5)).await;
}
