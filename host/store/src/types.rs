//! The store's public data: what callers put in and get back. None of these is the
//! on-disk form: `mod.rs` keeps private at-rest structs, so a public type can gain a
//! convenience field without changing the format, and a secret never reaches disk in clear.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// An execution's id: from sled's `generate_id` (+1, so never 0). Monotonic across
/// restarts, so the big-endian id orders executions from oldest to newest.
pub type ExecutionId = u64;

/// What started an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Manual,
    Scheduled,
    Retry,
    Rerun,
}

/// Which records a re-run (`Trigger::Rerun`) sends again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RerunKind {
    /// Every record of the source, as a fresh run.
    AllRecords,
    /// Only the records that failed in the parent execution.
    FailedOnly,
}

/// Where an execution stands. Only `Running` can still change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ExecStatus {
    Running,
    Completed,
    Warning,
    Error,
    /// A scheduled run that did not start (the project was still running); the
    /// execution's `error` says why. Moved no record.
    Skipped,
}

impl fmt::Display for ExecStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecStatus::Running => "Running",
            ExecStatus::Completed => "Completed",
            ExecStatus::Warning => "Warning",
            ExecStatus::Error => "Error",
            ExecStatus::Skipped => "Skipped",
        })
    }
}

/// Whether a stored connection was last seen working.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ConnectionState {
    Unchecked,
    Connected,
    NeedsFixing { reason: String },
}

/// A connection as the caller sees it: secrets in clear. Only the store's at-rest form is
/// written to disk, with every secret value encrypted; `Debug` never prints secret values,
/// so a stray `{:?}` in a log cannot leak them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConnection {
    pub name: String,
    /// A bundled plugin's name or a `.wasm` path, as written.
    pub plugin: String,
    /// Options that are not secret.
    pub config: Vec<(String, String)>,
    /// Secret options, in clear in memory only; encrypted at rest.
    pub secrets: Vec<(String, String)>,
    pub directory: Option<PathBuf>,
    pub http_hosts: Vec<String>,
    /// Whether hosts granted by name may resolve to internal addresses (loopback,
    /// private, link-local): on-premise systems. Off by default.
    #[serde(default)]
    pub http_internal: bool,
    pub state: ConnectionState,
    /// Unix millis; set by the store on every write (the caller's value is ignored).
    pub updated_at: i64,
}

impl fmt::Debug for StoredConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret_names: Vec<&str> = self.secrets.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("StoredConnection")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .field("config", &self.config)
            .field("secrets", &format_args!("{secret_names:?} (values hidden)"))
            .field("directory", &self.directory)
            .field("http_hosts", &self.http_hosts)
            .field("http_internal", &self.http_internal)
            .field("state", &self.state)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A connection in a listing: secret names, never values (listing needs no key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionSummary {
    pub name: String,
    pub plugin: String,
    pub secret_names: Vec<String>,
    pub state: ConnectionState,
    pub updated_at: i64,
}

/// One version of a project file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProject {
    pub name: String,
    pub version: u32,
    /// The project file's TOML, as applied.
    pub text: String,
    /// The directory relative paths in `text` resolve against.
    pub base_dir: PathBuf,
    pub created_at: i64,
}

/// A project in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectSummary {
    pub name: String,
    pub latest_version: u32,
    /// When the latest version was applied (unix millis).
    pub updated_at: i64,
}

/// One entity task's progress inside an execution.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskState {
    pub name: String,
    pub read: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Upserted with the values the destination already held: nothing written.
    /// Absent in records stored before 0.2.0 destinations could say so.
    #[serde(default)]
    pub unchanged: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Where to resume reading, as the source connector gave it.
    pub cursor: Option<String>,
    pub error: Option<String>,
}

impl TaskState {
    /// A task that has not started: zero counts, no cursor.
    pub fn new(name: impl Into<String>) -> TaskState {
        TaskState {
            name: name.into(),
            ..TaskState::default()
        }
    }
}

/// What `Store::begin_execution` needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewExecution {
    pub project: String,
    pub project_version: u32,
    pub trigger: Trigger,
    pub parent: Option<ExecutionId>,
    /// For a re-run: which records it sends again.
    pub rerun: Option<RerunKind>,
    /// The entity tasks' names, in run order.
    pub tasks: Vec<String>,
}

