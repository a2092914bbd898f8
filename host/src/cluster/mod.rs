//! Scale-out over NATS JetStream: `weir serve` (the coordinator) hands executions to
//! `weir worker`s and stays the only writer of its store.
//!
//! - Hand-out: a work-queue stream ([`STREAM`]) of execution ids, each published once
//!   (`Nats-Msg-Id` = the execution id, so a second publish inside the duplicate
//!   window is dropped), pulled by one worker at a time through a durable pull
//!   consumer ([`CONSUMER`]) with explicit acks. A worker heart-beats (`+WPI`) while
//!   it runs an execution and acks only once the coordinator recorded its end; a
//!   worker that goes silent past the ack wait (the lease) loses the execution, which
//!   is redelivered to another worker.
//! - Fencing: whoever starts (or resumes) an execution takes its next lease epoch in
//!   the KV bucket [`LEASES`] by compare-and-set. The coordinator accepts a start only
//!   with an epoch at least the current one and a checkpoint or an end only with the
//!   current one, so a worker presumed dead that comes back cannot commit over its
//!   successor.
//! - Only the execution id is stored in JetStream. The project text and stored
//!   connections (their secrets included) travel in the coordinator's reply to the
//!   worker's start request, are held in the worker's memory for that execution, and
//!   are never written to the worker's disk.
//!
//! What it is not: how an execution runs (the engine, unchanged: a worker's
//! checkpoints go through a [`crate::engine::Recorder`] like the store's) nor how
//! its end is recorded (the service, through [`crate::dispatch::Dispatch`]).

pub mod coordinator;
pub mod plugins;
pub mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use serde::{Deserialize, Serialize};

use crate::engine::{ExecutionReport, RecordCopy, SchemaSnapshot, TaskDrift};
use crate::store::{ExecutionId, StoredCheckpoint, StoredConnection};

pub use coordinator::HandToWorkers;

/// The work-queue stream of executions to run.
pub const STREAM: &str = "WEIR_EXECUTIONS";
/// The subject executions are published on.
pub const WORK_SUBJECT: &str = "weir.executions";
/// The durable pull consumer every worker pulls from.
pub const CONSUMER: &str = "weir-workers";
/// The KV bucket of lease epochs, one key per execution.
pub const LEASES: &str = "weir-leases";
/// Requests from workers to the coordinator (request/reply).
pub const START_SUBJECT: &str = "weir.coordinator.start";
pub const CHECKPOINT_SUBJECT: &str = "weir.coordinator.checkpoint";
pub const FINISH_SUBJECT: &str = "weir.coordinator.finish";
/// Workers' heartbeats (core NATS, fire and forget): for the coordinator's view.
pub const HEARTBEAT_SUBJECT: &str = "weir.workers.heartbeat";
/// Redeliveries before JetStream gives an execution up (each one resumes from the
/// last committed checkpoint, so more costs little).
pub const MAX_DELIVER: i64 = 20;
/// How long a worker waits for one answer from the coordinator before asking again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why talking to the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("NATS {what}: {detail}")]
    Nats { what: &'static str, detail: String },
    #[error("a message from the cluster could not be read: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("{0}")]
    Key(String),
    /// A plugin could not be shared with, or fetched by, a worker.
    #[error("{0}")]
    Plugin(String),
}

impl ClusterError {
    fn nats(what: &'static str, e: impl std::fmt::Display) -> ClusterError {
        ClusterError::Nats {
            what,
            detail: e.to_string(),
        }
    }
}

/// The message on the work queue: only the id (nothing secret is stored in JetStream).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct WorkItem {
    pub execution: ExecutionId,
}

/// A lease epoch as the KV bucket holds it, with who took it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub epoch: u64,
    pub worker: String,
}

/// A worker asks for the execution it pulled, under the epoch it took.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StartRequest {
    pub execution: ExecutionId,
    pub epoch: u64,
    pub worker: String,
}

/// The coordinator's answer to a [`StartRequest`].
#[derive(Serialize, Deserialize)]
pub enum StartReply {
    /// Run it.
    Run(Box<ExecutionStart>),
    /// A later epoch holds it: let go without acking.
    Stale { current: u64 },
    /// The coordinator has no such execution in hand (it ended, or the coordinator
    /// restarted and its store marked it interrupted): ack and drop the message.
    Gone,
}

