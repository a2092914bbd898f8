//! The host's check of the keys a transform hands back (issue 22): a transform
//! that rounds 64-bit keys, as QuickJS does, fails the records it corrupted,
//! naming the column and both values, instead of merging two records into one
//! and ending Completed.

mod common;

use common::*;
use weir_host::engine::{Stage, Status};
use weir_host::project::Mapping;
use weir_host::runtime::Limits;

/// testkit ids 1..=4 shifted to 2^53-1 ..= 2^53+2: 2^53+1 is the one a float
/// cannot hold (it rounds to 2^53, the key of the record before it).
fn big_ids(malform: Option<&str>) -> weir_host::engine::ExecutionReport {
    let mut project = testkit_project(4);
    project.tasks[0].mappings[0] = Mapping::expr("id", ".id + 9007199254740990");
    let options: Vec<(&str, &str)> = malform.map(|m| ("malform", m)).into_iter().collect();
    run(&with_transform(project, &options, Limits::default()))
}

#[test]
fn a_transform_that_rounds_s64_keys_fails_those_records_naming_column_and_values() {
    let report = big_ids(Some("round-integers"));
    assert_ne!(report.status, Status::Completed, "{report}");
    let t = report.totals();
    assert_eq!(
        (t.read, t.inserted, t.updated, t.failed),
        (4, 3, 0, 1),
        "{report}"
    );
    let f = &report.tasks[0].failures[0];
    assert_eq!(f.stage, Stage::Transform);
    assert_eq!(f.field.as_deref(), Some("id"));
    assert!(
        f.message.contains("changed key field `id`")
            && f.message.contains("9007199254740993")
            && f.message.contains("9007199254740992"),
        "{}",
        f.message
    );
}

#[test]
fn a_transform_that_keeps_big_keys_is_completed() {
    let report = big_ids(None);
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(report.totals().inserted, 4);
}
