//! The on-disk cache of compiled components.
//!
//! Compiling a component takes hundreds of milliseconds (seconds for Python or
//! JavaScript plugins); loading a precompiled one takes well under one. Entries are
//! keyed by the SHA-256 of the plugin bytes and wasmtime's compatibility hash, so a
//! new plugin or a new engine never loads a stale entry. Each file starts with the
//! SHA-256 of the rest: `Component::deserialize` trusts its input, so a truncated
//! or corrupted file is detected here, deleted and rebuilt — never loaded.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const CHECKSUM_LEN: usize = 32;

pub(crate) struct ComponentCache {
    dir: Option<PathBuf>,
    /// `false`: entries are read, never written or removed.
    writes: bool,
    engine_key: String,
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The compiled component was loaded from the cache.
    Hit,
    /// Not in the cache: compiled now and stored.
    Miss,
    /// An entry existed but failed its checksum; it was rebuilt.
    Rebuilt,
    /// No cache directory configured: compiled in memory.
    Disabled,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>, writes: bool) -> ComponentCache {
        // SipHash with fixed keys: stable for a given build, which is all a cache
        // key needs (a new wasmtime changes the compatibility hash anyway).
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            writes,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    fn path_for(&self, digest: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{digest}-{}.cwasm", self.engine_key)))
    }

    /// Loads `bytes` (whose SHA-256 is `digest`) from the cache, or compiles and
    /// stores it.
    pub fn load(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(path) = self.path_for(digest) else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::Disabled));
        };
        let mut outcome = CacheOutcome::Miss;
        if let Ok(file) = std::fs::read(&path) {
            match verified(&file) {
                Some(payload) => {
                    // SAFETY: the payload was written by `store` below from
                    // `Component::serialize` for this engine configuration (the file
                    // name carries the compatibility hash) and its checksum matches,
                    // so it is exactly what this host produced.
                    match unsafe { Component::deserialize(engine, payload) } {
                        Ok(component) => return Ok((component, CacheOutcome::Hit)),
                        Err(e) => tracing::warn!(path = %path.display(), error = %e,
                            "cached component refused by wasmtime; rebuilding"),
                    }
                }
                None => tracing::warn!(path = %path.display(),
                    "cached component failed its checksum (truncated or corrupted); rebuilding"),
            }
            if self.writes {
                let _ = std::fs::remove_file(&path);
            }
            outcome = CacheOutcome::Rebuilt;
        }
        let component = Component::new(engine, bytes)?;
        if !self.writes {
            return Ok((component, outcome));
        }
        if let Err(e) = store(&path, &component.serialize()?) {
            // A read-only or full disk costs only the cache, never the load.
            tracing::warn!(path = %path.display(), error = %e, "cannot write component cache");
        }
        Ok((component, outcome))
    }
}

fn verified(file: &[u8]) -> Option<&[u8]> {
    if file.len() < CHECKSUM_LEN {
        return None;
    }
    let (sum, payload) = file.split_at(CHECKSUM_LEN);
    (Sha256::digest(payload).as_slice() == sum).then_some(payload)
}

fn store(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Write a temporary file and rename it: a crash mid-write leaves no entry
    // rather than a truncated one.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut data = Vec::with_capacity(CHECKSUM_LEN + payload.len());
    data.extend_from_slice(&Sha256::digest(payload));
    data.extend_from_slice(payload);
    std::fs::write(&tmp, &data)?;
    std::fs::rename(&tmp, path)
}