/// What a worker needs to run an execution: the project version's text and the
/// stored connections it names (secrets included: kept in memory only).
#[derive(Serialize, Deserialize)]
pub struct ExecutionStart {
    pub project: String,
    pub version: u32,
    pub text: String,
    /// Relative paths in `text` resolve against it.
    pub base_dir: PathBuf,
    pub connections: Connections,
    pub options: StartOptions,
    /// Per plugin of the project, in [`plugin_files`]' order, the component the
    /// coordinator resolved it to (an installed `name@version` included), by
    /// content hash: the worker fetches it from the object store
    /// ([`plugins::BUCKET`]), so the two share no filesystem. `None`: bundled.
    #[serde(default)]
    pub plugins: Vec<Option<plugins::PluginBlob>>,
}

/// The files a project's plugins resolve to: source, destination, then each
/// task's transforms in order (`None`: a bundled plugin).
pub fn plugin_files(project: &crate::project::Project) -> Vec<Option<PathBuf>> {
    use crate::project::PluginSource;
    let file = |r: &crate::project::PluginRef| match &r.source {
        PluginSource::File(path) => Some(path.clone()),
        PluginSource::Bundled(_) => None,
    };
    let mut files = vec![
        file(&project.source.plugin),
        file(&project.destination.plugin),
    ];
    for task in &project.tasks {
        files.extend(task.transforms.iter().map(|s| file(&s.plugin)));
    }
    files
}

/// Points a project parsed on a worker at the files the coordinator resolved
/// (see [`ExecutionStart::plugins`]).
pub fn use_plugin_files(project: &mut crate::project::Project, files: &[Option<PathBuf>]) {
    let mut refs = vec![&mut project.source.plugin, &mut project.destination.plugin];
    for task in &mut project.tasks {
        refs.extend(task.transforms.iter_mut().map(|s| &mut s.plugin));
    }
    for (r, file) in refs.into_iter().zip(files) {
        if let Some(path) = file {
            r.source = crate::project::PluginSource::File(path.clone());
        }
    }
}

/// The stored connections a start carries (their secrets among them).
#[derive(Clone, Serialize, Deserialize)]
pub enum Connections {
    /// No `WEIR_CLUSTER_KEY` on the coordinator: protected by NATS (TLS,
    /// credentials) only.
    Plain(Vec<StoredConnection>),
    /// Sealed with the cluster key (ChaCha20-Poly1305; nonce first), bound to
    /// the execution and epoch: a worker without the key, or a reply replayed for
    /// another lease, cannot open it.
    Sealed(Vec<u8>),
}

/// The environment variable holding the cluster key: 64 hex digits, the same on
/// the coordinator and every worker.
pub const CLUSTER_KEY_ENV: &str = "WEIR_CLUSTER_KEY";

/// The key sealing what travels from the coordinator to a worker.
#[derive(Clone)]
pub struct TransitKey(chacha20poly1305::Key);

/// Never printed: a `{:?}` of settings must not show the key.
impl std::fmt::Debug for TransitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransitKey(..)")
    }
}

impl TransitKey {
    /// From [`CLUSTER_KEY_ENV`]; `None` when it is not set.
    pub fn from_env() -> Result<Option<TransitKey>, ClusterError> {
        match std::env::var(CLUSTER_KEY_ENV) {
            Err(_) => Ok(None),
            Ok(text) => TransitKey::from_hex(text.trim()).map(Some),
        }
    }

    pub fn from_hex(text: &str) -> Result<TransitKey, ClusterError> {
        let bytes = hex::decode(text)
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| {
                ClusterError::Key(format!(
                    "{CLUSTER_KEY_ENV}: write 64 hex digits (32 random bytes)"
                ))
            })?;
        Ok(TransitKey(*chacha20poly1305::Key::from_slice(&bytes)))
    }

    /// The associated data binding a sealed start to its execution and epoch.
    pub fn binding(execution: ExecutionId, epoch: u64) -> Vec<u8> {
        format!("weir start: execution {execution} epoch {epoch}").into_bytes()
    }

    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, ClusterError> {
        use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
        let cipher = chacha20poly1305::ChaCha20Poly1305::new(&self.0);
        let nonce = chacha20poly1305::ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| ClusterError::Key("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, ClusterError> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        if sealed.len() < 12 {
            return Err(ClusterError::Key("a sealed start is too short".into()));
        }
        let (nonce, body) = sealed.split_at(12);
        chacha20poly1305::ChaCha20Poly1305::new(&self.0)
            .decrypt(
                chacha20poly1305::Nonce::from_slice(nonce),
                Payload { msg: body, aad },
            )
            .map_err(|_| {
                ClusterError::Key(format!(
                    "the start's connections do not open with this worker's {CLUSTER_KEY_ENV}"
                ))
            })
    }
}

