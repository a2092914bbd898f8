//! The coordinator's side: [`HandToWorkers`] publishes a begun execution on the work
//! queue and waits while a worker runs it; [`serve_requests`] answers the workers'
//! start, checkpoint and finish requests against the store, fenced by lease epoch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;

use super::plugins::{PluginBlob, Shelf};
use super::{
    CHECKPOINT_SUBJECT, CheckpointReply, CheckpointRequest, ClusterError, Connections,
    ExecutionStart, FINISH_SUBJECT, FinishReply, FinishRequest, HEARTBEAT_SUBJECT, Heartbeat,
    START_SUBJECT, StartOptions, StartReply, StartRequest, TransitKey, WORK_SUBJECT, WorkItem,
    WorkerOutcome,
};
use crate::dispatch::{Dispatch, Job, RunFailure};
use crate::engine::{ExecutionReport, Observer, TaskStop};
use crate::service::commit_checkpoint;
use crate::store::{ExecutionId, Store, TaskState};

/// Executions go to `weir worker`s through JetStream; this process records them.
#[derive(Clone)]
pub struct HandToWorkers {
    shared: Arc<Shared>,
}

struct Shared {
    client: async_nats::Client,
    js: jetstream::Context,
    /// The daemon's runtime: `run` is called on execution threads and blocks on it.
    handle: tokio::runtime::Handle,
    in_hand: Mutex<HashMap<ExecutionId, Arc<Mutex<InHand>>>>,
    workers: Mutex<HashMap<String, WorkerSeen>>,
    /// Seals the connections a start carries (`WEIR_CLUSTER_KEY`).
    key: Option<TransitKey>,
    /// Puts the plugins executions need in the object store.
    shelf: Arc<Shelf>,
}

/// A worker as the coordinator last heard of it.
#[derive(Clone, Debug)]
struct WorkerSeen {
    at: Instant,
    at_millis: i64,
    executions: Vec<ExecutionId>,
}

/// A worker as the API shows it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WorkerView {
    pub name: String,
    /// Heard from within the last three heartbeat periods.
    pub alive: bool,
    /// Executions it said it runs at its last heartbeat.
    pub executions: Vec<ExecutionId>,
    /// Unix millis of its last heartbeat.
    pub last_heartbeat: i64,
}

/// An execution between its publication and its recorded end.
struct InHand {
    start: ExecutionStart,
    /// The epoch of the worker running it (0: no worker started it yet).
    epoch: u64,
    /// Per task, what earlier leases committed: a resumed worker counts from zero,
    /// and its checkpoints are added to these.
    base: HashMap<String, TaskState>,
    /// The daemon is shutting down: checkpoints answer "stop".
    stop: Option<Arc<AtomicBool>>,
    /// Where the end goes (taken by the first finish request).
    ended: Option<std::sync::mpsc::Sender<Ended>>,
    /// Answered once the service recorded the end.
    recorded: Option<tokio::sync::oneshot::Sender<bool>>,
}

struct Ended {
    outcome: WorkerOutcome,
}

/// How often a worker heart-beats to the coordinator (besides its JetStream
/// progress acks), and how long until it counts as gone.
pub const WORKER_HEARTBEAT: Duration = Duration::from_secs(2);

impl HandToWorkers {
    /// Connects the coordinator's side; call [`serve_requests`] once the store is
    /// at hand.
    pub async fn new(
        client: async_nats::Client,
        key: Option<TransitKey>,
    ) -> Result<HandToWorkers, ClusterError> {
        let js = jetstream::new(client.clone());
        let shelf = Arc::new(Shelf::new(super::plugins::ensure_bucket(&js).await?));
        Ok(HandToWorkers {
            shared: Arc::new(Shared {
                client,
                js,
                handle: tokio::runtime::Handle::current(),
                in_hand: Mutex::new(HashMap::new()),
                workers: Mutex::new(HashMap::new()),
                key,
                shelf,
            }),
        })
    }

