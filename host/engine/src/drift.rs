//! Schema drift: the schemas a run's validation discovered compared with the ones
//! recorded at the project's last successful validation (the *baseline*), and what
//! each task's policy does about a difference.
//!
//! The engine knows no store: the baseline comes in through
//! [`RunOptions::schema_baseline`](crate::RunOptions) (and [`crate::Engine::validate_against`]),
//! and the schemas to record next go out in [`crate::ExecutionReport::schema_baseline`].
//! An embedder that keeps no baseline gets no drift check: with nothing recorded there
//! is nothing to compare with, and the first run's schemas simply become the baseline.
//!
//! What is compared: per task, its source entity and its destination entity (fields,
//! types, required), as the connectors discovered them. A destination entity that did
//! not exist yet (file destinations create it on the first write) is not compared
//! until it has been recorded once.
//!
//! Policies (`schema_change = "…"` on a task; like dlt's schema contracts and
//! Fivetran's schema-change settings):
//!
//! | policy | what a difference does |
//! |---|---|
//! | `evolve` (default) | recorded and run: new source fields are ignored unless mapped; a removed *mapped* field or a type that no longer fits fails validation as before (`source-field-unknown`, `type-mismatch`); a type change that still type-checks runs (the mappings are compiled, and the pages held, against the new types). The new schemas become the baseline. |
//! | `freeze` | the task stops before a record moves (Error, its message lists the differences); the baseline is kept, so every run stops until the change is accepted: one run with the task under `evolve` records the new schemas. |
//! | `discard-row` | source records that do not fit the baseline are dropped as record errors at pull (code `schema-change-discarded`): a record with a value in a field added since the baseline, or a value in a field whose type changed. The others move. A removed field carries no value and a newly required one drops nothing. A *destination* change cannot be judged per record: it stops the task as under `freeze`. The baseline is kept. |
//! | `pause` | the task stops before a record moves (Error, not Skipped: Skipped means a scheduled execution that did not start at all, and an Error keeps the history honest); the host pauses the project's schedule and alerts, naming the differences. The baseline is kept. |

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use weir_types::{Batch, EntitySchema, FieldType, ReadPage, RecordError, Rejected};

pub use crate::project::SchemaPolicy;
use crate::project::{EntityTask, Project};

/// The code of a record dropped by `discard-row` (in its record error's message).
pub const DISCARDED: &str = "schema-change-discarded";

/// Which connector's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaSide {
    Source,
    Destination,
}

impl fmt::Display for SchemaSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SchemaSide::Source => "source",
            SchemaSide::Destination => "destination",
        })
    }
}

/// One field as recorded (its description is not part of the contract).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedField {
    pub name: String,
    pub field_type: FieldType,
    pub required: bool,
}

/// One entity's schema as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEntity {
    pub side: SchemaSide,
    pub entity: String,
    pub fields: Vec<RecordedField>,
}

impl RecordedEntity {
    fn of(side: SchemaSide, schema: &EntitySchema) -> RecordedEntity {
        RecordedEntity {
            side,
            entity: schema.name.clone(),
            fields: schema
                .fields
                .iter()
                .map(|f| RecordedField {
                    name: f.name.clone(),
                    field_type: f.field_type,
                    required: f.required,
                })
                .collect(),
        }
    }
}

/// The schemas of the entities a project's tasks read and write: what a run compares
/// with, and what it hands back to be recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaSnapshot {
    pub entities: Vec<RecordedEntity>,
}

impl SchemaSnapshot {
    pub fn entity(&self, side: SchemaSide, name: &str) -> Option<&RecordedEntity> {
        self.entities
            .iter()
            .find(|e| e.side == side && e.entity == name)
    }

    fn put(&mut self, entity: RecordedEntity) {
        match self
            .entities
            .iter_mut()
            .find(|e| e.side == entity.side && e.entity == entity.entity)
        {
            Some(slot) => *slot = entity,
            None => self.entities.push(entity),
        }
    }
}

