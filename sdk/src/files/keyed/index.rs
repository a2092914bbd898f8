//! The key index of [`super::KeyedFileWriter`] in bounded memory: a hash table of
//! recent keys that spills into sorted runs on disk, a Bloom filter over the runs,
//! and the manifest that lets the next session (or the next instance) reuse the
//! runs. The design and the crash-safety argument are on `KeyedFileWriter`.

use std::cell::RefCell;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::Error;

/// Where the latest record of a key is: a position in the entity file followed by
/// the log of new records, or the position of an entry of the log of updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Stored(u64),
    Updated(u64),
}

const UPDATED_BIT: u64 = 1 << 63;

impl Place {
    pub(super) fn pack(self) -> u64 {
        match self {
            Place::Stored(p) => p,
            Place::Updated(a) => a | UPDATED_BIT,
        }
    }

    pub(super) fn unpack(v: u64) -> Place {
        if v & UPDATED_BIT != 0 {
            Place::Updated(v & !UPDATED_BIT)
        } else {
            Place::Stored(v)
        }
    }
}

/// The largest hash table of recent keys: 16-byte slots, 4 MiB; it spills at 3/4
/// full (196,608 keys).
pub(super) const MEM_MAX_SLOTS: usize = 1 << 18;
const MEM_MIN_SLOTS: usize = 1 << 10;
/// The Bloom filter over the runs, allocated with the first run: 16 MiB (13 bits
/// per key at 10M keys, a false positive rate of about 0.3%).
pub(super) const FILTER_BYTES: usize = 16 << 20;
/// Entries per page of a run; one fence (the page's first hash) per page is in
/// memory, so a lookup reads one page (sometimes two) of a run.
const PAGE_ENTRIES: usize = 256;
const ENTRY: usize = 16;

#[cfg(any(test, feature = "test-hooks"))]
thread_local! {
    /// Tests make the table small to cross the spill boundary with few keys.
    static MEM_LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(MEM_MAX_SLOTS) };
}

/// Makes the hash table of recent keys at most `slots` (a power of two, at
/// least 1024) for writers opened afterwards on this thread, so tests cross the
/// spill boundary with few keys. For tests (feature `test-hooks`).
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub fn __set_index_slots(slots: usize) {
    assert!(slots.is_power_of_two() && slots >= MEM_MIN_SLOTS);
    MEM_LIMIT.with(|m| m.set(slots));
}

/// The hash table's size limit for a new writer: the tests' choice, or the budget.
fn mem_limit() -> usize {
    #[cfg(any(test, feature = "test-hooks"))]
    return MEM_LIMIT.with(|m| m.get());
    #[cfg(not(any(test, feature = "test-hooks")))]
    MEM_MAX_SLOTS
}

/// A 64-bit hash of a byte stream, whatever the chunks it comes in
/// (multiply-rotate over 8-byte words, then a SplitMix64 finaliser).
#[derive(Clone, Default)]
pub(super) struct StreamHash {
    h: u64,
    buf: [u8; 8],
    n: usize,
    len: u64,
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl StreamHash {
    pub(super) fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.n > 0 {
            let take = (8 - self.n).min(bytes.len());
            self.buf[self.n..self.n + take].copy_from_slice(&bytes[..take]);
            self.n += take;
            bytes = &bytes[take..];
            if self.n < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.buf));
            self.n = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.n = rest.len();
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(K).rotate_left(29);
    }

    pub(super) fn finish(&self) -> u64 {
        let mut tail = [0u8; 8];
        tail[..self.n].copy_from_slice(&self.buf[..self.n]);
        mix((self.h ^ u64::from_le_bytes(tail)).wrapping_mul(K) ^ self.len)
    }
}

/// SplitMix64's finaliser.
pub(super) fn mix(mut h: u64) -> u64 {
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = StreamHash::default();
    h.update(bytes);
    h.finish()
}

/// What identifies the entity file a manifest (or a kept index) was made for:
/// its length, modification time, and hashes of its first and last 4 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    pub len: u64,
    pub mtime: u64,
    pub head: u64,
    pub tail: u64,
}

const ENDS: u64 = 4096;

