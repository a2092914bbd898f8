//! The scheduler behind `weir serve`: runs projects on their cron schedules, at most
//! `concurrency` at once and never the same project twice at once; records a due run
//! that finds its project still running as a `Skipped` execution; turns the run after
//! an Error into a retry of it; pauses a project after too many Error executions in a
//! row; raises alerts (Warning, Error, recovery, auto-pause); stops gracefully.
//!
//! What it is not: HTTP (that is `api`), mail (that is `notify`), or how a run works
//! (that is `service` and `engine`). Each execution runs on a thread of its own at a
//! lower CPU priority ([`EXECUTION_NICE`]; see `on_execution_thread` for why not tokio's
//! blocking pool) — a plugin call is synchronous CPU work and must not stall the async
//! threads that serve the API.

pub mod config;
pub mod local_access;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::Quiet;
use crate::project::{Notify, RetryPolicy, Schedule};
use crate::service::{RunRequest, Service, ServiceError};
use crate::store::{ExecStatus, Execution, ExecutionId, NewExecution, Trigger};

/// How the daemon schedules. Defaults: 4 executions at once, the schedule checked at
/// least every second.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    pub concurrency: usize,
    /// The longest the scheduler sleeps without looking (it also wakes at each due
    /// time and on every change).
    pub tick: Duration,
}

impl DaemonSettings {
    /// How many plugin instances the runtime's pool should hold for this many
    /// executions at once. An execution holds one instance per plugin it uses
    /// (source, destination, each transform step) for its whole length, and
    /// connection checks and validations through the API take more meanwhile:
    /// four per execution plus 32, never fewer than the runtime's default. (The
    /// scale load test ran 64 executions out of a pool of 128 and saw "maximum
    /// concurrent limit of 128 for component instances reached".)
    pub fn pool_instances(&self) -> u32 {
        let wanted = self.concurrency.saturating_mul(4).saturating_add(32);
        let default = crate::runtime::RuntimeConfig::default().pool_instances;
        u32::try_from(wanted).unwrap_or(u32::MAX).max(default)
    }
}

impl Default for DaemonSettings {
    fn default() -> DaemonSettings {
        DaemonSettings {
            concurrency: 4,
            tick: Duration::from_secs(1),
        }
    }
}

/// Why a daemon operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("project `{project}` is already running (execution {execution})")]
    AlreadyRunning { project: String, execution: String },
    #[error("the daemon is shutting down; no new runs are started")]
    ShuttingDown,
    #[error("{0}")]
    Failed(String),
}

impl From<crate::store::StoreError> for DaemonError {
    fn from(e: crate::store::StoreError) -> DaemonError {
        DaemonError::Service(e.into())
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum AlertKind {
    Warning,
    Error,
    /// Completed after an execution that ended in Error.
    Recovered,
    /// The schedule was paused after too many Error executions in a row.
    AutoPaused,
    /// A task's `schema_change = "pause"` stopped it and the service paused the
    /// project (the execution's `schema_changes` say what changed).
    SchemaPaused,
}

/// One thing worth telling a project's people about.
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub project: String,
    pub execution: Execution,
    /// A few "task contacts, key 17, field email: …" lines.
    pub first_errors: Vec<String>,
}

impl Alert {
    /// The execution's schema differences, one line each, as the alert text lists
    /// them: `task people (pause): source `people`: field `city` added (text)`.
    pub fn schema_change_lines(&self) -> Vec<String> {
        self.execution
            .schema_changes
            .iter()
            .flat_map(|d| {
                d.changes
                    .iter()
                    .map(move |c| format!("task {} ({}): {c}", d.task, d.policy))
            })
            .collect()
    }
}

/// Where alerts go (`notify::Notifier` sends mail and webhooks; tests collect them).
/// Must not block: it is called on the scheduler's path.
pub trait Alerter: Send + Sync {
    fn alert(&self, to: &Notify, alert: Alert);
}

/// A project as the scheduler sees it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ProjectView {
    pub name: String,
    pub version: u32,
    pub paused: bool,
    pub paused_reason: Option<String>,
    pub schedule: Option<String>,
    pub timezone: String,
    /// Unix millis of the next scheduled run (none when paused or unscheduled).
    pub next_run: Option<i64>,
    pub running: bool,
    /// Why the stored project cannot be scheduled (e.g. a connection it names was deleted).
    pub problem: Option<String>,
    pub last: Option<LastRun>,
}

