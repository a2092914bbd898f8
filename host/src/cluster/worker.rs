//! `weir worker`: a stateless executor. Pulls an execution id from the work queue,
//! takes the execution's next lease epoch, asks the coordinator for the execution
//! (project text, connections, resume cursors), runs the engine with a
//! [`RemoteRecorder`], and acks the message once the coordinator recorded the end.
//! While an execution runs, it heart-beats (`+WPI`) well inside the ack wait.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::plugins::PluginCache;
use super::{
    CHECKPOINT_SUBJECT, CLUSTER_KEY_ENV, CONSUMER, CheckpointReply, CheckpointRequest,
    ClusterError, Connections, ExecutionStart, FINISH_SUBJECT, FinishReply, FinishRequest,
    HEARTBEAT_SUBJECT, Heartbeat, LEASES, LeaseRecord, START_SUBJECT, STREAM, StartReply,
    StartRequest, TransitKey, WorkItem, WorkerOutcome, lease_key,
};
use crate::engine::{self, Engine, EngineError, Quiet, Recorder, RunOptions, TaskStop};
use crate::project::{EnvPolicy, Project};
use crate::redact::Redactor;
use crate::store::{ExecutionId, StoredConnection};

/// What `weir worker` was told.
#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// The NATS server.
    pub nats: String,
    /// This worker's name, as the history and the API show it.
    pub name: String,
    /// Executions at once.
    pub concurrency: usize,
    /// Opens sealed starts (`WEIR_CLUSTER_KEY`).
    pub key: Option<TransitKey>,
    /// Where plugins fetched from the object store are kept, by digest
    /// (`<data-dir>/plugins/by-hash`).
    pub plugin_cache: PathBuf,
}

/// Runs executions until `stop` is set, then lets the ones in hand end at their
/// next batch boundary (committed; the coordinator records them interrupted).
pub async fn run(
    settings: WorkerSettings,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
) -> Result<(), ClusterError> {
    let client = super::connect(&settings.nats, &settings.name).await?;
    let js = jetstream::new(client.clone());
    // The coordinator creates the stream, consumer and bucket (it decides the
    // lease); a worker started first waits for them.
    let (consumer, leases) = loop {
        let found = async {
            let stream = js.get_stream(STREAM).await.ok()?;
            let consumer: jetstream::consumer::PullConsumer =
                stream.get_consumer(CONSUMER).await.ok()?;
            let leases = js.get_key_value(LEASES).await.ok()?;
            Some((consumer, leases))
        }
        .await;
        if let Some(found) = found {
            break found;
        }
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        tracing::info!(worker = %settings.name, "waiting for the coordinator to set up the work queue");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let ack_wait = consumer.cached_info().config.ack_wait;
    // Four heartbeats per lease: one lost or late still leaves two.
    let beat = (ack_wait / 4).max(Duration::from_millis(100));
    tracing::info!(worker = %settings.name, ?ack_wait, ?beat, "worker ready");
    let worker = Arc::new(Worker {
        js: js.clone(),
        plugins: PluginCache::new(settings.plugin_cache.clone()),
        client,
        leases,
        engine,
        name: settings.name.clone(),
        beat,
        key: settings.key.clone(),
        in_hand: Mutex::new(Vec::new()),
        stop: stop.clone(),
    });
    let heartbeat = tokio::spawn(heartbeats(worker.clone()));
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.concurrency.max(1)));
    while !stop.load(Ordering::SeqCst) {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        // One message per free slot: pulling more would hold executions whose
        // leases run out while they wait here.
        // `batch` waits up to `expires` for a message (`fetch` would return at
        // once when the queue is empty, and the loop would spin).
        let batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(b) => b,
            Err(error) => {
                tracing::warn!(worker = %settings.name, %error, "pulling failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let message = match batch.next().await {
            Some(Ok(m)) => m,
            Some(Err(error)) => {
                tracing::debug!(worker = %settings.name, %error, "no message");
                continue;
            }
            None => continue,
        };
        let w = worker.clone();
        tokio::spawn(async move {
            w.handle(message).await;
            drop(permit);
        });
    }
    // Wait for the executions in hand (they stop at their next batch boundary).
    let _ = slots.acquire_many(settings.concurrency.max(1) as u32).await;
    heartbeat.abort();
    Ok(())
}

