//! Execution statuses and record errors through the library API.

mod common;

use common::*;
use weir_host::engine::{Engine, EngineError, Quiet, Stage, Status};
use weir_host::project::Mapping;
use weir_host::runtime::Limits;

#[test]
fn all_records_upserted_is_completed() {
    let report = run(&testkit_project(1_234));
    assert_eq!(report.status, Status::Completed, "{report}");
    let t = report.totals();
    assert_eq!(
        (t.read, t.inserted, t.updated, t.failed),
        (1_234, 1_234, 0, 0)
    );
    assert_eq!(report.tasks[0].cursor.as_deref(), Some("1235"));
}

#[test]
fn some_records_rejected_is_warning_with_their_reasons() {
    let mut project = testkit_project(100);
    project.destination.config.set("reject_contains", "person7");
    let report = run(&project);
    assert_eq!(report.status, Status::Warning, "{report}");
    let t = report.totals();
    // person7 and person70..=person79
    assert_eq!(t.failed, 11);
    assert_eq!(t.inserted, 89);
    let failures = &report.tasks[0].failures;
    assert_eq!(failures.len(), 11);
    let mut keys: Vec<_> = failures.iter().map(|f| f.key.clone().unwrap()).collect();
    keys.sort();
    assert_eq!(keys[0], "7");
    assert!(failures.iter().all(|f| f.stage == Stage::Upsert));
    assert!(failures.iter().all(|f| f.field.as_deref() == Some("email")));
    assert!(
        failures[0].message.contains("rejected by testkit"),
        "{}",
        failures[0].message
    );
}

#[test]
fn all_records_rejected_is_error() {
    let mut project = testkit_project(50);
    project.destination.config.set("reject_all", "true");
    let report = run(&project);
    assert_eq!(report.status, Status::Error, "{report}");
    assert_eq!(report.totals().failed, 50);
    assert_eq!(report.totals().upserted(), 0);
    assert!(report.tasks[0].error.is_none(), "record errors only");
}

#[test]
fn transform_failures_are_record_errors_and_the_rest_goes_through() {
    let project = with_transform(
        testkit_project(20),
        &[("fail_field", "name"), ("fail_contains", "Person 1")],
        Limits::default(),
    );
    let report = run(&project);
    assert_eq!(report.status, Status::Warning, "{report}");
    // "Person 1" and "Person 10".."Person 19"
    assert_eq!(report.totals().failed, 11);
    assert_eq!(report.totals().inserted, 9);
    let f = &report.tasks[0].failures[0];
    assert_eq!(f.stage, Stage::Transform);
    assert_eq!(f.key.as_deref(), Some("1"));
    assert_eq!(f.field.as_deref(), Some("name"));
}

#[test]
fn a_destination_that_traps_fails_the_execution_not_the_host() {
    let mut project = testkit_project(10);
    project.destination.config.set("mode", "panic");
    project.destination.config.set("mode_calls", "upsert");
    let report = run(&project);
    assert_eq!(report.status, Status::Error);
    assert!(task_error(&report).contains("panicked"), "{report}");
    assert_eq!(run(&testkit_project(10)).status, Status::Completed);
}

#[test]
fn a_project_with_a_misspelled_source_field_is_refused_before_running() {
    let mut project = testkit_project(5);
    project.tasks[0].mappings[1] = Mapping::new("name", "nmae");
    let err = Engine::new(runtime())
        .run(&project, &mut Quiet)
        .unwrap_err();
    let EngineError::Invalid(report) = err else {
        panic!("expected an invalid project, got {err}")
    };
    assert_eq!(report.codes(), ["source-field-unknown"]);
    assert_eq!(
        report.problems[0].hint.as_deref(),
        Some("did you mean `name`?")
    );
}

#[test]
fn a_fast_source_feeding_a_slow_destination_stays_bounded() {
    // 40 pages from a fast source; the destination spins on every batch.
    let mut project = testkit_project(4_000);
    project.destination.config.set("upsert_spin", "50000000");
    let report = run(&project);
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(report.totals().inserted, 4_000);
    let peak = report.tasks[0].read_ahead_peak;
    // The reader ran ahead (the stages overlapped) but never by more than the two
    // channels' capacity (read → prepare → upsert), the pages the reader and the
    // prepare stage hold, and one in hand-off — not by the 40 pages it could have.
    let bound = 2 * weir_host::engine::READ_AHEAD_PAGES + 3;
    assert!(peak >= 2, "the source never ran ahead ({peak})");
    assert!(peak <= bound, "{peak} pages waited; the bound is {bound}");
}