/// A project's latest execution, in brief.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LastRun {
    pub id: ExecutionId,
    pub status: ExecStatus,
    pub trigger: Trigger,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// Scheduling lag and counts since the daemon started.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct SchedulerStats {
    pub fired: u64,
    pub skipped: u64,
    pub started: u64,
    /// Milliseconds between a run's due time and its start.
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
}

#[derive(Default)]
struct Entry {
    version: u32,
    schedule: Option<Schedule>,
    next: Option<DateTime<Utc>>,
    paused: bool,
    paused_reason: Option<String>,
    /// Queued or running (a run holds this from the moment it is decided).
    busy: bool,
    running: Option<ExecutionId>,
    notify: Notify,
    retry: RetryPolicy,
    problem: Option<String>,
}

struct Inner {
    service: Service,
    settings: DaemonSettings,
    alerter: Option<Arc<dyn Alerter>>,
    projects: Mutex<HashMap<String, Entry>>,
    permits: Arc<tokio::sync::Semaphore>,
    /// Set at shutdown: no new runs; running ones stop after their batch in hand.
    stop: Arc<AtomicBool>,
    wake: tokio::sync::Notify,
    active: AtomicUsize,
    idle: tokio::sync::Notify,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    fired: u64,
    skipped: u64,
    started: u64,
    lags: Lags,
}

/// Every scheduling lag since the start, as a histogram: fixed memory (some tens
/// of KiB) and percentiles without sorting samples on each request, within 0.1 %
/// (three significant digits) up to a day; a longer lag counts as a day.
struct Lags(hdrhistogram::Histogram<u64>);

/// The longest lag told apart, in microseconds.
const MAX_LAG_MICROS: u64 = 24 * 3600 * 1_000_000;

impl Default for Lags {
    fn default() -> Lags {
        Lags(hdrhistogram::Histogram::new_with_bounds(1, MAX_LAG_MICROS, 3).expect("valid bounds"))
    }
}

impl Lags {
    fn record(&mut self, lag_micros: i64) {
        let micros = u64::try_from(lag_micros).unwrap_or(0);
        self.0.saturating_record(micros.min(MAX_LAG_MICROS));
    }

    /// The lag at quantile `q` (0 to 1) in milliseconds; 0 with no samples.
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }
}

/// The scheduler and everything the API asks of it. Cheap to clone.
#[derive(Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

