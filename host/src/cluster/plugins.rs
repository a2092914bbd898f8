//! Plugin components reach workers by content hash through the JetStream object
//! store ([`BUCKET`]), so a worker needs no filesystem shared with the coordinator.
//!
//! - The coordinator ([`Shelf`]) reads each plugin file a project names when it
//!   hands an execution out, names it by the SHA-256 of its bytes and puts it in
//!   the bucket unless it is there already. The start carries only
//!   [`PluginBlob`]s (digest, size, the file's name for messages).
//! - A worker ([`PluginCache`]) keeps fetched components under
//!   `<data-dir>/plugins/by-hash/<digest>.wasm`, checks every fetched (and, once
//!   per process, every cached) file against its digest, and hands that path to the
//!   engine, whose component cache compiles it once as on one machine.
//!
//! A digest names the bytes, not a file: editing a plugin in place makes a new
//! object, and an execution in flight keeps the bytes it started with. Objects are
//! never deleted by weir (plugins are small and few); an administrator may purge
//! the bucket, and the next hand-out puts what it needs back.
//!
//! What it is not: how a plugin is trusted or sandboxed (the runtime, unchanged).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use async_nats::jetstream;
use async_nats::jetstream::object_store::{InfoErrorKind, ObjectStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::ClusterError;

/// The object store bucket holding plugin components by digest.
pub const BUCKET: &str = "weir-plugins";

/// A plugin as a start names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginBlob {
    /// Lower-case hex SHA-256 of the component's bytes: its object's name.
    pub digest: String,
    /// Its size in bytes.
    pub len: u64,
    /// The file's name on the coordinator, for messages only.
    pub file: String,
}

/// The hex SHA-256 of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Creates the bucket unless it exists (the coordinator calls it at start).
pub async fn ensure_bucket(js: &jetstream::Context) -> Result<ObjectStore, ClusterError> {
    if let Ok(store) = js.get_object_store(BUCKET).await {
        return Ok(store);
    }
    js.create_object_store(jetstream::object_store::Config {
        bucket: BUCKET.to_owned(),
        description: Some("weir plugin components by SHA-256".to_owned()),
        ..Default::default()
    })
    .await
    .map_err(|e| ClusterError::nats("creating the plugin bucket", e))
}

/// The coordinator's side: puts plugin files in the bucket, once per digest.
pub struct Shelf {
    store: ObjectStore,
    /// Digests known to be in the bucket (checked or put by this process).
    shelved: Mutex<HashSet<String>>,
    /// Per file, its modification time and size when last hashed, and the digest:
    /// an unchanged file is not hashed again at every hand-out.
    hashed: Mutex<HashMap<PathBuf, (SystemTime, u64, String)>>,
}

