//! The host side of the `weir:kv/index` import: key indexes kept in the host's
//! embedded store on a connector's behalf.
//!
//! What it is: one [`fjall`] database (an LSM tree with Bloom filters) under the
//! runtime's index directory (`<data-dir>/index`), opened at the first use and
//! shared by every instance of the runtime. A plugin's table is a keyspace of
//! it, named by a digest of the connection's granted directory and the table's
//! name; the scope is `capabilities::check_kv`'s: no directory grant, no
//! table, and a table is private to its directory.
//!
//! What it is not: a general database for plugins (no iteration, no
//! transactions across tables) or a source of truth. The plugin records what a
//! table describes in its meta and rebuilds it when the destination changed;
//! the host only promises that writes reach the disk in the order they were
//! made (one journal), and durability when asked (`set-meta(durable)`).
//!
//! Why in the host: the index a file writer needs grows with the destination
//! (tens of millions of keys), which is not memory a plugin's sandbox should
//! hold, nor disk I/O worth a WASI call per key; here a batch of lookups is one
//! crossing, answered from the store's block cache.
//!
//! Memory: the store holds at most its [`IndexBudget`], whatever the number of
//! keys: by default [`DEFAULT_INDEX_MEMORY_MB`] = 64 MiB, half block cache and
//! half write buffers (memtables), a table's memtable half of those
//! (`RuntimeConfig::index_memory_mb`; `weir --index-memory-mb`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasmtime::component::Resource;

use crate::bindings::kv_index as wit;
use crate::capabilities::{self, Grants};
use crate::host::HostState;

/// The index store's memory when nothing else is said, in MiB.
pub const DEFAULT_INDEX_MEMORY_MB: u32 = 64;

/// How the index store's memory is split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexBudget {
    /// The block cache, shared by all tables (lookups of keys on disk).
    pub cache_bytes: u64,
    /// The memtables of all tables together, before they are flushed.
    pub write_buffer_bytes: u64,
    /// One table's memtable before it is flushed (fjall's default is 64 MiB: a
    /// million keys would sit in memory until the first flush).
    pub memtable_bytes: u64,
}

impl IndexBudget {
    /// `mb` MiB in all (at least 4): half cache, half write buffers, a table's
    /// memtable half of the write buffers.
    pub fn of_mb(mb: u32) -> IndexBudget {
        let total = u64::from(mb.max(4)) << 20;
        IndexBudget {
            cache_bytes: total / 2,
            write_buffer_bytes: total / 2,
            memtable_bytes: total / 4,
        }
    }
}

/// The largest key, value and batch a plugin may send.
const MAX_KEY: usize = 64 << 10;
const MAX_VALUE: usize = 1 << 20;
const MAX_BATCH: usize = 64 << 20;
/// The keyspace holding each table's meta, keyed by the table's keyspace name.
const META_KEYSPACE: &str = "weir-meta";

/// Where a runtime keeps key indexes: a directory, and the store in it once
/// opened. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct IndexHome {
    dir: Option<PathBuf>,
    budget: Option<IndexBudget>,
    opened: Mutex<Option<Result<Opened, String>>>,
}

#[derive(Clone)]
struct Opened {
    db: fjall::Database,
    meta: fjall::Keyspace,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opened")
    }
}

/// One open table: a plugin's handle (`weir:kv/index/table`).
pub struct KvTable {
    db: fjall::Database,
    meta: fjall::Keyspace,
    entries: fjall::Keyspace,
}

impl IndexHome {
    /// Indexes under `dir` (`None`: this runtime keeps none, and every `open`
    /// is `unavailable`).
    pub fn new(dir: Option<PathBuf>, budget: IndexBudget) -> IndexHome {
        IndexHome {
            dir,
            budget: Some(budget),
            opened: Mutex::new(None),
        }
    }

    /// The memory the store may hold.
    pub fn budget(&self) -> IndexBudget {
        self.budget
            .unwrap_or_else(|| IndexBudget::of_mb(DEFAULT_INDEX_MEMORY_MB))
    }

    /// The store, opened at the first call. A failure (another process holds
    /// it) is remembered: the plugins of this runtime fall back to their own
    /// index rather than retry at every writer.
    fn store(&self) -> Result<Opened, String> {
        let Some(dir) = &self.dir else {
            return Err("this host keeps no key index (no data directory)".to_owned());
        };
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if opened.is_none() {
            let result = open_store(dir, self.budget()).map_err(|e| {
                tracing::warn!(dir = %dir.display(), error = %e, "the key index store cannot be opened; plugins use their own");
                format!("the host's key index store cannot be opened: {e}")
            });
            *opened = Some(result);
        }
        opened.clone().expect("set above")
    }

