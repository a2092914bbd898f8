//! Unchanged records (contract 0.2.0): a record whose mapped values the destination
//! already holds is counted `unchanged`, not `updated`, and costs no write. For the
//! file destinations (JSON Lines, CSV): a first run, a re-run of the same source, and
//! a re-run with 10 rows changed, each counted exactly; the file is not even rewritten
//! when nothing changed; with the key index in the host (`weir:kv/index`, what `weir
//! run` and `weir serve` use) and in the plugin (a host without an index directory).
//! A destination edited by another program between runs: the index is rebuilt, no
//! record lost or doubled. PostgreSQL's twin is in `postgres.rs`.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use weir_host::engine::{Counts, Status};
use weir_host::project::{Connection, Mapping, PluginRef, Project};
use weir_host::runtime::Runtime;

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

fn counts(runtime: &Runtime, project: &Project) -> Counts {
    let report = common::run_on(runtime, project);
    assert_eq!(report.status, Status::Completed, "{report}");
    assert!(
        report
            .to_string()
            .contains(&format!("unchanged {}", report.tasks[0].counts.unchanged)),
        "the summary names the unchanged count: {report}"
    );
    report.tasks[0].counts
}

fn three_runs(runtime: &Runtime, plugin: &str, file: &str) {
    let source = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let project = project(source.path(), out.path(), plugin);
    let path = out.path().join(file);

    write_source(source.path(), &[]);
    let c = counts(runtime, &project);
    assert_eq!(
        (c.read, c.inserted, c.updated, c.unchanged, c.failed),
        (100, 100, 0, 0, 0),
        "first run"
    );
    let first = std::fs::read_to_string(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap();

    // The same source again: every record is already there with its values.
    let c = counts(runtime, &project);
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
    let c = counts(runtime, &project);
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
    three_runs(common::runtime(), "jsonl", "contacts.jsonl");
}

#[test]
fn csv_counts_unchanged_records_on_first_run_rerun_and_ten_changed() {
    three_runs(common::runtime(), "csv", "contacts.csv");
}

#[test]
fn jsonl_counts_the_same_with_the_key_index_in_the_plugin() {
    three_runs(common::runtime_without_index(), "jsonl", "contacts.jsonl");
}

#[test]
fn csv_counts_the_same_with_the_key_index_in_the_plugin() {
    three_runs(common::runtime_without_index(), "csv", "contacts.csv");
}

fn dot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The key index lives in the host: nothing beside the destination file, a table in
/// the index directory. Then another program edits the destination between runs —
/// five records deleted, one changed, a record of its own appended — and the next run
/// rebuilds the index from the file rather than trust it: the five are inserted
/// again, the changed one updated, the rest unchanged, the foreign record kept, and
/// every key is in the file exactly once.
#[test]
fn a_destination_edited_between_runs_is_reindexed_and_no_record_is_lost_or_doubled() {
    let source = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let project = project(source.path(), out.path(), "jsonl");
    let path = out.path().join("contacts.jsonl");
    write_source(source.path(), &[]);
    let c = counts(common::runtime(), &project);
    assert_eq!((c.inserted, c.unchanged), (100, 0));
    assert_eq!(
        dot_files(out.path()),
        Vec::<String>::new(),
        "no index beside the file"
    );
    assert!(
        std::fs::read_dir(common::index_dir()).unwrap().count() > 0,
        "the index is in the host's index directory"
    );

    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let deleted: Vec<String> = lines.drain(40..45).collect();
    assert!(deleted[0].contains(r#""id":41"#), "{}", deleted[0]);
    let edited = lines.iter().position(|l| l.contains(r#""id":7,"#)).unwrap();
    lines[edited] = lines[edited].replace("person 7", "someone else");
    lines.push(r#"{"id":1000,"name":"added by hand","age":1}"#.to_owned());
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let c = counts(common::runtime(), &project);
    assert_eq!(
        (c.read, c.inserted, c.updated, c.unchanged, c.failed),
        (100, 5, 1, 94, 0),
        "deleted ones inserted again, the edited one updated back"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let mut ids: Vec<i64> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_i64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    let mut want: Vec<i64> = (1..=ROWS).collect();
    want.push(1000);
    assert_eq!(ids, want, "each key once, the foreign record kept");
    assert!(text.contains(r#""name":"person 7""#), "{text}");
    assert!(!text.contains("someone else"));
    // And the rebuilt index is trusted again: a re-run changes nothing.
    let c = counts(common::runtime(), &project);
    assert_eq!((c.inserted, c.updated, c.unchanged), (0, 0, 100));
}
