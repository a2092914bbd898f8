//! At-rest forms: what the trees hold. Private to the store: the disk format is not the API.

use super::*;

#[derive(Serialize, Deserialize)]
pub(super) struct ConnectionAtRest {
    pub(super) name: String,
    pub(super) plugin: String,
    pub(super) config: Vec<(String, String)>,
    /// Secret name → hex of nonce + ciphertext + tag.
    pub(super) secrets: Vec<(String, String)>,
    pub(super) directory: Option<PathBuf>,
    pub(super) http_hosts: Vec<String>,
    /// Absent in connections stored before it existed: false.
    #[serde(default)]
    pub(super) http_internal: bool,
    pub(super) state: ConnectionState,
    pub(super) updated_at: i64,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ProjectAtRest {
    pub(super) name: String,
    pub(super) version: u32,
    pub(super) text: String,
    pub(super) base_dir: PathBuf,
    pub(super) created_at: i64,
}

/// Versions of a project are dense from `first_version` to `latest_version`, so deleting
/// them needs no range scan inside a transaction. A deleted project keeps its head, so a
/// re-applied project continues the numbering: executions name (project, version), and a
/// reused version number would point them at the wrong text.
#[derive(Serialize, Deserialize)]
pub(super) struct ProjectHead {
    pub(super) first_version: u32,
    pub(super) latest_version: u32,
    pub(super) updated_at: i64,
    pub(super) deleted: bool,
}

/// An execution without its log, record errors and staged records (their own trees), so
/// rewriting it at every checkpoint costs the same at the first and the last.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct ExecRecord {
    pub(super) id: ExecutionId,
    pub(super) project: String,
    pub(super) project_version: u32,
    pub(super) trigger: Trigger,
    pub(super) parent: Option<ExecutionId>,
    /// Which records a re-run sent again. Absent in records written before it existed.
    #[serde(default)]
    pub(super) rerun: Option<RerunKind>,
    pub(super) status: ExecStatus,
    pub(super) error: Option<String>,
    /// Ended in Error at a committed batch boundary: the next run resumes from the
    /// cursors. Absent in records written before it existed (those re-run from the start).
    #[serde(default)]
    pub(super) interrupted: bool,
    pub(super) started_at: i64,
    pub(super) updated_at: i64,
    pub(super) finished_at: Option<i64>,
    pub(super) tasks: Vec<TaskState>,
    pub(super) log_stored: u64,
    pub(super) log_dropped: u64,
    pub(super) record_errors_stored: u64,
    pub(super) record_errors_dropped: u64,
    /// Bytes of the stored record errors (against `max_record_error_bytes`).
    #[serde(default)]
    pub(super) record_error_bytes: u64,
    pub(super) staged_stored: u64,
    pub(super) staged_dropped: u64,
    /// Absent in records written before plugin costs were measured.
    #[serde(default)]
    pub(super) plugins: Vec<StoredPluginCost>,
    /// A dry run. Absent in records written before dry runs existed: false.
    #[serde(default)]
    pub(super) dry_run: bool,
    /// Absent in records written before the drift check.
    #[serde(default)]
    pub(super) schema_changes: Vec<StoredTaskDrift>,
    /// The `weir worker` that ran it last (scale-out). Absent in records written
    /// before scale-out and in executions run in process: none.
    #[serde(default)]
    pub(super) worker: Option<String>,
}

impl ExecRecord {
    pub(super) fn summary(&self) -> ExecutionSummary {
        let mut s = ExecutionSummary {
            id: self.id,
            project: self.project.clone(),
            project_version: self.project_version,
            trigger: self.trigger,
            parent: self.parent,
            rerun: self.rerun,
            dry_run: self.dry_run,
            status: self.status,
            started_at: self.started_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            error: self.error.clone(),
            read: 0,
            inserted: 0,
            updated: 0,
            unchanged: 0,
            failed: 0,
        };
        for t in &self.tasks {
            s.read = s.read.saturating_add(t.read);
            s.inserted = s.inserted.saturating_add(t.inserted);
            s.updated = s.updated.saturating_add(t.updated);
            s.unchanged = s.unchanged.saturating_add(t.unchanged);
            s.failed = s.failed.saturating_add(t.failed);
        }
        s
    }

    pub(super) fn into_execution(self, log: Vec<String>) -> Execution {
        Execution {
            id: self.id,
            project: self.project,
            project_version: self.project_version,
            trigger: self.trigger,
            parent: self.parent,
            rerun: self.rerun,
            dry_run: self.dry_run,
            status: self.status,
            error: self.error,
            interrupted: self.interrupted,
            started_at: self.started_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            tasks: self.tasks,
            log,
            log_dropped: self.log_dropped,
            record_errors: self.record_errors_stored + self.record_errors_dropped,
            record_errors_dropped: self.record_errors_dropped,
            staged: self.staged_stored + self.staged_dropped,
            staged_dropped: self.staged_dropped,
            plugins: self.plugins,
            schema_changes: self.schema_changes,
            worker: self.worker,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LogLine {
    pub(super) line: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Marker {}