    /// Opens table `name` for a plugin with `grants`, in the scope
    /// `capabilities::check_kv` gives it.
    pub(crate) fn open_table(&self, grants: &Grants, name: &str) -> Result<KvTable, wit::Error> {
        let directory = capabilities::check_kv(grants).map_err(wit::Error::Unavailable)?;
        if name.is_empty() || name.len() > 200 {
            return Err(wit::Error::Invalid(format!(
                "a table name has 1 to 200 bytes, not {}",
                name.len()
            )));
        }
        let store = self.store().map_err(wit::Error::Unavailable)?;
        // The directory as the host resolved it, so `out` and `./out` are one scope.
        let scope = std::fs::canonicalize(directory).unwrap_or_else(|_| directory.to_owned());
        let keyspace = keyspace_name(&scope, name);
        let entries = store
            .db
            .keyspace(&keyspace, || {
                // Filters and block indexes partitioned at every level (fjall
                // partitions only from L3): a full filter of a large table is
                // megabytes, and with it a lookup that misses the cache reads
                // and checksums the whole filter — at 10 M keys that was most of
                // a re-run's CPU. Partitions keep a lookup to a few small blocks
                // and the memory to the budget's cache, whatever the table size.
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(self.budget().memtable_bytes)
                    .filter_block_partitioning_policy(fjall::config::PartitioningPolicy::all(true))
                    .index_block_partitioning_policy(fjall::config::PartitioningPolicy::all(true))
            })
            .map_err(io)?;
        Ok(KvTable {
            db: store.db,
            meta: store.meta,
            entries,
        })
    }
}

fn open_store(dir: &Path, budget: IndexBudget) -> Result<Opened, fjall::Error> {
    std::fs::create_dir_all(dir)?;
    #[allow(deprecated)] // the only bound fjall offers on its memtables, all tables together
    let db = fjall::Database::builder(dir)
        .cache_size(budget.cache_bytes)
        .max_write_buffer_size(Some(budget.write_buffer_bytes))
        // The journals of memtables not yet flushed are replayed into memory
        // when the store opens: fjall lets them reach 512 MiB, which a 10M-key
        // first run did, and the next run's RSS held them (1.5 GiB). At the
        // smallest bound fjall takes, a full journal forces flushes instead.
        .max_journaling_size(64 << 20)
        // Flushes and compactions run beside executions: one thread keeps them
        // from taking a second core from the pipeline.
        .worker_threads(1)
        .open()?;
    let meta = db.keyspace(META_KEYSPACE, fjall::KeyspaceCreateOptions::default)?;
    Ok(Opened { db, meta })
}

/// `t.<hex>`: a digest of the scope and the name, so any name is a valid
/// keyspace name and two scopes never share one.
fn keyspace_name(scope: &Path, name: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(scope.as_os_str().as_encoded_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    format!("t.{}", hex::encode(&h.finalize()[..16]))
}

fn io(e: fjall::Error) -> wit::Error {
    wit::Error::Io(e.to_string())
}

/// The entries of a byte list, checked: ends increasing, within the data.
fn entries<'a>(
    list: &'a wit::ByteList,
    what: &str,
    max: usize,
) -> Result<Vec<&'a [u8]>, wit::Error> {
    if list.data.len() > MAX_BATCH {
        return Err(wit::Error::Invalid(format!(
            "{what}: {} bytes in one call, more than {MAX_BATCH}",
            list.data.len()
        )));
    }
    let mut out = Vec::with_capacity(list.ends.len());
    let mut start = 0usize;
    for (i, &end) in list.ends.iter().enumerate() {
        let end = end as usize;
        if end < start || end > list.data.len() {
            return Err(wit::Error::Invalid(format!(
                "{what}: entry {i} ends at {end}, outside {start}..={}",
                list.data.len()
            )));
        }
        if end - start > max {
            return Err(wit::Error::Invalid(format!(
                "{what}: entry {i} has {} bytes, more than {max}",
                end - start
            )));
        }
        out.push(&list.data[start..end]);
        start = end;
    }
    Ok(out)
}

impl KvTable {
    fn meta_key(&self) -> &[u8] {
        self.entries.name().as_bytes()
    }

