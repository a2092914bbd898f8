//! Where a recorded execution runs: the seam between "this execution is begun in the
//! store" (the service, for the scheduler, the API and the CLI alike) and the
//! engine running it.
//!
//! [`RunHere`] runs it in this process, on the caller's thread, checkpointing
//! straight into the store: what weir has always done, and the default.
//! `cluster::HandToWorkers` publishes it on a NATS JetStream work queue and waits
//! while a `weir worker` runs it, committing the worker's checkpoints as they come.
//! Either way the service records the end the same way, and the store stays the
//! one place where executions are recorded.

use crate::engine::{EngineError, ExecutionReport, Observer, RunOptions, TaskDrift};
use crate::project::Project;
use crate::redact::Redactor;
use crate::service::{Service, StoreRecorder};
use crate::store::ExecutionId;

/// A begun execution, as the service hands it over.
pub struct Job<'a> {
    pub service: &'a Service,
    /// Recorded `Running` in the store.
    pub id: ExecutionId,
    pub project: &'a Project,
    /// The stored version `project` was loaded from.
    pub version: u32,
    /// Resume cursors, re-sent records, checkpoint interval, stop flag.
    pub options: &'a RunOptions,
    /// Every secret value the execution knows.
    pub secrets: &'a Redactor,
}

/// Why a dispatched execution produced no report.
#[derive(Debug)]
pub enum RunFailure {
    /// The engine in this process refused or failed.
    Engine(EngineError),
    /// The engine on a worker refused or failed (its text already scrubbed by
    /// the worker; scrubbed again when recorded), with the schema differences
    /// that explain a refusal.
    Remote {
        message: String,
        schema_changes: Vec<TaskDrift>,
    },
}

/// Runs begun executions. Implementations block until the execution ended: the
/// caller is an execution thread, never an async one.
pub trait Dispatch: Send + Sync {
    fn run(&self, job: Job<'_>, observer: &mut dyn Observer)
    -> Result<ExecutionReport, RunFailure>;

    /// Called once the service recorded execution `id`'s end (`ok`) or failed to:
    /// a worker waits for this before it lets go of the execution.
    fn recorded(&self, _id: ExecutionId, _ok: bool) {}
}

/// Runs the execution in this process, checkpointing into the store directly.
pub struct RunHere;

impl Dispatch for RunHere {
    fn run(
        &self,
        job: Job<'_>,
        observer: &mut dyn Observer,
    ) -> Result<ExecutionReport, RunFailure> {
        let mut recorder = StoreRecorder {
            store: &job.service.store,
            id: job.id,
            secrets: job.secrets,
        };
        job.service
            .engine()
            .execute(job.project, job.options, observer, &mut recorder)
            .map_err(RunFailure::Engine)
    }
}