impl Daemon {
    /// Loads every stored project's schedule. Call [`Daemon::start`] inside a tokio
    /// runtime to begin running them.
    pub fn new(
        service: Service,
        settings: DaemonSettings,
        alerter: Option<Arc<dyn Alerter>>,
    ) -> Result<Daemon, DaemonError> {
        let permits = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
        let daemon = Daemon {
            inner: Arc::new(Inner {
                service,
                settings,
                alerter,
                projects: Mutex::new(HashMap::new()),
                permits,
                stop: Arc::new(AtomicBool::new(false)),
                wake: tokio::sync::Notify::new(),
                active: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                stats: Mutex::new(Stats::default()),
            }),
        };
        for p in daemon.inner.service.store.projects()? {
            daemon.reload(&p.name)?;
        }
        Ok(daemon)
    }

    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    /// Starts the scheduler loop on the current tokio runtime.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move { scheduler(inner).await })
    }

    /// Re-reads a project from the store (after apply, pause, resume or delete).
    pub fn reload(&self, name: &str) -> Result<(), DaemonError> {
        let service = &self.inner.service;
        let Some(stored) = service.store.project(name, None)? else {
            let mut projects = self.inner.projects.lock().unwrap();
            // Keep an entry only while a run of the deleted project finishes.
            if projects.get(name).is_some_and(|e| !e.busy) {
                projects.remove(name);
            }
            return Ok(());
        };
        let state = service.store.project_state(name)?;
        let mut entry = Entry {
            version: stored.version,
            paused: state.paused,
            paused_reason: state.reason,
            ..Entry::default()
        };
        match service.load_project(name, None) {
            Ok((project, _, _)) => {
                // Load (from the compiled-component cache) every plugin the project
                // names now, so its first run does not pay for it and a plugin that
                // no longer loads shows up at once as the project's problem.
                let registry = service.engine().registry();
                let plugins = std::iter::once(&project.source.plugin)
                    .chain(std::iter::once(&project.destination.plugin))
                    .chain(
                        project
                            .tasks
                            .iter()
                            .flat_map(|t| t.transforms.iter().map(|s| &s.plugin)),
                    );
                for plugin in plugins {
                    if let Err(e) = registry.get(plugin) {
                        entry.problem = Some(e.to_string());
                    }
                }
                entry.next = project
                    .schedule
                    .as_ref()
                    .and_then(|s| s.next_after(Utc::now()));
                entry.schedule = project.schedule;
                entry.notify = project.notify;
                entry.retry = project.retry;
            }
            Err(e) => {
                tracing::warn!(project = name, error = %e, "project cannot be scheduled");
                entry.problem = Some(e.to_string());
            }
        }
        let mut projects = self.inner.projects.lock().unwrap();
        if let Some(old) = projects.get(name) {
            entry.busy = old.busy;
            entry.running = old.running;
        }
        projects.insert(name.to_owned(), entry);
        drop(projects);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Every project with its schedule state and latest execution, by name.
    pub fn projects(&self) -> Result<Vec<ProjectView>, DaemonError> {
        let names: Vec<String> = {
            let mut n: Vec<String> = self
                .inner
                .projects
                .lock()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            n.sort();
            n
        };
        names
            .iter()
            .filter_map(|n| self.project(n).transpose())
            .collect()
    }

    /// One project's view, `None` if there is no such project.
    pub fn project(&self, name: &str) -> Result<Option<ProjectView>, DaemonError> {
        let last = self
            .inner
            .service
            .store
            .executions(&crate::store::ExecutionFilter {
                project: Some(name.to_owned()),
                limit: 1,
                ..Default::default()
            })?
            .into_iter()
            .next()
            .map(|e| LastRun {
                id: e.id,
                status: e.status,
                trigger: e.trigger,
                started_at: e.started_at,
                finished_at: e.finished_at,
            });
        let projects = self.inner.projects.lock().unwrap();
        let Some(e) = projects.get(name) else {
            return Ok(None);
        };
        Ok(Some(ProjectView {
            name: name.to_owned(),
            version: e.version,
            paused: e.paused,
            paused_reason: e.paused_reason.clone(),
            schedule: e.schedule.as_ref().map(|s| s.expr.clone()),
            timezone: e
                .schedule
                .as_ref()
                .map_or("UTC".to_owned(), |s| s.timezone.name().to_owned()),
            next_run: if e.paused {
                None
            } else {
                e.next.map(|n| n.timestamp_millis())
            },
            running: e.busy,
            problem: e.problem.clone(),
            last,
        }))
    }

    /// Pauses (`true`) or resumes a project's schedule, durably.
    pub fn set_paused(
        &self,
        name: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<(), DaemonError> {
        self.inner
            .service
            .store
            .set_project_state(name, paused, reason)?;
        tracing::info!(project = name, paused, "schedule state changed");
        self.reload(name)
    }

    /// Starts project `name` now; answers with the new execution's id as soon as it
    /// is recorded (the run goes on).
    pub async fn run_now(&self, name: &str) -> Result<ExecutionId, DaemonError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.claim(name)?;
        spawn_run(
            self.inner.clone(),
            name.to_owned(),
            Work::Run(Trigger::Manual),
            None,
            Some(tx),
        );
        rx.await
            .map_err(|_| DaemonError::Failed("the run ended before it started".into()))?
    }

    /// Starts a dry run of project `name` now (see `RunRequest::dry_run`), like
    /// `run_now`: it holds the project's one run slot while it reads.
    pub async fn dry_run_now(&self, name: &str) -> Result<ExecutionId, DaemonError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.claim(name)?;
        spawn_run(
            self.inner.clone(),
            name.to_owned(),
            Work::DryRun,
            None,
            Some(tx),
        );
        rx.await
            .map_err(|_| DaemonError::Failed("the dry run ended before it started".into()))?
    }

    /// Re-runs execution `id` (all, or its failed records only), like `run_now`.
    pub async fn rerun(
        &self,
        id: ExecutionId,
        failed_only: bool,
    ) -> Result<ExecutionId, DaemonError> {
        let exec =
            self.inner
                .service
                .store
                .execution(id)?
                .ok_or_else(|| ServiceError::NotFound {
                    what: "execution",
                    name: id.to_string(),
                })?;
        self.claim(&exec.project)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_run(
            self.inner.clone(),
            exec.project.clone(),
            Work::Rerun { id, failed_only },
            None,
            Some(tx),
        );
        rx.await
            .map_err(|_| DaemonError::Failed("the re-run ended before it started".into()))?
    }

    /// Marks a project busy for a run asked for now, or says why not.
    fn claim(&self, name: &str) -> Result<(), DaemonError> {
        if self.inner.stop.load(Ordering::SeqCst) {
            return Err(DaemonError::ShuttingDown);
        }
        let mut projects = self.inner.projects.lock().unwrap();
        let Some(e) = projects.get_mut(name) else {
            return Err(ServiceError::NotFound {
                what: "project",
                name: name.to_owned(),
            }
            .into());
        };
        if e.busy {
            return Err(DaemonError::AlreadyRunning {
                project: name.to_owned(),
                execution: e.running.map_or("queued".into(), |id| id.to_string()),
            });
        }
        e.busy = true;
        Ok(())
    }

    /// Executions started and not yet finished.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> SchedulerStats {
        let s = self.inner.stats.lock().unwrap();
        SchedulerStats {
            fired: s.fired,
            skipped: s.skipped,
            started: s.started,
            lag_p50_ms: s.lags.quantile_ms(0.5),
            lag_p99_ms: s.lags.quantile_ms(0.99),
            lag_max_ms: s.lags.max_ms(),
        }
    }

    /// Stops taking runs, asks running executions to stop after the batch in hand
    /// (they end as "interrupted" and the next run resumes them), and waits up to
    /// `grace` for them. Returns how many were still running at the deadline; the
    /// store marks those interrupted when it is next opened.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        let inner = &self.inner;
        inner.stop.store(true, Ordering::SeqCst);
        inner.wake.notify_one();
        let deadline = tokio::time::Instant::now() + grace;
        while inner.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            let _ = tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(100)),
                inner.idle.notified(),
            )
            .await;
        }
        let left = inner.active.load(Ordering::SeqCst);
        if let Err(e) = inner.service.store.flush() {
            tracing::error!(error = %e, "flushing the store at shutdown failed");
        }
        left
    }
}

