//! What an execution reports: status, counts per entity task, record errors.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::runtime::PluginCost;

/// An execution's outcome, as in the data integrator we model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Every record read was upserted.
    Completed,
    /// Some records failed; the others were upserted.
    Warning,
    /// No record was upserted (all failed, or the execution itself failed).
    Error,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Completed => "Completed",
            Status::Warning => "Warning",
            Status::Error => "Error",
        })
    }
}

/// The pipeline stage where a record failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Pull,
    Map,
    Transform,
    Upsert,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Pull => "pull",
            Stage::Map => "map",
            Stage::Transform => "transform",
            Stage::Upsert => "upsert",
        })
    }
}

/// One record that did not make it to the destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordFailure {
    pub stage: Stage,
    /// The record's key (destination key fields), when known.
    pub key: Option<String>,
    /// Where it is in the source (`line 17`), for pull failures.
    pub position: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for RecordFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.stage)?;
        if let Some(key) = &self.key {
            write!(f, " key {key}")?;
        }
        if let Some(pos) = &self.position {
            write!(f, " ({pos})")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Record counts of an entity task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub read: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Upserted records whose key existed with these values already: nothing was
    /// written (a destination on contract 0.2.0 that can tell; others say updated).
    pub unchanged: u64,
    pub failed: u64,
}

impl Counts {
    /// Records now at the destination with their values: inserted, updated or
    /// found unchanged.
    pub fn upserted(&self) -> u64 {
        self.inserted + self.updated + self.unchanged
    }

    pub fn add(&mut self, other: &Counts) {
        self.read += other.read;
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.failed += other.failed;
    }
}

/// How an entity task went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskReport {
    pub name: String,
    pub source_entity: String,
    pub destination_entity: String,
    pub counts: Counts,
    /// The first record failures (at most [`super::MAX_KEPT_FAILURES`]); all are
    /// counted in `counts.failed`.
    pub failures: Vec<RecordFailure>,
    /// Why the task stopped early, if it did.
    pub error: Option<String>,
    /// It stopped at a batch boundary with everything before it committed
    /// ([`super::TaskStop::Interrupted`]): the next run resumes from `cursor`.
    pub interrupted: bool,
    /// Where the source stood after the last batch upserted.
    pub cursor: Option<String>,
    /// The most pages read but not yet taken by the writing side (bounded by
    /// `READ_AHEAD_PAGES` + 2: the channel, the page the reader holds, and one in
    /// hand-off).
    pub read_ahead_peak: usize,
}

/// How an execution went.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecutionReport {
    pub project: String,
    pub status: Status,
    pub tasks: Vec<TaskReport>,
    pub duration_ms: u64,
    /// Lines from the plugins' logs and the engine, for people reading the run.
    pub log: Vec<String>,
    /// What each plugin instance of the run cost (validation's calls included).
    pub plugins: Vec<PluginUsage>,
    /// A dry run ([`super::RunOptions::dry_run`]): the counts are predictions and
    /// nothing was written.
    pub dry_run: bool,
    /// Per task, how its entities' schemas differ from the baseline given in
    /// `RunOptions::schema_baseline`, and what its policy did (empty without one).
    pub schema_changes: Vec<crate::drift::TaskDrift>,
    /// The schemas the next run compares with (see `drift::next_baseline`): the
    /// discovered ones, except entities a policy holds to the old baseline. For the
    /// embedder's store to record; `None` never comes from a run that validated.
    pub schema_baseline: Option<crate::drift::SchemaSnapshot>,
}

/// What one plugin instance of an execution did and cost, beside its limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PluginUsage {
    /// The plugin's label (a bundled name, `name@version`, a file name).
    pub plugin: String,
    /// Its part in the execution.
    pub role: PluginRole,
    /// What the host measured around its calls.
    pub cost: PluginCost,
    /// Its memory limit, in bytes (compare with `cost.memory_high_water_bytes`).
    pub memory_limit_bytes: u64,
    /// Its per-call time limit, in microseconds (compare with `cost.slowest_call_micros`).
    pub call_timeout_micros: u64,
}

/// A plugin's part in an execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PluginRole {
    /// The connector records are read from (every task's).
    Source,
    /// The connector records are upserted into (every task's).
    Destination,
    /// A transform of one task, at `step` (0-based) of its chain.
    Transform {
        /// The task's name.
        task: String,
        /// Its place in the task's chain of transforms.
        step: usize,
    },
}

impl fmt::Display for PluginRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginRole::Source => f.write_str("source"),
            PluginRole::Destination => f.write_str("destination"),
            PluginRole::Transform { task, step } => {
                write!(f, "transform {} of task `{task}`", step + 1)
            }
        }
    }
}

impl ExecutionReport {
    /// Counts summed over the tasks.
    pub fn totals(&self) -> Counts {
        let mut total = Counts::default();
        for t in &self.tasks {
            total.add(&t.counts);
        }
        total
    }

    /// The status the counts and errors call for.
    pub fn status_of(tasks: &[TaskReport]) -> Status {
        let mut total = Counts::default();
        for t in tasks {
            total.add(&t.counts);
        }
        let any_error = tasks.iter().any(|t| t.error.is_some());
        if any_error || (total.upserted() == 0 && total.failed > 0) {
            Status::Error
        } else if total.failed > 0 {
            Status::Warning
        } else {
            Status::Completed
        }
    }
}

impl fmt::Display for ExecutionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.totals();
        writeln!(f, "project:  {}", self.project)?;
        writeln!(f, "status:   {}", self.status)?;
        if self.dry_run {
            writeln!(
                f,
                "dry run:  predicted counts; nothing was written to the destination"
            )?;
        }
        writeln!(
            f,
            "records:  read {}, inserted {}, updated {}, unchanged {}, failed {}  ({:.2} s)",
            t.read,
            t.inserted,
            t.updated,
            t.unchanged,
            t.failed,
            self.duration_ms as f64 / 1000.0
        )?;
        for task in &self.tasks {
            if self.tasks.len() > 1 {
                let c = task.counts;
                writeln!(
                    f,
                    "  {} ({} → {}): read {}, inserted {}, updated {}, unchanged {}, failed {}",
                    task.name,
                    task.source_entity,
                    task.destination_entity,
                    c.read,
                    c.inserted,
                    c.updated,
                    c.unchanged,
                    c.failed
                )?;
            }
            if let Some(e) = &task.error {
                writeln!(f, "  error in task `{}`: {e}", task.name)?;
            }
            for failure in task.failures.iter().take(10) {
                writeln!(f, "  record error {failure}")?;
            }
            let more = (task.counts.failed as usize).saturating_sub(task.failures.len().min(10));
            if more > 0 {
                writeln!(f, "  … and {more} more record errors")?;
            }
        }
        if !self.schema_changes.is_empty() {
            writeln!(f, "schema changes since the last successful validation:")?;
            for d in &self.schema_changes {
                for line in d.to_string().lines() {
                    writeln!(f, "  {line}")?;
                }
            }
        }
        Ok(())
    }
}
