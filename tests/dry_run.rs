//! A full dry run (`weir run --dry-run`): every source record read, mapped and
//! checked, inserts and updates predicted from the destination's keys, nothing
//! written, no cursor kept, recorded in the history as a dry run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use weir_host::engine::{Quiet, Status};
use weir_host::project::EnvPolicy;
use weir_host::service::{RunRequest, Service};
use weir_host::store::{Store, Trigger};

const RECORDS: u64 = 10_000;
/// Every 50th record's age is not a number: it fails `to_int!(.age)` (200 of them).
const BAD_EVERY: u64 = 50;
/// The destination already holds ids 1..=EXISTING.
const EXISTING: u64 = 3_000;

fn write_source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut text = String::from("id,name,age\n");
    for id in 1..=RECORDS {
        let age = if id % BAD_EVERY == 0 {
            "x".to_owned()
        } else {
            (id % 90).to_string()
        };
        text.push_str(&format!("{id},person {id},{age}\n"));
    }
    std::fs::write(src.join("people.csv"), text).unwrap();
    src
}

fn write_destination(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut text = String::new();
    for id in 1..=EXISTING {
        text.push_str(&format!(
            "{{\"id\":{id},\"name\":\"old {id}\",\"age\":0}}\n"
        ));
    }
    std::fs::write(out.join("people.jsonl"), text).unwrap();
    out
}

fn project_text(src: &Path, out: &Path) -> String {
    format!(
        r#"[connections.src]
plugin = "csv"
grants = {{ directory = "{src}" }}
config = {{ types = "id:integer" }}

[connections.out]
plugin = "jsonl"
grants = {{ directory = "{out}" }}

[connection_sets.main]
source = "src"
destination = "out"

[project]
name = "dry"
connection_set = "main"
batch_size = 500

[[project.tasks]]
name = "people"
source_entity = "people"
destination_entity = "people"
key = ["id"]
incremental = true
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
  {{ destination = "age", expr = 'to_int!(.age)' }},
]
"#,
        src = src.display(),
        out = out.display(),
    )
}

/// Every file under `dir` (names and bytes).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(snapshot(&path));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

#[test]
fn a_dry_run_over_10000_records_predicts_the_counts_of_the_real_run_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = write_source(d);
    let out = write_destination(d);
    let svc = Service::new(
        Store::open(&d.join("store"), None).unwrap(),
        common::runtime(),
    );
    svc.apply_project_text(
        &d.join("dry.toml"),
        &project_text(&src, &out),
        d,
        &EnvPolicy::default(),
    )
    .unwrap();
    let before = snapshot(&out);

    let mut request = RunRequest::new(Trigger::Manual);
    request.dry_run = true;
    let (dry_id, dry) = svc.run_with("dry", &mut request, &mut Quiet).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.status, Status::Warning, "{dry}");
    let predicted = dry.tasks[0].counts;
    // 3,000 keys exist, 60 of them bad; of the 7,000 new ones, 140 are bad.
    assert_eq!(predicted.read, RECORDS, "{dry}");
    assert_eq!(predicted.failed, RECORDS / BAD_EVERY, "{dry}");
    assert_eq!(predicted.updated, EXISTING - EXISTING / BAD_EVERY, "{dry}");
    assert_eq!(
        predicted.inserted,
        (RECORDS - EXISTING) - (RECORDS - EXISTING) / BAD_EVERY,
        "{dry}"
    );
    assert!(dry.to_string().contains("dry run:"), "{dry}");

    // Nothing written: the destination folder is byte for byte the same (no new
    // file, no index, no temporary), and the history keeps no cursor.
    assert_eq!(
        snapshot(&out),
        before,
        "the dry run wrote to the destination"
    );
    let stored = svc.store.execution(dry_id).unwrap().unwrap();
    assert!(stored.dry_run);
    assert_eq!(stored.tasks[0].cursor, None);
    assert_eq!(stored.tasks[0].inserted, predicted.inserted);
    assert_eq!(
        stored.record_errors, predicted.failed,
        "rejections are kept"
    );
    let listed = svc
        .store
        .executions(&weir_host::store::ExecutionFilter {
            project: Some("dry".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert!(listed[0].dry_run);
    // The next run neither resumes from nor retries a dry run, and it cannot be re-run.
    assert_eq!(svc.last_outcome("dry").unwrap(), None);
    let refused = svc.rerun(dry_id, true, &mut Quiet).unwrap_err().to_string();
    assert!(refused.contains("was a dry run"), "{refused}");

    // The real run (incremental: it would read nothing had the dry run kept a cursor)
    // reports exactly the predicted counts.
    let (real_id, real) = svc.run("dry", Trigger::Manual, &mut Quiet).unwrap();
    assert!(!real.dry_run);
    assert_eq!(real.status, dry.status, "{real}");
    assert_eq!(real.tasks[0].counts, predicted, "{real}");
    assert_ne!(snapshot(&out), before);
    assert!(!svc.store.execution(real_id).unwrap().unwrap().dry_run);

    // The CLI: `weir run NAME --dry-run` says it is a dry run, and so do
    // `executions list` and `executions show`.
    let weir = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["--data-dir", d.to_str().unwrap()])
            .args(args)
            .env_remove("WEIR_DATA_DIR")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    };
    drop(svc);
    let after_real = snapshot(&out);
    let text = weir(&["run", "dry", "--dry-run"]);
    assert!(
        text.contains("dry run:  predicted counts; nothing was written"),
        "{text}"
    );
    // It starts where the next run would: the incremental cursor of the real run, so
    // nothing new to read.
    assert!(
        text.contains("read 0, inserted 0, updated 0, unchanged 0, failed 0"),
        "{text}"
    );
    assert_eq!(snapshot(&out), after_real);
    let list = weir(&["executions", "list", "--project", "dry"]);
    let dry_lines = list.lines().filter(|l| l.contains("dry run")).count();
    assert_eq!(dry_lines, 2, "{list}");
    let show = weir(&["executions", "show", &dry_id.to_string()]);
    assert!(show.contains("dry run:"), "{show}");
}

