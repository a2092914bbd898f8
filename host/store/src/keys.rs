//! Keys: how ids, names and versions become sled keys, so that byte order is the order callers want.

use super::*;

pub(super) fn id_key(id: ExecutionId) -> [u8; 8] {
    id.to_be_bytes()
}

pub(super) fn seq_key(id: ExecutionId, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(super) fn name_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 9);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

pub(super) fn project_key(name: &str, version: u32) -> Vec<u8> {
    let mut k = name_prefix(name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(super) fn index_key(project: &str, id: ExecutionId) -> Vec<u8> {
    let mut k = name_prefix(project);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The id at the end of an `exec_by_project` key or an `executions`/`exec_running` key.
pub(super) fn id_from_key_tail(tree: &str, key: &[u8]) -> Result<ExecutionId, StoreError> {
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

pub(super) fn check_name(what: &'static str, name: &str) -> Result<(), StoreError> {
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
