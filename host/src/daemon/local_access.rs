//! The daemon's local-access file, `<data-dir>/daemon.json`: how a `weir` command run on
//! the same data directory finds the daemon that holds the store (its address, pid, start
//! time) and a token the API accepts from it.
//!
//! The daemon writes it once listening (mode 0600, readable only by its user, written to
//! a temporary name and renamed so a reader never sees half a file) and removes it on a
//! clean shutdown. A daemon killed without shutdown leaves it behind: a reader checks the
//! pid and the address before trusting it ([`LocalAccess::read_live`]), so a stale file
//! never stops the CLI from opening the store itself.
//!
//! What it is not: the administrator's token (`admin-token`) — the token here is
//! generated at each start for local use only, and dies with the daemon.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "daemon.json";

/// What a daemon tells local commands about itself.
#[derive(Clone, Serialize, Deserialize)]
pub struct LocalAccess {
    /// The daemon's process id.
    pub pid: u32,
    /// Where its API listens.
    pub address: SocketAddr,
    /// Unix millis when it started listening.
    pub since: i64,
    /// A bearer token the API accepts, generated at this start. Never logged.
    pub token: String,
}

// The token stays out of debug output (a `{:?}` in a log line must not leak it).
impl std::fmt::Debug for LocalAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAccess")
            .field("pid", &self.pid)
            .field("address", &self.address)
            .field("since", &self.since)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalAccessError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a daemon file ({source})")]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("reading random bytes for the local token: {0}")]
    Random(String),
}

/// Why a daemon file was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stale {
    /// Its process is gone (killed, crashed).
    ProcessGone,
    /// The process is there but its address does not answer.
    NotListening,
}

/// What a local command finds in a data directory.
#[derive(Debug)]
pub enum Found {
    /// No daemon file.
    None,
    /// A daemon file whose daemon is gone (or does not answer).
    Stale { access: LocalAccess, why: Stale },
    /// A daemon that answers on its address.
    Live(LocalAccess),
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

impl LocalAccess {
    /// A fresh description of this process listening on `address`, with a new token.
    pub fn new(address: SocketAddr) -> Result<LocalAccess, LocalAccessError> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| LocalAccessError::Random(e.to_string()))?;
        Ok(LocalAccess {
            pid: std::process::id(),
            address,
            since: crate::store::now_millis(),
            token: hex::encode(bytes),
        })
    }

    /// Writes the file (0600), replacing any stale one; the guard removes it when dropped.
    pub fn write(&self, data_dir: &Path) -> Result<AccessFile, LocalAccessError> {
        let target = path(data_dir);
        let tmp = data_dir.join(format!(".{FILE_NAME}.{}", self.pid));
        let io = |source| LocalAccessError::Io {
            path: target.clone(),
            source,
        };
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp).map_err(io)?;
        let text = serde_json::to_vec(self).map_err(|e| io(std::io::Error::other(e)))?;
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &target).map_err(io)?;
        Ok(AccessFile { path: target })
    }

    /// The file as written, whether its daemon lives or not.
    pub fn read(data_dir: &Path) -> Result<Option<LocalAccess>, LocalAccessError> {
        let path = path(data_dir);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LocalAccessError::Io { path, source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| LocalAccessError::Malformed { path, source })
    }

    /// The file and whether its daemon is alive: the pid exists and the address accepts
    /// a connection (within a second).
    pub fn find(data_dir: &Path) -> Result<Found, LocalAccessError> {
        let Some(access) = LocalAccess::read(data_dir)? else {
            return Ok(Found::None);
        };
        if !process_alive(access.pid) {
            return Ok(Found::Stale {
                access,
                why: Stale::ProcessGone,
            });
        }
        let listening = std::net::TcpStream::connect_timeout(
            &access.address,
            std::time::Duration::from_secs(1),
        )
        .is_ok();
        if !listening {
            return Ok(Found::Stale {
                access,
                why: Stale::NotListening,
            });
        }
        Ok(Found::Live(access))
    }
}

/// Whether a process with this id exists (signal 0 checks without sending anything).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 sends nothing; it only asks whether the pid exists.
        let r = unsafe { libc::kill(pid, 0) };
        // EPERM: it exists but belongs to another user.
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The written file; removed when dropped (a clean shutdown).
#[derive(Debug)]
pub struct AccessFile {
    path: PathBuf,
}

impl Drop for AccessFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the daemon file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_file_is_private_readable_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let access = LocalAccess::new("127.0.0.1:9".parse().unwrap()).unwrap();
        let guard = access.write(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = LocalAccess::read(dir.path()).unwrap().unwrap();
        assert_eq!(back.token, access.token);
        assert!(!format!("{back:?}").contains(&access.token));
        drop(guard);
        assert!(LocalAccess::read(dir.path()).unwrap().is_none());
    }

    #[test]
    fn a_dead_pid_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let mut access = LocalAccess::new("127.0.0.1:9".parse().unwrap()).unwrap();
        access.pid = i32::MAX as u32 - 1;
        let _guard = access.write(dir.path()).unwrap();
        assert!(matches!(
            LocalAccess::find(dir.path()).unwrap(),
            Found::Stale {
                why: Stale::ProcessGone,
                ..
            }
        ));
    }
}