/// An execution in full: counts, cursors and its log. Record errors and staged records
/// are only counted here; page through them with `Store::record_errors` / `Store::staged`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Execution {
    pub id: ExecutionId,
    pub project: String,
    pub project_version: u32,
    pub trigger: Trigger,
    pub parent: Option<ExecutionId>,
    /// For a re-run: which records it sent again (`None` for re-runs stored before
    /// the kind was recorded).
    pub rerun: Option<RerunKind>,
    /// A dry run: every source record read and checked, inserts and updates predicted
    /// from the destination's keys, nothing written and no cursor kept. Its counts are
    /// predictions, and the next run neither resumes from it nor re-runs it.
    #[serde(default)]
    pub dry_run: bool,
    pub status: ExecStatus,
    pub error: Option<String>,
    /// Ended in Error at a committed batch boundary (the process stopped, a stop
    /// request, a full disk): the next run of the project resumes from `tasks`' cursors.
    pub interrupted: bool,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub tasks: Vec<TaskState>,
    /// The stored log lines (at most `StoreLimits::max_log_lines`, plus the store's own
    /// "interrupted" line).
    pub log: Vec<String>,
    /// Log lines checkpointed beyond the limit: counted, not stored.
    pub log_dropped: u64,
    /// Record errors checkpointed, stored or not.
    pub record_errors: u64,
    /// Of those, how many were beyond `StoreLimits::max_record_errors` and not stored.
    pub record_errors_dropped: u64,
    /// Staged records checkpointed, stored or not.
    pub staged: u64,
    /// Of those, how many were beyond `StoreLimits::max_staged_per_execution`.
    pub staged_dropped: u64,
    /// What each plugin instance cost, recorded when the execution ends (empty while it
    /// runs, and in executions recorded before weir measured it).
    pub plugins: Vec<StoredPluginCost>,
    /// Per task, how its entities' schemas differed from the baseline and what its
    /// policy did (empty when nothing changed, and in executions recorded before the
    /// drift check).
    #[serde(default)]
    pub schema_changes: Vec<StoredTaskDrift>,
    /// The `weir worker` that ran it (the last one, when a worker died and another
    /// resumed it); `None` for an execution run inside the process that recorded it,
    /// and in records from before scale-out.
    #[serde(default)]
    pub worker: Option<String>,
}

/// A task's schema policy, as the history keeps it (the engine's `SchemaPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StoredSchemaPolicy {
    Evolve,
    Freeze,
    DiscardRow,
    Pause,
}

impl fmt::Display for StoredSchemaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoredSchemaPolicy::Evolve => "evolve",
            StoredSchemaPolicy::Freeze => "freeze",
            StoredSchemaPolicy::DiscardRow => "discard-row",
            StoredSchemaPolicy::Pause => "pause",
        })
    }
}

/// What a task did about its schema differences (the engine's `DriftOutcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoredDriftOutcome {
    /// `evolve`: ran on the new schemas.
    Accepted,
    /// The task did not run.
    Stopped,
    /// Records that do not fit the baseline were dropped.
    RowsDiscarded,
    /// The task did not run and the project was paused.
    Paused,
}

impl fmt::Display for StoredDriftOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoredDriftOutcome::Accepted => "accepted",
            StoredDriftOutcome::Stopped => "task stopped",
            StoredDriftOutcome::RowsDiscarded => "records that do not fit dropped",
            StoredDriftOutcome::Paused => "task stopped, project paused",
        })
    }
}

/// Which connector's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StoredSchemaSide {
    Source,
    Destination,
}

impl fmt::Display for StoredSchemaSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoredSchemaSide::Source => "source",
            StoredSchemaSide::Destination => "destination",
        })
    }
}

/// How a field differs from the baseline. Types are the contract's names
/// (`integer`, `text`, …): the store knows no engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoredChangeKind {
    Added { field_type: String },
    Removed { field_type: String },
    TypeChanged { from: String, to: String },
    NowRequired,
}

/// One schema difference (the engine's `SchemaChange`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredSchemaChange {
    pub side: StoredSchemaSide,
    pub entity: String,
    pub field: String,
    #[serde(flatten)]
    pub kind: StoredChangeKind,
}

impl fmt::Display for StoredSchemaChange {
    /// The engine's wording, so the CLI, the API and alerts say the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}`: field `{}` ",
            self.side, self.entity, self.field
        )?;
        match &self.kind {
            StoredChangeKind::Added { field_type } => write!(f, "added ({field_type})"),
            StoredChangeKind::Removed { field_type } => write!(f, "removed (was {field_type})"),
            StoredChangeKind::TypeChanged { from, to } => {
                write!(f, "type changed from {from} to {to}")
            }
            StoredChangeKind::NowRequired => f.write_str("now required"),
        }
    }
}

