//! Failure thresholds (`stop_on_failures`): a task stops in Error once too many
//! records failed, with what came before (the crossing batch included) committed;
//! the next run resumes after it and `rerun --failed-only` re-sends the failures.

mod common;

use std::path::{Path, PathBuf};

use weir_host::engine::{Engine, ExecutionReport, Quiet, Status};
use weir_host::project::{EnvPolicy, Project};
use weir_host::service::Service;
use weir_host::store::{ExecStatus, Store, Trigger};

/// Every `BAD_EVERY`th record has an age that is not a number: 50 of 1,000.
const BAD_EVERY: u64 = 20;
const RECORDS: u64 = 1_000;
const BATCH: u32 = 50;

/// `dir/src/people.csv`: `id,name,age` for ids 1..=`RECORDS`, age `x` for every
/// `BAD_EVERY`th id (it fails the mapping `to_int!(.age)`).
fn write_people(dir: &Path) -> PathBuf {
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

/// CSV `src` → JSON Lines `out`, task `people` keyed on `id`, `age` through
/// `age_expr`, with `threshold` as the task's `stop_on_failures` (none when empty).
fn project_text(name: &str, src: &Path, out: &Path, age_expr: &str, threshold: &str) -> String {
    let threshold = if threshold.is_empty() {
        String::new()
    } else {
        format!("stop_on_failures = {threshold}\n")
    };
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
name = "{name}"
connection_set = "main"
batch_size = {BATCH}

[[project.tasks]]
name = "people"
source_entity = "people"
destination_entity = "people"
key = ["id"]
{threshold}mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
  {{ destination = "age", expr = '{age_expr}' }},
]
"#,
        src = src.display(),
        out = out.display(),
    )
}

/// Runs `threshold` over the 1,000 records (50 bad) without a store.
fn run_with_threshold(threshold: &str) -> ExecutionReport {
    let dir = tempfile::tempdir().unwrap();
    let src = write_people(dir.path());
    let out = dir.path().join("out");
    let path = dir.path().join("p.toml");
    let text = project_text("t", &src, &out, "to_int!(.age)", threshold);
    let project = Project::parse(&path, &text).unwrap();
    Engine::new(common::runtime())
        .run(&project, &mut Quiet)
        .expect("project starts")
}

/// `(id, age)` of every line of a JSON Lines file.
fn rows(file: &Path) -> Vec<(u64, i64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_u64().unwrap(), v["age"].as_i64().unwrap())
        })
        .collect()
}