    /// Puts the project's plugin files in the object store and names them by
    /// digest. A file that cannot be read fails the execution; NATS being away is
    /// waited out.
    fn share_plugins(
        &self,
        id: ExecutionId,
        project: &crate::project::Project,
        stop: Option<&AtomicBool>,
    ) -> Result<Vec<Option<PluginBlob>>, String> {
        let files = super::plugin_files(project);
        let what = "the execution's plugins could reach the workers";
        self.until_done(id, what, stop, || {
            let shelf = self.shared.shelf.clone();
            let files = files.clone();
            self.shared.handle.block_on(async move {
                let mut blobs = Vec::with_capacity(files.len());
                for file in files {
                    blobs.push(match file {
                        None => None,
                        Some(path) => Some(shelf.share(&path).await.map_err(|e| match e {
                            ClusterError::Plugin(m) => Attempt::Failed(m),
                            other => Attempt::Retry(other.to_string()),
                        })?),
                    });
                }
                Ok(blobs)
            })
        })
    }

    /// Runs `attempt` until it succeeds or fails for good. A retryable failure
    /// (NATS away, the server restarting) is tried again after a pause that
    /// doubles up to 5 s, unless the daemon is stopping: then the execution
    /// ends, saying the daemon stopped before `what`.
    fn until_done<T>(
        &self,
        id: ExecutionId,
        what: &str,
        stop: Option<&AtomicBool>,
        mut attempt: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, String> {
        let mut delay = Duration::from_millis(200);
        loop {
            match attempt() {
                Ok(done) => return Ok(done),
                Err(Attempt::Failed(message)) => return Err(message),
                Err(Attempt::Retry(error)) => {
                    if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                        return Err(format!("the daemon stopped before {what} ({error})"));
                    }
                    tracing::warn!(execution = id, %error, "waiting until {what}; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Workers heard from since the coordinator started, by name.
    pub fn workers(&self) -> Vec<WorkerView> {
        let now = Instant::now();
        let mut all: Vec<WorkerView> = self
            .shared
            .workers
            .lock()
            .unwrap()
            .iter()
            .map(|(name, seen)| WorkerView {
                name: name.clone(),
                alive: now.duration_since(seen.at) < WORKER_HEARTBEAT * 3,
                executions: seen.executions.clone(),
                last_heartbeat: seen.at_millis,
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Publishes execution `id`, once: retried until JetStream stores it (the
    /// server may be restarting), de-duplicated by id.
    fn publish(&self, id: ExecutionId, stop: Option<&AtomicBool>) -> Result<(), String> {
        let payload = serde_json::to_vec(&WorkItem { execution: id }).map_err(|e| e.to_string())?;
        let what = "the execution could be handed to a worker";
        let ack = self.until_done(id, what, stop, || {
            let js = self.shared.js.clone();
            let payload = payload.clone();
            self.shared.handle.block_on(async move {
                let ack = js
                    .send_publish(
                        WORK_SUBJECT,
                        jetstream::message::PublishMessage::build()
                            .message_id(id.to_string())
                            .payload(payload.into()),
                    )
                    .await
                    .map_err(|e| Attempt::Retry(e.to_string()))?;
                ack.await.map_err(|e| Attempt::Retry(e.to_string()))
            })
        })?;
        tracing::info!(
            execution = id,
            sequence = ack.sequence,
            duplicate = ack.duplicate,
            "execution handed to the workers"
        );
        Ok(())
    }
}

/// How one try of [`HandToWorkers::until_done`] failed.
enum Attempt {
    /// Try again (NATS away); the text says why.
    Retry(String),
    /// Give up: the execution fails with this message.
    Failed(String),
}

impl Dispatch for HandToWorkers {
    fn run(
        &self,
        job: Job<'_>,
        _observer: &mut dyn Observer,
    ) -> Result<ExecutionReport, RunFailure> {
        let remote = |message: String| RunFailure::Remote {
            message,
            schema_changes: Vec::new(),
        };
        let store = &job.service.store;
        let stored = store
            .project(&job.project.name, Some(job.version))
            .map_err(|e| remote(e.to_string()))?
            .ok_or_else(|| remote(format!("project version {} is gone", job.version)))?;
        // The stored connections the project names; a connection written in the
        // project text travels inside it.
        let mut connections = Vec::new();
        for name in [&job.project.source.name, &job.project.destination.name] {
            if connections
                .iter()
                .any(|c: &crate::store::StoredConnection| &c.name == name)
            {
                continue;
            }
            if let Some(c) = store.connection(name).map_err(|e| remote(e.to_string()))? {
                connections.push(c);
            }
        }
        let options = job.options;
        let plugins = self
            .share_plugins(job.id, job.project, options.stop.as_deref())
            .map_err(remote)?;
        let start = ExecutionStart {
            project: job.project.name.clone(),
            version: job.version,
            text: stored.text,
            base_dir: stored.base_dir,
            connections: Connections::Plain(connections),
            plugins,
            options: StartOptions {
                resume: options.resume.clone(),
                records: options.records.clone(),
                checkpoint_every: options.checkpoint_every,
                capture: options.capture,
                dry_run: options.dry_run,
                holder: options.holder.clone(),
                schema_baseline: options.schema_baseline.clone(),
            },
        };
        let (tx, rx) = std::sync::mpsc::channel();
        self.shared.in_hand.lock().unwrap().insert(
            job.id,
            Arc::new(Mutex::new(InHand {
                start,
                epoch: 0,
                base: HashMap::new(),
                stop: options.stop.clone(),
                ended: Some(tx),
                recorded: None,
            })),
        );
        let stop = options.stop.as_deref();
        if let Err(message) = self.publish(job.id, stop) {
            self.shared.in_hand.lock().unwrap().remove(&job.id);
            return Err(remote(message));
        }
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(ended) => return self.ended(job.id, ended),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if stop.is_some_and(|s| s.load(Ordering::SeqCst)) && !self.started(job.id) {
                        // Shutting down and no worker took it: nothing ran, nothing
                        // to wait for. (The message stays queued; a worker that pulls
                        // it later is told it is gone.)
                        self.shared.in_hand.lock().unwrap().remove(&job.id);
                        return Err(remote(
                            "interrupted: the daemon stopped before a worker started the execution"
                                .into(),
                        ));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(remote(
                        "the execution's hand-out ended without an end".into(),
                    ));
                }
            }
        }
    }

    fn recorded(&self, id: ExecutionId, ok: bool) {
        let entry = self.shared.in_hand.lock().unwrap().remove(&id);
        if let Some(entry) = entry
            && let Some(tx) = entry.lock().unwrap().recorded.take()
        {
            let _ = tx.send(ok);
        }
    }
}

impl HandToWorkers {
    fn started(&self, id: ExecutionId) -> bool {
        let entry = self.shared.in_hand.lock().unwrap().get(&id).cloned();
        entry.is_some_and(|e| e.lock().unwrap().epoch > 0)
    }

    /// The worker's outcome, its counts made the execution's (what earlier leases
    /// committed added).
    fn ended(&self, id: ExecutionId, ended: Ended) -> Result<ExecutionReport, RunFailure> {
        match ended.outcome {
            WorkerOutcome::Failed {
                message,
                schema_changes,
            } => Err(RunFailure::Remote {
                message,
                schema_changes,
            }),
            WorkerOutcome::Report(report) => {
                let mut report = *report;
                let entry = self.shared.in_hand.lock().unwrap().get(&id).cloned();
                if let Some(entry) = entry {
                    let entry = entry.lock().unwrap();
                    for task in &mut report.tasks {
                        if let Some(b) = entry.base.get(&task.name) {
                            task.counts.read += b.read;
                            task.counts.inserted += b.inserted;
                            task.counts.updated += b.updated;
                            task.counts.unchanged += b.unchanged;
                            task.counts.failed += b.failed;
                        }
                    }
                }
                report.status = ExecutionReport::status_of(&report.tasks);
                Ok(report)
            }
        }
    }
}

/// Answers the workers' requests until the connection closes. Store work runs on
/// tokio's blocking pool (sled is synchronous).
pub async fn serve_requests(
    dispatch: HandToWorkers,
    daemon: crate::daemon::Daemon,
) -> Result<(), ClusterError> {
    let client = dispatch.shared.client.clone();
    let mut requests = client
        .subscribe("weir.coordinator.*")
        .await
        .map_err(|e| ClusterError::nats("subscribing to the workers' requests", e))?;
    let mut heartbeats = client
        .subscribe(HEARTBEAT_SUBJECT)
        .await
        .map_err(|e| ClusterError::nats("subscribing to heartbeats", e))?;
    loop {
        tokio::select! {
            msg = requests.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let (dispatch, daemon, client) = (dispatch.clone(), daemon.clone(), client.clone());
                tokio::spawn(async move {
                    let Some(reply_to) = msg.reply.clone() else { return };
                    let answer = answer(&dispatch, &daemon, msg.subject.as_str(), &msg.payload).await;
                    match answer {
                        Ok(bytes) => {
                            if let Err(e) = client.publish(reply_to, bytes.into()).await {
                                tracing::warn!(error = %e, "answering a worker failed");
                            }
                        }
                        Err(e) => tracing::warn!(subject = %msg.subject, error = %e, "a worker's request could not be read"),
                    }
                });
            }
            hb = heartbeats.next() => {
                let Some(hb) = hb else { return Ok(()) };
                if let Ok(hb) = serde_json::from_slice::<Heartbeat>(&hb.payload) {
                    dispatch.shared.workers.lock().unwrap().insert(hb.worker, WorkerSeen {
                        at: Instant::now(),
                        at_millis: crate::store::now_millis(),
                        executions: hb.executions,
                    });
                }
            }
        }
    }
}

async fn answer(
    dispatch: &HandToWorkers,
    daemon: &crate::daemon::Daemon,
    subject: &str,
    payload: &[u8],
) -> Result<Vec<u8>, ClusterError> {
    match subject {
        START_SUBJECT => {
            let req: StartRequest = serde_json::from_slice(payload)?;
            let (d, daemon) = (dispatch.clone(), daemon.clone());
            let reply = tokio::task::spawn_blocking(move || d.start(&daemon.service().store, req))
                .await
                .map_err(|e| ClusterError::nats("start", e))?;
            Ok(serde_json::to_vec(&reply)?)
        }
        CHECKPOINT_SUBJECT => {
            let req: CheckpointRequest = serde_json::from_slice(payload)?;
            let (d, daemon) = (dispatch.clone(), daemon.clone());
            let reply =
                tokio::task::spawn_blocking(move || d.checkpoint(&daemon.service().store, req))
                    .await
                    .map_err(|e| ClusterError::nats("checkpoint", e))?;
            Ok(serde_json::to_vec(&reply)?)
        }
        FINISH_SUBJECT => {
            let req: FinishRequest = serde_json::from_slice(payload)?;
            let reply = dispatch.finish(req).await;
            Ok(serde_json::to_vec(&reply)?)
        }
        other => Err(ClusterError::Nats {
            what: "request",
            detail: format!("unknown subject {other}"),
        }),
    }
}

impl HandToWorkers {
    fn entry(&self, id: ExecutionId) -> Option<Arc<Mutex<InHand>>> {
        self.shared.in_hand.lock().unwrap().get(&id).cloned()
    }

    /// A worker starts (or resumes) an execution under `req.epoch`: it resumes
    /// from the cursors committed so far, and from now on only its epoch commits.
    fn start(&self, store: &Store, req: StartRequest) -> StartReply {
        let Some(entry) = self.entry(req.execution) else {
            return StartReply::Gone;
        };
        let mut e = entry.lock().unwrap();
        if req.epoch < e.epoch {
            return StartReply::Stale { current: e.epoch };
        }
        let resumed = e.epoch > 0;
        e.epoch = req.epoch;
        let mut options = e.start.options.clone();
        match store.execution(req.execution) {
            Ok(Some(exec)) => {
                e.base.clear();
                for t in &exec.tasks {
                    if let Some(c) = &t.cursor {
                        options.resume.insert(t.name.clone(), c.clone());
                    }
                    e.base.insert(t.name.clone(), t.clone());
                }
            }
            Ok(None) => return StartReply::Gone,
            Err(error) => {
                tracing::error!(execution = req.execution, %error, "reading the execution for a worker failed");
                return StartReply::Gone;
            }
        }
        if let Err(error) = store.record_worker(req.execution, &req.worker) {
            tracing::warn!(execution = req.execution, %error, "recording the worker failed");
            return StartReply::Gone;
        }
        tracing::info!(
            execution = req.execution,
            worker = %req.worker,
            epoch = req.epoch,
            resumed,
            "a worker starts the execution"
        );
        let connections = match (&self.shared.key, &e.start.connections) {
            (Some(key), Connections::Plain(list)) => {
                let sealed = serde_json::to_vec(list)
                    .map_err(ClusterError::from)
                    .and_then(|json| {
                        key.seal(&json, &TransitKey::binding(req.execution, req.epoch))
                    });
                match sealed {
                    Ok(bytes) => Connections::Sealed(bytes),
                    Err(error) => {
                        tracing::error!(execution = req.execution, %error, "sealing the start failed");
                        return StartReply::Gone;
                    }
                }
            }
            (_, other) => other.clone(),
        };
        StartReply::Run(Box::new(ExecutionStart {
            project: e.start.project.clone(),
            version: e.start.version,
            text: e.start.text.clone(),
            base_dir: e.start.base_dir.clone(),
            connections,
            options,
            plugins: e.start.plugins.clone(),
        }))
    }

    /// Commits a worker's checkpoint in one store transaction, if its epoch is
    /// the current one; else writes nothing.
    fn checkpoint(&self, store: &Store, req: CheckpointRequest) -> CheckpointReply {
        let Some(entry) = self.entry(req.execution) else {
            return CheckpointReply::Gone;
        };
        // Held while committing: a start under a later epoch waits for it, so it
        // reads the cursors this commit wrote, and no stale commit follows it.
        let e = entry.lock().unwrap();
        if req.epoch != e.epoch {
            tracing::warn!(
                execution = req.execution,
                epoch = req.epoch,
                current = e.epoch,
                "stale checkpoint refused"
            );
            return CheckpointReply::Stale { current: e.epoch };
        }
        let mut checkpoint = req.checkpoint;
        for t in &mut checkpoint.tasks {
            if let Some(b) = e.base.get(&t.name) {
                t.read += b.read;
                t.inserted += b.inserted;
                t.updated += b.updated;
                t.unchanged += b.unchanged;
                t.failed += b.failed;
            }
        }
        match commit_checkpoint(store, req.execution, checkpoint) {
            Ok(()) => CheckpointReply::Committed {
                stop: e.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)),
            },
            Err(TaskStop::Interrupted(message)) => CheckpointReply::Refused {
                interrupted: true,
                message,
            },
            Err(other) => CheckpointReply::Refused {
                interrupted: false,
                message: other.message(),
            },
        }
    }

    /// A worker's end: handed to the waiting execution thread, answered once the
    /// service recorded it.
    async fn finish(&self, req: FinishRequest) -> FinishReply {
        let Some(entry) = self.entry(req.execution) else {
            return FinishReply::Gone;
        };
        let recorded = {
            let mut e = entry.lock().unwrap();
            if req.epoch != e.epoch {
                return FinishReply::Stale { current: e.epoch };
            }
            let Some(tx) = e.ended.take() else {
                return FinishReply::Pending;
            };
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            e.recorded = Some(done_tx);
            if tx
                .send(Ended {
                    outcome: req.outcome,
                })
                .is_err()
            {
                return FinishReply::Gone;
            }
            done_rx
        };
        match recorded.await {
            Ok(ok) => FinishReply::Recorded { ok },
            Err(_) => FinishReply::Recorded { ok: false },
        }
    }
}