impl Fingerprint {
    pub(super) fn of(file: &File) -> io::Result<Fingerprint> {
        let meta = file.metadata()?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64);
        let mut fp = Fingerprint::prefix(file, meta.len())?;
        fp.mtime = mtime;
        Ok(fp)
    }

    /// The first `len` bytes of `file`, without a time.
    pub(super) fn prefix(file: &File, len: u64) -> io::Result<Fingerprint> {
        let n = len.min(ENDS);
        Ok(Fingerprint {
            len,
            mtime: 0,
            head: hash_bytes(&read_exact_at(file, 0, n as usize)?),
            tail: hash_bytes(&read_exact_at(file, len - n, n as usize)?),
        })
    }
}

/// `n` bytes at `pos`, by positioned reads: under WASI one `descriptor.read`
/// call each, where a seek and a read made the host open an input stream per
/// lookup (a re-sync of 1M keys probes the runs about once per key).
fn read_exact_at(file: &File, pos: u64, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; n];
    fill_at(file, &mut buf, pos)?;
    Ok(buf)
}

/// Fills `buf` from byte `pos` of `file` by positioned reads.
fn fill_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match super::pread(file, &mut buf[done..], pos + done as u64)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            k => done += k,
        }
    }
    Ok(())
}

/// Best effort: a directory's entries durable (Linux allows it; elsewhere the
/// file system's ordering is what we have).
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Durable before a rename makes it visible. A host without fsync support still
/// gets the atomic replace.
pub(super) fn sync(file: &File) -> io::Result<()> {
    match file.sync_all() {
        Err(e) if e.kind() != io::ErrorKind::Unsupported => Err(e),
        _ => Ok(()),
    }
}

/// The names of an entity's index files: `.<entity>.<ext>.index` (the manifest)
/// and `.<entity>.<ext>.run<id>` (sorted runs).
#[derive(Clone)]
pub(super) struct IndexFiles {
    dir: PathBuf,
    stem: String,
}

impl IndexFiles {
    pub(super) fn new(dir: &Path, entity: &str, extension: &str) -> IndexFiles {
        IndexFiles {
            dir: dir.to_owned(),
            stem: format!(".{entity}.{extension}"),
        }
    }

    pub(super) fn manifest(&self) -> PathBuf {
        self.dir.join(format!("{}.index", self.stem))
    }

    fn run(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{}.run{id}", self.stem))
    }

    /// The ids of the run files in the directory.
    fn runs_on_disk(&self) -> Vec<u64> {
        let prefix = format!("{}.run", self.stem);
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = name.strip_prefix(&prefix)?;
                (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| id.parse().ok())?
            })
            .collect()
    }

    /// Removes the run files not in `keep`.
    fn remove_runs_except(&self, keep: &[u64]) {
        for id in self.runs_on_disk() {
            if !keep.contains(&id) {
                let _ = fs::remove_file(self.run(id));
            }
        }
    }

    /// Removes the manifest (first: without it the runs are never trusted) and
    /// every run file.
    pub(super) fn discard(&self) {
        let manifest = self.manifest();
        if fs::remove_file(&manifest).is_ok() {
            sync_dir(&self.dir);
        }
        self.remove_runs_except(&[]);
    }
}

/// The manifest: which runs index which entity file, and up to where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Manifest {
    /// Hash of the format, extension and key fields the runs were made with.
    tag: u64,
    /// The entity file the runs are for (in an append intent: before the append).
    file: Fingerprint,
    /// Every record at a position below `covered` is in the runs (a repeated key
    /// only by its first record); the records after are scanned at open.
    covered: u64,
    keys: u64,
    next: u64,
    /// An append in progress: the length after it, whether a line break came
    /// first, and the hash of the appended records.
    append: Option<(u64, bool, u64)>,
    runs: Vec<(u64, u64, u64)>,
}

impl Manifest {
    fn to_text(&self) -> String {
        let f = &self.file;
        let mut s = format!(
            "weir-keyed-index 1\ntag {}\nfile {} {} {} {}\ncovered {}\nkeys {}\nnext {}\n",
            self.tag, f.len, f.mtime, f.head, f.tail, self.covered, self.keys, self.next
        );
        if let Some((len, pad, sum)) = self.append {
            s.push_str(&format!("append {len} {} {sum}\n", u8::from(pad)));
        }
        for (id, count, sum) in &self.runs {
            s.push_str(&format!("run {id} {count} {sum}\n"));
        }
        let check = hash_bytes(s.as_bytes());
        s.push_str(&format!("check {check}\n"));
        s
    }