/// One task's schema differences and what its policy did (the engine's `TaskDrift`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredTaskDrift {
    pub task: String,
    pub policy: StoredSchemaPolicy,
    pub outcome: StoredDriftOutcome,
    pub changes: Vec<StoredSchemaChange>,
}

impl fmt::Display for StoredTaskDrift {
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

/// One field of a recorded schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredField {
    pub name: String,
    /// The contract's type name (`integer`, `text`, …).
    pub field_type: String,
    pub required: bool,
}

/// One entity's recorded schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntitySchema {
    pub side: StoredSchemaSide,
    pub entity: String,
    pub fields: Vec<StoredField>,
}

/// A project's schema baseline: the schemas of its tasks' entities at its last
/// successful validation of a run, which the next run compares with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchemas {
    pub entities: Vec<StoredEntitySchema>,
    /// The execution that recorded it.
    pub execution: Option<ExecutionId>,
    /// Unix millis.
    pub recorded_at: i64,
}

/// What one plugin instance of an execution did and cost, beside its limits, as the
/// history keeps it (the engine measures it: `weir_engine::PluginUsage`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredPluginCost {
    /// The plugin's label (a bundled name, `name@version`, a file name).
    pub plugin: String,
    /// Its part in the execution.
    pub role: PluginRole,
    /// Calls into the plugin.
    pub calls: u64,
    /// Wall-clock time inside those calls, in microseconds.
    pub wall_micros: u64,
    /// CPU time inside those calls, in microseconds.
    pub cpu_micros: u64,
    /// The longest single call, in microseconds.
    pub slowest_call_micros: u64,
    /// The per-call time limit, in microseconds.
    pub call_timeout_micros: u64,
    /// The most linear memory an instance of it had, in bytes.
    pub memory_high_water_bytes: u64,
    /// The memory limit, in bytes.
    pub memory_limit_bytes: u64,
    /// Instances created (more than 1 when a trap discarded one).
    pub instantiations: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Records handed to the plugin.
    pub records_in: u64,
    /// Records the plugin handed back.
    pub records_out: u64,
    /// Bytes of record data handed to the plugin.
    pub bytes_in: u64,
    /// Bytes of record data the plugin handed back.
    pub bytes_out: u64,
    /// HTTP requests the host sent for it.
    pub http_requests: u64,
    /// Request body bytes of those.
    pub http_bytes_sent: u64,
    /// Response body bytes of those.
    pub http_bytes_received: u64,
}

/// A plugin's part in an execution.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PluginRole {
    /// The connector records are read from.
    #[default]
    Source,
    /// The connector records are upserted into.
    Destination,
    /// A transform of one task, at `step` (0-based) of its chain.
    Transform {
        /// The task's name.
        task: String,
        /// Its place in the task's chain.
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

/// An execution in a listing: small, so listing never loads logs, errors or staging.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionSummary {
    pub id: ExecutionId,
    pub project: String,
    pub project_version: u32,
    pub trigger: Trigger,
    pub parent: Option<ExecutionId>,
    /// For a re-run: which records it sent again (`None` for re-runs stored before
    /// the kind was recorded).
    pub rerun: Option<RerunKind>,
    /// A dry run (see [`Execution::dry_run`]).
    #[serde(default)]
    pub dry_run: bool,
    pub status: ExecStatus,
    pub started_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
    /// Totals over the tasks.
    pub read: u64,
    pub inserted: u64,
    pub updated: u64,
    #[serde(default)]
    pub unchanged: u64,
    pub failed: u64,
}

/// One record that failed, kept so a person can see why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredRecordError {
    pub task: String,
    /// `pull`, `map`, `transform` or `upsert`.
    pub stage: String,
    pub key: Option<String>,
    pub position: Option<String>,
    pub field: Option<String>,
    pub message: String,
    /// The source record. Redacting secrets out of it is the caller's job: the store
    /// keeps what it is given.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub record: Vec<(String, serde_json::Value)>,
}

/// A record as it would be written (preview / dry runs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StagedRecord {
    pub task: String,
    pub key: Option<String>,
    /// `[field, value]` pairs, in the record's order.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub record: Vec<(String, serde_json::Value)>,
}