    fn lookup(&self, keys: &wit::ByteList) -> Result<wit::Found, wit::Error> {
        let keys = entries(keys, "keys", MAX_KEY)?;
        let mut found = wit::Found {
            present: Vec::with_capacity(keys.len()),
            values: wit::ByteList {
                data: Vec::new(),
                ends: Vec::with_capacity(keys.len()),
            },
        };
        for key in keys {
            match self.entries.get(key).map_err(io)? {
                Some(v) => {
                    found.present.push(true);
                    found.values.data.extend_from_slice(&v);
                }
                None => found.present.push(false),
            }
            found.values.ends.push(found.values.data.len() as u32);
        }
        Ok(found)
    }

    fn put(&self, keys: &wit::ByteList, values: &wit::ByteList) -> Result<(), wit::Error> {
        let keys = entries(keys, "keys", MAX_KEY)?;
        let values = entries(values, "values", MAX_VALUE)?;
        if keys.len() != values.len() {
            return Err(wit::Error::Invalid(format!(
                "{} keys and {} values",
                keys.len(),
                values.len()
            )));
        }
        // One batch: one journal write for the call, applied as a whole.
        let mut batch = self.db.batch();
        for (k, v) in keys.into_iter().zip(values) {
            batch.insert(&self.entries, k, v);
        }
        batch.commit().map_err(io)
    }

    fn clear(&self) -> Result<(), wit::Error> {
        self.meta.remove(self.meta_key()).map_err(io)?;
        self.entries.clear().map_err(io)
    }

    fn meta(&self) -> Result<Option<Vec<u8>>, wit::Error> {
        Ok(self
            .meta
            .get(self.meta_key())
            .map_err(io)?
            .map(|v| v.to_vec()))
    }

    fn set_meta(&self, meta: Vec<u8>, durable: bool) -> Result<(), wit::Error> {
        if meta.len() > MAX_VALUE {
            return Err(wit::Error::Invalid(format!(
                "a meta of {} bytes, more than {MAX_VALUE}",
                meta.len()
            )));
        }
        self.meta.insert(self.meta_key(), meta).map_err(io)?;
        if durable {
            self.db.persist(fjall::PersistMode::SyncAll).map_err(io)?;
        }
        Ok(())
    }
}

impl wit::Host for HostState {}

impl HostState {
    fn kv_table(&self, table: &Resource<KvTable>) -> wasmtime::Result<&KvTable> {
        Ok(self.table.get(table)?)
    }
}

impl wit::HostTable for HostState {
    fn open(&mut self, name: String) -> wasmtime::Result<Result<Resource<KvTable>, wit::Error>> {
        match self.index.open_table(&self.grants, &name) {
            Ok(t) => Ok(Ok(self.table.push(t)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn lookup(
        &mut self,
        table: Resource<KvTable>,
        keys: wit::ByteList,
    ) -> wasmtime::Result<Result<wit::Found, wit::Error>> {
        Ok(self.kv_table(&table)?.lookup(&keys))
    }

    fn put(
        &mut self,
        table: Resource<KvTable>,
        keys: wit::ByteList,
        values: wit::ByteList,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.kv_table(&table)?.put(&keys, &values))
    }

    fn clear(&mut self, table: Resource<KvTable>) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.kv_table(&table)?.clear())
    }

    fn meta(
        &mut self,
        table: Resource<KvTable>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::Error>> {
        Ok(self.kv_table(&table)?.meta())
    }

    fn set_meta(
        &mut self,
        table: Resource<KvTable>,
        meta: Vec<u8>,
        durable: bool,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(self.kv_table(&table)?.set_meta(meta, durable))
    }

    fn approximate_len(&mut self, table: Resource<KvTable>) -> wasmtime::Result<u64> {
        Ok(self.kv_table(&table)?.entries.approximate_len() as u64)
    }

    fn drop(&mut self, table: Resource<KvTable>) -> wasmtime::Result<()> {
        self.table.delete(table)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&[u8]]) -> wit::ByteList {
        let mut l = wit::ByteList {
            data: Vec::new(),
            ends: Vec::new(),
        };
        for i in items {
            l.data.extend_from_slice(i);
            l.ends.push(l.data.len() as u32);
        }
        l
    }

    /// The administrator's budget is what the store is opened with, split half
    /// cache, half write buffers; a small one still works (many flushes of
    /// 1 MiB memtables), and below 4 MiB it is 4.
    #[test]
    fn the_index_budget_is_split_as_documented_and_a_small_one_still_works() {
        let b = IndexBudget::of_mb(64);
        assert_eq!(
            (b.cache_bytes, b.write_buffer_bytes, b.memtable_bytes),
            (32 << 20, 32 << 20, 16 << 20)
        );
        assert_eq!(IndexBudget::of_mb(1), IndexBudget::of_mb(4));
        let tmp = tempfile::tempdir().unwrap();
        let home = IndexHome::new(Some(tmp.path().join("index")), IndexBudget::of_mb(4));
        assert_eq!(home.budget().memtable_bytes, 1 << 20);
        assert_eq!(IndexHome::default().budget(), IndexBudget::of_mb(64));
        let t = home
            .open_table(&Grants::directory(tmp.path()), "many")
            .unwrap();
        // 8 MiB of entries through 1 MiB memtables: flushed, still all found.
        let keys: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| format!("key-{i:08}").into_bytes())
            .collect();
        let value = vec![7u8; 400];
        for chunk in keys.chunks(1_000) {
            let k: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let v: Vec<&[u8]> = chunk.iter().map(|_| value.as_slice()).collect();
            t.put(&list(&k), &list(&v)).unwrap();
        }
        let probe: Vec<&[u8]> = [0usize, 9_999, 19_999]
            .iter()
            .map(|&i| keys[i].as_slice())
            .collect();
        assert_eq!(t.lookup(&list(&probe)).unwrap().present, [true, true, true]);
    }

