//! weir-store: the durable store — what weir remembers between runs, in one data directory.
//!
//! It holds connections (with their secrets encrypted at rest), projects (every applied
//! version of a project file), and executions (status, per-task counts and cursors, log,
//! failed records, staged records). It is an embedded sled database: one process owns the
//! directory at a time — sled locks it — which is also why every execution found
//! `Running` at [`Store::open`] must have been interrupted by a crash.
//!
//! What it is not: it runs nothing and knows nothing of plugins, wasmtime, mappings, the
//! engine or the CLI. Callers hand it plain data ([`types`]) and get plain data back; no
//! sled type crosses its API, so the database could be replaced without touching callers.
//! It does not redact: a record error's source record is stored as given.
//!
//! Layout (one sled tree each; every value is JSON starting with a format version,
//! `{"v":1,...}`, so a later weir can tell old data from corrupt data):
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `connections` | name | connection, secret values sealed |
//! | `projects` | name, NUL, version (u32 BE) | one project version |
//! | `project_heads` | name | first/latest version, deleted flag |
//! | `executions` | id (u64 BE) | execution without its log |
//! | `exec_by_project` | project, NUL, id (u64 BE) | execution summary |
//! | `exec_running` | id | marker: executions not finished |
//! | `exec_log`, `exec_errors`, `exec_staged` | id, seq (u64 BE each) | one line / record |
//! | `project_schemas` | project name | schema baseline (drift check): its entities' schemas at the last successful validation |
//!
//! Big-endian ids make sled's byte order the execution order, so "newest first" is a
//! reverse scan that stops at the limit, and one project's executions are one key range.

mod at_rest;
mod connections;
mod disk;
mod envelope;
mod executions;
mod keys;
mod plugins;
mod projects;
mod schemas;
mod secrets;
mod transactions;

#[cfg(test)]
mod tests;
pub mod types;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};

pub use secrets::{Derivation, MIN_KEY_MATERIAL_CHARS, SECRET_KEY_ENV, SecretKey};
pub use types::*;

use weir_names as names;

use at_rest::*;
use envelope::*;
use keys::*;
use transactions::*;

/// The format version this weir writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// The error given to executions found `Running` when the store opens.
pub const INTERRUPTED: &str = "interrupted: the process stopped before the execution finished";

/// Names become key prefixes; a bound keeps keys small and a NUL would break the
/// name/NUL/id key layout.
const MAX_NAME_BYTES: usize = 1024;

const MILLIS_PER_DAY: i64 = 86_400_000;

/// Everything that can go wrong in the store. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the data directory {dir} is in use by another weir process")]
    Locked { dir: PathBuf },
    #[error("store I/O error: {}", disk::io_text(.0))]
    Io(std::io::Error),
    /// An I/O error on the data directory itself: named, because "No such file
    /// or directory" alone does not say which (a parent removed under a running
    /// daemon, a mount gone).
    #[error("store I/O error on the data directory {}: {}", dir.display(), disk::io_text(source))]
    DirIo {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the data directory {dir} is not writable ({reason}); weir keeps its store there — check the mount and its permissions"
    )]
    NotWritable { dir: PathBuf, reason: String },
    #[error(
        "the data directory {dir} has {} MiB free, below the {} MiB weir keeps free so its store never meets a full disk; free some space (or lower WEIR_MIN_FREE_MB) and try again",
        free / (1 << 20),
        needed / (1 << 20)
    )]
    LowSpace {
        dir: PathBuf,
        free: u64,
        needed: u64,
    },
    #[error("store database error: {reason}")]
    Database { reason: String },
    #[error("corrupt value at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "the value at {key} has format version {found_version}, but this weir reads version {FORMAT_VERSION}; use the weir that wrote it"
    )]
    Format { key: String, found_version: u64 },
    #[error(
        "no secret key: set WEIR_SECRET_KEY or give a key file to store or read connection secrets"
    )]
    NoSecretKey,
    #[error(
        "cannot decrypt the secrets of connection {connection:?}: the secret key is not the one they were stored with"
    )]
    Decrypt { connection: String },
    #[error("the secret key from {origin} is refused: {reason}")]
    WeakKey { origin: String, reason: String },
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no {what} named {name:?}")]
    NotFound { what: &'static str, name: String },
    #[error("execution {id} is not running (it has finished)")]
    NotRunning { id: ExecutionId },
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("cannot encode a value for the store: {reason}")]
    Encode { reason: String },
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> StoreError {
        StoreError::Io(e)
    }
}