    /// `None` for anything but a complete manifest of this version.
    fn parse(text: &str) -> Option<Manifest> {
        let body_end = text.rfind("check ")?;
        let (body, check) = text.split_at(body_end);
        let check: u64 = check
            .strip_prefix("check ")?
            .strip_suffix('\n')?
            .parse()
            .ok()?;
        if hash_bytes(body.as_bytes()) != check {
            return None;
        }
        let mut lines = body.lines();
        if lines.next()? != "weir-keyed-index 1" {
            return None;
        }
        let mut field = |name: &str| -> Option<Vec<u64>> {
            let line = lines.next()?;
            let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
            rest.split(' ').map(|n| n.parse().ok()).collect()
        };
        let tag = *field("tag")?.first()?;
        let file = match field("file")?[..] {
            [len, mtime, head, tail] => Fingerprint {
                len,
                mtime,
                head,
                tail,
            },
            _ => return None,
        };
        let covered = *field("covered")?.first()?;
        let keys = *field("keys")?.first()?;
        let next = *field("next")?.first()?;
        let mut append = None;
        let mut runs = Vec::new();
        for line in lines {
            let mut parts = line.split(' ');
            let what = parts.next()?;
            let n: Vec<u64> = parts.map(|n| n.parse().ok()).collect::<Option<_>>()?;
            match (what, &n[..]) {
                ("append", &[len, pad, sum]) if append.is_none() && runs.is_empty() => {
                    append = Some((len, pad == 1, sum))
                }
                ("run", &[id, count, sum]) => runs.push((id, count, sum)),
                _ => return None,
            }
        }
        Some(Manifest {
            tag,
            file,
            covered,
            keys,
            next,
            append,
            runs,
        })
    }

    fn read(path: &Path) -> Option<Manifest> {
        Manifest::parse(&fs::read_to_string(path).ok()?)
    }

    /// Written in place (a torn write fails the check line: no manifest, the
    /// file is scanned). `durable`: fsync'ed before returning, and the directory
    /// too when the manifest is new.
    fn write(&self, files: &IndexFiles, durable: bool) -> io::Result<()> {
        let path = files.manifest();
        let new = !path.exists();
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let text = self.to_text();
        f.write_all(text.as_bytes())?;
        f.set_len(text.len() as u64)?;
        if durable {
            sync(&f)?;
            if new {
                sync_dir(&files.dir);
            }
        }
        Ok(())
    }
}

/// The hash table of recent keys: `[hash, place + 1]` slots (0: empty), indexed
/// by the hash's top bits, linear probing; grows from 1,024 slots to its limit.
struct Memtable {
    slots: Vec<[u64; 2]>,
    len: usize,
    max: usize,
}

impl Memtable {
    fn new(max: usize) -> Memtable {
        Memtable {
            slots: vec![[0; 2]; MEM_MIN_SLOTS],
            len: 0,
            max,
        }
    }

    fn home(&self, hash: u64) -> usize {
        (hash >> (64 - self.slots.len().trailing_zeros())) as usize
    }

    fn full(&self) -> bool {
        self.slots.len() >= self.max && self.len * 4 >= self.slots.len() * 3
    }