async fn scheduler(inner: Arc<Inner>) {
    loop {
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Utc::now();
        let mut due = Vec::new();
        let mut wake_at = now + chrono::Duration::from_std(inner.settings.tick).unwrap_or_default();
        {
            let mut projects = inner.projects.lock().unwrap();
            for (name, e) in projects.iter_mut() {
                let (Some(schedule), Some(at)) = (&e.schedule, e.next) else {
                    continue;
                };
                if at <= now {
                    // Firings missed while the daemon was down or busy collapse into one.
                    e.next = schedule.next_after(now);
                    if !e.paused {
                        due.push((name.clone(), at));
                    }
                }
                if let Some(n) = e.next {
                    wake_at = wake_at.min(n);
                }
            }
        }
        for (name, at) in due {
            fire(&inner, name, at);
        }
        let sleep = (wake_at - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = inner.wake.notified() => {}
        }
    }
}

/// A due run: start it, or record it as skipped when the project is still running.
fn fire(inner: &Arc<Inner>, name: String, due: DateTime<Utc>) {
    inner.stats.lock().unwrap().fired += 1;
    let mut projects = inner.projects.lock().unwrap();
    let Some(e) = projects.get_mut(&name) else {
        return;
    };
    if e.busy {
        let reason = match e.running {
            Some(id) => format!(
                "skipped: the run due at {} found execution {id} of this project still running",
                due.to_rfc3339()
            ),
            None => format!(
                "skipped: the run due at {} found an earlier run of this project still waiting for a free slot",
                due.to_rfc3339()
            ),
        };
        let new = NewExecution {
            project: name.clone(),
            project_version: e.version,
            trigger: Trigger::Scheduled,
            parent: e.running,
            rerun: None,
            tasks: Vec::new(),
        };
        drop(projects);
        inner.stats.lock().unwrap().skipped += 1;
        match inner.service.store.record_skipped(new, &reason) {
            Ok(id) => tracing::info!(project = %name, execution = id, "{reason}"),
            Err(err) => {
                tracing::error!(project = %name, error = %err, "recording a skipped run failed")
            }
        }
        return;
    }
    e.busy = true;
    drop(projects);
    spawn_run(
        inner.clone(),
        name,
        Work::Run(Trigger::Scheduled),
        Some(due),
        None,
    );
}