/// How a field differs from the baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeKind {
    /// A field the baseline did not have.
    Added {
        field_type: FieldType,
    },
    /// A field of the baseline that is gone.
    Removed {
        field_type: FieldType,
    },
    TypeChanged {
        from: FieldType,
        to: FieldType,
    },
    /// Optional in the baseline, required now.
    NowRequired,
}

/// One difference between an entity's recorded and discovered schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaChange {
    pub side: SchemaSide,
    pub entity: String,
    pub field: String,
    #[serde(flatten)]
    pub kind: ChangeKind,
}

impl fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}`: field `{}` ",
            self.side, self.entity, self.field
        )?;
        match &self.kind {
            ChangeKind::Added { field_type } => write!(f, "added ({field_type})"),
            ChangeKind::Removed { field_type } => write!(f, "removed (was {field_type})"),
            ChangeKind::TypeChanged { from, to } => write!(f, "type changed from {from} to {to}"),
            ChangeKind::NowRequired => f.write_str("now required"),
        }
    }
}

/// What a task did about its differences.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftOutcome {
    /// `evolve`: the task ran on the new schemas, which become the baseline.
    Accepted,
    /// `freeze` (or `discard-row` on a destination change): the task did not run.
    Stopped,
    /// `discard-row`: records that do not fit the baseline were dropped.
    RowsDiscarded,
    /// `pause`: the task did not run and the project's schedule is to be paused.
    Paused,
}

impl fmt::Display for DriftOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriftOutcome::Accepted => "accepted",
            DriftOutcome::Stopped => "task stopped",
            DriftOutcome::RowsDiscarded => "records that do not fit dropped",
            DriftOutcome::Paused => "task stopped, project paused",
        })
    }
}

/// One task's differences since the baseline and what its policy did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskDrift {
    pub task: String,
    pub policy: SchemaPolicy,
    pub outcome: DriftOutcome,
    pub changes: Vec<SchemaChange>,
}

impl TaskDrift {
    /// The task's error when its policy stops it: the differences, one per line
    /// after the first.
    pub fn stop_message(&self) -> Option<String> {
        let why = match self.outcome {
            DriftOutcome::Stopped => format!(
                "schema changed since the last successful validation (policy {}); no record was moved",
                self.policy
            ),
            DriftOutcome::Paused => "schema changed since the last successful validation (policy pause); no record was moved and the project is paused".to_owned(),
            DriftOutcome::Accepted | DriftOutcome::RowsDiscarded => return None,
        };
        Some(format!("{why}: {}", list(&self.changes)))
    }
}

impl fmt::Display for TaskDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "task `{}` (schema_change = \"{}\"): {}",
            self.task, self.policy, self.outcome
        )?;
        for c in &self.changes {
            writeln!(f, "  {c}")?;
        }
        Ok(())
    }
}

/// The changes, `; `-separated.
pub fn list(changes: &[SchemaChange]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The schemas validation discovered for the project's tasks (entities not
/// discovered are absent).
pub(crate) fn snapshot(
    project: &Project,
    sources: &[Option<EntitySchema>],
    destinations: &[Option<EntitySchema>],
) -> SchemaSnapshot {
    let mut out = SchemaSnapshot::default();
    for (i, _) in project.tasks.iter().enumerate() {
        if let Some(s) = sources.get(i).and_then(Option::as_ref) {
            out.put(RecordedEntity::of(SchemaSide::Source, s));
        }
        if let Some(d) = destinations.get(i).and_then(Option::as_ref) {
            out.put(RecordedEntity::of(SchemaSide::Destination, d));
        }
    }
    out
}

/// The differences of one entity, in the order of the fields (recorded ones first).
pub fn compare(recorded: &RecordedEntity, now: &RecordedEntity) -> Vec<SchemaChange> {
    let change = |field: &str, kind| SchemaChange {
        side: now.side,
        entity: now.entity.clone(),
        field: field.to_owned(),
        kind,
    };
    let mut out = Vec::new();
    for old in &recorded.fields {
        match now.fields.iter().find(|f| f.name == old.name) {
            None => out.push(change(
                &old.name,
                ChangeKind::Removed {
                    field_type: old.field_type,
                },
            )),
            Some(new) => {
                if new.field_type != old.field_type {
                    out.push(change(
                        &old.name,
                        ChangeKind::TypeChanged {
                            from: old.field_type,
                            to: new.field_type,
                        },
                    ));
                }
                if new.required && !old.required {
                    out.push(change(&old.name, ChangeKind::NowRequired));
                }
            }
        }
    }
    for new in &now.fields {
        if !recorded.fields.iter().any(|f| f.name == new.name) {
            out.push(change(
                &new.name,
                ChangeKind::Added {
                    field_type: new.field_type,
                },
            ));
        }
    }
    out
}

/// Per task with a difference, what its policy does. Nothing without a baseline.
pub(crate) fn check(
    project: &Project,
    baseline: Option<&SchemaSnapshot>,
    now: &SchemaSnapshot,
) -> Vec<TaskDrift> {
    let Some(baseline) = baseline else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in &project.tasks {
        let mut changes = Vec::new();
        for (side, name) in [
            (SchemaSide::Source, &task.source_entity),
            (SchemaSide::Destination, &task.destination_entity),
        ] {
            if let (Some(old), Some(new)) = (baseline.entity(side, name), now.entity(side, name)) {
                changes.extend(compare(old, new));
            }
        }
        if changes.is_empty() {
            continue;
        }
        let outcome = match task.schema_change {
            SchemaPolicy::Evolve => DriftOutcome::Accepted,
            SchemaPolicy::Freeze => DriftOutcome::Stopped,
            SchemaPolicy::Pause => DriftOutcome::Paused,
            SchemaPolicy::DiscardRow
                if changes.iter().any(|c| c.side == SchemaSide::Destination) =>
            {
                DriftOutcome::Stopped
            }
            SchemaPolicy::DiscardRow => DriftOutcome::RowsDiscarded,
        };
        out.push(TaskDrift {
            task: task.name.clone(),
            policy: task.schema_change,
            outcome,
            changes,
        });
    }
    out
}

/// What the next run compares with: the discovered schemas, except the entities a
/// task's policy holds to the baseline (any outcome but `Accepted`), which keep their
/// recorded schema until the change is accepted.
pub(crate) fn next_baseline(
    baseline: Option<&SchemaSnapshot>,
    now: &SchemaSnapshot,
    project: &Project,
    drifts: &[TaskDrift],
) -> SchemaSnapshot {
    let mut next = now.clone();
    let Some(baseline) = baseline else {
        return next;
    };
    // Entities recorded before that this run did not discover stay recorded.
    for old in &baseline.entities {
        if now.entity(old.side, &old.entity).is_none() {
            next.put(old.clone());
        }
    }
    for d in drifts
        .iter()
        .filter(|d| d.outcome != DriftOutcome::Accepted)
    {
        let Some(task) = project.tasks.iter().find(|t| t.name == d.task) else {
            continue;
        };
        for (side, name) in [
            (SchemaSide::Source, &task.source_entity),
            (SchemaSide::Destination, &task.destination_entity),
        ] {
            if let Some(old) = baseline.entity(side, name) {
                next.put(old.clone());
            }
        }
    }
    next
}

/// The source columns a `discard-row` task refuses values in: added since the
/// baseline, or with another type.
#[derive(Clone, Debug, Default)]
pub(crate) struct Discard {
    /// Field → why a value in it does not fit the baseline.
    fields: BTreeMap<String, String>,
}

impl Discard {
    /// For a task whose outcome is `RowsDiscarded`; `None` otherwise.
    pub(crate) fn of(task: &EntityTask, drift: Option<&TaskDrift>) -> Option<Discard> {
        let drift = drift.filter(|d| d.outcome == DriftOutcome::RowsDiscarded)?;
        let mut fields = BTreeMap::new();
        for c in drift
            .changes
            .iter()
            .filter(|c| c.side == SchemaSide::Source && c.entity == task.source_entity)
        {
            let why = match &c.kind {
                ChangeKind::Added { .. } => format!(
                    "field `{}` was added to source entity `{}` since the last successful validation",
                    c.field, c.entity
                ),
                ChangeKind::TypeChanged { from, to } => format!(
                    "field `{}` of source entity `{}` changed type from {from} to {to} since the last successful validation",
                    c.field, c.entity
                ),
                ChangeKind::Removed { .. } | ChangeKind::NowRequired => continue,
            };
            fields.insert(c.field.clone(), why);
        }
        Some(Discard { fields })
    }

    /// Moves the records of `page` with a value in a refused column into its
    /// rejected records (stage pull).
    pub(crate) fn apply(&self, page: &mut ReadPage, key_fields: &[String]) {
        if self.fields.is_empty() {
            return;
        }
        let batch = &page.records;
        let mut bad: Vec<Option<RecordError>> = vec![None; batch.len()];
        for column in &batch.columns {
            let Some(why) = self.fields.get(&column.name) else {
                continue;
            };
            for (i, slot) in bad.iter_mut().enumerate() {
                if slot.is_some() || column.is_null(i) {
                    continue;
                }
                *slot = Some(RecordError {
                    message: format!(
                        "{DISCARDED}: {why}; the task's policy is discard-row, so a record with a value in it is dropped"
                    ),
                    field: Some(column.name.clone()),
                });
            }
        }
        if bad.iter().all(Option::is_none) {
            return;
        }
        let keep: Vec<bool> = bad.iter().map(Option::is_none).collect();
        for (i, error) in bad.into_iter().enumerate() {
            let Some(error) = error else { continue };
            page.rejected.push(Rejected {
                position: format!("record {} of its page", i + 1),
                key: key_of(batch, key_fields, i),
                error,
            });
        }
        page.records = page.records.filter(&keep);
    }
}

fn key_of(batch: &Batch, key_fields: &[String], i: usize) -> Option<String> {
    if key_fields.is_empty() {
        return None;
    }
    let key = batch.row(i).key(key_fields);
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(fields: &[(&str, FieldType, bool)]) -> RecordedEntity {
        RecordedEntity {
            side: SchemaSide::Source,
            entity: "people".to_owned(),
            fields: fields
                .iter()
                .map(|(n, t, r)| RecordedField {
                    name: (*n).to_owned(),
                    field_type: *t,
                    required: *r,
                })
                .collect(),
        }
    }

    #[test]
    fn compare_finds_each_kind_of_change_and_nothing_in_equal_schemas() {
        use FieldType::*;
        let old = entity(&[
            ("id", Integer, false),
            ("age", Integer, false),
            ("gone", Text, false),
        ]);
        assert!(compare(&old, &old).is_empty());
        let new = entity(&[
            ("id", Integer, true),
            ("age", Text, false),
            ("city", Text, false),
        ]);
        let got: Vec<String> = compare(&old, &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "source `people`: field `id` now required",
                "source `people`: field `age` type changed from integer to text",
                "source `people`: field `gone` removed (was text)",
                "source `people`: field `city` added (text)",
            ]
        );
    }

    #[test]
    fn a_change_serializes_with_its_kind_flat() {
        let c = SchemaChange {
            side: SchemaSide::Source,
            entity: "people".into(),
            field: "age".into(),
            kind: ChangeKind::TypeChanged {
                from: FieldType::Integer,
                to: FieldType::Text,
            },
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"side": "source", "entity": "people", "field": "age",
                "kind": "type_changed", "from": "integer", "to": "text"})
        );
        let back: SchemaChange = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
    }
}