#[test]
fn a_threshold_of_10_stops_at_the_batch_of_the_11th_failure_and_resume_plus_failed_only_finish_it()
{
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = write_people(d);
    let out = d.join("out");
    let svc = Service::new(
        Store::open(&d.join("store"), None).unwrap(),
        common::runtime(),
    );
    let apply = |age_expr: &str| {
        let text = project_text("people-sync", &src, &out, age_expr, "{ records = 10 }");
        svc.apply_project_text(&d.join("p.toml"), &text, d, &EnvPolicy::default())
            .unwrap();
    };
    apply("to_int!(.age)");

    // Bad ids are 20, 40, ...: the 11th failure is id 220, in the 5th batch (201..=250),
    // which also holds 240. That batch is committed with the rest, then the task stops.
    let (first, report) = svc.run("people-sync", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(report.status, Status::Error, "{report}");
    let task = &report.tasks[0];
    assert_eq!(task.counts.read, 250, "{report}");
    assert_eq!(task.counts.failed, 12, "{report}");
    assert_eq!(task.counts.inserted, 238, "{report}");
    let error = task.error.as_deref().unwrap();
    assert_eq!(
        error,
        "stopped: 12 records failed, more than the task's threshold of 10 (stop_on_failures.records)"
    );
    // The destination holds exactly the good records of the committed part.
    let written = rows(&out.join("people.jsonl"));
    let mut ids: Vec<u64> = written.iter().map(|r| r.0).collect();
    ids.sort();
    let expected: Vec<u64> = (1..=250).filter(|i| i % BAD_EVERY != 0).collect();
    assert_eq!(ids, expected);
    // The history: Error with the reason, resumable, the cursor recorded, the 12
    // failures kept with their source records.
    let stored = svc.store.execution(first).unwrap().unwrap();
    assert_eq!(stored.status, ExecStatus::Error);
    assert_eq!(stored.error.as_deref(), Some(error));
    assert!(
        stored.interrupted,
        "the next run resumes after the committed part"
    );
    assert!(stored.tasks[0].cursor.is_some());
    assert_eq!(stored.tasks[0].read, 250);
    let (errors, total) = svc.store.record_errors(first, 0, 100).unwrap();
    assert_eq!(total, 12);
    assert!(errors.iter().all(|e| !e.record.is_empty()));

    // Fix the cause (the mapping), run again: it resumes after record 250.
    apply("to_int(.age) ?? -1");
    let (second, report) = svc.run("people-sync", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(
        report.tasks[0].counts.read, 750,
        "resumed, not started over"
    );
    assert_eq!(report.tasks[0].counts.inserted, 750);
    assert_eq!(
        svc.store.execution(second).unwrap().unwrap().parent,
        Some(first)
    );
    // The failures the threshold stop kept are re-sent from their stored copies.
    let (_, report, not_resendable) = svc.rerun(first, true, &mut Quiet).unwrap();
    assert_eq!(not_resendable, 0);
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(report.tasks[0].counts.read, 12);
    assert_eq!(report.tasks[0].counts.inserted, 12);

    // Every record once; the formerly bad ones with the fixed mapping's value.
    let mut written = rows(&out.join("people.jsonl"));
    written.sort();
    let expected: Vec<(u64, i64)> = (1..=RECORDS)
        .map(|id| {
            let age = if id % BAD_EVERY == 0 {
                -1
            } else {
                (id % 90) as i64
            };
            (id, age)
        })
        .collect();
    assert_eq!(written, expected);
}

#[test]
fn a_threshold_of_100_with_50_bad_records_does_not_stop() {
    let report = run_with_threshold("{ records = 100 }");
    assert_eq!(report.status, Status::Warning, "{report}");
    let c = report.tasks[0].counts;
    assert_eq!((c.read, c.inserted, c.failed), (1_000, 950, 50), "{report}");
    assert!(report.tasks[0].error.is_none());
}

#[test]
fn no_threshold_is_todays_behaviour() {
    let report = run_with_threshold("");
    assert_eq!(report.status, Status::Warning, "{report}");
    assert_eq!(report.tasks[0].counts.read, 1_000);
    assert_eq!(report.tasks[0].counts.failed, 50);
}

#[test]
fn a_percentage_threshold_of_4_stops_and_of_6_does_not() {
    // 5% of the records fail, evenly. The percentage is judged from 100 records read
    // on (not at the first bad record, which would be 100% of one): after the second
    // batch, 5 of 100 have failed.
    let report = run_with_threshold("{ percent = 4 }");
    assert_eq!(report.status, Status::Error, "{report}");
    let task = &report.tasks[0];
    assert_eq!((task.counts.read, task.counts.failed), (100, 5), "{report}");
    assert_eq!(
        task.error.as_deref(),
        Some(
            "stopped: 5 of 100 records read failed (5.0%), more than the task's threshold of 4% (stop_on_failures.percent)"
        )
    );
    assert!(task.interrupted, "resumable like a stop request");

    let report = run_with_threshold("{ percent = 6.0 }");
    assert_eq!(report.status, Status::Warning, "{report}");
    assert_eq!(report.tasks[0].counts.read, 1_000);

    // Both: whichever is crossed first (here the count, after the first batch).
    let report = run_with_threshold("{ records = 1, percent = 50 }");
    assert_eq!(report.tasks[0].counts.read, 50, "{report}");
}

#[test]
fn bad_thresholds_are_refused_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let src = dir.path().join("src");
    let out = dir.path().join("out");
    for (threshold, says) in [
        (
            "{ percent = 150 }",
            "stop_on_failures.percent: 150 is out of range (0 to under 100)",
        ),
        ("{ percent = 100 }", "out of range"),
        ("{ }", "stop_on_failures names no threshold"),
        ("{ records = -1 }", "expected u64"),
        ("{ count = 3 }", "unknown field `count`"),
    ] {
        let text = project_text("t", &src, &out, "to_int!(.age)", threshold);
        let line = text
            .lines()
            .position(|l| l.starts_with("stop_on_failures"))
            .unwrap()
            + 1;
        let err = Project::parse(&path, &text).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:{line}:", path.display())),
            "{threshold}: {err}"
        );
        assert!(err.contains(says), "{threshold}: {err}");
    }
}

#[test]
fn a_dry_run_predicts_the_threshold_stop_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = write_people(dir.path());
    let out = dir.path().join("out");
    let path = dir.path().join("p.toml");
    let text = project_text("t", &src, &out, "to_int!(.age)", "{ records = 10 }");
    let project = Project::parse(&path, &text).unwrap();
    let options = weir_host::engine::RunOptions {
        dry_run: true,
        ..Default::default()
    };
    let report = Engine::new(common::runtime())
        .execute(
            &project,
            &options,
            &mut Quiet,
            &mut weir_host::engine::NoRecorder,
        )
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.status, Status::Error, "{report}");
    let c = report.tasks[0].counts;
    assert_eq!((c.read, c.inserted, c.failed), (250, 238, 12), "{report}");
    assert!(!out.exists(), "a dry run creates no destination directory");
}
