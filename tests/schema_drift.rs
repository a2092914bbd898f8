//! Schema drift through the engine (no store): a csv source → jsonl destination run
//! once to record a baseline, then again after the source gained a field, lost a
//! field or changed a type, under each task policy. Each policy is shown obeyed (no
//! change: the run is as before, nothing recorded) and violated (what the policy does,
//! with the recorded difference).

mod common;

use std::path::PathBuf;

use weir_host::engine::drift::DISCARDED;
use weir_host::engine::{
    ChangeKind, DriftOutcome, Engine, EngineError, ExecutionReport, NoRecorder, Quiet, RunOptions,
    SchemaChange, SchemaPolicy, SchemaSide, SchemaSnapshot, Stage, Status,
};
use weir_host::project::Project;
use weir_types::FieldType;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    /// A project whose task `people` reads `people.csv` (types from `types`) and maps
    /// `id` and `name` (not `age`, not `city`) under `policy`.
    fn new(policy: &str, types: &str, csv: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("in")).unwrap();
        let f = Fixture { _dir: dir, root };
        f.write_project(policy, types);
        f.write_csv(csv);
        f
    }

    fn write_project(&self, policy: &str, types: &str) {
        let policy_line = if policy.is_empty() {
            String::new()
        } else {
            format!("schema_change = \"{policy}\"\n")
        };
        std::fs::write(
            self.root.join("project.toml"),
            format!(
                r#"[connections.src]
plugin = "csv"
config = {{ types = "{types}" }}
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

[[project.tasks]]
name = "people"
source_entity = "people"
destination_entity = "people"
key = ["id"]
{policy_line}mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
]
"#
            ),
        )
        .unwrap();
    }

    fn write_csv(&self, csv: &str) {
        std::fs::write(self.root.join("in/people.csv"), csv).unwrap();
    }

    fn project(&self) -> Project {
        Project::load(&self.root.join("project.toml")).unwrap()
    }

    fn run(&self, baseline: Option<&SchemaSnapshot>) -> Result<ExecutionReport, EngineError> {
        let options = RunOptions {
            schema_baseline: baseline.cloned(),
            ..RunOptions::default()
        };
        Engine::new(common::runtime()).execute(
            &self.project(),
            &options,
            &mut Quiet,
            &mut NoRecorder,
        )
    }

    fn out(&self) -> String {
        std::fs::read_to_string(self.root.join("out/people.jsonl")).unwrap_or_default()
    }

    /// The first run: no baseline, so no check; its schemas become the baseline.
    fn baseline(&self) -> SchemaSnapshot {
        let r = self.run(None).unwrap();
        assert_eq!(r.status, Status::Completed, "{r}");
        assert!(r.schema_changes.is_empty());
        r.schema_baseline
            .expect("a run that validated hands out its schemas")
    }
}

const TYPES: &str = "id:integer,age:integer";
const BASE: &str = "id,name,age\n1,Ada,36\n2,Bob,41\n";
/// Gained `city` (a value for Ada only).
const GAINED: &str = "id,name,age,city\n1,Ada,36,Paris\n2,Bob,41,\n";
/// Lost `age` (unmapped).
const LOST_UNMAPPED: &str = "id,name\n1,Ada\n2,Bob\n";
/// Lost `name` (mapped).
const LOST_MAPPED: &str = "id,age\n1,36\n2,41\n";
/// `age` declared float (and Bob's is empty).
const RETYPED_TYPES: &str = "id:integer,age:float";
const RETYPED: &str = "id,name,age\n1,Ada,36.5\n2,Bob,\n";

/// The recorded source entity (the destination's is recorded from the second run
/// on: the jsonl file does not exist before the first).
fn source_of(s: Option<&SchemaSnapshot>) -> weir_host::engine::drift::RecordedEntity {
    s.unwrap()
        .entity(SchemaSide::Source, "people")
        .unwrap()
        .clone()
}

fn added_city() -> SchemaChange {
    SchemaChange {
        side: SchemaSide::Source,
        entity: "people".into(),
        field: "city".into(),
        kind: ChangeKind::Added {
            field_type: FieldType::Text,
        },
    }
}

fn age_retyped() -> SchemaChange {
    SchemaChange {
        side: SchemaSide::Source,
        entity: "people".into(),
        field: "age".into(),
        kind: ChangeKind::TypeChanged {
            from: FieldType::Integer,
            to: FieldType::Float,
        },
    }
}

/// Obeyed: a second run on an unchanged source records no difference and moves
/// every record, whatever the policy.
fn obeyed(policy: &str) {
    let f = Fixture::new(policy, TYPES, BASE);
    let base = f.baseline();
    let r = f.run(Some(&base)).unwrap();
    assert_eq!(r.status, Status::Completed, "{policy}: {r}");
    assert!(
        r.schema_changes.is_empty(),
        "{policy}: {:?}",
        r.schema_changes
    );
    assert_eq!(r.tasks[0].counts.read, 2);
    assert_eq!(
        source_of(r.schema_baseline.as_ref()),
        source_of(Some(&base))
    );
}

