//! Unchanged records (contract 0.2.0): a record whose mapped values the destination
//! already holds is counted `unchanged`, not `updated`, and costs no write. For the
//! file destinations (JSON Lines, CSV): a first run, a re-run of the same source, and
//! a re-run with 10 rows changed, each counted exactly; the file is not even rewritten
//! when nothing changed. PostgreSQL's twin is in `postgres.rs`.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use weir_host::engine::{Counts, Status};
use weir_host::project::{Connection, Mapping, PluginRef, Project};

const ROWS: i64 = 100;

fn write_source(dir: &Path, changed: &[i64]) {
    let mut text = String::from("id,name,age\n");
    for id in 1..=ROWS {
        let name = if changed.contains(&id) {
            format!("person {id} (renamed)")
        } else {
            format!("person {id}")
        };
        text.push_str(&format!("{id},{name},{}\n", 20 + id % 50));
    }
    std::fs::write(dir.join("contacts.csv"), text).unwrap();
}

fn project(source: &Path, destination: &Path, plugin: &str) -> Project {
    let mut project = common::testkit_project(0);
    project.name = format!("csv-to-{plugin}");
    project.source = Connection::new("files", PluginRef::bundled("csv"))
        .with_directory(source)
        .with_config("types", "id:integer,age:integer");
    project.destination =
        Connection::new("out", PluginRef::bundled(plugin)).with_directory(destination);
    project.batch_size = 16;
    let task = &mut project.tasks[0];
    task.name = "contacts".into();
    task.source_entity = "contacts".into();
    task.destination_entity = "contacts".into();
    task.mappings = vec![
        Mapping::new("id", "id"),
        Mapping::new("name", "name"),
        Mapping::new("age", "age"),
    ];
    project
}

fn counts(project: &Project) -> Counts {
    let report = common::run(project);
    assert_eq!(report.status, Status::Completed, "{report}");
    assert!(
        report
            .to_string()
            .contains(&format!("unchanged {}", report.tasks[0].counts.unchanged)),
        "the summary names the unchanged count: {report}"
    );
    report.tasks[0].counts
}

fn three_runs(plugin: &str, file: &str) {
    let source = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let project = project(source.path(), out.path(), plugin);
    let path = out.path().join(file);

    write_source(source.path(), &[]);
    let c = counts(&project);
    assert_eq!(
        (c.read, c.inserted, c.updated, c.unchanged, c.failed),
        (100, 100, 0, 0, 0),
        "first run"
    );
    let first = std::fs::read_to_string(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap();

    // The same source again: every record is already there with its values.
    let c = counts(&project);
    assert_eq!(
        (c.read, c.inserted, c.updated, c.unchanged, c.failed),
        (100, 0, 0, 100, 0),
        "re-run of the same source"
    );
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec(), before.len()),
        (after.ino(), after.mtime_nsec(), after.len()),
        "nothing changed: the file is not rewritten"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

    // Ten rows changed at the source: ten updated, the other ninety unchanged.
    let changed: Vec<i64> = (1..=10).map(|i| i * 9).collect();
    write_source(source.path(), &changed);
    let c = counts(&project);
    assert_eq!(
        (c.read, c.inserted, c.updated, c.unchanged, c.failed),
        (100, 0, 10, 90, 0),
        "ten changed rows"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches("(renamed)").count(), 10, "{text}");
    let records = text.lines().filter(|l| !l.starts_with("id,")).count();
    assert_eq!(records, ROWS as usize, "no record lost or doubled");
}

#[test]
fn jsonl_counts_unchanged_records_on_first_run_rerun_and_ten_changed() {
    three_runs("jsonl", "contacts.jsonl");
}

#[test]
fn csv_counts_unchanged_records_on_first_run_rerun_and_ten_changed() {
    three_runs("csv", "contacts.csv");
}
