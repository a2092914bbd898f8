//! What the store does about the disk under it: free space, a read-only data
//! directory, and a sled snapshot left half-written by a full disk or a crash.
//!
//! Why this exists: sled 0.34 writes a snapshot to `snap.<lsn>.generating` and then
//! renames it, but when it opens it takes the *newest* `snap.*` file as the
//! snapshot — including a `.generating` one. A snapshot write cut short (no space
//! left, the process killed) therefore leaves a store that every later open
//! reports as corrupt, with all its history in it. We remove such leftovers before
//! sled opens, while holding the same lock sled takes, and we keep a margin of free
//! space so sled is not the one to find the disk full.

use std::fs::File;
use std::io;
use std::path::Path;

/// Bytes available to this (unprivileged) process on the filesystem holding
/// `dir`.
pub(super) fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a valid out pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Removes `snap.*.generating` files from sled's directory `db_dir`, if no other
/// process has the database open (sled holds an exclusive `flock` on `db_dir/db`
/// while open; we take the same lock, so we never delete a snapshot another weir is
/// writing right now). Returns the names removed.
pub(super) fn remove_unfinished_snapshots(db_dir: &Path) -> io::Result<Vec<String>> {
    let lock_path = db_dir.join("db");
    let lock = match File::options().read(true).write(true).open(&lock_path) {
        Ok(f) => f,
        // A new store, or one we cannot write (sled's open reports that better).
        Err(_) => return Ok(Vec::new()),
    };
    if lock.try_lock().is_err() {
        // In use: sled's open will say so.
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(db_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())?;
            removed.push(name);
        }
    }
    drop(lock); // releases the flock before sled takes it
    Ok(removed)
}

/// An I/O error as a person wants to read it: the OS's words, once. (sled wraps
/// some errors as text of their `Debug` form, `Os { code: 28, ... }`.)
pub(super) fn io_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::StorageFull => "no space left on the device".to_string(),
        io::ErrorKind::ReadOnlyFilesystem => "the file system is read-only".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::QuotaExceeded => "the disk quota is exceeded".to_string(),
        _ => match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code).to_string(),
            None => e.to_string(),
        },
    }
}

/// Whether `e` means the directory cannot be written at all.
pub(super) fn is_not_writable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_reported_for_an_existing_directory_and_refused_for_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn an_unfinished_snapshot_is_removed_only_when_nobody_holds_the_database() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"").unwrap();
        std::fs::write(dir.path().join("snap.0000000000000001"), b"x").unwrap();
        std::fs::write(dir.path().join("snap.0000000000000002.generating"), b"").unwrap();
        let holder = File::options()
            .read(true)
            .write(true)
            .open(dir.path().join("db"))
            .unwrap();
        holder.lock().unwrap();
        assert!(remove_unfinished_snapshots(dir.path()).unwrap().is_empty());
        assert!(dir.path().join("snap.0000000000000002.generating").exists());
        drop(holder);
        assert_eq!(
            remove_unfinished_snapshots(dir.path()).unwrap(),
            vec!["snap.0000000000000002.generating".to_string()]
        );
        assert!(dir.path().join("snap.0000000000000001").exists());
    }

    #[test]
    fn io_errors_read_once_in_plain_words() {
        let full = io::Error::from_raw_os_error(28);
        assert_eq!(io_text(&full), "no space left on the device");
        let wrapped = io::Error::new(io::ErrorKind::StorageFull, format!("{full:?}"));
        assert_eq!(io_text(&wrapped), "no space left on the device");
        assert!(is_not_writable(&io::Error::from_raw_os_error(30)));
    }
}