    #[test]
    fn a_table_is_private_to_its_directory_and_survives_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        {
            let home = IndexHome::new(
                Some(tmp.path().join("index")),
                IndexBudget::of_mb(DEFAULT_INDEX_MEMORY_MB),
            );
            let t = home.open_table(&Grants::directory(&a), "people").unwrap();
            t.put(&list(&[b"k1", b"k2"]), &list(&[b"v1", b"v2"]))
                .unwrap();
            t.set_meta(b"clean".to_vec(), true).unwrap();
            let found = t.lookup(&list(&[b"k2", b"nope", b"k1"])).unwrap();
            assert_eq!(found.present, [true, false, true]);
            assert_eq!(found.values.data, b"v2v1");
            assert_eq!(found.values.ends, [2, 2, 4]);
            // Another directory, same name: another table.
            let other = home.open_table(&Grants::directory(&b), "people").unwrap();
            assert_eq!(other.lookup(&list(&[b"k1"])).unwrap().present, [false]);
            assert_eq!(other.meta().unwrap(), None);
            assert!(matches!(
                home.open_table(&Grants::none(), "people"),
                Err(wit::Error::Unavailable(_))
            ));
        }
        let home = IndexHome::new(
            Some(tmp.path().join("index")),
            IndexBudget::of_mb(DEFAULT_INDEX_MEMORY_MB),
        );
        let t = home.open_table(&Grants::directory(&a), "people").unwrap();
        assert_eq!(t.meta().unwrap().as_deref(), Some(&b"clean"[..]));
        assert_eq!(t.lookup(&list(&[b"k1"])).unwrap().values.data, b"v1");
        t.clear().unwrap();
        assert_eq!(t.meta().unwrap(), None);
        assert_eq!(t.lookup(&list(&[b"k1"])).unwrap().present, [false]);
    }

    #[test]
    fn bad_lists_are_refused_naming_what_is_wrong() {
        let tmp = tempfile::tempdir().unwrap();
        let home = IndexHome::new(
            Some(tmp.path().join("index")),
            IndexBudget::of_mb(DEFAULT_INDEX_MEMORY_MB),
        );
        let t = home
            .open_table(&Grants::directory(tmp.path()), "x")
            .unwrap();
        let bad = wit::ByteList {
            data: b"abc".to_vec(),
            ends: vec![2, 1],
        };
        let Err(wit::Error::Invalid(m)) = t.lookup(&bad) else {
            panic!("accepted")
        };
        assert!(m.contains("entry 1"), "{m}");
        let Err(wit::Error::Invalid(m)) = t.put(&list(&[b"a"]), &list(&[])) else {
            panic!("accepted")
        };
        assert!(m.contains("1 keys and 0 values"), "{m}");
        assert!(matches!(
            IndexHome::new(None, IndexBudget::of_mb(DEFAULT_INDEX_MEMORY_MB))
                .open_table(&Grants::directory(tmp.path()), "x"),
            Err(wit::Error::Unavailable(_))
        ));
    }
}