enum Work {
    Run(Trigger),
    /// A dry run asked for now: predicts, writes nothing, raises no alert.
    DryRun,
    Rerun {
        id: ExecutionId,
        failed_only: bool,
    },
}

type Reply = tokio::sync::oneshot::Sender<Result<ExecutionId, DaemonError>>;

/// Runs one execution of a project already marked busy: waits for a slot, runs on
/// an execution thread of its own, then raises alerts and frees the project.
fn spawn_run(
    inner: Arc<Inner>,
    name: String,
    work: Work,
    due: Option<DateTime<Utc>>,
    reply: Option<Reply>,
) {
    tokio::spawn(async move {
        let reply = Arc::new(Mutex::new(reply));
        let permit = inner.permits.clone().acquire_owned().await;
        if inner.stop.load(Ordering::SeqCst) || permit.is_err() {
            release(&inner, &name);
            if let Some(tx) = reply.lock().unwrap().take() {
                let _ = tx.send(Err(DaemonError::ShuttingDown));
            }
            return;
        }
        {
            let mut s = inner.stats.lock().unwrap();
            s.started += 1;
            if let Some(due) = due {
                let lag = (Utc::now() - due).num_microseconds().unwrap_or(i64::MAX);
                s.lags.record(lag);
                crate::metrics::ScheduleLag {
                    lag: Duration::from_micros(u64::try_from(lag).unwrap_or(0)),
                }
                .emit();
            }
        }
        inner.active.fetch_add(1, Ordering::SeqCst);
        let worker = inner.clone();
        let (name2, reply2) = (name.clone(), reply.clone());
        let outcome =
            match on_execution_thread(&name, move || run_blocking(&worker, &name2, work, reply2))
                .await
            {
                Ok(o) => o,
                Err(e) => Outcome {
                    id: None,
                    previous: None,
                    error: Some(e),
                },
            };
        if let Some(tx) = reply.lock().unwrap().take() {
            let message = outcome
                .error
                .clone()
                .unwrap_or_else(|| "no execution was recorded".into());
            let _ = tx.send(Err(DaemonError::Failed(message)));
        }
        let after = inner.clone();
        let name3 = name.clone();
        // Alerts and auto-pause read the store: keep that off the async threads too.
        let _ = tokio::task::spawn_blocking(move || after_run(&after, &name3, &outcome)).await;
        release(&inner, &name);
        inner.active.fetch_sub(1, Ordering::SeqCst);
        inner.idle.notify_waiters();
        drop(permit);
    });
}