/// Unix time in milliseconds. A clock before 1970 gives 0 rather than a panic.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The durable store. Cheap to share by reference across threads (`&Store` is enough for
/// every operation but [`Store::set_limits`]).
pub struct Store {
    db: sled::Db,
    dir: PathBuf,
    connections: sled::Tree,
    projects: sled::Tree,
    project_heads: sled::Tree,
    executions: sled::Tree,
    exec_by_project: sled::Tree,
    exec_running: sled::Tree,
    exec_log: sled::Tree,
    exec_errors: sled::Tree,
    exec_staged: sled::Tree,
    plugins: sled::Tree,
    project_state: sled::Tree,
    /// Project name → the schemas recorded at its last successful validation.
    project_schemas: sled::Tree,
    key: Option<secrets::StoreKey>,
    /// How this store derives its key from the administrator's material.
    derivation: Derivation,
    limits: StoreLimits,
    interrupted: Vec<ExecutionId>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("has_secret_key", &self.key.is_some())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating) the store in `dir` (the database lives in `dir/db`).
    ///
    /// sled locks the directory, so only one process uses it at a time; therefore every
    /// execution still `Running` when the store opens was interrupted by a crash. Each is
    /// marked `Error` with the error [`INTERRUPTED`], keeping its counts and cursors (a
    /// retry resumes from them), with that line appended to its log and `finished_at` set.
    /// Their ids are in [`Store::interrupted_on_open`].
    pub fn open(dir: &Path, key: Option<SecretKey>) -> Result<Store, StoreError> {
        Store::open_with(dir, key, StoreLimits::default())
    }

    /// [`Store::open`] with limits from the start: a data directory with less than
    /// `limits.min_free_bytes` free is refused before anything is written
    /// ([`StoreError::LowSpace`]), one that cannot be written is
    /// [`StoreError::NotWritable`]; either way the store on disk is left as it was.
    pub fn open_with(
        dir: &Path,
        key: Option<SecretKey>,
        limits: StoreLimits,
    ) -> Result<Store, StoreError> {
        let not_writable = |e: &std::io::Error| StoreError::NotWritable {
            dir: dir.to_path_buf(),
            reason: disk::io_text(e),
        };
        let dir_io = |source| StoreError::DirIo {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            if disk::is_not_writable(&e) {
                not_writable(&e)
            } else {
                dir_io(e)
            }
        })?;
        check_free_space(dir, limits.min_free_bytes)?;
        let db_dir = dir.join("db");
        match disk::remove_unfinished_snapshots(&db_dir) {
            Ok(removed) if !removed.is_empty() => tracing::warn!(
                dir = %db_dir.display(),
                files = ?removed,
                "removed a database snapshot whose writing was cut short (a full disk or a crash)"
            ),
            Ok(_) => {}
            Err(e) if disk::is_not_writable(&e) => return Err(not_writable(&e)),
            Err(e) => return Err(dir_io(e)),
        }
        let config = sled::Config::new()
            .path(dir.join("db"))
            // sled's default cache is 1 GiB; the store's hot set (summaries, the running
            // executions) is small, and the host has plugins to give memory to.
            .cache_capacity(128 * 1024 * 1024);
        // A store closed a moment ago in this process keeps its lock until sled's
        // flusher thread has exited (up to its 500 ms period): wait that out before
        // calling the directory held by someone else.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(io))
                    if io.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => break other,
            }
        }
        .map_err(|e| match e {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked {
                    dir: dir.to_path_buf(),
                }
            }
            sled::Error::Io(io) if disk::is_not_writable(&io) => not_writable(&io),
            sled::Error::Io(io) => dir_io(io),
            other => db_err(other),
        })?;
        let tree = |name: &str| db.open_tree(name).map_err(db_err);
        let connections = tree("connections")?;
        let (mut derivation, salt) = key_derivation(&db, &connections)?;
        let key = match key {
            None => None,
            Some(material) if derivation == Derivation::LegacySha256 => {
                match migrate_to_salted(&db, &connections, &material)? {
                    Some(salted) => {
                        derivation = Derivation::Salted;
                        Some(salted)
                    }
                    None => Some(material.for_store(derivation, &salt)?),
                }
            }
            Some(material) => Some(material.for_store(derivation, &salt)?),
        };
        let mut store = Store {
            connections,
            projects: tree("projects")?,
            project_heads: tree("project_heads")?,
            executions: tree("executions")?,
            exec_by_project: tree("exec_by_project")?,
            exec_running: tree("exec_running")?,
            exec_log: tree("exec_log")?,
            exec_errors: tree("exec_errors")?,
            exec_staged: tree("exec_staged")?,
            plugins: tree("plugins")?,
            project_state: tree("project_state")?,
            project_schemas: tree("project_schemas")?,
            db,
            dir: dir.to_path_buf(),
            key,
            derivation,
            limits,
            interrupted: Vec::new(),
        };
        store.recover_interrupted()?;
        Ok(store)
    }

    /// Executions that were `Running` when the store opened and are now `Error`
    /// ("interrupted"), oldest first.
    pub fn interrupted_on_open(&self) -> &[ExecutionId] {
        &self.interrupted
    }

    pub fn set_limits(&mut self, limits: StoreLimits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// How this store derives its key (recorded in it).
    pub fn key_derivation(&self) -> Derivation {
        self.derivation
    }

    /// Whether a secret key was given at open.
    pub fn has_secret_key(&self) -> bool {
        self.key.is_some()
    }

    /// Writes everything to disk and waits for it. sled also flushes on its own every
    /// half second; call this where losing that half second matters (end of a run, exit).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(db_err)?;
        Ok(())
    }

    fn recover_interrupted(&mut self) -> Result<(), StoreError> {
        // The running markers, not a scan of every execution: opening stays fast with
        // 100,000 executions stored.
        let ids = self
            .exec_running
            .iter()
            .keys()
            .map(|k| id_from_key_tail("exec_running", &k.map_err(db_err)?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let line = encode(&LogLine {
            line: INTERRUPTED.to_string(),
        })?;
        for id in ids {
            let now = now_millis();
            let was_running = (
                &self.executions,
                &self.exec_by_project,
                &self.exec_log,
                &self.exec_running,
            )
                .transaction(|(executions, index, log, running)| {
                    running.remove(&id_key(id))?;
                    let Some(mut rec) = tx_exec(executions, id)? else {
                        return Ok(false);
                    };
                    if rec.status != ExecStatus::Running {
                        return Ok(false);
                    }
                    rec.status = ExecStatus::Error;
                    rec.error = Some(INTERRUPTED.to_string());
                    rec.interrupted = true;
                    rec.finished_at = Some(now);
                    rec.updated_at = now;
                    // Past the log limit too: this line is the one that explains the status.
                    log.insert(&seq_key(id, rec.log_stored), line.clone())?;
                    rec.log_stored += 1;
                    tx_put_exec(executions, index, &rec)?;
                    Ok(true)
                })
                .map_err(tx_err)?;
            if was_running {
                tracing::warn!(execution = id, "{INTERRUPTED}");
                self.interrupted.push(id);
            }
        }
        if !self.interrupted.is_empty() {
            self.flush()?;
        }
        Ok(())
    }
}