#[test]
fn evolve_obeyed_an_unchanged_schema_records_nothing() {
    obeyed("");
    obeyed("evolve");
}

#[test]
fn freeze_obeyed_an_unchanged_schema_runs() {
    obeyed("freeze");
}

#[test]
fn discard_row_obeyed_an_unchanged_schema_drops_nothing() {
    obeyed("discard-row");
}

#[test]
fn pause_obeyed_an_unchanged_schema_runs() {
    obeyed("pause");
}

#[test]
fn evolve_violated_a_gained_field_is_recorded_ignored_and_accepted() {
    let f = Fixture::new("evolve", TYPES, BASE);
    let base = f.baseline();
    f.write_csv(GAINED);
    let r = f.run(Some(&base)).unwrap();
    assert_eq!(r.status, Status::Completed, "{r}");
    assert_eq!(r.schema_changes.len(), 1);
    let d = &r.schema_changes[0];
    assert_eq!(
        (d.task.as_str(), d.policy, d.outcome),
        ("people", SchemaPolicy::Evolve, DriftOutcome::Accepted)
    );
    assert_eq!(d.changes, [added_city()]);
    assert!(
        !f.out().contains("Paris"),
        "an unmapped new field is not written"
    );
    // Accepted: the next run compares with the new schema, so it sees no change.
    let next = r.schema_baseline.clone().unwrap();
    assert!(
        next.entity(SchemaSide::Source, "people")
            .unwrap()
            .fields
            .iter()
            .any(|x| x.name == "city")
    );
    assert!(f.run(Some(&next)).unwrap().schema_changes.is_empty());
    assert!(
        r.to_string().contains(
            "schema changes since the last successful validation:\n  task `people` (schema_change = \"evolve\"): accepted\n    source `people`: field `city` added (text)"
        ),
        "{r}"
    );
}

#[test]
fn evolve_violated_a_type_change_that_still_type_checks_runs() {
    let f = Fixture::new("evolve", TYPES, BASE);
    let base = f.baseline();
    f.write_project("evolve", RETYPED_TYPES);
    f.write_csv(RETYPED);
    let r = f.run(Some(&base)).unwrap();
    assert_eq!(r.status, Status::Completed, "{r}");
    assert_eq!(r.schema_changes[0].changes, [age_retyped()]);
    assert_eq!(r.tasks[0].counts.upserted(), 2);
}

#[test]
fn a_lost_mapped_field_fails_validation_under_every_policy_with_the_difference() {
    for policy in ["evolve", "freeze", "discard-row", "pause"] {
        let f = Fixture::new(policy, TYPES, BASE);
        let base = f.baseline();
        f.write_csv(LOST_MAPPED);
        let before = f.out();
        let Err(EngineError::Invalid(report)) = f.run(Some(&base)) else {
            panic!("{policy}: a removed mapped field must fail validation");
        };
        assert!(report.codes().contains(&"source-field-unknown"), "{report}");
        let d = &report.schema_changes[0];
        assert_eq!(d.policy.name(), policy);
        assert_eq!(
            d.changes,
            [SchemaChange {
                side: SchemaSide::Source,
                entity: "people".into(),
                field: "name".into(),
                kind: ChangeKind::Removed {
                    field_type: FieldType::Text
                },
            }]
        );
        assert!(
            report
                .to_string()
                .contains("field `name` removed (was text)"),
            "{report}"
        );
        assert_eq!(f.out(), before, "{policy}: nothing was written");
    }
}

#[test]
fn freeze_violated_each_change_stops_the_task_before_a_record_moves() {
    for (types, csv, expected) in [
        (TYPES, GAINED, "source `people`: field `city` added (text)"),
        (
            TYPES,
            LOST_UNMAPPED,
            "source `people`: field `age` removed (was integer)",
        ),
        (
            RETYPED_TYPES,
            RETYPED,
            "source `people`: field `age` type changed from integer to float",
        ),
    ] {
        let f = Fixture::new("freeze", TYPES, BASE);
        let base = f.baseline();
        let before = f.out();
        f.write_project("freeze", types);
        f.write_csv(csv);
        let r = f.run(Some(&base)).unwrap();
        assert_eq!(r.status, Status::Error, "{r}");
        let t = &r.tasks[0];
        assert_eq!(t.counts.read, 0, "no record moved");
        let error = t.error.as_deref().unwrap();
        assert!(
            error.starts_with("schema changed since the last successful validation (policy freeze); no record was moved: "),
            "{error}"
        );
        assert!(error.contains(expected), "{error}");
        assert_eq!(r.schema_changes[0].outcome, DriftOutcome::Stopped);
        assert_eq!(f.out(), before);
        // Held: the baseline is kept, so the next run stops again.
        assert_eq!(
            source_of(r.schema_baseline.as_ref()),
            source_of(Some(&base))
        );
        assert!(r.to_string().contains(expected), "{r}");
    }
}