    fn find(
        &self,
        hash: u64,
        is_key: &mut dyn FnMut(Place) -> Result<bool, Error>,
    ) -> Result<Option<(usize, Place)>, Error> {
        if self.slots.is_empty() {
            return Ok(None);
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let [h, p] = self.slots[i];
            if p == 0 {
                return Ok(None);
            }
            if h == hash {
                let place = Place::unpack(p - 1);
                if is_key(place)? {
                    return Ok(Some((i, place)));
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds a key that is not here; the caller spills first when full.
    fn insert(&mut self, hash: u64, place: Place) {
        if self.len * 4 >= self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        while self.slots[i][1] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = [hash, place.pack() + 1];
        self.len += 1;
    }

    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        debug_assert!(n <= self.max);
        let old = std::mem::replace(&mut self.slots, vec![[0; 2]; n]);
        let mask = n - 1;
        for slot in old.into_iter().filter(|s| s[1] != 0) {
            let mut i = self.home(slot[0]);
            while self.slots[i][1] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
    }

    /// The entries sorted by hash, in the table's own storage; `clear` after.
    fn sorted(&mut self) -> &[[u64; 2]] {
        let mut n = 0;
        for i in 0..self.slots.len() {
            if self.slots[i][1] != 0 {
                self.slots[n] = self.slots[i];
                n += 1;
            }
        }
        self.slots[..n].sort_unstable_by_key(|s| s[0]);
        &self.slots[..n]
    }

    fn clear(&mut self) {
        self.slots.fill([0; 2]);
        self.len = 0;
    }
}

/// A split-block Bloom filter: each key sets one bit in each of the eight 32-bit
/// words of one 32-byte block, so a query touches one cache line.
struct Filter {
    blocks: Vec<[u32; 8]>,
}

const SALT: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

impl Filter {
    fn new() -> Filter {
        Filter {
            blocks: vec![[0; 8]; FILTER_BYTES / 32],
        }
    }

    fn block(&self, hash: u64) -> usize {
        (hash >> (64 - self.blocks.len().trailing_zeros())) as usize
    }

    fn at(&self, hash: u64) -> (usize, [u32; 8]) {
        let x = hash as u32;
        (
            self.block(hash),
            SALT.map(|s| 1 << (x.wrapping_mul(s) >> 27)),
        )
    }

    fn insert(&mut self, hash: u64) {
        let (b, masks) = self.at(hash);
        for (w, m) in self.blocks[b].iter_mut().zip(masks) {
            *w |= m;
        }
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (b, masks) = self.at(hash);
        self.blocks[b].iter().zip(masks).all(|(w, m)| w & m != 0)
    }
}

/// A run on disk: `count` entries `(hash, place)` (16 bytes, little-endian),
/// sorted by hash; among equal hashes the newer entry comes first.
struct Run {
    id: u64,
    count: u64,
    sum: u64,
    fences: Vec<u64>,
    file: File,
}

impl Run {
    /// The first entry for `hash` that `is_key` accepts.
    fn find(
        &self,
        hash: u64,
        page: &mut Vec<u8>,
        read: &mut u64,
        is_key: &mut dyn FnMut(Place) -> Result<bool, Error>,
        ioe: &dyn Fn(io::Error) -> Error,
    ) -> Result<Option<Place>, Error> {
        let mut p = self.fences.partition_point(|f| *f < hash).saturating_sub(1);
        while p < self.fences.len() {
            let start = p * PAGE_ENTRIES;
            let n = PAGE_ENTRIES.min(self.count as usize - start);
            page.resize(n * ENTRY, 0);
            // A positioned read: one WASI call, not a seek and a stream.
            fill_at(&self.file, page, (start * ENTRY) as u64).map_err(ioe)?;
            *read += page.len() as u64;
            for e in page.chunks_exact(ENTRY) {
                let h = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
                if h < hash {
                    continue;
                }
                if h > hash {
                    return Ok(None);
                }
                let place = Place::unpack(u64::from_le_bytes(e[8..].try_into().expect("8")));
                if is_key(place)? {
                    return Ok(Some(place));
                }
            }
            p += 1;
        }
        Ok(None)
    }
}

struct RunReader {
    input: BufReader<File>,
    left: u64,
}

impl RunReader {
    fn open(path: &Path, count: u64) -> io::Result<RunReader> {
        Ok(RunReader {
            input: BufReader::with_capacity(64 * 1024, File::open(path)?),
            left: count,
        })
    }

    fn next(&mut self) -> io::Result<Option<(u64, u64)>> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut e = [0u8; ENTRY];
        self.input.read_exact(&mut e)?;
        self.left -= 1;
        Ok(Some((
            u64::from_le_bytes(e[..8].try_into().expect("8")),
            u64::from_le_bytes(e[8..].try_into().expect("8")),
        )))
    }
}

struct RunWriter {
    id: u64,
    path: PathBuf,
    out: BufWriter<File>,
    count: u64,
    sum: StreamHash,
    fences: Vec<u64>,
}

impl RunWriter {
    fn create(path: PathBuf, id: u64) -> io::Result<RunWriter> {
        Ok(RunWriter {
            id,
            out: BufWriter::with_capacity(64 * 1024, File::create(&path)?),
            path,
            count: 0,
            sum: StreamHash::default(),
            fences: Vec::new(),
        })
    }

    fn push(&mut self, hash: u64, packed: u64) -> io::Result<()> {
        if self.count.is_multiple_of(PAGE_ENTRIES as u64) {
            self.fences.push(hash);
        }
        let mut e = [0u8; ENTRY];
        e[..8].copy_from_slice(&hash.to_le_bytes());
        e[8..].copy_from_slice(&packed.to_le_bytes());
        self.out.write_all(&e)?;
        self.sum.update(&e);
        self.count += 1;
        Ok(())
    }

    fn finish(mut self) -> io::Result<Run> {
        self.out.flush()?;
        drop(self.out);
        Ok(Run {
            id: self.id,
            count: self.count,
            sum: self.sum.finish(),
            fences: self.fences,
            file: File::open(&self.path)?,
        })
    }
}

/// Where a key was found: a slot of the hash table, or a run (its entry cannot
/// change; a newer one goes into the table).
pub(super) enum Found {
    Mem(usize),
    Run,
}

/// The key index. Memory: the hash table (at most [`MEM_MAX_SLOTS`] × 16 bytes),
/// the filter ([`FILTER_BYTES`], from the first run on), one fence per 256 keys
/// in runs (1 byte per 32 keys) and a page buffer.
pub(super) struct Index {
    files: IndexFiles,
    tag: u64,
    what: String,
    mem: Memtable,
    filter: Option<Filter>,
    /// Oldest first.
    runs: Vec<Run>,
    next_id: u64,
    covered: u64,
    keys: u64,
    /// Keys whose first entry is in the hash table (not in a run yet).
    mem_keys: u64,
    /// The manifest on disk, if any.
    committed: Option<Manifest>,
    /// Runs merged away that the manifest on disk still names.
    retired: Vec<u64>,
    page: Vec<u8>,
    /// What [`Index::prefetch`] read, kept so that its reads are not optimised away.
    touched: u64,
    /// Bytes of run files read and written.
    pub(super) read: u64,
    pub(super) written: u64,
}

impl Index {
    pub(super) fn new(files: IndexFiles, tag: u64, what: &str) -> Index {
        Index {
            files,
            tag,
            what: what.to_owned(),
            mem: Memtable::new(mem_limit()),
            filter: None,
            runs: Vec::new(),
            next_id: 0,
            covered: 0,
            keys: 0,
            mem_keys: 0,
            committed: None,
            retired: Vec::new(),
            page: Vec::new(),
            touched: 0,
            read: 0,
            written: 0,
        }
    }

    /// An index that holds nothing (what a finished writer keeps).
    pub(super) fn placeholder() -> Index {
        let mut ix = Index::new(IndexFiles::new(Path::new(""), "", ""), 0, "");
        ix.mem.slots = Vec::new();
        ix
    }

    fn ioe(&self) -> impl Fn(io::Error) -> Error + '_ {
        move |e| Error::io(&format!("{}: key index", self.what), e)
    }

    pub(super) fn keys(&self) -> u64 {
        self.keys
    }

    pub(super) fn covered(&self) -> u64 {
        self.covered
    }

    pub(super) fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Heap bytes held.
    pub(super) fn bytes(&self) -> usize {
        self.mem.slots.capacity() * 16
            + self.filter.as_ref().map_or(0, |f| f.blocks.capacity() * 32)
            + self
                .runs
                .iter()
                .map(|r| r.fences.capacity() * 8)
                .sum::<usize>()
            + self.page.capacity()
    }

    /// The newest entry of `hash` whose record `is_key` accepts (it reads the
    /// record back and compares the real key).
    pub(super) fn find(
        &mut self,
        hash: u64,
        is_key: &mut dyn FnMut(Place) -> Result<bool, Error>,
    ) -> Result<Option<(Found, Place)>, Error> {
        if let Some((i, place)) = self.mem.find(hash, is_key)? {
            return Ok(Some((Found::Mem(i), place)));
        }
        if !self.filter.as_ref().is_some_and(|f| f.may_contain(hash)) {
            return Ok(None);
        }
        let ioe = |e| Error::io(&format!("{}: key index", self.what), e);
        for run in self.runs.iter().rev() {
            if let Some(place) = run.find(hash, &mut self.page, &mut self.read, is_key, &ioe)? {
                return Ok(Some((Found::Run, place)));
            }
        }
        Ok(None)
    }

    /// Reads the table slot and the filter block where a lookup of each hash
    /// starts, so that the lookups find them in the cache: these reads do not
    /// depend on each other, and their cache misses overlap.
    pub(super) fn prefetch(&mut self, hashes: impl Iterator<Item = u64>) {
        if self.mem.slots.is_empty() {
            return;
        }
        let mut acc = 0;
        for hash in hashes {
            acc ^= self.mem.slots[self.mem.home(hash)][1];
            if let Some(f) = &self.filter {
                acc ^= u64::from(f.blocks[f.block(hash)][0]);
            }
        }
        self.touched ^= acc;
    }

    /// Adds an entry for a key not in the hash table (new, or found in a run).
    /// When the table is full it spills first, into a run that covers the
    /// records before `covered` (the position of the next record).
    pub(super) fn insert(&mut self, hash: u64, place: Place, covered: u64) -> Result<(), Error> {
        if self.mem.full() {
            self.spill(covered)?;
        }
        if matches!(place, Place::Stored(_)) {
            self.keys += 1;
            self.mem_keys += 1;
        }
        self.mem.insert(hash, place);
        Ok(())
    }

    pub(super) fn set(&mut self, slot: usize, place: Place) {
        self.mem.slots[slot][1] = place.pack() + 1;
    }

    fn spill(&mut self, covered: u64) -> Result<(), Error> {
        let id = self.next_id;
        self.next_id += 1;
        let path = self.files.run(id);
        let Index {
            mem, filter, what, ..
        } = self;
        let ioe = |e| Error::io(&format!("{what}: key index"), e);
        let filter = filter.get_or_insert_with(Filter::new);
        let mut w = RunWriter::create(path, id).map_err(ioe)?;
        for &[hash, p] in mem.sorted() {
            w.push(hash, p - 1).map_err(ioe)?;
            filter.insert(hash);
        }
        mem.clear();
        self.mem_keys = 0;
        self.written += w.count * ENTRY as u64;
        let run = w.finish().map_err(ioe)?;
        self.runs.push(run);
        self.covered = covered;
        self.merge()
    }

    /// Merges the two newest runs while the newer is over half the older (a
    /// binary counter: O(log) runs, each entry rewritten O(log) times).
    fn merge(&mut self) -> Result<(), Error> {
        while let [.., older, newer] = &self.runs[..] {
            if older.count >= 2 * newer.count {
                return Ok(());
            }
            let id = self.next_id;
            self.next_id += 1;
            let ioe = self.ioe();
            let mut w = RunWriter::create(self.files.run(id), id).map_err(&ioe)?;
            let mut a = RunReader::open(&self.files.run(newer.id), newer.count).map_err(&ioe)?;
            let mut b = RunReader::open(&self.files.run(older.id), older.count).map_err(&ioe)?;
            let (mut x, mut y) = (a.next().map_err(&ioe)?, b.next().map_err(&ioe)?);
            loop {
                match (x, y) {
                    (Some(e), Some(f)) if e.0 <= f.0 => {
                        w.push(e.0, e.1).map_err(&ioe)?;
                        x = a.next().map_err(&ioe)?;
                    }
                    (_, Some(f)) => {
                        w.push(f.0, f.1).map_err(&ioe)?;
                        y = b.next().map_err(&ioe)?;
                    }
                    (Some(e), None) => {
                        w.push(e.0, e.1).map_err(&ioe)?;
                        x = a.next().map_err(&ioe)?;
                    }
                    (None, None) => break,
                }
            }
            let bytes = w.count * ENTRY as u64;
            let run = w.finish().map_err(&ioe)?;
            drop(ioe);
            self.read += bytes;
            self.written += bytes;
            let newer = self.runs.pop().expect("two runs");
            let older = self.runs.pop().expect("two runs");
            self.runs.push(run);
            for id in [newer.id, older.id] {
                self.retire(id);
            }
        }
        Ok(())
    }

    fn committed_ids(&self) -> Vec<u64> {
        self.committed
            .as_ref()
            .map_or(Vec::new(), |m| m.runs.iter().map(|r| r.0).collect())
    }

    /// A run no longer used: removed, unless the manifest on disk names it.
    fn retire(&mut self, id: u64) {
        if self.committed_ids().contains(&id) {
            self.retired.push(id);
        } else {
            let _ = fs::remove_file(self.files.run(id));
        }
    }

    fn manifest(&self, file: Fingerprint) -> Manifest {
        Manifest {
            tag: self.tag,
            file,
            covered: self.covered,
            keys: self.keys - self.mem_keys,
            next: self.next_id,
            append: None,
            runs: self.runs.iter().map(|r| (r.id, r.count, r.sum)).collect(),
        }
    }

    /// Records that the index describes the entity file `file` (after a finish
    /// that kept every position): a manifest naming the runs if there are any,
    /// none otherwise (the next instance scans the file); runs no longer named go.
    pub(super) fn commit(&mut self, file: Fingerprint) -> Result<(), Error> {
        if self.runs.is_empty() {
            let path = self.files.manifest();
            if self.committed.is_some() || path.exists() {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(self.ioe()(e)),
                    _ => sync_dir(&self.files.dir),
                }
            }
            self.committed = None;
        } else {
            let m = self.manifest(file);
            if self.committed.as_ref() != Some(&m) {
                // Not made durable: if it is lost, the append manifest before it
                // is still there, and the appended bytes prove the append done.
                m.write(&self.files, false).map_err(self.ioe())?;
                self.committed = Some(m);
            }
        }
        for id in std::mem::take(&mut self.retired) {
            let _ = fs::remove_file(self.files.run(id));
        }
        Ok(())
    }

    /// Before the first byte is appended to the entity file: a manifest that
    /// says what the file was (`before`, the runs that index it) and what the
    /// append will make it (`len`, a line break first or not, the hash of the
    /// appended records), durable.
    pub(super) fn begin_append(
        &mut self,
        before: Fingerprint,
        len: u64,
        pad: bool,
        sum: u64,
    ) -> Result<(), Error> {
        let mut m = self.committed.clone().unwrap_or(Manifest {
            tag: self.tag,
            file: before,
            covered: 0,
            keys: 0,
            next: self.next_id,
            append: None,
            runs: Vec::new(),
        });
        m.file = before;
        m.next = m.next.max(self.next_id);
        m.append = Some((len, pad, sum));
        m.write(&self.files, true).map_err(self.ioe())?;
        // The manifest on disk names the same runs as before.
        Ok(())
    }

    /// An unfinished session: the runs it made go; the manifest on disk and the
    /// runs it names stay.
    pub(super) fn abandon(&mut self) {
        let keep = self.committed_ids();
        for run in &self.runs {
            if !keep.contains(&run.id) {
                let _ = fs::remove_file(self.files.run(run.id));
            }
        }
    }

    /// Rebuilds the index of the entity file at `path` from its manifest: the
    /// runs are read whole (checked against their count, order and hash) into the
    /// filter and fences. An interrupted append is completed (all its bytes are
    /// there, as the manifest's hash says) or undone (the file is truncated back to
    /// its length before). `None` when there is no usable manifest: the caller
    /// scans the file. The records from [`Index::covered`] on are not in the runs.
    pub(super) fn restore(
        files: IndexFiles,
        tag: u64,
        what: &str,
        path: &Path,
    ) -> Result<Option<Index>, Error> {
        let Some(m) = Manifest::read(&files.manifest()) else {
            return Ok(None);
        };
        if m.tag != tag {
            return Ok(None);
        }
        let ioe = |e| Error::io(&format!("{what}: {}", path.display()), e);
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ioe(e)),
        };
        let len = file.metadata().map_err(ioe)?.len();
        let mut m = m;
        if let Some((after, pad, sum)) = m.append {
            if len < m.file.len || Fingerprint::prefix(&file, m.file.len).map_err(ioe)? != m.file {
                return Ok(None);
            }
            let complete = len == after && appended(&file, m.file.len, pad, sum).map_err(ioe)?;
            if !complete {
                let f = OpenOptions::new().write(true).open(path).map_err(ioe)?;
                f.set_len(m.file.len).map_err(ioe)?;
                sync(&f).map_err(ioe)?;
            }
            m.append = None;
        } else if Fingerprint::of(&file).map_err(ioe)? != m.file {
            return Ok(None);
        }
        let mut ix = Index::new(files, tag, what);
        ix.next_id = m.next;
        ix.covered = m.covered;
        ix.keys = m.keys;
        for &(id, count, sum) in &m.runs {
            match ix.load_run(id, count, sum) {
                Ok(true) => {}
                Ok(false) | Err(_) => return Ok(None),
            }
        }
        ix.files
            .remove_runs_except(&m.runs.iter().map(|r| r.0).collect::<Vec<_>>());
        ix.committed = Some(m);
        if ix.committed.as_ref().is_some_and(|m| m.file.len != len) || ix.runs.is_empty() {
            // After an interrupted append: a manifest for the file as it is now.
            let file = File::open(path).map_err(ioe)?;
            let fp = Fingerprint::of(&file).map_err(ioe)?;
            ix.committed = None;
            ix.commit(fp)?;
        }
        Ok(Some(ix))
    }

    /// Reads a run whole into the filter and its fences; `false` if it is not
    /// what the manifest says.
    fn load_run(&mut self, id: u64, count: u64, sum: u64) -> io::Result<bool> {
        let path = self.files.run(id);
        let file = File::open(&path)?;
        if file.metadata()?.len() != count * ENTRY as u64 {
            return Ok(false);
        }
        let mut input = RunReader::open(&path, count)?;
        let filter = self.filter.get_or_insert_with(Filter::new);
        let mut hash = StreamHash::default();
        let mut fences = Vec::with_capacity(count.div_ceil(PAGE_ENTRIES as u64) as usize);
        let mut last = 0;
        let mut n = 0u64;
        while let Some((h, p)) = input.next()? {
            if h < last {
                return Ok(false);
            }
            if n.is_multiple_of(PAGE_ENTRIES as u64) {
                fences.push(h);
            }
            let mut e = [0u8; ENTRY];
            e[..8].copy_from_slice(&h.to_le_bytes());
            e[8..].copy_from_slice(&p.to_le_bytes());
            hash.update(&e);
            filter.insert(h);
            last = h;
            n += 1;
        }
        self.read += count * ENTRY as u64;
        if hash.finish() != sum {
            return Ok(false);
        }
        self.runs.push(Run {
            id,
            count,
            sum,
            fences,
            file,
        });
        Ok(true)
    }
}

