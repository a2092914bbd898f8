//! One writer per destination: a lock on (destination target, entity) held while an
//! entity task writes, across threads, processes and data directories of one machine.
//!
//! Why a file lock: two `weir run`s (two processes, perhaps two data directories) or
//! two executions of `weir serve` (two threads) writing one JSON Lines file each
//! rewrote it from their own view and lost the other's records. An advisory `flock`
//! on a lock file named after the destination serializes them all: it is held by an
//! open file description, so threads of one process exclude each other as processes
//! do, and the kernel drops it when its holder dies (no stale lock after a SIGKILL).
//!
//! The lock file sits in [`lock_dir`] (`$WEIR_LOCK_DIR`, else `<tmp>/weir-locks`) and
//! holds a line naming its holder, so a writer that waits or gives up can say who
//! has the destination.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::project::Connection;

/// Where lock files live unless `WEIR_LOCK_DIR` says otherwise.
pub const LOCK_DIR_ENV: &str = "WEIR_LOCK_DIR";

/// How long a writer waits for a destination another execution holds, unless the
/// run says otherwise ([`super::RunOptions::destination_wait`]).
pub const DEFAULT_DESTINATION_WAIT: Duration = Duration::from_secs(600);

/// How often a waiting writer tries again.
const POLL: Duration = Duration::from_millis(50);

/// What is locked: a destination connection's target and one of its entities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationTarget {
    /// What the connection writes to, without credentials: `directory /srv/out`,
    /// `postgres db.example.com:5432/crm` or `http api.example.com`.
    pub target: String,
    /// The destination entity.
    pub entity: String,
}

impl DestinationTarget {
    /// The target of `connection`'s writes to `entity`; a directory grant is
    /// canonicalized, so two paths to one folder are one target. `None` when the
    /// connection is granted nothing that outlives its plugin instance (no directory,
    /// database or HTTP host): the sandbox then leaves its plugin nothing another
    /// execution could share, so there is nothing to keep apart.
    pub fn of(connection: &Connection, entity: &str) -> Option<DestinationTarget> {
        let grants = &connection.grants;
        let target = if let Some(dir) = &grants.directory {
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            format!("directory {}", dir.display())
        } else if let Some(pg) = &grants.postgres {
            format!("postgres {}", pg.address())
        } else if !grants.http_hosts.is_empty() {
            let mut hosts = grants.http_hosts.clone();
            hosts.sort();
            format!("http {}", hosts.join(" "))
        } else {
            return None;
        };
        Some(DestinationTarget {
            target,
            entity: entity.to_owned(),
        })
    }
}

impl std::fmt::Display for DestinationTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "entity `{}` of {}", self.entity, self.target)
    }
}

/// Why a destination could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{target} is being written by {holder}; waited {waited_secs} s, the most this run waits"
    )]
    Busy {
        target: DestinationTarget,
        holder: String,
        waited_secs: u64,
    },
    #[error("stopped on request while waiting for {target}, which {holder} is writing")]
    Stopped {
        target: DestinationTarget,
        holder: String,
    },
    #[error("cannot lock {target}: {path}: {reason}")]
    Io {
        target: DestinationTarget,
        path: PathBuf,
        reason: String,
    },
}

/// A held destination: released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DestinationLock {
    _file: File,
    /// How long the writer waited for it (zero when it was free).
    pub waited: Duration,
    /// Who held it while this writer waited, when it waited.
    pub waited_for: Option<String>,
}

/// The folder of lock files.
pub fn lock_dir() -> PathBuf {
    std::env::var_os(LOCK_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("weir-locks"))
}

/// Takes the lock on `target` for `holder` (a line such as `execution 12 of
/// project crm-sync (pid 4242)`), waiting up to `wait` while another holds it, and
/// giving up early when `stop` is set.
pub fn lock_destination(
    target: &DestinationTarget,
    holder: &str,
    wait: Duration,
    stop: Option<&AtomicBool>,
) -> Result<DestinationLock, LockError> {
    let dir = lock_dir();
    let io = |path: &PathBuf, e: std::io::Error| LockError::Io {
        target: target.clone(),
        path: path.clone(),
        reason: e.to_string(),
    };
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        // Shared by every user's weir on the machine, like /tmp itself.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
    }
    let mut digest = Sha256::new();
    digest.update(target.target.as_bytes());
    digest.update([0]);
    digest.update(target.entity.as_bytes());
    let name = hex::encode(&digest.finalize()[..16]);
    let path = dir.join(format!("{name}.lock"));
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o666);
    let mut file = options.open(&path).map_err(|e| io(&path, e))?;
    let started = Instant::now();
    let mut waited_for = None;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                    return Err(LockError::Stopped {
                        target: target.clone(),
                        holder,
                    });
                }
                if started.elapsed() >= wait {
                    return Err(LockError::Busy {
                        target: target.clone(),
                        holder,
                        waited_secs: started.elapsed().as_secs(),
                    });
                }
                if waited_for.is_none() {
                    tracing::info!(%target, %holder, "waiting for the destination");
                }
                waited_for = Some(holder);
                std::thread::sleep(POLL);
            }
            Err(TryLockError::Error(e)) => return Err(io(&path, e)),
        }
    }
    // Ours now: say who holds it, for those who wait.
    let _ = file.set_len(0);
    let _ = file.seek(SeekFrom::Start(0));
    let _ = writeln!(file, "{holder}");
    Ok(DestinationLock {
        _file: file,
        waited: started.elapsed(),
        waited_for,
    })
}

fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = Read::take(&mut *file, 1024).read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "another execution".to_owned()
    } else {
        text.to_owned()
    }
}