/// [`crate::engine::RunOptions`] as it travels (the stop flag is the worker's own).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StartOptions {
    /// Where each task starts: the committed cursors when the execution resumes.
    pub resume: HashMap<String, String>,
    pub records: Option<HashMap<String, Vec<RecordCopy>>>,
    pub checkpoint_every: usize,
    pub capture: bool,
    pub dry_run: bool,
    pub holder: Option<String>,
    pub schema_baseline: Option<SchemaSnapshot>,
}

/// A worker's checkpoint: already scrubbed, under its epoch.
#[derive(Serialize, Deserialize)]
pub struct CheckpointRequest {
    pub execution: ExecutionId,
    pub epoch: u64,
    pub checkpoint: StoredCheckpoint,
}

/// The coordinator's answer to a [`CheckpointRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum CheckpointReply {
    /// On disk. `stop`: the coordinator is shutting down; end after the next
    /// batch, committed (the next run resumes).
    Committed { stop: bool },
    /// Refused: a later epoch holds the execution. Nothing was written.
    Stale { current: u64 },
    /// The coordinator has no such execution in hand.
    Gone,
    /// The store refused it (`interrupted`: out of room; the next run resumes).
    Refused { interrupted: bool, message: String },
}

/// How the worker's engine ended.
#[derive(Clone, Serialize, Deserialize)]
pub enum WorkerOutcome {
    Report(Box<ExecutionReport>),
    /// The engine refused or failed before a report (scrubbed text).
    Failed {
        message: String,
        schema_changes: Vec<TaskDrift>,
    },
}

#[derive(Serialize, Deserialize)]
pub struct FinishRequest {
    pub execution: ExecutionId,
    pub epoch: u64,
    pub outcome: WorkerOutcome,
}

/// The coordinator's answer to a [`FinishRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum FinishReply {
    /// The end is in the store (`ok`) or recording it failed; either way the
    /// execution is over: ack the message.
    Recorded {
        ok: bool,
    },
    /// The end is being recorded: ask again.
    Pending,
    Stale {
        current: u64,
    },
    Gone,
}

/// A worker's periodic sign of life.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub worker: String,
    /// Executions it runs now.
    pub executions: Vec<ExecutionId>,
}

/// Connects to `url` (retrying in the background while the server is away: the
/// client reconnects by itself and requests fail meanwhile).
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, ClusterError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .retry_on_initial_connect()
        .connect(url)
        .await
        .map_err(|e| ClusterError::nats("connect", e))
}

/// Creates (or finds) the stream, the consumer and the lease bucket. The
/// coordinator calls it; `lease` is the consumer's ack wait.
pub async fn ensure_setup(js: &jetstream::Context, lease: Duration) -> Result<(), ClusterError> {
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![WORK_SUBJECT.to_owned()],
            retention: jetstream::stream::RetentionPolicy::WorkQueue,
            // An execution id is published once; a retried publish inside this
            // window (the first one's ack was lost) is dropped by the server.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::nats("creating the work stream", e))?;
    stream
        .get_or_create_consumer(
            CONSUMER,
            jetstream::consumer::pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: lease,
                max_deliver: MAX_DELIVER,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ClusterError::nats("creating the workers' consumer", e))?;
    if js.get_key_value(LEASES).await.is_err() {
        // The bucket's stream made by hand, as `create_key_value` would make it:
        // that call first asks for the account's info, whose answer from the 2.9
        // server (Debian's) this client cannot read.
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{LEASES}"),
            subjects: vec![format!("$KV.{LEASES}.>")],
            max_messages_per_subject: 1,
            // Leases of long-finished executions go by themselves.
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_message_size: -1,
            max_bytes: -1,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::nats("creating the lease bucket", e))?;
    }
    plugins::ensure_bucket(js).await?;
    Ok(())
}

/// The KV key of execution `id`'s lease.
pub fn lease_key(id: ExecutionId) -> String {
    format!("execution-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_start_opens_only_with_the_key_for_its_execution_and_epoch() {
        let key = TransitKey::from_hex(&"ab".repeat(32)).unwrap();
        let plain = br#"[{"secrets":[["token","s3cr3t-value"]]}]"#;
        let sealed = key.seal(plain, &TransitKey::binding(7, 2)).unwrap();
        assert!(
            !sealed.windows(12).any(|w| w == b"s3cr3t-value"),
            "the secret is not in the sealed bytes"
        );
        assert_eq!(
            key.open(&sealed, &TransitKey::binding(7, 2)).unwrap(),
            plain
        );
        // Another epoch (a replayed reply) or another key: refused.
        assert!(key.open(&sealed, &TransitKey::binding(7, 3)).is_err());
        let other = TransitKey::from_hex(&"cd".repeat(32)).unwrap();
        assert!(other.open(&sealed, &TransitKey::binding(7, 2)).is_err());
        assert!(TransitKey::from_hex("abcd").is_err());
    }
}