/// The nice value execution threads run at (Linux; elsewhere none is set).
pub const EXECUTION_NICE: i32 = 10;

/// Runs `f` (an execution) on a thread of its own at a lower CPU priority, and
/// waits for it without blocking the async threads.
///
/// Why not tokio's blocking pool: executions are long and CPU-bound, and with 64
/// of them (each with its pipeline's stage threads, which inherit the priority)
/// the API's short blocking tasks and the scheduler's timers would wait behind
/// them for the CPU — the scale load test saw the project list take over 2 s. A
/// thread's nice value cannot be lowered again without privilege, so the threads
/// are the execution's own rather than pooled ones that would carry it on.
async fn on_execution_thread<T: Send + 'static>(
    project: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("weir-run {project}"))
        .spawn(move || {
            lower_priority();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(result);
        })
        .map_err(|e| format!("cannot start the execution's thread: {e}"))?;
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(format!("the run panicked: {text}"))
        }
        Err(_) => Err("the run's thread ended without an answer".to_owned()),
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // On Linux the nice value is per thread; `who` = the thread id sets this one.
    // SAFETY: plain syscalls with valid arguments.
    let rc = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            EXECUTION_NICE,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the execution thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

fn release(inner: &Inner, name: &str) {
    let mut projects = inner.projects.lock().unwrap();
    if let Some(e) = projects.get_mut(name) {
        e.busy = false;
        e.running = None;
    }
}

struct Outcome {
    id: Option<ExecutionId>,
    previous: Option<(ExecutionId, ExecStatus)>,
    error: Option<String>,
}

fn run_blocking(
    inner: &Arc<Inner>,
    name: &str,
    work: Work,
    reply: Arc<Mutex<Option<Reply>>>,
) -> Outcome {
    let started: Arc<Mutex<Option<ExecutionId>>> = Arc::new(Mutex::new(None));
    let on_start = {
        let (started, inner, name) = (started.clone(), inner.clone(), name.to_owned());
        move |id: ExecutionId| {
            *started.lock().unwrap() = Some(id);
            if let Some(e) = inner.projects.lock().unwrap().get_mut(&name) {
                e.running = Some(id);
            }
            if let Some(tx) = reply.lock().unwrap().take() {
                let _ = tx.send(Ok(id));
            }
        }
    };
    let service = &inner.service;
    let (result, previous) = match work {
        Work::Run(_) | Work::DryRun => {
            let (trigger, dry_run) = match work {
                Work::Run(trigger) => (trigger, false),
                _ => (Trigger::Manual, true),
            };
            let mut request = RunRequest {
                trigger,
                stop: Some(inner.stop.clone()),
                started: Box::new(on_start),
                previous: None,
                dry_run,
            };
            let r = service.run_with(name, &mut request, &mut Quiet);
            (r.map(|(id, _)| id), request.previous)
        }
        Work::Rerun { id, failed_only } => {
            let previous = service.last_outcome(name).ok().flatten();
            let mut on_start = on_start;
            let r = service.rerun_with(id, failed_only, &mut on_start);
            (r.map(|(id, _, _)| id), previous)
        }
    };
    let id = *started.lock().unwrap();
    match result {
        Ok(id) => Outcome {
            id: Some(id),
            previous,
            error: None,
        },
        Err(e) => {
            // Every secret the run knew was remembered by `service`; the error can
            // quote one (a server echoing a credential), so scrub before it leaves.
            let error = crate::redact::scrub_known(&e.to_string());
            tracing::warn!(project = name, execution = ?id, %error, "execution failed");
            Outcome {
                id,
                previous,
                error: Some(error),
            }
        }
    }
}