#[test]
fn discard_row_violated_records_with_a_value_in_a_new_field_fail_at_pull_the_others_move() {
    let f = Fixture::new("discard-row", TYPES, BASE);
    let base = f.baseline();
    f.write_csv("id,name,age,city\n1,Ada,36,Paris\n2,Bobby,41,\n");
    let r = f.run(Some(&base)).unwrap();
    assert_eq!(r.status, Status::Warning, "{r}");
    let t = &r.tasks[0];
    assert_eq!(
        (t.counts.read, t.counts.failed, t.counts.updated),
        (2, 1, 1)
    );
    let failure = &t.failures[0];
    assert_eq!(failure.stage, Stage::Pull);
    assert_eq!(failure.field.as_deref(), Some("city"));
    assert!(
        failure.message.starts_with(&format!(
            "{DISCARDED}: field `city` was added to source entity `people` since the last successful validation"
        )),
        "{}",
        failure.message
    );
    assert_eq!(r.schema_changes[0].outcome, DriftOutcome::RowsDiscarded);
    assert_eq!(r.schema_changes[0].changes, [added_city()]);
    assert!(f.out().contains("Bobby"), "the record that fits moved");
    assert_eq!(
        source_of(r.schema_baseline.as_ref()),
        source_of(Some(&base)),
        "the schema stays frozen"
    );
}

#[test]
fn discard_row_violated_a_value_whose_type_changed_is_dropped() {
    let f = Fixture::new("discard-row", TYPES, BASE);
    let base = f.baseline();
    f.write_project("discard-row", RETYPED_TYPES);
    f.write_csv("id,name,age\n1,Ada,36.5\n2,Bobby,\n");
    let r = f.run(Some(&base)).unwrap();
    let t = &r.tasks[0];
    assert_eq!((t.counts.failed, t.counts.updated), (1, 1), "{r}");
    assert!(
        t.failures[0]
            .message
            .contains("field `age` of source entity `people` changed type from integer to float"),
        "{}",
        t.failures[0].message
    );
    assert_eq!(r.schema_changes[0].changes, [age_retyped()]);
}

#[test]
fn discard_row_violated_a_lost_unmapped_field_drops_nothing() {
    let f = Fixture::new("discard-row", TYPES, BASE);
    let base = f.baseline();
    f.write_csv(LOST_UNMAPPED);
    let r = f.run(Some(&base)).unwrap();
    assert_eq!(r.status, Status::Completed, "{r}");
    assert_eq!(r.schema_changes[0].outcome, DriftOutcome::RowsDiscarded);
    assert_eq!(r.tasks[0].counts.failed, 0);
}

#[test]
fn pause_violated_the_task_stops_and_says_the_project_is_paused() {
    let f = Fixture::new("pause", TYPES, BASE);
    let base = f.baseline();
    f.write_csv(GAINED);
    let r = f.run(Some(&base)).unwrap();
    assert_eq!(r.status, Status::Error, "{r}");
    assert_eq!(r.tasks[0].counts.read, 0);
    let error = r.tasks[0].error.as_deref().unwrap();
    assert!(error.contains("the project is paused"), "{error}");
    assert!(error.contains("field `city` added (text)"), "{error}");
    assert_eq!(r.schema_changes[0].outcome, DriftOutcome::Paused);
    assert_eq!(
        source_of(r.schema_baseline.as_ref()),
        source_of(Some(&base))
    );
}

#[test]
fn without_a_baseline_there_is_no_check() {
    let f = Fixture::new("freeze", TYPES, GAINED);
    let r = f.run(None).unwrap();
    assert_eq!(r.status, Status::Completed, "{r}");
    assert!(r.schema_changes.is_empty());
}

#[test]
fn validate_against_a_baseline_shows_what_a_run_would_do() {
    let f = Fixture::new("freeze", TYPES, BASE);
    let base = f.baseline();
    f.write_csv(GAINED);
    let engine = Engine::new(common::runtime());
    let report = engine.validate_against(&f.project(), Some(&base)).unwrap();
    assert!(report.valid, "{report}");
    assert_eq!(report.schema_changes[0].changes, [added_city()]);
    let text = report.to_string();
    assert!(
        text.contains("schema changes since the last successful validation:\ntask `people` (schema_change = \"freeze\"): task stopped\n  source `people`: field `city` added (text)"),
        "{text}"
    );
    // Without a baseline (`Engine::validate`) nothing is compared.
    assert!(
        engine
            .validate(&f.project())
            .unwrap()
            .schema_changes
            .is_empty()
    );
}

#[test]
fn an_unknown_policy_is_refused_with_its_place() {
    let f = Fixture::new("sometimes", TYPES, BASE);
    let err = Project::load(&f.root.join("project.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("project.toml:"), "{err}");
    assert!(
        err.contains(
            "schema_change `sometimes` is not a policy (one of: evolve, freeze, discard-row, pause)"
        ),
        "{err}"
    );
}