impl Shelf {
    pub fn new(store: ObjectStore) -> Shelf {
        Shelf {
            store,
            shelved: Mutex::new(HashSet::new()),
            hashed: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the plugin at `path` available to workers and names it.
    pub async fn share(&self, path: &Path) -> Result<PluginBlob, ClusterError> {
        let unreadable = |e: std::io::Error| {
            ClusterError::Plugin(format!("the plugin {} cannot be read: {e}", path.display()))
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        let stamp = (meta.modified().map_err(unreadable)?, meta.len());
        let known = self
            .hashed
            .lock()
            .unwrap()
            .get(path)
            .filter(|(at, len, _)| (*at, *len) == stamp)
            .map(|(_, _, d)| d.clone());
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(digest) = known
            && self.shelved.lock().unwrap().contains(&digest)
        {
            return Ok(PluginBlob {
                digest,
                len: stamp.1,
                file,
            });
        }
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let digest = digest_of(&bytes);
        self.hashed.lock().unwrap().insert(
            path.to_owned(),
            (stamp.0, bytes.len() as u64, digest.clone()),
        );
        let blob = PluginBlob {
            digest: digest.clone(),
            len: bytes.len() as u64,
            file,
        };
        if self.shelved.lock().unwrap().contains(&digest) {
            return Ok(blob);
        }
        match self.store.info(&digest).await {
            Ok(info) if info.size == bytes.len() && !info.deleted => {}
            Ok(_) => self.put(&digest, &bytes).await?,
            Err(e) if e.kind() == InfoErrorKind::NotFound => self.put(&digest, &bytes).await?,
            Err(e) => return Err(ClusterError::nats("looking up a plugin in the bucket", e)),
        }
        self.shelved.lock().unwrap().insert(digest);
        Ok(blob)
    }

    async fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ClusterError> {
        let mut reader = bytes;
        self.store
            .put(digest, &mut reader)
            .await
            .map_err(|e| ClusterError::nats("putting a plugin in the bucket", e))?;
        tracing::info!(%digest, bytes = bytes.len(), "plugin put in the object store");
        Ok(())
    }
}

/// A worker's side: the components it fetched, by digest, under its data directory.
pub struct PluginCache {
    dir: PathBuf,
    store: Mutex<Option<ObjectStore>>,
    /// Digests whose cached file this process has checked.
    checked: Mutex<HashSet<String>>,
}

impl PluginCache {
    /// Fetched components live in `dir` (made when the first one arrives).
    pub fn new(dir: PathBuf) -> PluginCache {
        PluginCache {
            dir,
            store: Mutex::new(None),
            checked: Mutex::new(HashSet::new()),
        }
    }

    /// The directory of cached components.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The local file holding `blob`'s bytes: the cached one when its bytes match
    /// the digest, else fetched from the bucket, checked and written (a cached
    /// file that does not match is replaced).
    pub async fn local(
        &self,
        js: &jetstream::Context,
        blob: &PluginBlob,
    ) -> Result<PathBuf, ClusterError> {
        if blob.digest.len() != 64 || !blob.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ClusterError::Plugin(format!(
                "plugin {}: {:?} is not a SHA-256 digest",
                blob.file, blob.digest
            )));
        }
        let path = self.dir.join(format!("{}.wasm", blob.digest));
        if self.checked.lock().unwrap().contains(&blob.digest) && path.exists() {
            return Ok(path);
        }
        if let Ok(bytes) = std::fs::read(&path) {
            if digest_of(&bytes) == blob.digest {
                self.checked.lock().unwrap().insert(blob.digest.clone());
                return Ok(path);
            }
            tracing::warn!(path = %path.display(), "a cached plugin does not match its digest; fetched again");
        }
        let store = self.store(js).await?;
        let mut object = store.get(&blob.digest).await.map_err(|e| {
            ClusterError::Plugin(format!(
                "plugin {} ({}) is not in the object store: {e}",
                blob.file, blob.digest
            ))
        })?;
        let mut bytes = Vec::with_capacity(blob.len as usize);
        object.read_to_end(&mut bytes).await.map_err(|e| {
            ClusterError::Plugin(format!(
                "plugin {} ({}) could not be fetched: {e}",
                blob.file, blob.digest
            ))
        })?;
        if digest_of(&bytes) != blob.digest {
            return Err(ClusterError::Plugin(format!(
                "plugin {}: the fetched bytes do not match their digest {}",
                blob.file, blob.digest
            )));
        }
        let write = |e: std::io::Error| {
            ClusterError::Plugin(format!(
                "plugin {}: cannot be cached in {}: {e}",
                blob.file,
                self.dir.display()
            ))
        };
        std::fs::create_dir_all(&self.dir).map_err(write)?;
        // Written aside and renamed: a worker killed mid-write leaves no file
        // under the digest's name (and a stray `.part` is overwritten next time).
        let part = self
            .dir
            .join(format!("{}.{}.part", blob.digest, std::process::id()));
        std::fs::write(&part, &bytes).map_err(write)?;
        std::fs::rename(&part, &path).map_err(write)?;
        tracing::info!(digest = %blob.digest, file = %blob.file, bytes = bytes.len(), "plugin fetched from the object store");
        self.checked.lock().unwrap().insert(blob.digest.clone());
        Ok(path)
    }

    async fn store(&self, js: &jetstream::Context) -> Result<ObjectStore, ClusterError> {
        if let Some(s) = self.store.lock().unwrap().clone() {
            return Ok(s);
        }
        let store = js
            .get_object_store(BUCKET)
            .await
            .map_err(|e| ClusterError::nats("opening the plugin bucket", e))?;
        *self.store.lock().unwrap() = Some(store.clone());
        Ok(store)
    }
}