/// Alerts and auto-pause, from what the store recorded.
fn after_run(inner: &Inner, name: &str, outcome: &Outcome) {
    let Some(id) = outcome.id else {
        return;
    };
    let store = &inner.service.store;
    let exec = match store.execution(id) {
        Ok(Some(e)) => e,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(project = name, execution = id, error = %e, "reading the execution back failed");
            return;
        }
    };
    // A dry run wrote nothing: no alert, and no part in a run of Errors that pauses.
    if exec.dry_run {
        return;
    }
    let (notify, retry) = {
        let projects = inner.projects.lock().unwrap();
        match projects.get(name) {
            Some(e) => (e.notify.clone(), e.retry.clone()),
            None => return,
        }
    };
    let kind = match exec.status {
        ExecStatus::Warning => Some(AlertKind::Warning),
        ExecStatus::Error => Some(AlertKind::Error),
        ExecStatus::Completed
            if outcome
                .previous
                .is_some_and(|(_, s)| s == ExecStatus::Error) =>
        {
            Some(AlertKind::Recovered)
        }
        _ => None,
    };
    // A `pause` policy: the service has paused the project in the store; the
    // scheduler follows, and the one alert says why (instead of an Error alert).
    let schema_paused = exec
        .schema_changes
        .iter()
        .any(|d| d.outcome == crate::store::StoredDriftOutcome::Paused);
    let kind = if schema_paused {
        let state = store.project_state(name).unwrap_or_default();
        let mut projects = inner.projects.lock().unwrap();
        if let Some(e) = projects.get_mut(name) {
            e.paused = state.paused;
            e.paused_reason = state.reason;
        }
        Some(AlertKind::SchemaPaused)
    } else {
        kind
    };
    let first_errors = first_errors(inner, id);
    if let Some(kind) = kind {
        alert(inner, &notify, kind, name, &exec, &first_errors);
    }
    if exec.status == ExecStatus::Error && retry.pause_after_errors > 0 {
        let n = retry.pause_after_errors as usize;
        let recent = store
            .executions(&crate::store::ExecutionFilter {
                project: Some(name.to_owned()),
                limit: 200,
                ..Default::default()
            })
            .unwrap_or_default();
        let finished: Vec<_> = recent
            .iter()
            .filter(|e| {
                !e.dry_run && !matches!(e.status, ExecStatus::Skipped | ExecStatus::Running)
            })
            .take(n)
            .collect();
        let paused_already = inner
            .projects
            .lock()
            .unwrap()
            .get(name)
            .is_some_and(|e| e.paused);
        if !paused_already
            && finished.len() == n
            && finished.iter().all(|e| e.status == ExecStatus::Error)
        {
            let reason = format!(
                "paused automatically after {n} consecutive executions ended in Error (last: {id}); fix the cause, then resume"
            );
            tracing::warn!(project = name, execution = id, "{reason}");
            if let Err(e) = store.set_project_state(name, true, Some(reason)) {
                tracing::error!(project = name, error = %e, "pausing the project failed");
            }
            let mut projects = inner.projects.lock().unwrap();
            if let Some(e) = projects.get_mut(name) {
                e.paused = true;
                e.paused_reason = store.project_state(name).ok().and_then(|s| s.reason);
            }
            drop(projects);
            alert(
                inner,
                &notify,
                AlertKind::AutoPaused,
                name,
                &exec,
                &first_errors,
            );
        }
    }
}

fn first_errors(inner: &Inner, id: ExecutionId) -> Vec<String> {
    let (page, _) = inner
        .service
        .store
        .record_errors(id, 0, 5)
        .unwrap_or_default();
    page.iter()
        .map(|e| {
            let mut line = format!("task {}", e.task);
            if let Some(k) = &e.key {
                line.push_str(&format!(", key {k}"));
            }
            if let Some(f) = &e.field {
                line.push_str(&format!(", field {f}"));
            }
            format!("{line}: {} ({})", e.message, e.stage)
        })
        .collect()
}

fn alert(
    inner: &Inner,
    notify: &Notify,
    kind: AlertKind,
    name: &str,
    exec: &Execution,
    first_errors: &[String],
) {
    tracing::info!(project = name, execution = exec.id, kind = ?kind, "alert");
    if let Some(a) = &inner.alerter {
        a.alert(
            notify,
            Alert {
                kind,
                project: name.to_owned(),
                execution: exec.clone(),
                first_errors: first_errors.to_vec(),
            },
        );
    }
}