/// Through `weir serve`: `POST /api/v1/projects/{name}/run?dry_run=true` records a dry
/// run (the execution view says so), and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_through_the_api_is_recorded_as_one_and_writes_nothing() {
    const TOKEN: &str = "dry-run-test-token-7c2e41";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = write_source(d);
    let out = write_destination(d);
    let data = d.join("data");
    {
        let key = weir_host::store::SecretKey::from_material(
            "a test key that is long enough for the store",
        )
        .unwrap();
        let svc = Service::new(Store::open(&data, Some(key)).unwrap(), common::runtime());
        svc.apply_project_text(
            &d.join("dry.toml"),
            &project_text(&src, &out),
            d,
            &EnvPolicy::default(),
        )
        .unwrap();
    }
    let before = snapshot(&out);
    let base = common::serve_api(&data, d, TOKEN).await;
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let r = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let started: serde_json::Value = client
        .post(format!("{base}/api/v1/projects/dry/run?dry_run=true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["execution"]
        .as_u64()
        .unwrap_or_else(|| panic!("{started}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let exec = loop {
        let e = get(format!("/api/v1/executions/{id}")).await;
        if e["status"] != "Running" {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "still running: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(exec["dry_run"], true, "{exec}");
    assert_eq!(exec["status"], "Warning", "{exec}");
    assert_eq!(exec["tasks"][0]["read"], RECORDS, "{exec}");
    assert_eq!(
        exec["tasks"][0]["updated"],
        EXISTING - EXISTING / BAD_EVERY,
        "{exec}"
    );
    assert_eq!(exec["tasks"][0]["cursor"], serde_json::Value::Null);
    let list = get("/api/v1/executions?project=dry".to_owned()).await;
    assert_eq!(list["items"][0]["dry_run"], true, "{list}");
    assert_eq!(
        snapshot(&out),
        before,
        "the dry run wrote to the destination"
    );
}

/// `weir run FILE --dry-run`: not recorded (no store), the report says it is a dry
/// run, and the destination stays as it was.
#[test]
fn a_project_file_dry_run_prints_predictions_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = write_source(d);
    let out = write_destination(d);
    std::fs::write(d.join("dry.toml"), project_text(&src, &out)).unwrap();
    let before = snapshot(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "dry.toml", "--dry-run", "--json"])
        .current_dir(d)
        .env_remove("WEIR_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "Warning: {o:?}");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["tasks"][0]["counts"]["read"], RECORDS);
    assert_eq!(
        report["tasks"][0]["counts"]["updated"],
        EXISTING - EXISTING / BAD_EVERY
    );
    assert_eq!(snapshot(&out), before);
    assert!(
        !d.join("weir-data").join("store").exists(),
        "nothing recorded"
    );
}
