//! `preview`: what a run would do with the first records, without writing.

use std::collections::HashSet;

use serde::Serialize;
use weir_types::{ReadRequest, Value};

use super::mapping::CompiledMappings;
use super::{ExecutionPlugins, Stage};
use crate::project::Project;
use crate::runtime::ConnectorInstance;

/// What the destination would do with a staged record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Prediction {
    Insert,
    Update,
    /// The record fails before the destination (pull, map or transform).
    Reject,
    /// The destination cannot be read to tell insert from update.
    Upsert,
}

/// One staged record.
#[derive(Clone, Debug, Serialize)]
pub struct PreviewRecord {
    pub task: String,
    pub prediction: Prediction,
    pub key: Option<String>,
    /// The destination record as it would be sent (empty for rejects).
    pub fields: Vec<(String, Value)>,
    /// Why it would be rejected.
    pub reason: Option<String>,
    pub stage: Option<Stage>,
}

/// The staged records of a preview.
#[derive(Clone, Debug, Serialize)]
pub struct PreviewReport {
    pub project: String,
    pub records: Vec<PreviewRecord>,
    /// Task-level errors (a plugin call that failed).
    pub errors: Vec<String>,
}

impl std::fmt::Display for PreviewReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "preview of project {} (nothing was written)",
            self.project
        )?;
        for r in &self.records {
            let what = match r.prediction {
                Prediction::Insert => "insert",
                Prediction::Update => "update",
                Prediction::Reject => "reject",
                Prediction::Upsert => "upsert",
            };
            write!(f, "{what:<7} {}", r.key.as_deref().unwrap_or("-"))?;
            if let Some(reason) = &r.reason {
                writeln!(
                    f,
                    "  [{}] {reason}",
                    r.stage.map_or("-".to_owned(), |s| s.to_string())
                )?;
            } else {
                let fields: Vec<String> = r
                    .fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shown(v)))
                    .collect();
                writeln!(f, "  {}", fields.join(" "))?;
            }
        }
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

/// A value as people read it: JSON, but a timestamp (microseconds since the epoch in
/// the record) as RFC 3339 UTC, e.g. `2026-11-01T08:00:00Z`.
fn shown(v: &Value) -> String {
    match v {
        Value::Timestamp(us) => chrono::DateTime::from_timestamp_micros(*us).map_or_else(
            || us.to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        ),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// The most destination keys a preview or a dry run holds to tell inserts from
/// updates; past it, it cannot tell (`None`) rather than guess from part of them.
pub(crate) const MAX_DESTINATION_KEYS: usize = 1_000_000;

/// Keys already in the destination entity, when it can be read (at most
/// [`MAX_DESTINATION_KEYS`], else `None`).
pub(crate) fn destination_keys(
    project: &Project,
    destination: &mut ConnectorInstance,
    entity: &str,
    key: &[String],
) -> Option<HashSet<String>> {
    let mut keys = HashSet::new();
    let mut cursor = None;
    loop {
        let page = destination
            .read(
                &project.destination.config,
                &ReadRequest {
                    entity: entity.to_owned(),
                    organization: project.organization.as_ref().map(|o| o.destination.clone()),
                    cursor: cursor.clone(),
                    max_records: 5_000,
                },
            )
            .ok()?;
        for row in page.records.rows() {
            keys.insert(row.key(key));
        }
        if keys.len() > MAX_DESTINATION_KEYS {
            return None;
        }
        if page.done || page.next_cursor == cursor {
            return Some(keys);
        }
        cursor = page.next_cursor;
    }
}

pub(crate) fn preview(
    project: &Project,
    prepared: &mut ExecutionPlugins,
    mut mappings: Vec<Option<CompiledMappings>>,
    limit: u32,
) -> PreviewReport {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for (n, task) in project.tasks.iter().enumerate() {
        let mappings = mappings[n].take().expect("valid projects compile");
        let existing = destination_keys(
            project,
            &mut prepared.destination,
            &task.destination_entity,
            &task.key,
        );
        let page = match prepared.source.read(
            &project.source.config,
            &ReadRequest {
                entity: task.source_entity.clone(),
                organization: project.organization.as_ref().map(|o| o.source.clone()),
                cursor: None,
                max_records: limit,
            },
        ) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("task `{}`: {e}", task.name));
                continue;
            }
        };
        let reject = |key: Option<String>, stage, reason: String| PreviewRecord {
            task: task.name.clone(),
            prediction: Prediction::Reject,
            key,
            fields: Vec::new(),
            reason: Some(reason),
            stage: Some(stage),
        };
        for r in page.rejected {
            records.push(reject(
                r.key,
                Stage::Pull,
                format!("{}: {}", r.position, r.error.message),
            ));
        }
        let mapped = match mappings.apply(page.records) {
            Ok(m) => m,
            Err(e) => {
                errors.push(format!("task `{}`: {e}", task.name));
                continue;
            }
        };
        let mut batch = mapped.batch;
        let mut keep = vec![true; batch.len()];
        for f in mapped.failures {
            keep[f.record] = false;
            let key = Some(batch.row(f.record).key(&task.key));
            records.push(reject(key, Stage::Map, f.message));
        }
        batch = batch.filter(&keep);
        let mut failed_task = false;
        for (step, t) in task
            .transforms
            .iter()
            .zip(prepared.transforms[n].iter_mut())
        {
            match t.transform(&step.config, batch.clone()) {
                Ok(out) => {
                    let mut keep = vec![true; out.records.len()];
                    for (i, e) in out.failures {
                        keep[i as usize] = false;
                        let key = Some(out.records.row(i as usize).key(&task.key));
                        records.push(reject(key, Stage::Transform, e.message));
                    }
                    batch = out.records.filter(&keep);
                }
                Err(e) => {
                    errors.push(format!("task `{}`: {e}", task.name));
                    failed_task = true;
                    break;
                }
            }
        }
        if failed_task {
            continue;
        }
        for row in batch.rows() {
            let key = row.key(&task.key);
            let prediction = match &existing {
                Some(keys) if keys.contains(&key) => Prediction::Update,
                Some(_) => Prediction::Insert,
                None => Prediction::Upsert,
            };
            records.push(PreviewRecord {
                task: task.name.clone(),
                prediction,
                key: Some(key),
                fields: row.values().map(|(k, v)| (k.to_owned(), v)).collect(),
                reason: None,
                stage: None,
            });
        }
    }
    PreviewReport {
        project: project.name.clone(),
        records,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_shown_as_rfc3339_not_microseconds() {
        let report = PreviewReport {
            project: "p".into(),
            records: vec![PreviewRecord {
                task: "t".into(),
                key: Some("7".into()),
                prediction: Prediction::Insert,
                stage: None,
                reason: None,
                fields: vec![
                    ("at".into(), Value::Timestamp(1_780_000_000_123_000)),
                    ("n".into(), Value::Integer(3)),
                ],
            }],
            errors: Vec::new(),
        };
        let text = report.to_string();
        assert!(text.contains("at=2026-05-28T20:26:40.123Z n=3"), "{text}");
        assert!(!text.contains("1780000000123000"), "{text}");
    }
}