/// Alerts go out as mail and webhooks.
impl Alerter for crate::notify::Notifier {
    fn alert(&self, to: &Notify, a: Alert) {
        use crate::notify::{Event, EventKind, Recipients};
        if to.emails.is_empty() && to.webhooks.is_empty() {
            return;
        }
        let schema_changes = a.schema_change_lines();
        let e = &a.execution;
        let sum = |f: fn(&crate::store::TaskState) -> u64| e.tasks.iter().map(f).sum::<u64>();
        let trigger = serde_json::to_value(e.trigger)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.notify(
            &Recipients {
                emails: to.emails.clone(),
                webhooks: to.webhooks.clone(),
            },
            Event {
                kind: match a.kind {
                    AlertKind::Warning => EventKind::Warning,
                    AlertKind::Error => EventKind::Error,
                    AlertKind::Recovered => EventKind::Recovered,
                    AlertKind::AutoPaused => EventKind::AutoPaused,
                    AlertKind::SchemaPaused => EventKind::SchemaPaused,
                },
                project: a.project,
                execution_id: e.id,
                status: e.status.to_string(),
                trigger,
                read: sum(|t| t.read),
                inserted: sum(|t| t.inserted),
                updated: sum(|t| t.updated),
                unchanged: sum(|t| t.unchanged),
                failed: sum(|t| t.failed),
                error: e.error.clone(),
                schema_changes,
                first_errors: a.first_errors,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_percentiles_come_from_a_bounded_histogram() {
        let mut lags = Lags::default();
        assert_eq!((lags.quantile_ms(0.5), lags.max_ms()), (0.0, 0.0));
        // 1 ms to 1000 ms, in an order that is not sorted.
        for ms in (1..=1000i64).rev() {
            lags.record(ms * 1000);
        }
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        let (p50, p99) = (lags.quantile_ms(0.5), lags.quantile_ms(0.99));
        assert!(close(p50, 500.0), "{p50}");
        assert!(close(p99, 990.0), "{p99}");
        assert!(close(lags.max_ms(), 1000.0), "{}", lags.max_ms());
        let before = lags.0.distinct_values();
        // Negative lags (clock steps) count as none; absurd ones as a day; neither
        // grows the histogram, whatever the number of samples.
        for _ in 0..200_000 {
            lags.record(-5);
            lags.record(i64::MAX);
        }
        assert_eq!(lags.0.len(), 1000 + 400_000);
        assert_eq!(lags.0.distinct_values(), before);
        assert!(close(lags.max_ms(), MAX_LAG_MICROS as f64 / 1000.0));
    }

    #[cfg(target_os = "linux")]
    fn my_nice() -> i32 {
        // SAFETY: plain syscalls.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_execution_runs_on_its_own_thread_at_a_lower_priority() {
        let caller = my_nice();
        let (nice, inherited) = on_execution_thread("p", || {
            // The pipeline's stage threads are spawned from it and inherit it.
            let child = std::thread::spawn(my_nice).join().unwrap();
            (my_nice(), child)
        })
        .await
        .unwrap();
        assert_eq!(nice, caller.max(EXECUTION_NICE));
        assert_eq!(inherited, nice);
        assert_eq!(my_nice(), caller, "the caller's own priority is unchanged");
    }

    #[test]
    fn the_pool_holds_four_instances_per_execution_and_never_fewer_than_the_default() {
        let with = |concurrency| DaemonSettings {
            concurrency,
            ..DaemonSettings::default()
        };
        assert_eq!(with(4).pool_instances(), 128);
        assert_eq!(with(64).pool_instances(), 288);
        assert_eq!(with(256).pool_instances(), 1056);
    }

    #[tokio::test]
    async fn a_panicking_execution_is_an_error_not_a_crash() {
        let err = on_execution_thread("p", || -> u32 { panic!("boom") })
            .await
            .unwrap_err();
        assert_eq!(err, "the run panicked: boom");
    }
}
