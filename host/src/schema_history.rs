//! Schema drift between the engine and the store: the engine's baseline and
//! differences (`engine::drift`) in the store's own types (`store::StoredSchemas`,
//! `store::StoredTaskDrift`; the store knows no engine), and what the service does
//! with them after a run: record the differences on the execution, the next baseline
//! on the project, and pause a project whose `pause` policy stopped a task.

use crate::FieldType;
use crate::engine::drift::{RecordedEntity, RecordedField};
use crate::engine::{
    ChangeKind, DriftOutcome, SchemaChange, SchemaPolicy, SchemaSide, SchemaSnapshot, TaskDrift,
};
use crate::store::{
    self, ExecutionId, StoredChangeKind, StoredDriftOutcome, StoredEntitySchema, StoredField,
    StoredSchemaChange, StoredSchemaPolicy, StoredSchemaSide, StoredSchemas, StoredTaskDrift,
};

fn side(s: SchemaSide) -> StoredSchemaSide {
    match s {
        SchemaSide::Source => StoredSchemaSide::Source,
        SchemaSide::Destination => StoredSchemaSide::Destination,
    }
}

fn side_back(s: StoredSchemaSide) -> SchemaSide {
    match s {
        StoredSchemaSide::Source => SchemaSide::Source,
        StoredSchemaSide::Destination => SchemaSide::Destination,
    }
}

/// The history's copy of one task's differences.
pub fn stored_drift(d: &TaskDrift) -> StoredTaskDrift {
    StoredTaskDrift {
        task: d.task.clone(),
        policy: match d.policy {
            SchemaPolicy::Evolve => StoredSchemaPolicy::Evolve,
            SchemaPolicy::Freeze => StoredSchemaPolicy::Freeze,
            SchemaPolicy::DiscardRow => StoredSchemaPolicy::DiscardRow,
            SchemaPolicy::Pause => StoredSchemaPolicy::Pause,
        },
        outcome: match d.outcome {
            DriftOutcome::Accepted => StoredDriftOutcome::Accepted,
            DriftOutcome::Stopped => StoredDriftOutcome::Stopped,
            DriftOutcome::RowsDiscarded => StoredDriftOutcome::RowsDiscarded,
            DriftOutcome::Paused => StoredDriftOutcome::Paused,
        },
        changes: d.changes.iter().map(stored_change).collect(),
    }
}

fn stored_change(c: &SchemaChange) -> StoredSchemaChange {
    StoredSchemaChange {
        side: side(c.side),
        entity: c.entity.clone(),
        field: c.field.clone(),
        kind: match &c.kind {
            ChangeKind::Added { field_type } => StoredChangeKind::Added {
                field_type: field_type.name().to_owned(),
            },
            ChangeKind::Removed { field_type } => StoredChangeKind::Removed {
                field_type: field_type.name().to_owned(),
            },
            ChangeKind::TypeChanged { from, to } => StoredChangeKind::TypeChanged {
                from: from.name().to_owned(),
                to: to.name().to_owned(),
            },
            ChangeKind::NowRequired => StoredChangeKind::NowRequired,
        },
    }
}

/// The store's copy of a baseline.
pub fn stored_schemas(s: &SchemaSnapshot, execution: Option<ExecutionId>) -> StoredSchemas {
    StoredSchemas {
        entities: s
            .entities
            .iter()
            .map(|e| StoredEntitySchema {
                side: side(e.side),
                entity: e.entity.clone(),
                fields: e
                    .fields
                    .iter()
                    .map(|f| StoredField {
                        name: f.name.clone(),
                        field_type: f.field_type.name().to_owned(),
                        required: f.required,
                    })
                    .collect(),
            })
            .collect(),
        execution,
        recorded_at: store::now_millis(),
    }
}

/// A stored baseline for the engine. An entity with a type name this weir does not
/// know (written by a newer one) is left out: not compared, rather than compared wrong.
pub fn engine_schemas(s: &StoredSchemas) -> SchemaSnapshot {
    let entities = s
        .entities
        .iter()
        .filter_map(|e| {
            let fields = e
                .fields
                .iter()
                .map(|f| {
                    Some(RecordedField {
                        name: f.name.clone(),
                        field_type: FieldType::from_name(&f.field_type)?,
                        required: f.required,
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(RecordedEntity {
                side: side_back(e.side),
                entity: e.entity.clone(),
                fields,
            })
        })
        .collect();
    SchemaSnapshot { entities }
}

/// Why a `pause` policy paused a project: its tasks' differences, for the project
/// state and the alert.
pub fn pause_reason(execution: ExecutionId, drifts: &[StoredTaskDrift]) -> Option<String> {
    let paused: Vec<String> = drifts
        .iter()
        .filter(|d| d.outcome == StoredDriftOutcome::Paused)
        .map(|d| {
            let changes: Vec<String> = d.changes.iter().map(ToString::to_string).collect();
            format!("task `{}`: {}", d.task, changes.join("; "))
        })
        .collect();
    if paused.is_empty() {
        return None;
    }
    Some(format!(
        "paused by schema_change = \"pause\": the schema changed since the last successful validation (execution {execution}): {}; review the change, accept it (a run under `evolve`) and resume",
        paused.join(" | ")
    ))
}
