//! The durable store: what weir remembers between runs, in one data directory.
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
//!
//! Big-endian ids make sled's byte order the execution order, so "newest first" is a
//! reverse scan that stops at the limit, and one project's executions are one key range.

mod disk;
mod secrets;

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

// ---------------------------------------------------------------------------------------
// Envelope: every value is `{"v":1, ...fields}`.

/// Writes `{"v":1,` followed by the body's own fields. The body must serialize to a JSON
/// object with no field named `v` (true of every at-rest type here).
fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(body).map_err(|e| StoreError::Encode {
        reason: e.to_string(),
    })?;
    let Some(rest) = json.strip_prefix(b"{") else {
        return Err(StoreError::Encode {
            reason: "a stored value must be a JSON object".to_string(),
        });
    };
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"{\"v\":1");
    if rest != b"}" {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    Ok(out)
}

#[derive(Deserialize)]
struct VersionOnly {
    v: Option<serde_json::Value>,
}

/// Reads a value written by `encode`. The body is parsed from the whole object (serde
/// ignores the `v` field), so the check costs a prefix comparison on the common path.
fn decode<T: DeserializeOwned>(key: impl Fn() -> String, bytes: &[u8]) -> Result<T, StoreError> {
    let current = bytes.starts_with(b"{\"v\":1,") || bytes == b"{\"v\":1}";
    if !current {
        // Not as this weir writes it: tell an unknown version from damage.
        match serde_json::from_slice::<VersionOnly>(bytes) {
            Ok(VersionOnly { v: Some(v) }) => match v.as_u64() {
                Some(FORMAT_VERSION) => {}
                Some(found_version) => {
                    return Err(StoreError::Format {
                        key: key(),
                        found_version,
                    });
                }
                None => {
                    return Err(StoreError::Corrupt {
                        key: key(),
                        reason: format!("format version {v} is not a number"),
                    });
                }
            },
            Ok(VersionOnly { v: None }) => {
                return Err(StoreError::Corrupt {
                    key: key(),
                    reason: "no format version".to_string(),
                });
            }
            Err(e) => {
                return Err(StoreError::Corrupt {
                    key: key(),
                    reason: e.to_string(),
                });
            }
        }
    }
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key(),
        reason: e.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// At-rest forms (private: the disk format is not the API).

#[derive(Serialize, Deserialize)]
struct ConnectionAtRest {
    name: String,
    plugin: String,
    config: Vec<(String, String)>,
    /// Secret name → hex of nonce + ciphertext + tag.
    secrets: Vec<(String, String)>,
    directory: Option<PathBuf>,
    http_hosts: Vec<String>,
    /// Absent in connections stored before it existed: false.
    #[serde(default)]
    http_internal: bool,
    state: ConnectionState,
    updated_at: i64,
}

#[derive(Serialize, Deserialize)]
struct ProjectAtRest {
    name: String,
    version: u32,
    text: String,
    base_dir: PathBuf,
    created_at: i64,
}

/// Versions of a project are dense from `first_version` to `latest_version`, so deleting
/// them needs no range scan inside a transaction. A deleted project keeps its head, so a
/// re-applied project continues the numbering: executions name (project, version), and a
/// reused version number would point them at the wrong text.
#[derive(Serialize, Deserialize)]
struct ProjectHead {
    first_version: u32,
    latest_version: u32,
    updated_at: i64,
    deleted: bool,
}

/// An execution without its log, record errors and staged records (their own trees), so
/// rewriting it at every checkpoint costs the same at the first and the last.
#[derive(Clone, Serialize, Deserialize)]
struct ExecRecord {
    id: ExecutionId,
    project: String,
    project_version: u32,
    trigger: Trigger,
    parent: Option<ExecutionId>,
    status: ExecStatus,
    error: Option<String>,
    started_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    tasks: Vec<TaskState>,
    log_stored: u64,
    log_dropped: u64,
    record_errors_stored: u64,
    record_errors_dropped: u64,
    /// Bytes of the stored record errors (against `max_record_error_bytes`).
    #[serde(default)]
    record_error_bytes: u64,
    staged_stored: u64,
    staged_dropped: u64,
}

impl ExecRecord {
    fn summary(&self) -> ExecutionSummary {
        let mut s = ExecutionSummary {
            id: self.id,
            project: self.project.clone(),
            project_version: self.project_version,
            trigger: self.trigger,
            parent: self.parent,
            status: self.status,
            started_at: self.started_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
            error: self.error.clone(),
            read: 0,
            inserted: 0,
            updated: 0,
            failed: 0,
        };
        for t in &self.tasks {
            s.read = s.read.saturating_add(t.read);
            s.inserted = s.inserted.saturating_add(t.inserted);
            s.updated = s.updated.saturating_add(t.updated);
            s.failed = s.failed.saturating_add(t.failed);
        }
        s
    }

    fn into_execution(self, log: Vec<String>) -> Execution {
        Execution {
            id: self.id,
            project: self.project,
            project_version: self.project_version,
            trigger: self.trigger,
            parent: self.parent,
            status: self.status,
            error: self.error,
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
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LogLine {
    line: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {}

// ---------------------------------------------------------------------------------------
// Keys.

fn id_key(id: ExecutionId) -> [u8; 8] {
    id.to_be_bytes()
}

fn seq_key(id: ExecutionId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn name_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 9);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

fn project_key(name: &str, version: u32) -> Vec<u8> {
    let mut k = name_prefix(name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn index_key(project: &str, id: ExecutionId) -> Vec<u8> {
    let mut k = name_prefix(project);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The id at the end of an `exec_by_project` key or an `executions`/`exec_running` key.
fn id_from_key_tail(tree: &str, key: &[u8]) -> Result<ExecutionId, StoreError> {
    let tail = key
        .len()
        .checked_sub(8)
        .map(|start| &key[start..])
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("{tree}/{}", String::from_utf8_lossy(key)),
            reason: "key too short to hold an execution id".to_string(),
        })?;
    let mut b = [0u8; 8];
    b.copy_from_slice(tail);
    Ok(u64::from_be_bytes(b))
}

fn check_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_BYTES {
        "it is longer than 1024 bytes"
    } else if let Err(e) = crate::names::normalize(name) {
        return Err(StoreError::Invalid {
            what,
            reason: format!("{name:?}: {e}"),
        });
    } else if !crate::names::is_nfc(name) {
        // Callers normalize (the project parser does); two spellings of one name
        // must not become two records.
        "it is not in Unicode normalization form C (NFC)"
    } else if name.contains('/') || name.contains('\\') {
        // Names become file names (a project's `<name>.toml`) and URL segments.
        "it contains a path separator (/ or \\)"
    } else if name == "." || name == ".." {
        "it is a path component (. or ..)"
    } else {
        return Ok(());
    };
    Err(StoreError::Invalid {
        what,
        reason: format!("{name:?}: {reason}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

// ---------------------------------------------------------------------------------------
// sled errors stay inside this module.

/// Refuses with [`StoreError::LowSpace`] when `dir` has less than `needed` bytes
/// free (0: no check).
fn check_free_space(dir: &Path, needed: u64) -> Result<(), StoreError> {
    if needed == 0 {
        return Ok(());
    }
    let free = disk::free_bytes(dir).map_err(|source| StoreError::DirIo {
        dir: dir.to_path_buf(),
        source,
    })?;
    if free < needed {
        tracing::error!(dir = %dir.display(), free, needed, "data directory low on space; store writes refused");
        return Err(StoreError::LowSpace {
            dir: dir.to_path_buf(),
            free,
            needed,
        });
    }
    Ok(())
}

const META_DERIVATION: &[u8] = b"meta/key_derivation";
const META_SALT: &[u8] = b"meta/key_salt";

/// How the store in `db` derives its key, and its salt. A store without a record
/// is either new — it gets a fresh salt and the salted derivation — or was made
/// before salting: if it holds sealed secrets, they were sealed with SHA-256 of
/// the material, and it keeps that (recorded, so the answer never changes).
fn key_derivation(
    db: &sled::Db,
    connections: &sled::Tree,
) -> Result<(Derivation, Vec<u8>), StoreError> {
    let salt = || -> Result<Vec<u8>, StoreError> {
        Ok(db
            .get(META_SALT)
            .map_err(db_err)?
            .map(|s| s.to_vec())
            .unwrap_or_default())
    };
    if let Some(name) = db.get(META_DERIVATION).map_err(db_err)? {
        let name = String::from_utf8_lossy(&name).into_owned();
        let derivation = Derivation::from_name(&name).ok_or_else(|| StoreError::Corrupt {
            key: "meta/key_derivation".to_owned(),
            reason: format!("unknown key derivation {name:?} (a newer weir?)"),
        })?;
        let salt = salt()?;
        if derivation == Derivation::Salted && salt.len() < secrets::SALT_LEN {
            return Err(StoreError::Corrupt {
                key: "meta/key_salt".to_owned(),
                reason: format!("{} bytes; {} expected", salt.len(), secrets::SALT_LEN),
            });
        }
        return Ok((derivation, salt));
    }
    let mut sealed = false;
    for item in connections.iter() {
        let (name, bytes) = item.map_err(db_err)?;
        let rest: ConnectionAtRest = decode(
            || format!("connections/{}", String::from_utf8_lossy(&name)),
            &bytes,
        )?;
        if !rest.secrets.is_empty() {
            sealed = true;
            break;
        }
    }
    let (derivation, salt) = if sealed {
        (Derivation::LegacySha256, Vec::new())
    } else {
        (Derivation::Salted, secrets::new_salt())
    };
    // The salt first: a crash between the two leaves no record, and the next open
    // decides again the same way (a salt alone is never read).
    db.insert(META_SALT, salt.as_slice()).map_err(db_err)?;
    db.insert(META_DERIVATION, derivation.name().as_bytes())
        .map_err(db_err)?;
    db.flush().map_err(db_err)?;
    Ok((derivation, salt))
}

/// Re-seals the secrets of a store made before salting under the salted
/// derivation, with a fresh salt: the re-sealed secrets, the salt and the new
/// derivation are written in one transaction, so a crash leaves the store wholly
/// old or wholly new. `None`, with nothing changed, when `material` does not open
/// every secret (a wrong key: it is reported where it always was, at first use).
fn migrate_to_salted(
    db: &sled::Db,
    connections: &sled::Tree,
    material: &SecretKey,
) -> Result<Option<secrets::StoreKey>, StoreError> {
    let old = material.for_store(Derivation::LegacySha256, &[])?;
    let salt = secrets::new_salt();
    let new = material.for_store(Derivation::Salted, &salt)?;
    let mut rewritten = Vec::new();
    let mut count = 0;
    for item in connections.iter() {
        let (name, bytes) = item.map_err(db_err)?;
        let key = || format!("connections/{}", String::from_utf8_lossy(&name));
        let mut rest: ConnectionAtRest = decode(key, &bytes)?;
        for (secret, sealed_hex) in &mut rest.secrets {
            let sealed = unhex(sealed_hex).ok_or_else(|| StoreError::Corrupt {
                key: key(),
                reason: format!("secret {secret:?} is not hex"),
            })?;
            let Ok(plain) = secrets::open(&old, &rest.name, secret, &sealed) else {
                return Ok(None);
            };
            *sealed_hex = hex(&secrets::seal(&new, &rest.name, secret, &plain)?);
            count += 1;
        }
        rewritten.push((name, encode(&rest)?));
    }
    let meta: &sled::Tree = db;
    (meta, connections)
        .transaction(|(meta, connections)| {
            for (name, bytes) in &rewritten {
                connections.insert(name.clone(), bytes.clone())?;
            }
            meta.insert(META_SALT, salt.as_slice())?;
            meta.insert(META_DERIVATION, Derivation::Salted.name().as_bytes())?;
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        })
        .map_err(tx_err)?;
    db.flush().map_err(db_err)?;
    tracing::info!(
        secrets = count,
        "secrets re-sealed under a salted key (the store predates salting)"
    );
    Ok(Some(new))
}

fn db_err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(e) => StoreError::Io(e),
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            key: "<database file>".to_string(),
            reason: match at {
                Some(at) => format!("sled reports corruption at {at}"),
                None => "sled reports corruption".to_string(),
            },
        },
        other => StoreError::Database {
            reason: other.to_string(),
        },
    }
}

fn tx_err(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => db_err(e),
    }
}

/// Inside a transaction closure: a store error aborts the transaction.
fn abort<T>(r: Result<T, StoreError>) -> Result<T, ConflictableTransactionError<StoreError>> {
    r.map_err(ConflictableTransactionError::Abort)
}

/// Reads and decodes one execution record inside a transaction.
fn tx_exec(
    executions: &TransactionalTree,
    id: ExecutionId,
) -> ConflictableTransactionResult<Option<ExecRecord>, StoreError> {
    match executions.get(id_key(id))? {
        None => Ok(None),
        Some(bytes) => abort(decode(|| format!("executions/{id}"), &bytes)).map(Some),
    }
}

/// Writes an execution record and its index summary inside a transaction.
fn tx_put_exec(
    executions: &TransactionalTree,
    index: &TransactionalTree,
    rec: &ExecRecord,
) -> ConflictableTransactionResult<(), StoreError> {
    executions.insert(&id_key(rec.id), abort(encode(rec))?)?;
    index.insert(
        index_key(&rec.project, rec.id),
        abort(encode(&rec.summary()))?,
    )?;
    Ok(())
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
        let db = sled::Config::new()
            .path(dir.join("db"))
            // sled's default cache is 1 GiB; the store's hot set (summaries, the running
            // executions) is small, and the host has plugins to give memory to.
            .cache_capacity(128 * 1024 * 1024)
            .open()
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

    // -----------------------------------------------------------------------------------
    // Connections

    /// Stores (replacing) a connection. Secret values are encrypted before they reach
    /// sled; storing any secret without a key is `NoSecretKey`. `updated_at` is set to now.
    pub fn put_connection(&self, c: &StoredConnection) -> Result<(), StoreError> {
        check_name("connection name", &c.name)?;
        let secrets = if c.secrets.is_empty() {
            Vec::new()
        } else {
            let key = self.key.as_ref().ok_or(StoreError::NoSecretKey)?;
            c.secrets
                .iter()
                .map(|(name, value)| {
                    Ok((
                        name.clone(),
                        hex(&secrets::seal(key, &c.name, name, value)?),
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        };
        let rest = ConnectionAtRest {
            name: c.name.clone(),
            plugin: c.plugin.clone(),
            config: c.config.clone(),
            secrets,
            directory: c.directory.clone(),
            http_hosts: c.http_hosts.clone(),
            http_internal: c.http_internal,
            state: c.state.clone(),
            updated_at: now_millis(),
        };
        self.connections
            .insert(c.name.as_bytes(), encode(&rest)?)
            .map_err(db_err)?;
        Ok(())
    }

    /// A connection with its secrets decrypted. Secrets stored and no key given is
    /// `NoSecretKey`; a key that does not open them is `Decrypt` naming the connection.
    pub fn connection(&self, name: &str) -> Result<Option<StoredConnection>, StoreError> {
        let Some(bytes) = self.connections.get(name.as_bytes()).map_err(db_err)? else {
            return Ok(None);
        };
        let rest: ConnectionAtRest = decode(|| format!("connections/{name}"), &bytes)?;
        let secrets = if rest.secrets.is_empty() {
            Vec::new()
        } else {
            let key = self.key.as_ref().ok_or(StoreError::NoSecretKey)?;
            rest.secrets
                .iter()
                .map(|(secret, sealed)| {
                    let sealed = unhex(sealed).ok_or_else(|| StoreError::Corrupt {
                        key: format!("connections/{name}"),
                        reason: format!("secret {secret:?} is not hex"),
                    })?;
                    Ok((
                        secret.clone(),
                        secrets::open(key, &rest.name, secret, &sealed)?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        };
        Ok(Some(StoredConnection {
            name: rest.name,
            plugin: rest.plugin,
            config: rest.config,
            secrets,
            directory: rest.directory,
            http_hosts: rest.http_hosts,
            http_internal: rest.http_internal,
            state: rest.state,
            updated_at: rest.updated_at,
        }))
    }

    /// Every connection, sorted by name, with secret names only (needs no key).
    pub fn connections(&self) -> Result<Vec<ConnectionSummary>, StoreError> {
        self.connections
            .iter()
            .map(|kv| {
                let (k, v) = kv.map_err(db_err)?;
                let rest: ConnectionAtRest = decode(
                    || format!("connections/{}", String::from_utf8_lossy(&k)),
                    &v,
                )?;
                Ok(ConnectionSummary {
                    name: rest.name,
                    plugin: rest.plugin,
                    secret_names: rest.secrets.into_iter().map(|(n, _)| n).collect(),
                    state: rest.state,
                    updated_at: rest.updated_at,
                })
            })
            .collect()
    }

    /// Removes a connection; false if there was none.
    pub fn delete_connection(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .connections
            .remove(name.as_bytes())
            .map_err(db_err)?
            .is_some())
    }

    /// Records whether a connection works (after a check or a run). Needs no key: the
    /// sealed secrets are carried over untouched.
    pub fn set_connection_state(
        &self,
        name: &str,
        state: ConnectionState,
    ) -> Result<(), StoreError> {
        let now = now_millis();
        self.connections
            .transaction(|t| {
                let Some(bytes) = t.get(name.as_bytes())? else {
                    return abort(Err(StoreError::NotFound {
                        what: "connection",
                        name: name.to_string(),
                    }));
                };
                let mut rest: ConnectionAtRest =
                    abort(decode(|| format!("connections/{name}"), &bytes))?;
                rest.state = state.clone();
                rest.updated_at = now;
                t.insert(name.as_bytes(), abort(encode(&rest))?)?;
                Ok(())
            })
            .map_err(tx_err)
    }

    // -----------------------------------------------------------------------------------
    // Projects

    /// Stores `text` as the project's next version, unless it and `base_dir` equal the
    /// latest version's. Returns (the latest version, whether it was created now).
    pub fn apply_project(
        &self,
        name: &str,
        text: &str,
        base_dir: &Path,
    ) -> Result<(u32, bool), StoreError> {
        check_name("project name", name)?;
        let now = now_millis();
        (&self.projects, &self.project_heads)
            .transaction(|(projects, heads)| {
                let head: Option<ProjectHead> = match heads.get(name.as_bytes())? {
                    Some(b) => Some(abort(decode(|| format!("project_heads/{name}"), &b))?),
                    None => None,
                };
                let (first, version) = match head {
                    None => (1, 1),
                    Some(h) => {
                        if !h.deleted {
                            let key = || format!("projects/{name}@{}", h.latest_version);
                            let Some(b) = projects.get(project_key(name, h.latest_version))? else {
                                return abort(Err(StoreError::Corrupt {
                                    key: key(),
                                    reason: "the latest version is missing".to_string(),
                                }));
                            };
                            let latest: ProjectAtRest = abort(decode(key, &b))?;
                            if latest.text == text && latest.base_dir == base_dir {
                                return Ok((h.latest_version, false));
                            }
                        }
                        let Some(next) = h.latest_version.checked_add(1) else {
                            return abort(Err(StoreError::Invalid {
                                what: "project version",
                                reason: format!("project {name:?} has run out of versions"),
                            }));
                        };
                        (if h.deleted { next } else { h.first_version }, next)
                    }
                };
                let project = ProjectAtRest {
                    name: name.to_string(),
                    version,
                    text: text.to_string(),
                    base_dir: base_dir.to_path_buf(),
                    created_at: now,
                };
                projects.insert(project_key(name, version), abort(encode(&project))?)?;
                let head = ProjectHead {
                    first_version: first,
                    latest_version: version,
                    updated_at: now,
                    deleted: false,
                };
                heads.insert(name.as_bytes(), abort(encode(&head))?)?;
                Ok((version, true))
            })
            .map_err(tx_err)
    }

    fn project_head(&self, name: &str) -> Result<Option<ProjectHead>, StoreError> {
        match self.project_heads.get(name.as_bytes()).map_err(db_err)? {
            None => Ok(None),
            Some(b) => {
                let h: ProjectHead = decode(|| format!("project_heads/{name}"), &b)?;
                Ok((!h.deleted).then_some(h))
            }
        }
    }

    /// One version of a project (`None` = the latest).
    pub fn project(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredProject>, StoreError> {
        let Some(head) = self.project_head(name)? else {
            return Ok(None);
        };
        let version = version.unwrap_or(head.latest_version);
        if version < head.first_version || version > head.latest_version {
            return Ok(None);
        }
        let Some(b) = self
            .projects
            .get(project_key(name, version))
            .map_err(db_err)?
        else {
            return Ok(None);
        };
        let p: ProjectAtRest = decode(|| format!("projects/{name}@{version}"), &b)?;
        Ok(Some(StoredProject {
            name: p.name,
            version: p.version,
            text: p.text,
            base_dir: p.base_dir,
            created_at: p.created_at,
        }))
    }

    /// Every project, sorted by name (reads no project text).
    pub fn projects(&self) -> Result<Vec<ProjectSummary>, StoreError> {
        let mut out = Vec::new();
        for kv in self.project_heads.iter() {
            let (k, v) = kv.map_err(db_err)?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let h: ProjectHead = decode(|| format!("project_heads/{name}"), &v)?;
            if !h.deleted {
                out.push(ProjectSummary {
                    name,
                    latest_version: h.latest_version,
                    updated_at: h.updated_at,
                });
            }
        }
        Ok(out)
    }

    /// Removes every version of a project and its schedule state (its executions stay).
    /// False if there was none.
    pub fn delete_project(&self, name: &str) -> Result<bool, StoreError> {
        let now = now_millis();
        self.project_state.remove(name.as_bytes()).map_err(db_err)?;
        (&self.projects, &self.project_heads)
            .transaction(|(projects, heads)| {
                let Some(b) = heads.get(name.as_bytes())? else {
                    return Ok(false);
                };
                let mut h: ProjectHead = abort(decode(|| format!("project_heads/{name}"), &b))?;
                if h.deleted {
                    return Ok(false);
                }
                for version in h.first_version..=h.latest_version {
                    projects.remove(project_key(name, version))?;
                }
                h.deleted = true;
                h.updated_at = now;
                heads.insert(name.as_bytes(), abort(encode(&h))?)?;
                Ok(true)
            })
            .map_err(tx_err)
    }

    // -----------------------------------------------------------------------------------
    // Executions

    /// Records a new `Running` execution with zeroed tasks; returns its id.
    pub fn begin_execution(&self, new: NewExecution) -> Result<ExecutionId, StoreError> {
        check_name("project name", &new.project)?;
        check_free_space(&self.dir, self.limits.min_free_bytes)?;
        // A plain counter, not sled's `generate_id`: that one jumps by a million
        // after each restart, and people type execution ids.
        let next = self
            .db
            .update_and_fetch(b"meta/next_execution_id", |old| {
                let n = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                Some(n.saturating_add(1).to_be_bytes().to_vec())
            })
            .map_err(db_err)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Database {
                reason: "cannot allocate an execution id".to_string(),
            })?;
        let id = next;
        let now = now_millis();
        let rec = ExecRecord {
            id,
            project: new.project,
            project_version: new.project_version,
            trigger: new.trigger,
            parent: new.parent,
            status: ExecStatus::Running,
            error: None,
            started_at: now,
            updated_at: now,
            finished_at: None,
            tasks: new.tasks.into_iter().map(TaskState::new).collect(),
            log_stored: 0,
            log_dropped: 0,
            record_errors_stored: 0,
            record_errors_dropped: 0,
            record_error_bytes: 0,
            staged_stored: 0,
            staged_dropped: 0,
        };
        let marker = encode(&Marker {})?;
        (&self.executions, &self.exec_by_project, &self.exec_running)
            .transaction(|(executions, index, running)| {
                tx_put_exec(executions, index, &rec)?;
                running.insert(&id_key(id), marker.clone())?;
                Ok(())
            })
            .map_err(tx_err)?;
        Ok(id)
    }

    /// Saves an execution's progress atomically (one sled transaction): replaces the
    /// named tasks' states, appends log lines, record errors and staged records — past the
    /// limits they are counted as dropped, not stored — and bumps `updated_at`. A crash
    /// leaves the execution at its previous checkpoint or this one, never between; it
    /// returns only once the checkpoint is on disk.
    pub fn checkpoint(&self, id: ExecutionId, cp: Checkpoint) -> Result<(), StoreError> {
        // The bulk of what the store writes comes through here (logs, record errors,
        // staged records), so this is where a filling disk is noticed in time.
        check_free_space(&self.dir, self.limits.min_free_bytes)?;
        // Encoded once, outside the transaction: sled may run the closure more than once.
        let log = cp
            .log
            .iter()
            .map(|line| encode(&LogLine { line: line.clone() }))
            .collect::<Result<Vec<_>, _>>()?;
        let errors = cp
            .record_errors
            .iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()?;
        let staged = cp
            .staged
            .iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()?;
        let limits = &self.limits;
        let now = now_millis();
        (
            &self.executions,
            &self.exec_by_project,
            &self.exec_log,
            &self.exec_errors,
            &self.exec_staged,
        )
            .transaction(|(executions, index, log_tree, errors_tree, staged_tree)| {
                let Some(mut rec) = tx_exec(executions, id)? else {
                    return abort(Err(StoreError::NotFound {
                        what: "execution",
                        name: id.to_string(),
                    }));
                };
                if rec.status != ExecStatus::Running {
                    return abort(Err(StoreError::NotRunning { id }));
                }
                for task in &cp.tasks {
                    match rec.tasks.iter_mut().find(|t| t.name == task.name) {
                        Some(t) => *t = task.clone(),
                        None => rec.tasks.push(task.clone()),
                    }
                }
                append(
                    log_tree,
                    id,
                    &log,
                    limits.max_log_lines,
                    &mut rec.log_stored,
                    &mut rec.log_dropped,
                )?;
                let errors = within_bytes(
                    &errors,
                    limits.max_record_error_bytes,
                    &mut rec.record_error_bytes,
                );
                rec.record_errors_dropped += (cp.record_errors.len() - errors.len()) as u64;
                append(
                    errors_tree,
                    id,
                    errors,
                    limits.max_record_errors,
                    &mut rec.record_errors_stored,
                    &mut rec.record_errors_dropped,
                )?;
                append(
                    staged_tree,
                    id,
                    &staged,
                    limits.max_staged_per_execution,
                    &mut rec.staged_stored,
                    &mut rec.staged_dropped,
                )?;
                rec.updated_at = now;
                tx_put_exec(executions, index, &rec)
            })
            .map_err(tx_err)?;
        // The destination has already made this batch durable; the cursor must be too,
        // or a crash within sled's half-second flush window would replay committed
        // records (harmless for upserts, but counts and the log would go back in time).
        self.flush()
    }

    /// Ends a `Running` execution with a final status (not `Running`).
    pub fn finish_execution(
        &self,
        id: ExecutionId,
        status: ExecStatus,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        if status == ExecStatus::Running {
            return Err(StoreError::Invalid {
                what: "final status",
                reason: "an execution cannot finish as Running".to_string(),
            });
        }
        let now = now_millis();
        (&self.executions, &self.exec_by_project, &self.exec_running)
            .transaction(|(executions, index, running)| {
                let Some(mut rec) = tx_exec(executions, id)? else {
                    return abort(Err(StoreError::NotFound {
                        what: "execution",
                        name: id.to_string(),
                    }));
                };
                if rec.status != ExecStatus::Running {
                    return abort(Err(StoreError::NotRunning { id }));
                }
                rec.status = status;
                rec.error = error.clone();
                rec.finished_at = Some(now);
                rec.updated_at = now;
                tx_put_exec(executions, index, &rec)?;
                running.remove(&id_key(id))?;
                Ok(())
            })
            .map_err(tx_err)
    }

    fn exec_record(&self, id: ExecutionId) -> Result<Option<ExecRecord>, StoreError> {
        match self.executions.get(id_key(id)).map_err(db_err)? {
            None => Ok(None),
            Some(b) => decode(|| format!("executions/{id}"), &b).map(Some),
        }
    }

    /// One execution with its log (not its record errors or staged records).
    pub fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        let Some(rec) = self.exec_record(id)? else {
            return Ok(None);
        };
        let log = self
            .exec_log
            .scan_prefix(id_key(id))
            .map(|kv| {
                let (k, v) = kv.map_err(db_err)?;
                let line: LogLine = decode(|| seq_key_name("exec_log", &k), &v)?;
                Ok(line.line)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(rec.into_execution(log)))
    }

    /// Executions matching `filter`, newest first. One project's are one key range of the
    /// project index, read backwards until the limit; without a project filter the main
    /// tree is read backwards. Neither path loads logs, errors or staged records.
    pub fn executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<ExecutionSummary>, StoreError> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let wanted = |s: &ExecutionSummary| {
            filter.status.is_none_or(|st| s.status == st)
                && filter.since.is_none_or(|since| s.started_at >= since)
                && filter.until.is_none_or(|until| s.started_at < until)
        };
        // Ids grow with start time, so reading newest first can stop at the first
        // execution older than `since` (allowing a minute for clocks set back).
        let past = |s: &ExecutionSummary| {
            filter
                .since
                .is_some_and(|since| s.started_at < since.saturating_sub(60_000))
        };
        let mut out = Vec::new();
        if let Some(project) = &filter.project {
            check_name("project name", project)?;
            for kv in self.exec_by_project.scan_prefix(name_prefix(project)).rev() {
                let (k, v) = kv.map_err(db_err)?;
                let s: ExecutionSummary = decode(
                    || {
                        let id = id_from_key_tail("", &k).unwrap_or(0);
                        format!("exec_by_project/{project}/{id}")
                    },
                    &v,
                )?;
                if past(&s) {
                    break;
                }
                if wanted(&s) {
                    out.push(s);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        } else {
            for kv in self.executions.iter().rev() {
                let (k, v) = kv.map_err(db_err)?;
                let rec: ExecRecord = decode(
                    || format!("executions/{}", id_from_key_tail("", &k).unwrap_or(0)),
                    &v,
                )?;
                let s = rec.summary();
                if past(&s) {
                    break;
                }
                if wanted(&s) {
                    out.push(s);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// A page of an execution's stored record errors, and how many are stored in all.
    /// `limit` 0 = to the end.
    pub fn record_errors(
        &self,
        id: ExecutionId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<StoredRecordError>, u64), StoreError> {
        let rec = self.exec_record(id)?.ok_or_else(|| StoreError::NotFound {
            what: "execution",
            name: id.to_string(),
        })?;
        let total = rec.record_errors_stored;
        let page = page(&self.exec_errors, "exec_errors", id, offset, limit, total)?;
        Ok((page, total))
    }

    /// A page of an execution's stored staged records, and how many are stored in all.
    /// `limit` 0 = to the end.
    pub fn staged(
        &self,
        id: ExecutionId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<StagedRecord>, u64), StoreError> {
        let rec = self.exec_record(id)?.ok_or_else(|| StoreError::NotFound {
            what: "execution",
            name: id.to_string(),
        })?;
        let total = rec.staged_stored;
        let page = page(&self.exec_staged, "exec_staged", id, offset, limit, total)?;
        Ok((page, total))
    }

    /// Records a run that did not start, as a finished `Skipped` execution saying why.
    pub fn record_skipped(
        &self,
        new: NewExecution,
        reason: &str,
    ) -> Result<ExecutionId, StoreError> {
        let id = self.begin_execution(new)?;
        self.finish_execution(id, ExecStatus::Skipped, Some(reason.to_string()))?;
        Ok(id)
    }

    /// A project's schedule state (default: not paused).
    pub fn project_state(&self, name: &str) -> Result<ProjectState, StoreError> {
        match self.project_state.get(name.as_bytes()).map_err(db_err)? {
            None => Ok(ProjectState::default()),
            Some(b) => decode(|| format!("project_state/{name}"), &b),
        }
    }

    /// Pauses or resumes a project's schedule; `changed_at` is set to now. The project
    /// must exist.
    pub fn set_project_state(
        &self,
        name: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<ProjectState, StoreError> {
        if self.project_head(name)?.is_none() {
            return Err(StoreError::NotFound {
                what: "project",
                name: name.to_string(),
            });
        }
        let state = ProjectState {
            paused,
            reason,
            changed_at: now_millis(),
        };
        self.project_state
            .insert(name.as_bytes(), encode(&state)?)
            .map_err(db_err)?;
        Ok(state)
    }

    /// The latest execution of `project` (any status), for resume/retry decisions.
    pub fn last_execution(&self, project: &str) -> Result<Option<Execution>, StoreError> {
        check_name("project name", project)?;
        let Some(kv) = self
            .exec_by_project
            .scan_prefix(name_prefix(project))
            .next_back()
        else {
            return Ok(None);
        };
        let (k, _) = kv.map_err(db_err)?;
        self.execution(id_from_key_tail("exec_by_project", &k)?)
    }

    /// Deletes executions (with their log, errors and staging) started more than
    /// `max_age_days` before `now_millis`, and/or beyond the newest `keep_last` of their
    /// project. Never deletes a `Running` execution. Returns how many were deleted.
    pub fn prune(&self, retention: &Retention, now_millis: i64) -> Result<usize, StoreError> {
        let cutoff = retention
            .max_age_days
            .map(|d| now_millis.saturating_sub(i64::from(d).saturating_mul(MILLIS_PER_DAY)));
        // The project index is sorted by project then id: one pass sees each project's
        // executions together, oldest first.
        let mut by_project: HashMap<String, Vec<ExecutionSummary>> = HashMap::new();
        for kv in self.exec_by_project.iter() {
            let (k, v) = kv.map_err(db_err)?;
            let s: ExecutionSummary = decode(
                || format!("exec_by_project/{}", id_from_key_tail("", &k).unwrap_or(0)),
                &v,
            )?;
            by_project.entry(s.project.clone()).or_default().push(s);
        }
        let mut victims = Vec::new();
        for list in by_project.values() {
            let n = list.len();
            for (i, s) in list.iter().enumerate() {
                let newer = n - 1 - i;
                let too_many = retention.keep_last.is_some_and(|k| newer >= k);
                let too_old = cutoff.is_some_and(|c| s.started_at < c);
                if (too_many || too_old) && s.status != ExecStatus::Running {
                    victims.push(s.id);
                }
            }
        }
        victims.sort_unstable();
        let mut deleted = 0;
        for id in victims {
            if self.delete_execution(id)? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes one finished execution. Its log, errors and staging go first and the record
    /// last: a crash in between leaves a complete-looking old execution that the next
    /// prune deletes again, never orphaned rows that nothing points to.
    fn delete_execution(&self, id: ExecutionId) -> Result<bool, StoreError> {
        match self.exec_record(id)? {
            Some(rec) if rec.status != ExecStatus::Running => {}
            _ => return Ok(false),
        }
        for tree in [&self.exec_log, &self.exec_errors, &self.exec_staged] {
            let mut batch = sled::Batch::default();
            for k in tree.scan_prefix(id_key(id)).keys() {
                batch.remove(k.map_err(db_err)?);
            }
            tree.apply_batch(batch).map_err(db_err)?;
        }
        (&self.executions, &self.exec_by_project)
            .transaction(|(executions, index)| {
                let Some(rec) = tx_exec(executions, id)? else {
                    return Ok(false);
                };
                executions.remove(&id_key(id))?;
                index.remove(index_key(&rec.project, id))?;
                Ok(true)
            })
            .map_err(tx_err)
    }
}

/// Appends `items` under keys (id, stored…) while under `max`; counts the rest as dropped.
fn append(
    tree: &TransactionalTree,
    id: ExecutionId,
    items: &[Vec<u8>],
    max: u64,
    stored: &mut u64,
    dropped: &mut u64,
) -> ConflictableTransactionResult<(), StoreError> {
    let room = max.saturating_sub(*stored);
    let take = (items.len() as u64).min(room) as usize;
    for item in &items[..take] {
        tree.insert(&seq_key(id, *stored), item.as_slice())?;
        *stored += 1;
    }
    *dropped += (items.len() - take) as u64;
    Ok(())
}

/// The leading `items` that fit in what is left of a byte budget (`used` of
/// `max`), counted into `used`; the rest are for the caller to count as dropped.
fn within_bytes<'a>(items: &'a [Vec<u8>], max: u64, used: &mut u64) -> &'a [Vec<u8>] {
    let mut take = 0;
    for item in items {
        let next = *used + item.len() as u64;
        if next > max {
            break;
        }
        *used = next;
        take += 1;
    }
    &items[..take]
}

/// Reads items `offset..offset+limit` (capped at `total`) of one execution from a tree
/// keyed by (id, seq): seqs are dense, so a page is one key range.
fn page<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
    id: ExecutionId,
    offset: u64,
    limit: u64,
    total: u64,
) -> Result<Vec<T>, StoreError> {
    let end = if limit == 0 {
        total
    } else {
        offset.saturating_add(limit).min(total)
    };
    if offset >= end {
        return Ok(Vec::new());
    }
    let range: Range<[u8; 16]> = seq_key(id, offset)..seq_key(id, end);
    tree.range(range)
        .map(|kv| {
            let (k, v) = kv.map_err(db_err)?;
            decode(|| seq_key_name(name, &k), &v)
        })
        .collect()
}

/// A readable name for an (id, seq) key in errors.
fn seq_key_name(tree: &str, key: &[u8]) -> String {
    if key.len() == 16 {
        let mut id = [0u8; 8];
        let mut seq = [0u8; 8];
        id.copy_from_slice(&key[..8]);
        seq.copy_from_slice(&key[8..]);
        format!(
            "{tree}/{}/{}",
            u64::from_be_bytes(id),
            u64::from_be_bytes(seq)
        )
    } else {
        format!("{tree}/{}", hex(key))
    }
}

/// Installed plugins: name + version → where the validated copy lives.
impl Store {
    /// Records an installed plugin (replacing the same name and version).
    pub fn put_plugin(&self, p: &InstalledPlugin) -> Result<(), StoreError> {
        check_name("plugin name", &p.name)?;
        check_name("plugin version", &p.version)?;
        let key = format!("{}\0{}", p.name, p.version);
        self.plugins
            .insert(key.as_bytes(), encode(p)?)
            .map_err(db_err)?;
        Ok(())
    }

    /// Every installed plugin, by name then version.
    pub fn plugins(&self) -> Result<Vec<InstalledPlugin>, StoreError> {
        let mut out = Vec::new();
        for item in self.plugins.iter() {
            let (k, v) = item.map_err(db_err)?;
            out.push(decode(
                || format!("plugins/{}", String::from_utf8_lossy(&k)),
                &v,
            )?);
        }
        Ok(out)
    }

    /// The installed plugin `name` at `version`, or its highest version.
    pub fn plugin(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<InstalledPlugin>, StoreError> {
        let mut matching: Vec<InstalledPlugin> = self
            .plugins()?
            .into_iter()
            .filter(|p| p.name == name)
            .collect();
        if let Some(v) = version {
            return Ok(matching.into_iter().find(|p| p.version == v));
        }
        let parts = |v: &str| -> Vec<u64> {
            v.split(['.', '-', '+'])
                .map(|x| x.parse().unwrap_or(0))
                .collect()
        };
        matching.sort_by_key(|p| parts(&p.version));
        Ok(matching.pop())
    }
}