struct Worker {
    client: async_nats::Client,
    js: jetstream::Context,
    plugins: PluginCache,
    leases: jetstream::kv::Store,
    engine: Arc<Engine>,
    name: String,
    beat: Duration,
    key: Option<TransitKey>,
    in_hand: Mutex<Vec<ExecutionId>>,
    stop: Arc<AtomicBool>,
}

/// Tells the coordinator this worker is alive and what it runs (for its view;
/// leases are the JetStream acks').
async fn heartbeats(worker: Arc<Worker>) {
    loop {
        let hb = Heartbeat {
            worker: worker.name.clone(),
            executions: worker.in_hand.lock().unwrap().clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&hb) {
            let _ = worker.client.publish(HEARTBEAT_SUBJECT, bytes.into()).await;
        }
        tokio::time::sleep(super::coordinator::WORKER_HEARTBEAT).await;
    }
}

/// How a handled message is let go of.
enum LetGo {
    /// The coordinator recorded the end (or no longer wants the execution): ack.
    Ack,
    /// Another worker holds it now: leave the message alone.
    Leave,
}

impl Worker {
    async fn handle(self: &Arc<Self>, message: jetstream::Message) {
        let item: WorkItem = match serde_json::from_slice(&message.payload) {
            Ok(i) => i,
            Err(error) => {
                tracing::error!(worker = %self.name, %error, "not an execution; dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return;
            }
        };
        let id = item.execution;
        let delivered = message.info().map(|i| i.delivered).unwrap_or(0);
        let message = Arc::new(message);
        // Progress acks extend the lease while the execution runs.
        let progress = {
            let (m, beat) = (message.clone(), self.beat);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(beat).await;
                    if let Err(error) = m.ack_with(AckKind::Progress).await {
                        tracing::warn!(execution = id, %error, "heartbeat failed");
                    }
                }
            })
        };
        self.in_hand.lock().unwrap().push(id);
        let let_go = self.execute(id, delivered).await;
        progress.abort();
        self.in_hand.lock().unwrap().retain(|e| *e != id);
        match let_go {
            LetGo::Ack => {
                if let Err(error) = message.double_ack().await {
                    tracing::warn!(execution = id, %error, "ack failed (the execution may be delivered again; its next start is told it is gone)");
                }
            }
            LetGo::Leave => {}
        }
    }

    async fn execute(self: &Arc<Self>, id: ExecutionId, delivered: i64) -> LetGo {
        let epoch = match self.take_lease(id).await {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(execution = id, %error, "taking the lease failed; leaving it for redelivery");
                return LetGo::Leave;
            }
        };
        tracing::info!(worker = %self.name, execution = id, epoch, delivered, "execution pulled");
        let start: StartReply = self
            .ask(
                START_SUBJECT,
                &StartRequest {
                    execution: id,
                    epoch,
                    worker: self.name.clone(),
                },
            )
            .await;
        let start = match start {
            StartReply::Run(s) => s,
            StartReply::Stale { current } => {
                tracing::warn!(
                    execution = id,
                    epoch,
                    current,
                    "a later lease holds the execution"
                );
                return LetGo::Leave;
            }
            StartReply::Gone => {
                tracing::info!(
                    execution = id,
                    "the coordinator no longer has the execution; dropped"
                );
                return LetGo::Ack;
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        let handle = tokio::runtime::Handle::current();
        // The engine is synchronous CPU work: its own thread, never an async one.
        let spawned = std::thread::Builder::new()
            .name(format!("weir-worker {id}"))
            .spawn(move || {
                let _ = tx.send(me.run_engine(handle, id, epoch, *start));
            });
        if let Err(error) = spawned {
            tracing::error!(execution = id, %error, "cannot start the execution's thread");
            return LetGo::Leave;
        }
        let Ok((outcome, fenced)) = rx.await else {
            return LetGo::Leave;
        };
        match fenced {
            Fenced::No => {}
            Fenced::Stale => return LetGo::Leave,
            Fenced::Gone => return LetGo::Ack,
        }
        loop {
            let reply: FinishReply = self
                .ask(
                    FINISH_SUBJECT,
                    &FinishRequest {
                        execution: id,
                        epoch,
                        outcome: outcome.clone(),
                    },
                )
                .await;
            match reply {
                FinishReply::Recorded { ok } => {
                    tracing::info!(worker = %self.name, execution = id, recorded = ok, "execution ended");
                    return LetGo::Ack;
                }
                FinishReply::Gone => return LetGo::Ack,
                FinishReply::Stale { current } => {
                    tracing::warn!(
                        execution = id,
                        epoch,
                        current,
                        "end refused: a later lease holds the execution"
                    );
                    return LetGo::Leave;
                }
                FinishReply::Pending => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The next epoch of execution `id`, by compare-and-set: two workers can never
    /// hold the same one.
    async fn take_lease(&self, id: ExecutionId) -> Result<u64, ClusterError> {
        let key = lease_key(id);
        for _ in 0..50 {
            let entry = self
                .leases
                .entry(key.clone())
                .await
                .map_err(|e| ClusterError::nats("reading a lease", e))?;
            let (epoch, written) = match entry {
                None => {
                    let value = serde_json::to_vec(&LeaseRecord {
                        epoch: 1,
                        worker: self.name.clone(),
                    })?;
                    (1, self.leases.create(&key, value.into()).await.is_ok())
                }
                Some(e) => {
                    let last: LeaseRecord = serde_json::from_slice(&e.value)?;
                    let value = serde_json::to_vec(&LeaseRecord {
                        epoch: last.epoch + 1,
                        worker: self.name.clone(),
                    })?;
                    (
                        last.epoch + 1,
                        self.leases
                            .update(&key, value.into(), e.revision)
                            .await
                            .is_ok(),
                    )
                }
            };
            if written {
                return Ok(epoch);
            }
            // Someone wrote between our read and our write: read again.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(ClusterError::Nats {
            what: "taking a lease",
            detail: "the lease kept changing".into(),
        })
    }

    /// A request to the coordinator, asked again until it answers (it may be
    /// restarting, or the server reconnecting): the caller goes on only with an
    /// answer.
    async fn ask<Q: Serialize, A: DeserializeOwned>(
        &self,
        subject: &'static str,
        request: &Q,
    ) -> A {
        ask(&self.client, subject, request).await
    }

    /// Parses the project as the coordinator sent it and runs it.
    fn run_engine(
        &self,
        handle: tokio::runtime::Handle,
        id: ExecutionId,
        epoch: u64,
        start: ExecutionStart,
    ) -> (WorkerOutcome, Fenced) {
        let failed = |message: String| {
            (
                WorkerOutcome::Failed {
                    message,
                    schema_changes: Vec::new(),
                },
                Fenced::No,
            )
        };
        // Opened in memory only: the connections' secrets never touch this disk.
        let connections: Vec<StoredConnection> = match (&start.connections, &self.key) {
            (Connections::Plain(list), _) => list.clone(),
            (Connections::Sealed(bytes), Some(key)) => {
                match key
                    .open(bytes, &TransitKey::binding(id, epoch))
                    .and_then(|json| Ok(serde_json::from_slice(&json)?))
                {
                    Ok(list) => list,
                    Err(e) => return failed(format!("worker {}: {e}", self.name)),
                }
            }
            (Connections::Sealed(_), None) => {
                return failed(format!(
                    "worker {} has no {CLUSTER_KEY_ENV}: the start's connections are sealed",
                    self.name
                ));
            }
        };
        let mut known = BTreeMap::new();
        let mut secrets = Redactor::new();
        for c in &connections {
            secrets.extend(c.secrets.iter().map(|(_, v)| v.as_str()));
            known.insert(c.name.clone(), crate::service::to_connection(c));
        }
        let path = start.base_dir.join(format!("{}.toml", start.project));
        let mut project = match Project::parse_with_env(
            Path::new(&path),
            &start.text,
            &known,
            &EnvPolicy::default(),
        ) {
            Ok(p) => p,
            Err(e) => return failed(secrets.scrub(&e.to_string())),
        };
        // The project's plugins, by digest: from this worker's cache, or fetched
        // from the object store (the coordinator's files are not read here).
        let mut files = Vec::with_capacity(start.plugins.len());
        for blob in &start.plugins {
            files.push(match blob {
                None => None,
                Some(blob) => match handle.block_on(self.plugins.local(&self.js, blob)) {
                    Ok(path) => Some(path),
                    Err(e) => return failed(format!("worker {}: {e}", self.name)),
                },
            });
        }
        super::use_plugin_files(&mut project, &files);
        secrets.merge(&self.engine.redactor(&project));
        secrets.remember();
        let stop = Arc::new(AtomicBool::new(false));
        let o = start.options;
        let options = RunOptions {
            resume: o.resume,
            records: o.records,
            checkpoint_every: o.checkpoint_every,
            capture: o.capture,
            stop: Some(stop.clone()),
            holder: o.holder,
            destination_wait: None,
            dry_run: o.dry_run,
            schema_baseline: o.schema_baseline,
        };
        let mut recorder = RemoteRecorder {
            client: self.client.clone(),
            handle,
            id,
            epoch,
            secrets: &secrets,
            stop: stop.clone(),
            worker_stop: self.stop.clone(),
            fenced: Fenced::No,
        };
        let result = self
            .engine
            .execute(&project, &options, &mut Quiet, &mut recorder);
        let fenced = recorder.fenced;
        let outcome = match result {
            Ok(report) => WorkerOutcome::Report(Box::new(report)),
            Err(e) => {
                let schema_changes = match &e {
                    EngineError::Invalid(r) => r.schema_changes.clone(),
                    _ => Vec::new(),
                };
                WorkerOutcome::Failed {
                    message: secrets.scrub(&e.to_string()),
                    schema_changes,
                }
            }
        };
        (outcome, fenced)
    }
}

/// See [`Worker::ask`].
async fn ask<Q: Serialize, A: DeserializeOwned>(
    client: &async_nats::Client,
    subject: &'static str,
    request: &Q,
) -> A {
    let payload = match serde_json::to_vec(request) {
        Ok(p) => p,
        Err(e) => panic!("a request always serializes: {e}"),
    };
    let mut delay = Duration::from_millis(200);
    loop {
        match client.request(subject, payload.clone().into()).await {
            Ok(reply) => match serde_json::from_slice(&reply.payload) {
                Ok(answer) => return answer,
                Err(error) => {
                    tracing::error!(subject, %error, "the coordinator's answer could not be read; asking again");
                }
            },
            Err(error) => {
                tracing::warn!(subject, %error, "the coordinator did not answer; asking again");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Whether the coordinator took the execution away from this worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fenced {
    No,
    /// A later epoch holds it: this worker records nothing more.
    Stale,
    /// The coordinator no longer has it in hand.
    Gone,
}

/// The engine's checkpoints, sent to the coordinator under this worker's epoch;
/// the engine goes on only once the coordinator committed one.
struct RemoteRecorder<'a> {
    client: async_nats::Client,
    handle: tokio::runtime::Handle,
    id: ExecutionId,
    epoch: u64,
    secrets: &'a Redactor,
    /// The execution's stop flag (the coordinator asked it to stop).
    stop: Arc<AtomicBool>,
    /// The worker's own (it is shutting down).
    worker_stop: Arc<AtomicBool>,
    fenced: Fenced,
}

impl Recorder for RemoteRecorder<'_> {
    fn checkpoint(&mut self, cp: engine::Checkpoint) -> Result<(), TaskStop> {
        if self.fenced != Fenced::No {
            return Err(TaskStop::Failed(
                "this worker no longer holds the execution".into(),
            ));
        }
        let request = CheckpointRequest {
            execution: self.id,
            epoch: self.epoch,
            checkpoint: crate::service::stored_checkpoint(cp, self.secrets),
        };
        let reply: CheckpointReply =
            self.handle
                .block_on(ask(&self.client, CHECKPOINT_SUBJECT, &request));
        match reply {
            CheckpointReply::Committed { stop } => {
                if stop || self.worker_stop.load(Ordering::SeqCst) {
                    self.stop.store(true, Ordering::SeqCst);
                }
                Ok(())
            }
            CheckpointReply::Stale { current } => {
                tracing::warn!(
                    execution = self.id,
                    epoch = self.epoch,
                    current,
                    "checkpoint refused as stale: another worker resumed the execution; stopping it here"
                );
                self.fenced = Fenced::Stale;
                self.stop.store(true, Ordering::SeqCst);
                Err(TaskStop::Failed(format!(
                    "lease lost: epoch {} was superseded by {current}",
                    self.epoch
                )))
            }
            CheckpointReply::Gone => {
                self.fenced = Fenced::Gone;
                self.stop.store(true, Ordering::SeqCst);
                Err(TaskStop::Interrupted(
                    "interrupted: the coordinator no longer has the execution".into(),
                ))
            }
            CheckpointReply::Refused {
                interrupted: true,
                message,
            } => Err(TaskStop::Interrupted(message)),
            CheckpointReply::Refused {
                interrupted: false,
                message,
            } => Err(TaskStop::Failed(message)),
        }
    }
}