/// What [`crate::Store::apply_project`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedVersion {
    /// The project's latest version (the new one, or the unchanged latest).
    pub version: u32,
    /// Whether that version was created now (the text or base directory changed).
    pub created: bool,
}

/// What an execution has done since its last checkpoint; written in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    /// The full current state of each task named (replaces the stored state of the task
    /// with that name; tasks not named keep theirs).
    pub tasks: Vec<TaskState>,
    /// Lines to append.
    pub log: Vec<String>,
    /// Record errors to append.
    pub record_errors: Vec<StoredRecordError>,
    /// Staged records to append.
    pub staged: Vec<StagedRecord>,
}

/// Which executions `Store::executions` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionFilter {
    pub project: Option<String>,
    pub status: Option<ExecStatus>,
    /// Only executions started at or after this (unix millis).
    pub since: Option<i64>,
    /// Only executions started before this (unix millis).
    pub until: Option<i64>,
    /// At most this many; 0 = no limit.
    pub limit: usize,
}

/// A project's schedule state, kept apart from its versions: pausing is not a new
/// version of the project file, and applying a new version keeps the pause.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectState {
    pub paused: bool,
    /// Why (by whom, or "paused automatically after 5 consecutive Error executions").
    pub reason: Option<String>,
    /// Unix millis of the last change; 0 = never changed.
    pub changed_at: i64,
}

/// What `Store::prune` keeps. The rule: an execution is **kept if any rule given keeps
/// it** — it is among the newest `keep_last` of its project, or it started less than
/// `max_age_days` ago — and deleted only when every rule given lets it go. With no rule
/// nothing is deleted; a `Running` execution is never deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Keeps executions that started less than this many days ago.
    pub max_age_days: Option<u32>,
    /// Keeps, per project, this many newest executions whatever their age.
    pub keep_last: Option<usize>,
}

impl std::fmt::Display for Retention {
    /// The rule in words, as the CLI prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.keep_last, self.max_age_days) {
            (None, None) => write!(f, "no rule given: nothing is deleted"),
            (Some(n), None) => write!(f, "keep the newest {n} executions of each project"),
            (None, Some(d)) => write!(f, "keep executions younger than {d} days"),
            (Some(n), Some(d)) => write!(
                f,
                "keep an execution if it is among the newest {n} of its project or younger than {d} days"
            ),
        }
    }
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_age_days: Some(45),
            keep_last: None,
        }
    }
}

/// Bounds on what one execution stores, so a run with millions of bad records cannot
/// fill the disk: past a bound, items are counted but not stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreLimits {
    pub max_staged_per_execution: u64,
    pub max_log_lines: u64,
    pub max_record_errors: u64,
    /// Bytes of record errors (with their record copies) stored per execution:
    /// each text a plugin hands over is bounded, but 100,000 errors of a few KiB
    /// each would still be gigabytes. Past it, errors are counted as dropped.
    #[serde(default = "default_max_record_error_bytes")]
    pub max_record_error_bytes: u64,
    /// Free space the store keeps on its disk (bytes; 0: no check). Opening the store,
    /// beginning an execution and checkpointing are refused below it, because sled
    /// meeting a full disk can leave a database it cannot open again.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
}

/// 64 MiB: more than one checkpoint can write (its log, record errors and staged
/// records are bounded per execution) plus sled's segment and snapshot writes.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;

fn default_min_free_bytes() -> u64 {
    DEFAULT_MIN_FREE_BYTES
}

/// 32 MiB of record errors per execution (with their record copies).
pub const DEFAULT_MAX_RECORD_ERROR_BYTES: u64 = 32 << 20;

fn default_max_record_error_bytes() -> u64 {
    DEFAULT_MAX_RECORD_ERROR_BYTES
}

impl Default for StoreLimits {
    fn default() -> StoreLimits {
        StoreLimits {
            max_staged_per_execution: 10_000,
            max_log_lines: 10_000,
            max_record_errors: 100_000,
            max_record_error_bytes: DEFAULT_MAX_RECORD_ERROR_BYTES,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
        }
    }
}

/// A plugin installed with `weir plugin install`: validated, precompiled, and kept
/// under the data directory so projects can name it (`plugin = "name@version"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledPlugin {
    pub name: String,
    pub version: String,
    /// connector or transform.
    pub kind: String,
    pub sha256: String,
    /// The installed copy.
    pub path: PathBuf,
    pub installed_at: i64,
}