/// Whether bytes `from..` of `file` are what an append wrote: a line break if
/// `pad`, then bytes hashing to `sum`.
pub(super) fn appended(file: &File, from: u64, pad: bool, sum: u64) -> io::Result<bool> {
    let mut input = file;
    input.seek(SeekFrom::Start(from))?;
    let mut input = BufReader::with_capacity(64 * 1024, input);
    if pad {
        let mut b = [0u8];
        input.read_exact(&mut b)?;
        if b[0] != b'\n' {
            return Ok(false);
        }
    }
    let mut hash = StreamHash::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(hash.finish() == sum);
        }
        hash.update(&buf[..n]);
    }
}

/// The index kept after a session finished, for the next session on the same
/// file in this instance (one entity at a time: memory stays one index).
struct Kept {
    path: PathBuf,
    tag: u64,
    file: Fingerprint,
    index: Index,
}

thread_local! {
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

/// Keeps `index`, which describes the entity file at `path` as `file` says.
pub(super) fn keep(path: &Path, tag: u64, file: Fingerprint, index: Index) {
    KEPT.with(|k| {
        *k.borrow_mut() = Some(Kept {
            path: path.to_owned(),
            tag,
            file,
            index,
        })
    });
}

/// The kept index if it is for this file as it is now; the kept index goes
/// either way.
pub(super) fn take_kept(path: &Path, tag: u64, file: Option<&Fingerprint>) -> Option<Index> {
    let kept = KEPT.with(|k| k.borrow_mut().take())?;
    (kept.path == path && kept.tag == tag && Some(&kept.file) == file).then_some(kept.index)
}

/// Forgets the kept index, as a fresh instance would have none. For tests
/// (feature `test-hooks`).
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub fn __forget_kept_index() {
    KEPT.with(|k| k.borrow_mut().take());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_hash_ignores_chunking_and_manifest_round_trips() {
        let data: Vec<u8> = (0..1000u32).map(|n| (n * 7) as u8).collect();
        let mut a = StreamHash::default();
        a.update(&data);
        let mut b = StreamHash::default();
        for c in data.chunks(3) {
            b.update(c);
        }
        assert_eq!(a.finish(), b.finish());
        let m = Manifest {
            tag: 1,
            file: Fingerprint {
                len: 2,
                mtime: 3,
                head: 4,
                tail: u64::MAX,
            },
            covered: 5,
            keys: 6,
            next: 7,
            append: Some((8, true, 9)),
            runs: vec![(1, 2, 3), (4, 5, 6)],
        };
        let text = m.to_text();
        assert_eq!(Manifest::parse(&text), Some(m));
        // Any change or truncation is refused.
        assert_eq!(Manifest::parse(&text.replace("keys 6", "keys 7")), None);
        assert_eq!(Manifest::parse(&text[..text.len() - 2]), None);
    }

    #[test]
    fn the_filter_has_no_false_negatives_and_few_false_positives() {
        let mut f = Filter::new();
        let n = 2_000_000u64;
        for i in 0..n {
            f.insert(mix(i));
        }
        assert!((0..n).all(|i| f.may_contain(mix(i))));
        let fp = (n..n + 1_000_000)
            .filter(|i| f.may_contain(mix(*i)))
            .count();
        // 67 bits per key: practically none.
        assert!(fp < 100, "{fp} false positives");
    }
}
