//! An upserting writer for one record-per-entry file (CSV rows, JSON lines) that
//! never holds the records in memory, and whose key index has a fixed memory
//! budget whatever the number of keys.
//!
//! The design, its memory budget and its crash-safety argument are documented
//! on [`KeyedFileWriter`]; the index itself is in `index.rs`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use self::host_index::{Digest, Entry, HostIndex, State};
use self::index::{Fingerprint, Found, Index, IndexFiles, Place, StreamHash, sync};
use super::{entity_path, io_error, temp_path};
use crate::{Batch, Error, RecordError, UpsertOutcome, Writer};

mod host_index;
mod index;
#[cfg(all(not(target_os = "wasi"), any(test, feature = "test-hooks")))]
pub use host_index::{__memory_index_calls, __use_memory_index};
#[cfg(any(test, feature = "test-hooks"))]
pub use index::{__forget_kept_index, __set_index_slots};

// The crash hooks exist only for the SDK's own tests (feature `test-hooks`, which
// only its dev-dependency on itself turns on): a plugin built against the SDK has
// neither the hooks nor the thread-local they read.
#[cfg(any(test, feature = "test-hooks"))]
thread_local! {
    static CRASH_AT: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Makes the next `finish` on this thread that appends stop as a crash would,
/// at `step`: 1 after the append manifest, 2 after half the records were
/// appended, 3 after the appended records were made durable. `finish` then
/// returns an error and cleans nothing up (forget the writer to skip `drop`).
/// For tests (feature `test-hooks`).
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub fn __crash_during_append(step: u8) {
    CRASH_AT.with(|c| c.set(step));
}

/// Whether a test asked for a crash at `step`.
#[cfg(any(test, feature = "test-hooks"))]
fn crash_armed(step: u8) -> bool {
    CRASH_AT.with(|c| c.get()) == step
}

#[cfg(not(any(test, feature = "test-hooks")))]
fn crash_armed(_step: u8) -> bool {
    false
}

fn crash_at(step: u8) -> Result<(), Error> {
    if crash_armed(step) {
        #[cfg(any(test, feature = "test-hooks"))]
        CRASH_AT.with(|c| c.set(0));
        return Err(Error::internal("simulated crash"));
    }
    Ok(())
}

/// Entity files at least this large get new records appended at `finish`;
/// smaller ones are copied (no manifest needed, at most this many bytes copied).
const APPEND_MIN: u64 = 1 << 20;

/// A stored record read back for a record of the batch being upserted.
#[derive(Debug)]
pub enum StoredRecord<S> {
    /// Byte for byte what the format would write for the batch's record: same
    /// key, same values.
    SameAsNew,
    /// Decoded, to be keyed and merged.
    Decoded(S),
}

/// The file format a [`KeyedFileWriter`] writes: how records are keyed, read
/// back, encoded and merged. One value per write session; it may keep state (a
/// CSV header).
///
/// Positions are byte offsets in the file. A format must report a record's
/// position in [`RecordFormat::scan`] exactly where
/// [`RecordFormat::read_stored`] can read it back from, and the bytes between
/// two consecutive positions must be that whole record (its terminator included).
pub trait RecordFormat {
    /// A record read back from the file, decoded enough to be keyed and merged.
    type Stored;

    /// Reads the preamble of an existing file (a CSV header) from `input`, at the
    /// file's start, and returns its length in bytes. The default: no preamble.
    fn read_preamble(&mut self, input: &mut dyn BufRead) -> Result<u64, Error> {
        let _ = input;
        Ok(0)
    }

    /// Writes the preamble of a new file (the current one, if it changed). The
    /// default: none.
    fn write_preamble(&mut self, out: &mut Vec<u8>) {
        let _ = out;
    }

    /// Whether the preamble changed since the file's (or the first written) one,
    /// so that `finish` must write it anew and pass every record through
    /// [`RecordFormat::copy_record`]. The default: never.
    fn preamble_changed(&self) -> bool {
        false
    }

    /// Reads the records of `input`, which starts at byte `at` of the file on a
    /// record boundary, and calls `visit` with each record's position and, when
    /// `keys` is set, its key (`None` when incomplete: such a record is kept as it
    /// is and never matched). An error refuses the session: a record that could
    /// not be written back faithfully must not be rewritten.
    fn scan(
        &self,
        input: &mut dyn BufRead,
        at: u64,
        keys: bool,
        visit: &mut dyn FnMut(u64, Option<&str>) -> Result<(), Error>,
    ) -> Result<(), Error>;

    /// Reads one record from the start of `input`.
    fn read_stored(&self, input: &mut dyn BufRead) -> Result<Self::Stored, Error>;

    /// Reads one record from the start of `input` when record `i` of the
    /// current batch has its key hash: [`StoredRecord::SameAsNew`] when the
    /// stored bytes are exactly what [`RecordFormat::encode_new`] makes of record
    /// `i` (then the record has that key and already holds those values, and
    /// need not be decoded at all: a re-sync of unchanged data is a byte
    /// comparison per record), else the decoded record. The default decodes.
    fn read_stored_for(
        &self,
        input: &mut dyn BufRead,
        records: &Batch,
        i: usize,
    ) -> Result<StoredRecord<Self::Stored>, Error> {
        let _ = (records, i);
        self.read_stored(input).map(StoredRecord::Decoded)
    }

    /// Writes the key of a stored record into `key` (cleared); `false` when it
    /// has none.
    fn stored_key(&self, stored: &Self::Stored, key: &mut String) -> bool;

    /// Called once per batch before its records: resolves the key columns (a
    /// missing one is an error of the whole call) and whatever else the format
    /// needs.
    fn begin_batch(&mut self, records: &Batch) -> Result<(), Error>;

    /// Writes the key of record `i` into `key` (empty when called). An empty key
    /// part fails the record.
    fn batch_key(&mut self, records: &Batch, i: usize, key: &mut String)
    -> Result<(), RecordError>;

    /// Appends record `i` as a new stored record, terminator included.
    fn encode_new(&mut self, records: &Batch, i: usize, out: &mut Vec<u8>);

    /// Appends `stored` updated with record `i`'s fields, terminator included.
    fn encode_update(&mut self, stored: Self::Stored, records: &Batch, i: usize, out: &mut Vec<u8>);

    /// Whether record `i` would leave `stored` as it is: every field the batch
    /// carries already holds that value. Such an upsert writes nothing (no entry
    /// in the log of updates), and a session whose upserts all leave their records
    /// as they were does not rewrite the file: a scheduled re-sync of unchanged
    /// data costs the lookups and no write. Comparing values, not bytes, is the
    /// format's choice; when unsure, say `false` (the record is rewritten, which is
    /// always correct). The default: `false`.
    fn unchanged(&self, stored: &Self::Stored, records: &Batch, i: usize) -> bool {
        let _ = (stored, records, i);
        false
    }

    /// Bytes that identify how this format reads positions and keys besides the
    /// key fields and extension (a CSV delimiter): an index kept or persisted by
    /// a session is reused only by a session whose format says the same. The
    /// default: none.
    fn index_tag(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Appends one stored record's bytes (`raw`, as found between two positions)
    /// to the final file. The default: as it is, ending in exactly one `\n`.
    fn copy_record(&self, raw: &[u8], out: &mut Vec<u8>) {
        let end = raw
            .iter()
            .rposition(|b| *b != b'\n' && *b != b'\r')
            .map_or(0, |p| p + 1);
        if end > 0 {
            out.extend_from_slice(&raw[..end]);
            out.push(b'\n');
        }
    }
}

/// Bytes kept in a log's buffer before they are written out.
const FLUSH_AT: usize = 256 * 1024;

/// An append-only temporary file with its own write buffer, readable at any
/// position (the unwritten tail is read from the buffer).
struct Log {
    path: PathBuf,
    file: File,
    reader: File,
    buf: Vec<u8>,
    flushed: u64,
    /// The hash of the bytes written out.
    sum: StreamHash,
}

impl Log {
    fn create(path: PathBuf) -> io::Result<Log> {
        let file = File::create(&path)?;
        let reader = File::open(&path)?;
        Ok(Log {
            path,
            file,
            reader,
            buf: Vec::with_capacity(FLUSH_AT + 64 * 1024),
            flushed: 0,
            sum: StreamHash::default(),
        })
    }

    fn len(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    /// Writes the buffer out once it is full; called between records only, so a
    /// record is either all in the file or all in the buffer.
    fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        write_all_at(&self.file, &self.buf, self.flushed)?;
        self.sum.update(&self.buf);
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Calls `f` with a reader at byte `pos`.
    fn read_at<T>(&self, pos: u64, f: impl FnOnce(&mut dyn BufRead) -> T) -> io::Result<T> {
        if pos >= self.flushed {
            let mut slice = &self.buf[(pos - self.flushed) as usize..];
            return Ok(f(&mut slice));
        }
        read_file_at(&self.reader, pos, f)
    }
}

/// Writes all of `buf` at byte `offset` of `file` (a positioned write; the
/// file's cursor does not move).
///
/// Why not `Write::write_all`: under WASI 0.2 a plain write goes through an
/// output stream, which wasmtime runs on a thread of its blocking pool while the
/// caller waits; a positioned write is a `descriptor.write`, which a host that
/// allows blocking runs on the calling thread. With 2 cores and a busy pipeline,
/// the hand-off cost the writing thread more waiting than the writes took.
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match pwrite(file, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(target_os = "wasi")]
fn pwrite(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        // wasi-libc's; its `off_t` is 64-bit.
        fn pwrite(fd: i32, buf: *const u8, len: usize, offset: i64) -> isize;
    }
    let offset = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `buf` is valid for `buf.len()` bytes for the call, and the
    // descriptor is open for as long as `file` is borrowed.
    let n = unsafe { pwrite(file.as_raw_fd(), buf.as_ptr(), buf.len(), offset) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "wasi"))]
fn pwrite(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::write_at(file, buf, offset)
}

/// A 64-bit hash of a key's text (multiply-rotate over 8-byte words, then a
/// SplitMix64 finaliser, so the top bits the index uses are well mixed).
fn hash_key(key: &str) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes = key.as_bytes();
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    index::mix((h ^ u64::from_le_bytes(tail)).wrapping_mul(K))
}

/// The files of a session and where records are in them.
struct Store {
    entity: String,
    path: PathBuf,
    /// The entity file as it was at open, if it had any bytes.
    existing: Option<File>,
    /// The entity file's length at open (0 if missing).
    existing_len: u64,
    /// Where new records start in the index's positions: after the entity file
    /// and a line break it lacks.
    new_base: u64,
    /// Where the entity file's records start (after the preamble).
    data_start: u64,
    /// New records; created at the first.
    new: Option<Log>,
    /// Where records start in `new` (after a preamble it got).
    new_start: u64,
    /// Updated records, each after its home (`u64`) and length (`u32`); created
    /// at the first.
    updates: Option<Log>,
    /// Bytes read from and written to the entity file, the logs and the output
    /// (not the index's runs).
    read: std::cell::Cell<u64>,
    written: u64,
}

impl Store {
    fn ioe(&self, path: &Path, e: io::Error) -> Error {
        io_error(&self.entity, path, e)
    }

    /// The position the next new record gets.
    fn next_pos(&self) -> u64 {
        self.new_base + self.new.as_ref().map_or(0, Log::len)
    }

    /// Reads the latest record of a key back, with its home.
    fn read_place<F: RecordFormat>(
        &self,
        format: &F,
        place: Place,
    ) -> Result<(F::Stored, u64), Error> {
        self.read_place_with(place, |r| format.read_stored(r))
    }

    /// Reads the latest record of a key back for record `i` of the batch being
    /// upserted ([`RecordFormat::read_stored_for`]), with its home.
    fn read_place_for<F: RecordFormat>(
        &self,
        format: &F,
        place: Place,
        records: &Batch,
        i: usize,
    ) -> Result<(StoredRecord<F::Stored>, u64), Error> {
        self.read_place_with(place, |r| format.read_stored_for(r, records, i))
    }

    fn read_place_with<T>(
        &self,
        place: Place,
        read: impl FnOnce(&mut dyn BufRead) -> Result<T, Error>,
    ) -> Result<(T, u64), Error> {
        match place {
            Place::Updated(at) => {
                let log = self.updates.as_ref().expect("an update was written");
                log.read_at(at, |r| -> Result<_, Error> {
                    let mut head = [0u8; 12];
                    r.read_exact(&mut head)
                        .map_err(|e| self.ioe(&log.path, e))?;
                    let home = u64::from_le_bytes(head[..8].try_into().expect("8"));
                    Ok((read(r)?, home))
                })
                .map_err(|e| self.ioe(&log.path, e))?
            }
            Place::Stored(pos) if pos < self.existing_len => {
                let file = self.existing.as_ref().expect("a position in the file");
                let stored =
                    read_file_at(file, pos, read).map_err(|e| self.ioe(&self.path, e))??;
                Ok((stored, pos))
            }
            Place::Stored(pos) => {
                let log = self.new.as_ref().expect("a new record was written");
                let stored = log
                    .read_at(pos - self.new_base, read)
                    .map_err(|e| self.ioe(&log.path, e))??;
                Ok((stored, pos))
            }
        }
    }
}

/// The (home, latest version) pairs of updated keys, in sorted chunks: at most
/// [`ORDER_CHUNK`] in memory, the others spilled to a temporary file.
struct Order {
    path: PathBuf,
    pending: Vec<(u64, u64)>,
    file: Option<File>,
    /// Each spilled chunk's offset and number of pairs.
    chunks: Vec<(u64, u64)>,
    end: u64,
    total: u64,
}

/// Records of a scan handed to the host's index at once.
const SCAN_CHUNK: usize = 8192;

/// Keys of a scan and their entries, waiting to be put in the host's index
/// unless an earlier record has the key.
#[derive(Default)]
struct ScanChunk {
    keys: String,
    ends: Vec<usize>,
    entries: Vec<Entry>,
}

impl ScanChunk {
    fn push(&mut self, key: &str, entry: Entry) {
        self.keys.push_str(key);
        self.ends.push(self.keys.len());
        self.entries.push(entry);
    }

    /// Puts each key that neither the index nor an earlier record of the chunk
    /// has: a key repeated in the file keeps its first record.
    fn put_new(&mut self, host: &mut HostIndex) -> Result<(), Error> {
        let mut keys = Vec::with_capacity(self.ends.len());
        let mut start = 0;
        for &end in &self.ends {
            keys.push(&self.keys.as_bytes()[start..end]);
            start = end;
        }
        let found = host.lookup(&keys)?;
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        for ((key, entry), found) in keys.iter().zip(&self.entries).zip(found) {
            if found.is_none() && seen.insert(*key) {
                host.put(key, *entry)?;
            }
        }
        host.flush()?;
        self.keys.clear();
        self.ends.clear();
        self.entries.clear();
        Ok(())
    }
}

/// Pairs kept in memory before a chunk is sorted and spilled (2 MiB).
const ORDER_CHUNK: usize = 1 << 17;

impl Order {
    fn push(&mut self, home: u64, at: u64) -> io::Result<()> {
        self.pending.push((home, at));
        self.total += 1;
        if self.pending.len() >= ORDER_CHUNK {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.pending.sort_unstable();
        if self.file.is_none() {
            self.file = Some(File::create(&self.path)?);
        }
        let mut out = io::BufWriter::with_capacity(64 * 1024, self.file.as_ref().expect("created"));
        for (home, at) in &self.pending {
            out.write_all(&home.to_le_bytes())?;
            out.write_all(&at.to_le_bytes())?;
        }
        out.flush()?;
        let n = self.pending.len() as u64;
        self.chunks.push((self.end, n));
        self.end += n * 16;
        self.pending.clear();
        Ok(())
    }

    /// The latest version of each updated home, by home.
    fn merged(&mut self) -> io::Result<Merged> {
        self.pending.sort_unstable();
        let mut sources = vec![Source::Memory(
            std::mem::take(&mut self.pending).into_iter(),
        )];
        for &(offset, count) in &self.chunks {
            let mut file = File::open(&self.path)?;
            file.seek(SeekFrom::Start(offset))?;
            sources.push(Source::File(
                BufReader::with_capacity(8 * 1024, file),
                count,
            ));
        }
        let mut m = Merged {
            sources,
            heap: BinaryHeap::new(),
            head: None,
        };
        for s in 0..m.sources.len() {
            m.refill(s)?;
        }
        m.advance()?;
        Ok(m)
    }

    fn remove(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

enum Source {
    Memory(std::vec::IntoIter<(u64, u64)>),
    File(BufReader<File>, u64),
}

/// A k-way merge of the chunks of an [`Order`], the latest version winning.
struct Merged {
    sources: Vec<Source>,
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    head: Option<(u64, u64)>,
}

impl Merged {
    fn refill(&mut self, s: usize) -> io::Result<()> {
        let next = match &mut self.sources[s] {
            Source::Memory(it) => it.next(),
            Source::File(_, 0) => None,
            Source::File(r, left) => {
                let mut e = [0u8; 16];
                r.read_exact(&mut e)?;
                *left -= 1;
                Some((
                    u64::from_le_bytes(e[..8].try_into().expect("8")),
                    u64::from_le_bytes(e[8..].try_into().expect("8")),
                ))
            }
        };
        if let Some((home, at)) = next {
            self.heap.push(Reverse((home, at, s)));
        }
        Ok(())
    }

    fn advance(&mut self) -> io::Result<()> {
        self.head = None;
        let Some(Reverse((home, mut at, s))) = self.heap.pop() else {
            return Ok(());
        };
        self.refill(s)?;
        while let Some(Reverse((h, a, s))) = self.heap.peek().copied() {
            if h != home {
                break;
            }
            self.heap.pop();
            at = at.max(a);
            self.refill(s)?;
        }
        self.head = Some((home, at));
        Ok(())
    }

    /// The latest version of the record at `home`, if it was updated; homes must
    /// be asked for in increasing order.
    fn take(&mut self, home: u64) -> io::Result<Option<u64>> {
        while let Some((h, at)) = self.head {
            if h > home {
                break;
            }
            self.advance()?;
            if h == home {
                return Ok(Some(at));
            }
        }
        Ok(None)
    }
}

/// A write session on one entity file that upserts by key, with a key index of
/// bounded memory and never the records in memory; the file format is a
/// [`RecordFormat`].
///
/// # Records
///
/// [`KeyedFileWriter`] appends:
///
/// * a new key's record goes to a log of new records (a dot file next to the
///   entity file), in the file's own format;
/// * an updated key's record is read back from where it is (the entity file, the
///   log of new records or the log of updates), merged by the [`RecordFormat`],
///   and appended to a log of updates, after its *home* (the position of the
///   key's first record, where the latest version will go);
/// * whenever an index entry's hash matches, the record it points to is read back
///   and its real key compared, so a hash collision never merges two keys.
///
/// # The key index (memory: at most ~25 MiB, plus 1 byte per 32 keys)
///
/// The index maps a key's 64-bit hash to the *place* of its latest record:
///
/// * **a hash table of recent keys** (16-byte slots, growing to 4 MiB, 196,608
///   keys). When it is full it *spills*: its entries, sorted by hash, are written
///   to a new **run** file (`.<entity>.<ext>.run<n>`, 16 bytes per key), and the
///   table starts empty. Runs merge in pairs like a binary counter (a run is
///   merged into the one before while it is over half its size): O(log n) runs,
///   each key rewritten O(log n) times, all sequential I/O.
/// * **a Bloom filter over the runs** (16 MiB, split blocks: one cache line per
///   query), allocated with the first run. A key in no run — a new key, the
///   common case — is answered by the table and the filter without I/O. At 10M
///   keys the filter has 13 bits per key and ~0.3% false positives; past that it
///   degrades gracefully (a false positive costs a page read per run).
/// * **fences**: the first hash of each 4 KiB page of each run, so a lookup that
///   passes the filter reads one page (sometimes two) per run, newest run first.
///
/// An updated key found in a run gets a newer entry in the table (runs are never
/// changed in place). The list of updates to write at `finish` — (home, latest
/// entry) pairs — is kept in sorted chunks of 2 MiB spilled to a temporary file
/// and merged at `finish`. Hot-path cost of a new key: hashing, one table probe,
/// one filter probe, encoding into a buffer.
///
/// # Finish
///
/// [`Writer::finish`] makes the result durable and visible:
///
/// * entity file missing or empty, no update: the log of new records *is* the
///   result and is renamed over the entity file;
/// * entity file under 1 MiB, no update, same preamble: the file and the log are
///   copied into a sibling, renamed over the entity file;
/// * entity file of 1 MiB or more, no update, same preamble: the new records are
///   **appended** to the entity file (below); the cost is the session's records,
///   not the file;
/// * otherwise (updates, or a CSV header that grew): the entity file and the log
///   of new records are copied in one sequential pass into a sibling, each updated
///   key's first record replaced in place by its latest version, renamed over the
///   entity file. Each key appears once, where it first appeared.
///
/// In the first three cases every record keeps its position, so the index stays
/// true: its manifest is written and the index is **kept in memory** for the next
/// session on the same file in this instance (the engine finishes and reopens the
/// writer at each checkpoint: reopening then costs nothing). A fresh instance
/// reads the manifest (`.<entity>.<ext>.index`: the runs, their hashes, up to
/// which position they cover, and a fingerprint of the entity file: length,
/// modification time, hashes of its first and last 4 KiB), rebuilds the filter and
/// fences by reading the runs (16 bytes per key, sequentially), and scans only
/// the records after the covered position (at most one table's worth). A manifest
/// that does not match (another program changed the file, other key fields or
/// format options, a run's count or hash wrong) is deleted with its runs and the
/// file is scanned whole, as without one. In the last case positions move: the
/// manifest and runs are deleted before the rename, and the next session scans
/// the file.
///
/// # Crash safety
///
/// Until `finish`, the entity file is not touched: an interrupted session leaves
/// it as it was (its logs and new runs are removed by `drop`, or overwritten by
/// the next session after a crash; runs no manifest names are deleted at open).
/// A rename replaces the file atomically, after the sibling was made durable.
///
/// An append is bracketed by the manifest. Before the first appended byte, a
/// manifest is made durable (written in place and fsync'ed; the directory too
/// when the manifest is new, where the platform allows it) that records the file
/// as it was (length, hashes of its ends), the runs that index it, and what the
/// append will make it: the new length and the hash of the appended bytes. Then
/// the records are appended and fsync'ed, and only then does `finish` return (and
/// the engine record its checkpoint). The manifest is then rewritten for the new
/// file without an fsync: if that write is lost or torn, the append manifest (or
/// none: a torn manifest fails its check line and the file is scanned) is what the
/// next session finds, and the appended bytes themselves prove the append
/// complete. Two fsyncs per append (the old copy-and-rename had one, plus the
/// copy). A session that opens the file and finds an append manifest decides from
/// the file alone:
///
/// * the file has the announced length and the appended bytes hash as announced:
///   the append completed (perhaps `finish` even returned, so it must stay); it is
///   kept, and its records are scanned into the index;
/// * otherwise the append did not complete, so `finish` did not return and no
///   checkpoint counts on it: the file is truncated back to its length before,
///   and no half record is ever read. The engine re-sends those records.
///
/// Both decisions require the file's prefix to match the manifest's hashes; if it
/// does not (another program rewrote the file) nothing is truncated and the
/// manifest is dropped. What an append does *not* give: a program reading the
/// file while `finish` appends, or after a crash before the next session, may see
/// the start of the appended records, the last one cut short.
///
/// The index files are derived data: any doubt about them (bad hash, wrong
/// length, unknown version) means they are deleted and the file scanned. A stale
/// index can never merge two keys, because every match is confirmed by reading the
/// record back.
///
/// # Semantics
///
/// A record whose key is already in the file (or was written earlier
/// in the session) is [`UpsertOutcome::Updated`] — merged into the stored record
/// by [`RecordFormat::encode_update`] — or [`UpsertOutcome::Unchanged`] when the
/// stored record already holds its values ([`RecordFormat::unchanged`]; nothing is
/// written), else [`UpsertOutcome::Inserted`]; a key
/// repeated in an existing file matches its first record, the others are kept as
/// they are; a session that writes nothing leaves the file as it was (and creates
/// none).
pub struct KeyedFileWriter<F: RecordFormat> {
    format: F,
    store: Store,
    dir: PathBuf,
    extension: String,
    files: IndexFiles,
    tag: u64,
    index: Index,
    /// The host's index (`weir:kv/index`), used instead of `index` when the
    /// host keeps one for this connection (see `host_index.rs`).
    host: Option<HostIndex>,
    /// A record encoded to compare its digest with the stored one's.
    scratch: Vec<u8>,
    order: Order,
    key: String,
    other_key: String,
    /// The current batch's keys, one after the other, and per record its key's
    /// hash and end in `keys` or why it has none (reused between batches).
    keys: String,
    keyed: Vec<Result<(u64, usize), RecordError>>,
    /// Upserts of this session that left their record as it was.
    unchanged: u64,
    finished: bool,
    /// The entity file as this session found it (`None`: there was none), checked
    /// again before `finish` touches it.
    opened_as: Option<Fingerprint>,
}

/// What identifies how a session keys records: a kept or persisted index is
/// reused only by a session with the same.
fn index_tag(extension: &str, key_fields: &[String], format_tag: &[u8]) -> u64 {
    let mut h = StreamHash::default();
    h.update(b"weir-keyed-index 1\0");
    h.update(extension.as_bytes());
    for k in key_fields {
        h.update(b"\0");
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
    }
    h.update(b"\0");
    h.update(format_tag);
    h.finish()
}

impl<F: RecordFormat> KeyedFileWriter<F> {
    /// Opens a session on `<dir>/<entity>.<extension>` and indexes its keys: the
    /// index the previous session on this file kept, else the manifest's runs
    /// and the records after them, else the whole file, record by record.
    /// Errors: no key fields, a bad entity name, or a file the format refuses.
    pub fn open(
        dir: &Path,
        entity: &str,
        extension: &str,
        key_fields: &[String],
        format: F,
    ) -> Result<KeyedFileWriter<F>, Error> {
        let path = entity_path(dir, entity, extension)?;
        if key_fields.is_empty() {
            return Err(Error::config(format!(
                "entity `{entity}`: upsert needs key fields"
            )));
        }
        // Temporary files of a session that died (a trap drops the instance before
        // `drop` can clean up): the host's destination lock means no live session of
        // weir's is writing them, so they are stale, and they would otherwise stay.
        for suffix in ["tmp", "new.tmp", "updates.tmp", "order.tmp"] {
            let _ = std::fs::remove_file(dir.join(format!(".{entity}.{extension}.{suffix}")));
        }
        let tag = index_tag(extension, key_fields, &format.index_tag());
        let files = IndexFiles::new(dir, entity, extension);
        let what = format!("entity `{entity}`");
        let ioe = |e| io_error(entity, &path, e);
        let open_file = || match File::open(&path) {
            Ok(file) => {
                let len = file.metadata().map_err(ioe)?.len();
                Ok((len > 0).then_some((file, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ioe(e)),
        };
        // The host's index when it keeps one: checked against the file (an
        // interrupted append resolved), else cleared for a scan.
        let host = match HostIndex::open(entity, extension, tag) {
            Some(host) => Some(Self::check_host(host, &files, tag, &what, &path)?),
            None => None,
        };
        let mut existing = open_file()?;
        let fingerprint = match &existing {
            Some((file, _)) => Some(Fingerprint::of(file).map_err(ioe)?),
            None => None,
        };
        // The index and where the records it lacks start (`None`: it has all).
        let kept = match &host {
            Some(_) => None,
            None => index::take_kept(&path, tag, fingerprint.as_ref()),
        };
        let (index, scan_from) = match kept {
            _ if host.is_some() => {
                let rebuild = host.as_ref().is_some_and(|(_, rebuild)| *rebuild);
                (Index::placeholder(), rebuild.then_some(0))
            }
            Some(mut index) => {
                (index.read, index.written) = (0, 0);
                (index, None)
            }
            None if existing.is_none() => {
                // Index files of a file that is gone are stale.
                files.discard();
                (Index::new(files.clone(), tag, &what), None)
            }
            None => match Index::restore(files.clone(), tag, &what, &path)? {
                Some(index) => {
                    // An interrupted append may have been undone.
                    existing = open_file()?;
                    let from = index.covered();
                    (index, Some(from))
                }
                None => {
                    files.discard();
                    (Index::new(files.clone(), tag, &what), Some(0))
                }
            },
        };
        let mut w = KeyedFileWriter {
            format,
            store: Store {
                entity: entity.to_owned(),
                path: path.clone(),
                existing: None,
                existing_len: 0,
                new_base: 0,
                data_start: 0,
                new: None,
                new_start: 0,
                updates: None,
                read: std::cell::Cell::new(0),
                written: 0,
            },
            dir: dir.to_owned(),
            extension: extension.to_owned(),
            files,
            tag,
            index,
            host: host.map(|(h, _)| h),
            scratch: Vec::new(),
            order: Order {
                path: dir.join(format!(".{entity}.{extension}.order.tmp")),
                pending: Vec::new(),
                file: None,
                chunks: Vec::new(),
                end: 0,
                total: 0,
            },
            key: String::new(),
            other_key: String::new(),
            unchanged: 0,
            keys: String::new(),
            keyed: Vec::new(),
            finished: false,
            opened_as: None,
        };
        if let Some((mut file, len)) = existing {
            file.seek(SeekFrom::Start(0)).map_err(ioe)?;
            w.store.data_start = w
                .format
                .read_preamble(&mut BufReader::with_capacity(8 * 1024, &file))?;
            let last = read_file_at(&file, len - 1, |r| {
                let mut b = [0u8];
                r.read_exact(&mut b).map(|()| b[0])
            })
            .and_then(|r| r)
            .map_err(ioe)?;
            w.store.existing_len = len;
            w.opened_as = Some(Fingerprint::of(&file).map_err(ioe)?);
            w.store.new_base = len + u64::from(last != b'\n');
            w.store.existing = Some(file);
            if let Some(from) = scan_from {
                let from = from.max(w.store.data_start);
                if from < len {
                    if w.host.is_some() {
                        w.load_host(from)?;
                    } else {
                        w.load(from)?;
                    }
                }
                if let Some(host) = &mut w.host {
                    // Rebuilt: the entries describe the file as it is.
                    let file = File::open(&path).map_err(ioe)?;
                    host.commit(&file, false)?;
                }
            }
        }
        Ok(w)
    }

    /// The format, e.g. for its state in tests.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// The heap bytes the key index takes: bounded (about 25 MiB at most, plus
    /// 8 bytes per 256 keys on disk), whatever the number of keys.
    pub fn index_bytes(&self) -> usize {
        self.index.bytes() + self.order.pending.capacity() * 16
    }

    /// How many upserts of this session found their record already holding the
    /// values they carried (and so wrote nothing); they are reported `Updated`.
    pub fn unchanged(&self) -> u64 {
        self.unchanged
    }

    /// The number of distinct keys indexed.
    pub fn keys(&self) -> usize {
        self.index.keys() as usize
    }

    /// The number of sorted runs the index has on disk.
    pub fn index_runs(&self) -> usize {
        self.index.runs()
    }

    /// Bytes of records this session read and wrote so far (scans of the entity
    /// file, copies, appends; not read-backs of single records). Work that grows
    /// with the file shows here.
    pub fn io_bytes(&self) -> (u64, u64) {
        (self.store.read.get(), self.store.written)
    }

    /// Bytes of the index's runs this session read and wrote so far (16 per key
    /// and merge, plus a page per lookup that passes the filter).
    pub fn index_io_bytes(&self) -> (u64, u64) {
        (self.index.read, self.index.written)
    }

    fn ioe(&self, path: &Path, e: io::Error) -> Error {
        self.store.ioe(path, e)
    }

    /// Indexes the existing file's records from byte `from` (a record boundary):
    /// the first record of each key.
    fn load(&mut self, from: u64) -> Result<(), Error> {
        let Self {
            format,
            index,
            store,
            other_key,
            ..
        } = self;
        let format: &F = format;
        let mut file = File::open(&store.path).map_err(|e| store.ioe(&store.path, e))?;
        file.seek(SeekFrom::Start(from))
            .map_err(|e| store.ioe(&store.path, e))?;
        let mut input = BufReader::with_capacity(
            64 * 1024,
            Counted {
                inner: file,
                count: &store.read,
            },
        );
        // The format reads the file through `input`; a read-back on a hash match
        // goes through the other handle.
        let store: &Store = store;
        let mut visit = |pos: u64, key: Option<&str>| -> Result<(), Error> {
            let Some(key) = key else {
                return Ok(());
            };
            let hash = hash_key(key);
            let found = index.find(hash, &mut |place| {
                let Place::Stored(_) = place else {
                    return Ok(false);
                };
                let (stored, _) = store.read_place(format, place)?;
                Ok(format.stored_key(&stored, other_key) && other_key == key)
            })?;
            // A key repeated in the file: its first record is the one matched.
            if found.is_none() {
                index.insert(hash, Place::Stored(pos), pos)?;
            }
            Ok(())
        };
        format.scan(&mut input, from, true, &mut visit)
    }

    /// Checks the host's index against the entity file at `path`: `(index,
    /// rebuild)`, `rebuild` when it was cleared and the file must be scanned. An
    /// append interrupted under it is completed or truncated away, as the
    /// writer's own manifest would; the writer's own index files (of sessions
    /// before the host kept the index) are resolved the same way, then deleted.
    fn check_host(
        mut host: HostIndex,
        files: &IndexFiles,
        tag: u64,
        what: &str,
        path: &Path,
    ) -> Result<(HostIndex, bool), Error> {
        if files.manifest().exists() {
            // Resolves an append it announced; its runs are not needed.
            drop(Index::restore(files.clone(), tag, what, path)?);
        }
        files.discard();
        let ioe = |e| Error::io(&format!("{what}: {}", path.display()), e);
        let file = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(ioe(e)),
        };
        let state = host.state()?;
        let now = match &file {
            Some(f) => Some(Fingerprint::of(f).map_err(ioe)?),
            None => None,
        };
        let mut valid = false;
        if let (Some(file), Some(now)) = (&file, &now) {
            if let Some(State::Appending { before, .. }) = state {
                let prefix_same = now.len >= before.len
                    && Fingerprint::prefix(file, before.len).map_err(ioe)? == before;
                if prefix_same {
                    valid = host_index::describes(state, Some(now), |before, _, pad, sum| {
                        index::appended(file, before.len, pad, sum)
                    })
                    .map_err(ioe)?;
                    if !valid {
                        // `finish` never returned: no checkpoint counts on the
                        // appended records, and the engine sends them again.
                        let f = OpenOptions::new().write(true).open(path).map_err(ioe)?;
                        f.set_len(before.len).map_err(ioe)?;
                        sync(&f).map_err(ioe)?;
                    }
                }
            } else {
                valid =
                    host_index::describes(state, Some(now), |_, _, _, _| Ok(false)).map_err(ioe)?;
            }
        }
        if valid {
            if matches!(state, Some(State::Appending { .. })) {
                let file = file.as_ref().expect("checked");
                host.commit(file, false)?;
            }
        } else {
            host.clear()?;
        }
        Ok((host, !valid && file.is_some()))
    }

    /// Indexes the existing file's records from byte `from` in the host's
    /// index, which was cleared: the first record of each key, with the digest
    /// of its bytes (so the next re-sync of unchanged records reads none).
    fn load_host(&mut self, from: u64) -> Result<(), Error> {
        let Self {
            format,
            host,
            store,
            ..
        } = self;
        let host = host.as_mut().expect("the host keeps the index");
        let format: &F = format;
        let store: &Store = store;
        let open_at = |at: u64| -> Result<BufReader<Counted<'_>>, Error> {
            let mut file = File::open(&store.path).map_err(|e| store.ioe(&store.path, e))?;
            file.seek(SeekFrom::Start(at))
                .map_err(|e| store.ioe(&store.path, e))?;
            Ok(BufReader::with_capacity(
                64 * 1024,
                Counted {
                    inner: file,
                    count: &store.read,
                },
            ))
        };
        let mut scanned = open_at(from)?;
        let mut bytes = open_at(from)?;
        let mut at = from;
        let mut raw = Vec::new();
        let mut chunk = ScanChunk::default();
        let mut record = |start: u64, end: u64, key: &str, chunk: &mut ScanChunk| {
            io::copy(&mut (&mut bytes).take(start - at), &mut io::sink())
                .map_err(|e| store.ioe(&store.path, e))?;
            raw.clear();
            (&mut bytes)
                .take(end - start)
                .read_to_end(&mut raw)
                .map_err(|e| store.ioe(&store.path, e))?;
            at = end;
            chunk.push(
                key,
                Entry {
                    place: Place::Stored(start),
                    digest: Some(Digest::of(&raw)),
                },
            );
            if chunk.entries.len() >= SCAN_CHUNK {
                chunk.put_new(host)?;
            }
            Ok::<(), Error>(())
        };
        let mut pending: Option<(u64, String)> = None;
        format.scan(&mut scanned, from, true, &mut |pos, key| {
            if let Some((start, k)) = pending.take() {
                record(start, pos, &k, &mut chunk)?;
            }
            pending = key.map(|k| (pos, k.to_owned()));
            Ok(())
        })?;
        if let Some((start, k)) = pending {
            record(start, store.existing_len, &k, &mut chunk)?;
        }
        chunk.put_new(host)?;
        host.flush()
    }

    /// Upserts a batch through the host's index: one lookup for the batch's
    /// keys, one put for what changed.
    fn upsert_host(
        &mut self,
        records: &Batch,
        keys: &str,
        keyed: &[Result<(u64, usize), RecordError>],
    ) -> Result<Vec<UpsertOutcome>, Error> {
        let Self {
            format,
            host,
            store,
            order,
            unchanged,
            scratch,
            ..
        } = self;
        let host = host.as_mut().expect("the host keeps the index");
        let mut spans = Vec::with_capacity(keyed.len());
        let mut start = 0;
        for k in keyed {
            if let Ok((_, end)) = k {
                spans.push(&keys.as_bytes()[start..*end]);
                start = *end;
            }
        }
        let found = host.lookup(&spans)?;
        // Keys this batch inserted or updated (the host sees them after the batch).
        let mut batch: std::collections::HashMap<&[u8], Entry> = std::collections::HashMap::new();
        let mut outcomes = Vec::with_capacity(keyed.len());
        let mut next = 0;
        for (i, k) in keyed.iter().enumerate() {
            if let Err(failure) = k {
                outcomes.push(UpsertOutcome::Failed(failure.clone()));
                continue;
            }
            let key = spans[next];
            let entry = batch.get(key).copied().or(found[next]);
            next += 1;
            let outcome = match entry {
                None => {
                    let (pos, digest) = Self::append_new_digest(store, format, records, i)?;
                    let e = Entry {
                        place: Place::Stored(pos),
                        digest: Some(digest),
                    };
                    host.put(key, e)?;
                    batch.insert(key, e);
                    UpsertOutcome::Inserted
                }
                Some(e) => {
                    scratch.clear();
                    format.encode_new(records, i, scratch);
                    let digest = Digest::of(scratch);
                    if e.digest == Some(digest) {
                        // Byte for byte what is stored: nothing read, nothing written.
                        *unchanged += 1;
                        UpsertOutcome::Unchanged
                    } else {
                        let (stored, home) = store.read_place_for(&*format, e.place, records, i)?;
                        let stored = match stored {
                            StoredRecord::SameAsNew => {
                                // Learned now: the next run compares digests.
                                let e = Entry {
                                    digest: Some(digest),
                                    ..e
                                };
                                host.put(key, e)?;
                                batch.insert(key, e);
                                None
                            }
                            StoredRecord::Decoded(s) if format.unchanged(&s, records, i) => None,
                            StoredRecord::Decoded(s) => Some(s),
                        };
                        match stored {
                            None => {
                                *unchanged += 1;
                                UpsertOutcome::Unchanged
                            }
                            Some(stored) => {
                                let (update, digest) =
                                    Self::append_update(store, format, home, stored, records, i)?;
                                order
                                    .push(home, update)
                                    .map_err(|e| store.ioe(&order.path, e))?;
                                let e = Entry {
                                    place: Place::Updated(update),
                                    digest: Some(digest),
                                };
                                host.put(key, e)?;
                                batch.insert(key, e);
                                UpsertOutcome::Updated
                            }
                        }
                    }
                }
            };
            outcomes.push(outcome);
        }
        host.flush()?;
        Ok(outcomes)
    }

    fn upsert_one(
        &mut self,
        records: &Batch,
        i: usize,
        key: &str,
        hash: u64,
    ) -> Result<UpsertOutcome, Error> {
        let Self {
            format,
            index,
            store,
            order,
            other_key,
            unchanged,
            ..
        } = self;
        let mut found = None;
        let hit = index.find(hash, &mut |place| {
            let (stored, home) = store.read_place_for(&*format, place, records, i)?;
            let same = match &stored {
                StoredRecord::SameAsNew => true,
                StoredRecord::Decoded(stored) => {
                    format.stored_key(stored, other_key) && other_key == key
                }
            };
            if same {
                found = Some((stored, home));
            }
            Ok(same)
        })?;
        match hit {
            None => {
                let pos = Self::append_new(store, format, records, i)?;
                index.insert(hash, Place::Stored(pos), pos)?;
                Ok(UpsertOutcome::Inserted)
            }
            Some((at, _)) => {
                let (stored, home) = found.expect("the matching record");
                let stored = match stored {
                    StoredRecord::SameAsNew => None,
                    StoredRecord::Decoded(stored) if format.unchanged(&stored, records, i) => None,
                    StoredRecord::Decoded(stored) => Some(stored),
                };
                let Some(stored) = stored else {
                    // The record already says this: nothing to append, nothing to
                    // rewrite, and the index keeps its place.
                    *unchanged += 1;
                    return Ok(UpsertOutcome::Unchanged);
                };
                let (update, _) = Self::append_update(store, format, home, stored, records, i)?;
                order
                    .push(home, update)
                    .map_err(|e| store.ioe(&order.path, e))?;
                match at {
                    Found::Mem(slot) => index.set(slot, Place::Updated(update)),
                    Found::Run => index.insert(hash, Place::Updated(update), store.next_pos())?,
                }
                Ok(UpsertOutcome::Updated)
            }
        }
    }

    /// [`Self::append_new`], with the digest of the bytes written.
    fn append_new_digest(
        store: &mut Store,
        format: &mut F,
        records: &Batch,
        i: usize,
    ) -> Result<(u64, Digest), Error> {
        let mut digest = None;
        let pos = Self::append_new_with(store, format, records, i, &mut |bytes| {
            digest = Some(Digest::of(bytes))
        })?;
        Ok((pos, digest.expect("encoded")))
    }

    fn create_log(store: &Store, path: PathBuf) -> Result<Log, Error> {
        Log::create(path.clone()).map_err(|e| store.ioe(&path, e))
    }

    /// Appends record `i` as new; returns its position.
    fn append_new(
        store: &mut Store,
        format: &mut F,
        records: &Batch,
        i: usize,
    ) -> Result<u64, Error> {
        Self::append_new_with(store, format, records, i, &mut |_| {})
    }

    /// [`Self::append_new`], showing `encoded` the record's bytes.
    fn append_new_with(
        store: &mut Store,
        format: &mut F,
        records: &Batch,
        i: usize,
        encoded: &mut dyn FnMut(&[u8]),
    ) -> Result<u64, Error> {
        let log = match &mut store.new {
            Some(log) => log,
            None => {
                let path = store.path.with_file_name(format!(
                    ".{}.new.tmp",
                    store.path.file_name().expect("a file").to_string_lossy()
                ));
                let mut log = Self::create_log(store, path)?;
                if store.existing.is_none() {
                    format.write_preamble(&mut log.buf);
                    store.new_start = log.len();
                }
                store.new.insert(log)
            }
        };
        let pos = store.new_base + log.len();
        let start = log.buf.len();
        format.encode_new(records, i, &mut log.buf);
        encoded(&log.buf[start..]);
        log.maybe_flush()
            .map_err(|e| io_error(&store.entity, &log.path, e))?;
        Ok(pos)
    }

    /// Appends `stored` updated with record `i`, after its home and length;
    /// returns its position in the log of updates and the digest of the
    /// record's bytes.
    fn append_update(
        store: &mut Store,
        format: &mut F,
        home: u64,
        stored: F::Stored,
        records: &Batch,
        i: usize,
    ) -> Result<(u64, Digest), Error> {
        let log = match &mut store.updates {
            Some(log) => log,
            None => {
                let path = store.path.with_file_name(format!(
                    ".{}.updates.tmp",
                    store.path.file_name().expect("a file").to_string_lossy()
                ));
                let log = Self::create_log(store, path)?;
                store.updates.insert(log)
            }
        };
        let at = log.len();
        log.buf.extend_from_slice(&home.to_le_bytes());
        log.buf.extend_from_slice(&[0; 4]);
        let start = log.buf.len();
        format.encode_update(stored, records, i, &mut log.buf);
        let len = u32::try_from(log.buf.len() - start)
            .map_err(|_| Error::internal("a record over 4 GiB"))?;
        log.buf[start - 4..start].copy_from_slice(&len.to_le_bytes());
        let digest = Digest::of(&log.buf[start..]);
        log.maybe_flush()
            .map_err(|e| io_error(&store.entity, &log.path, e))?;
        Ok((at, digest))
    }

    /// Writes the result and makes it the entity file.
    fn commit(&mut self) -> Result<(), Error> {
        if self.store.new.is_none() && self.order.total == 0 {
            // Nothing written: the file stays as it was (or absent).
            return self.keep_index();
        }
        if let Some(host) = &mut self.host {
            // From here until the new file's meta, the entries describe no file.
            host.set_state(State::Dirty, false)?;
        }
        self.check_unchanged()?;
        for log in [self.store.new.as_mut(), self.store.updates.as_mut()]
            .into_iter()
            .flatten()
        {
            log.flush()
                .map_err(|e| io_error(&self.store.entity, &log.path, e))?;
        }
        let path = self.store.path.clone();
        let entity = self.store.entity.clone();
        let rename =
            |from: &Path| std::fs::rename(from, &path).map_err(|e| io_error(&entity, &path, e));
        let keeps_positions = self.order.total == 0 && !self.format.preamble_changed();
        if !keeps_positions {
            // Positions move: the index files go first, never to describe the
            // new file.
            self.files.discard();
        }
        if keeps_positions && self.store.existing.is_none() {
            // Pure appends to a new file: the log is the result.
            let log = self.store.new.as_ref().expect("records were written");
            sync(&log.file).map_err(|e| self.ioe(&log.path, e))?;
            let _ = std::fs::remove_file(self.files.manifest());
            rename(&log.path)?;
        } else if keeps_positions && self.store.existing_len >= APPEND_MIN {
            self.append()?;
        } else {
            let tmp = temp_path(&self.dir, &self.store.entity, &self.extension);
            if keeps_positions {
                let _ = std::fs::remove_file(self.files.manifest());
            }
            let result = self.write_merged(&tmp).and_then(|()| rename(&tmp));
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        if keeps_positions {
            self.keep_index()
        } else {
            Ok(())
        }
    }

    /// Refuses to write when the entity file is no longer the one this session
    /// opened: another program wrote it, appended to it, created or removed it.
    ///
    /// Why: `finish` builds the result from the file as it was at `open` (renaming
    /// a merged copy over it, or appending at its old end), so whatever another
    /// writer put there meanwhile would be lost without a word. weir's own writers
    /// are kept apart by the host's destination lock; this catches the others
    /// (an appender, an editor, a second tool). The session's records are not
    /// written; the next run reads the file as it is then.
    fn check_unchanged(&self) -> Result<(), Error> {
        let path = &self.store.path;
        let now = match File::open(path) {
            Ok(file) => Some(Fingerprint::of(&file).map_err(|e| self.ioe(path, e))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.ioe(path, e)),
        };
        if now == self.opened_as {
            return Ok(());
        }
        let what = match (&self.opened_as, &now) {
            (None, Some(_)) => "was created by another program",
            (Some(_), None) => "was removed",
            (Some(before), Some(after)) if after.len > before.len => {
                "grew (another program appended to it)"
            }
            _ => "was changed by another program",
        };
        Err(Error::connection(format!(
            "entity `{}`: the file {what} while this run was writing it; it was not replaced, \
             and none of this session's records were written to it. Run again once the other writer is done",
            self.store.entity
        )))
    }

    /// The index describes the entity file as it is: its manifest says so, and
    /// the next session in this instance gets it.
    fn keep_index(&mut self) -> Result<(), Error> {
        let path = &self.store.path;
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.ioe(path, e)),
        };
        if let Some(host) = &mut self.host {
            // Durable when records were written: the next session trusts it.
            let wrote = self.store.new.is_some() || self.order.total > 0;
            if wrote || host.changed() {
                host.commit(&file, wrote)?;
            }
            return Ok(());
        }
        let fp = Fingerprint::of(&file).map_err(|e| self.ioe(path, e))?;
        self.index.commit(fp)?;
        let index = std::mem::replace(&mut self.index, Index::placeholder());
        index::keep(path, self.tag, fp, index);
        Ok(())
    }

    /// Appends the log of new records to the entity file, bracketed by the
    /// manifest (see the module documentation).
    fn append(&mut self) -> Result<(), Error> {
        let store = &self.store;
        let path = &store.path;
        let existing = store.existing.as_ref().expect("an entity file");
        let log = store.new.as_ref().expect("records were written");
        let before =
            Fingerprint::prefix(existing, store.existing_len).map_err(|e| self.ioe(path, e))?;
        let pad = store.new_base > store.existing_len;
        let after = store.new_base + log.len();
        match &mut self.host {
            Some(host) => host.set_state(
                State::Appending {
                    before,
                    after,
                    pad,
                    sum: log.sum.finish(),
                },
                true,
            )?,
            None => self
                .index
                .begin_append(before, after, pad, log.sum.finish())?,
        }
        crash_at(1)?;
        let mut out = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| self.ioe(path, e))?;
        out.seek(SeekFrom::Start(store.existing_len))
            .map_err(|e| self.ioe(path, e))?;
        if pad {
            out.write_all(b"\n").map_err(|e| self.ioe(path, e))?;
        }
        let mut input = File::open(&log.path).map_err(|e| self.ioe(&log.path, e))?;
        let mut buf = vec![0u8; FLUSH_AT];
        let mut copied = 0u64;
        loop {
            let n = input.read(&mut buf).map_err(|e| self.ioe(&log.path, e))?;
            if n == 0 {
                break;
            }
            if copied + n as u64 > log.len() / 2 && crash_armed(2) {
                let half = (log.len() / 2 - copied) as usize;
                out.write_all(&buf[..half]).map_err(|e| self.ioe(path, e))?;
                crash_at(2)?;
            }
            out.write_all(&buf[..n]).map_err(|e| self.ioe(path, e))?;
            copied += n as u64;
        }
        sync(&out).map_err(|e| self.ioe(path, e))?;
        crash_at(3)?;
        self.store.read.set(self.store.read.get() + copied);
        self.store.written += copied;
        Ok(())
    }

    /// The entity file then the new records, each updated key's first record
    /// replaced by its latest version, into `tmp`.
    fn write_merged(&mut self, tmp: &Path) -> Result<(), Error> {
        let mut out = Out {
            file: File::create(tmp).map_err(|e| self.ioe(tmp, e))?,
            buf: Vec::with_capacity(FLUSH_AT + 64 * 1024),
            written_last: None,
            written: 0,
        };
        let err = |e: io::Error| io_error(&self.store.entity, tmp, e);
        let mut updates = self
            .order
            .merged()
            .map_err(|e| io_error(&self.store.entity, &self.order.path, e))?;
        let changed = self.format.preamble_changed();
        if changed {
            self.format.write_preamble(&mut out.buf);
        }
        let plain = !changed && self.order.total == 0;
        let store = &self.store;
        if store.existing.is_some() {
            if plain {
                self.copy_raw(&store.path, 0, store.existing_len, &mut out, tmp)?;
                if out.last_byte().is_some_and(|b| b != b'\n') {
                    out.buf.push(b'\n');
                }
            } else if !changed && store.data_start > 0 {
                // The preamble, passed as a record: its line break made one `\n`.
                let mut preamble = Vec::new();
                let file = File::open(&store.path).map_err(|e| self.ioe(&store.path, e))?;
                file.take(store.data_start)
                    .read_to_end(&mut preamble)
                    .map_err(|e| self.ioe(&store.path, e))?;
                self.format.copy_record(&preamble, &mut out.buf);
            }
            if !plain {
                self.splice(
                    &store.path,
                    0,
                    store.data_start,
                    store.existing_len,
                    &mut out,
                    tmp,
                    &mut updates,
                )?;
            }
        }
        if let Some(log) = &store.new {
            let end = if plain { log.len() } else { store.new_start };
            if !changed {
                self.copy_raw(&log.path, 0, end, &mut out, tmp)?;
            }
            if !plain {
                self.splice(
                    &log.path,
                    store.new_base,
                    store.new_start,
                    log.len(),
                    &mut out,
                    tmp,
                    &mut updates,
                )?;
            }
        }
        out.buf_flush().map_err(err)?;
        sync(&out.file).map_err(err)?;
        self.store.written += out.written;
        Ok(())
    }

    /// Copies bytes `from..to` of `src` to `out` as they are.
    fn copy_raw(
        &self,
        src: &Path,
        from: u64,
        to: u64,
        out: &mut Out,
        tmp: &Path,
    ) -> Result<(), Error> {
        let mut file = File::open(src).map_err(|e| self.ioe(src, e))?;
        file.seek(SeekFrom::Start(from))
            .map_err(|e| self.ioe(src, e))?;
        let mut input = file.take(to - from);
        loop {
            let n = out.buf.len();
            out.buf.resize(n + 64 * 1024, 0);
            let read = input.read(&mut out.buf[n..]);
            let got = *read.as_ref().unwrap_or(&0);
            out.buf.truncate(n + got);
            read.map_err(|e| self.ioe(src, e))?;
            self.store.read.set(self.store.read.get() + got as u64);
            if got == 0 {
                return Ok(());
            }
            out.maybe_flush().map_err(|e| self.ioe(tmp, e))?;
        }
    }

    /// Copies the records of `src` between `from` and `to` (record boundaries)
    /// through [`RecordFormat::copy_record`], replacing the first record of each
    /// updated key (`base` + its position in `src` is its position in the index)
    /// with its latest version.
    #[allow(clippy::too_many_arguments)]
    fn splice(
        &self,
        src: &Path,
        base: u64,
        from: u64,
        to: u64,
        out: &mut Out,
        tmp: &Path,
        updates: &mut Merged,
    ) -> Result<(), Error> {
        let open_at = |at: u64| -> Result<BufReader<Counted<'_>>, Error> {
            let mut file = File::open(src).map_err(|e| self.ioe(src, e))?;
            file.seek(SeekFrom::Start(at))
                .map_err(|e| self.ioe(src, e))?;
            Ok(BufReader::with_capacity(
                64 * 1024,
                Counted {
                    inner: file,
                    count: &self.store.read,
                },
            ))
        };
        let mut scanned = open_at(from)?.take(to - from);
        let mut bytes = open_at(from)?;
        let mut at = from;
        let mut raw = Vec::new();
        let mut emit = |start: u64, end: u64| -> Result<(), Error> {
            // Bytes before a record (blank lines) are dropped.
            io::copy(&mut (&mut bytes).take(start - at), &mut io::sink())
                .map_err(|e| self.ioe(src, e))?;
            raw.clear();
            (&mut bytes)
                .take(end - start)
                .read_to_end(&mut raw)
                .map_err(|e| self.ioe(src, e))?;
            at = end;
            let latest = updates.take(base + start).map_err(|e| self.ioe(src, e))?;
            if let Some(pos) = latest {
                let log = self.store.updates.as_ref().expect("updates were written");
                log.read_at(pos, |r| -> io::Result<()> {
                    let mut head = [0; 12];
                    r.read_exact(&mut head)?;
                    let len = u32::from_le_bytes(head[8..].try_into().expect("4"));
                    raw.clear();
                    r.take(len as u64).read_to_end(&mut raw)?;
                    Ok(())
                })
                .and_then(|r| r)
                .map_err(|e| self.ioe(&log.path, e))?;
            }
            self.format.copy_record(&raw, &mut out.buf);
            out.maybe_flush().map_err(|e| self.ioe(tmp, e))
        };
        let mut pending: Option<u64> = None;
        self.format.scan(&mut scanned, from, false, &mut |pos, _| {
            if let Some(start) = pending.replace(pos) {
                emit(start, pos)?;
            }
            Ok(())
        })?;
        if let Some(start) = pending {
            emit(start, to)?;
        }
        Ok(())
    }

    fn remove_logs(&mut self) {
        for log in [self.store.new.take(), self.store.updates.take()]
            .into_iter()
            .flatten()
        {
            let _ = std::fs::remove_file(&log.path);
        }
        self.order.remove();
    }
}

impl<F: RecordFormat> Writer for KeyedFileWriter<F> {
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
        if self.finished {
            return Err(Error::internal(format!(
                "entity `{}`: the write session is finished",
                self.store.entity
            )));
        }
        self.format.begin_batch(&records)?;
        // First every record's key and hash, and the index's first reads for
        // them ahead of the lookups: independent loads, whose cache misses
        // overlap where lookup after lookup would wait for each.
        let mut keys = std::mem::take(&mut self.keys);
        let mut keyed = std::mem::take(&mut self.keyed);
        keys.clear();
        keyed.clear();
        for i in 0..records.len() {
            self.key.clear();
            match self.format.batch_key(&records, i, &mut self.key) {
                Ok(()) => {
                    keys.push_str(&self.key);
                    keyed.push(Ok((hash_key(&self.key), keys.len())));
                }
                Err(failure) => keyed.push(Err(failure)),
            }
        }
        if self.host.is_some() {
            let result = self.upsert_host(&records, &keys, &keyed);
            keyed.clear();
            (self.keys, self.keyed) = (keys, keyed);
            return result;
        }
        self.index.prefetch(
            keyed
                .iter()
                .filter_map(|k| k.as_ref().ok().map(|(h, _)| *h)),
        );
        let mut outcomes = Vec::with_capacity(records.len());
        let mut start = 0;
        let mut result = Ok(());
        for (i, k) in keyed.drain(..).enumerate() {
            match k {
                Ok((hash, end)) => {
                    match self.upsert_one(&records, i, &keys[start..end], hash) {
                        Ok(outcome) => outcomes.push(outcome),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                    start = end;
                }
                Err(failure) => outcomes.push(UpsertOutcome::Failed(failure)),
            }
        }
        keyed.clear();
        (self.keys, self.keyed) = (keys, keyed);
        result.map(|()| outcomes)
    }

    fn finish(&mut self) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        let result = self.commit();
        if matches!(&result, Err(Error::Internal(m)) if m == "simulated crash") {
            return result;
        }
        self.finished = true;
        self.remove_logs();
        // Whatever the finish did not keep (a failure, a rewrite) goes.
        self.index.abandon();
        result
    }
}

impl<F: RecordFormat> Drop for KeyedFileWriter<F> {
    /// An unfinished session leaves the entity file as it was; its logs and the
    /// runs no manifest names go.
    fn drop(&mut self) {
        self.remove_logs();
        self.index.abandon();
    }
}

/// A reader that counts the bytes it reads.
struct Counted<'a> {
    inner: File,
    count: &'a std::cell::Cell<u64>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// The output of `finish`, written in large blocks.
struct Out {
    file: File,
    buf: Vec<u8>,
    /// The last byte written out of `buf`.
    written_last: Option<u8>,
    written: u64,
}

impl Out {
    fn maybe_flush(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.buf_flush()?;
        }
        Ok(())
    }

    fn last_byte(&self) -> Option<u8> {
        self.buf.last().copied().or(self.written_last)
    }

    fn buf_flush(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.written_last = self.last_byte();
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// Calls `f` with a reader at byte `pos` of `file` (a handle used only for this).
fn read_file_at<T>(file: &File, pos: u64, f: impl FnOnce(&mut dyn BufRead) -> T) -> io::Result<T> {
    // One record is read (an update looks its stored record up): a small first
    // read, refilled as needed. 4 KiB per lookup copied ~4 GB through WASI on a
    // re-sync of 1M records of ~200 bytes. Positioned reads: one WASI call
    // (`descriptor.read` at an offset) where a seek and a read made the host
    // open an input stream per record.
    Ok(f(&mut BufReader::with_capacity(
        READ_AT_BYTES,
        PosReader { file, pos },
    )))
}

/// Reads `file` from `pos` on with positioned reads (the file's cursor stays).
struct PosReader<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for PosReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = pread(self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(target_os = "wasi")]
fn pread(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    unsafe extern "C" {
        // wasi-libc's; its `off_t` is 64-bit.
        fn pread(fd: i32, buf: *mut u8, len: usize, offset: i64) -> isize;
    }
    let offset = i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call, and
    // the descriptor is open for as long as `file` is borrowed.
    let n = unsafe { pread(file.as_raw_fd(), buf.as_mut_ptr(), buf.len(), offset) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "wasi"))]
fn pread(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

/// The read size when one record is read back (longer records take more reads).
const READ_AT_BYTES: usize = 512;

/// A line format for tests: `key<TAB>value\n`; an update replaces the value.
#[cfg(any(test, feature = "test-hooks"))]
#[doc(hidden)]
pub mod __test_format {
    use super::*;

    /// `key\tvalue` lines keyed by the batch's `key` column, valued by `value`.
    pub struct Lines;

    impl RecordFormat for Lines {
        type Stored = String;

        fn scan(
            &self,
            input: &mut dyn BufRead,
            at: u64,
            _keys: bool,
            visit: &mut dyn FnMut(u64, Option<&str>) -> Result<(), Error>,
        ) -> Result<(), Error> {
            let mut pos = at;
            let mut line = String::new();
            loop {
                line.clear();
                let n = input
                    .read_line(&mut line)
                    .map_err(|e| Error::io("lines", e))?;
                if n == 0 {
                    return Ok(());
                }
                let key = line.split('\t').next().filter(|k| !k.trim().is_empty());
                visit(pos, key)?;
                pos += n as u64;
            }
        }

        fn read_stored(&self, input: &mut dyn BufRead) -> Result<String, Error> {
            let mut line = String::new();
            input
                .read_line(&mut line)
                .map_err(|e| Error::io("lines", e))?;
            Ok(line)
        }

        fn stored_key(&self, stored: &String, key: &mut String) -> bool {
            key.clear();
            key.push_str(stored.split('\t').next().unwrap_or(""));
            true
        }

        fn begin_batch(&mut self, records: &Batch) -> Result<(), Error> {
            records
                .column("key")
                .map(drop)
                .ok_or_else(|| Error::config("no key column"))
        }

        fn batch_key(
            &mut self,
            records: &Batch,
            i: usize,
            key: &mut String,
        ) -> Result<(), RecordError> {
            match records.row(i).text("key") {
                Some(k) if !k.is_empty() => {
                    key.push_str(k);
                    Ok(())
                }
                _ => Err(RecordError::field("key", "key field `key` is empty")),
            }
        }

        fn encode_new(&mut self, records: &Batch, i: usize, out: &mut Vec<u8>) {
            let row = records.row(i);
            out.extend_from_slice(row.text("key").unwrap_or("").as_bytes());
            out.push(b'\t');
            out.extend_from_slice(row.text("value").unwrap_or("").as_bytes());
            out.push(b'\n');
        }

        fn encode_update(&mut self, stored: String, records: &Batch, i: usize, out: &mut Vec<u8>) {
            let _ = stored;
            self.encode_new(records, i, out);
        }

        fn unchanged(&self, stored: &String, records: &Batch, i: usize) -> bool {
            let value = stored
                .trim_end_matches('\n')
                .split_once('\t')
                .map(|(_, v)| v);
            value == Some(records.row(i).text("value").unwrap_or(""))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::__test_format::Lines;
    use super::*;
    use crate::testing::TestDir;
    use crate::{BatchBuilder, FieldType, Value};

    fn batch(rows: &[(&str, &str)]) -> Batch {
        let mut b = BatchBuilder::new(&[("key", FieldType::Text), ("value", FieldType::Text)]);
        for (k, v) in rows {
            b.push_row(&[Value::Text((*k).into()), Value::Text((*v).into())])
                .unwrap();
        }
        b.finish()
    }

    fn open(dir: &TestDir) -> KeyedFileWriter<Lines> {
        KeyedFileWriter::open(dir.path(), "t", "txt", &["key".to_owned()], Lines).unwrap()
    }

    use UpsertOutcome::{Inserted as I, Unchanged as C, Updated as U};

    #[test]
    fn a_file_changed_by_another_program_during_the_session_is_not_replaced() {
        use std::io::Write as _;
        // An appender adds a line while the session writes: the merge would drop it.
        let dir = TestDir::new();
        dir.write("t.txt", "a\t1\n");
        let mut w = open(&dir);
        assert_eq!(w.upsert(batch(&[("a", "2"), ("b", "1")])).unwrap(), [U, I]);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("t.txt"))
            .unwrap();
        f.write_all(b"z\tappended\n").unwrap();
        drop(f);
        let err = w.finish().unwrap_err().to_string();
        assert!(
            err.contains("grew (another program appended to it)"),
            "{err}"
        );
        assert_eq!(
            dir.read("t.txt"),
            "a\t1\nz\tappended\n",
            "the appender's line is kept"
        );
        // Created by another writer while a session that found no file was writing.
        let dir = TestDir::new();
        let mut w = open(&dir);
        assert_eq!(w.upsert(batch(&[("a", "1")])).unwrap(), [I]);
        dir.write("t.txt", "x\tother\n");
        let err = w.finish().unwrap_err().to_string();
        assert!(err.contains("was created by another program"), "{err}");
        assert_eq!(dir.read("t.txt"), "x\tother\n");
        // Nothing changed: the session commits as ever.
        let mut w = open(&dir);
        assert_eq!(w.upsert(batch(&[("x", "2")])).unwrap(), [U]);
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt"), "x\t2\n");
    }

    #[test]
    fn a_session_removes_temporary_files_a_dead_session_left() {
        let dir = TestDir::new();
        for name in [
            ".t.txt.tmp",
            ".t.txt.new.tmp",
            ".t.txt.updates.tmp",
            ".t.txt.order.tmp",
        ] {
            dir.write(name, "left by a trapped instance");
        }
        let mut w = open(&dir);
        w.upsert(batch(&[("a", "1")])).unwrap();
        w.finish().unwrap();
        let left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn insert_then_update_across_sessions_keeps_first_seen_order() {
        let dir = TestDir::new();
        let mut w = open(&dir);
        assert_eq!(w.upsert(batch(&[("a", "1"), ("b", "1")])).unwrap(), [I, I]);
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt"), "a\t1\nb\t1\n");
        let mut w = open(&dir);
        assert_eq!(w.keys(), 2);
        let out = w
            .upsert(batch(&[("b", "2"), ("c", "1"), ("a", "2"), ("b", "3")]))
            .unwrap();
        assert_eq!(out, [U, I, U, U]);
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt"), "a\t2\nb\t3\nc\t1\n");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["t.txt"], "no temporary file left");
    }

    /// Obeyed/violated pair: a session whose upserts all carry what the file
    /// holds writes nothing (same bytes, same inode, no temporary file, the index
    /// kept); one changed value rewrites the file.
    #[test]
    fn a_session_of_unchanged_records_does_not_rewrite_the_file() {
        use std::os::unix::fs::MetadataExt;
        let dir = TestDir::new();
        let mut w = open(&dir);
        w.upsert(batch(&[("a", "1"), ("b", "1"), ("c", "1")]))
            .unwrap();
        w.finish().unwrap();
        let before = std::fs::metadata(dir.path().join("t.txt")).unwrap();
        let mut w = open(&dir);
        let out = w
            .upsert(batch(&[("b", "1"), ("a", "1"), ("c", "1")]))
            .unwrap();
        assert_eq!(out, [C, C, C]);
        assert_eq!(w.unchanged(), 3);
        w.finish().unwrap();
        let after = std::fs::metadata(dir.path().join("t.txt")).unwrap();
        assert_eq!(dir.read("t.txt"), "a\t1\nb\t1\nc\t1\n");
        assert_eq!(
            (before.ino(), before.mtime_nsec(), before.mtime()),
            (after.ino(), after.mtime_nsec(), after.mtime()),
            "not rewritten"
        );
        let tmp: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(tmp.is_empty(), "no temporary file: {tmp:?}");

        let mut w = open(&dir);
        let out = w.upsert(batch(&[("a", "1"), ("b", "2")])).unwrap();
        assert_eq!(out, [C, U]);
        assert_eq!(w.unchanged(), 1);
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt"), "a\t1\nb\t2\nc\t1\n");
        let rewritten = std::fs::metadata(dir.path().join("t.txt")).unwrap();
        assert_ne!(
            before.ino(),
            rewritten.ino(),
            "a changed value rewrites the file"
        );
    }

    #[test]
    fn duplicate_keys_in_one_batch_of_a_new_file_and_failures() {
        let dir = TestDir::new();
        let mut w = open(&dir);
        let out = w
            .upsert(batch(&[
                ("a", "1"),
                ("", "x"),
                ("a", "2"),
                ("b", "1"),
                ("a", "3"),
            ]))
            .unwrap();
        assert!(matches!(out[1], UpsertOutcome::Failed(_)));
        assert_eq!([&out[0], &out[2], &out[3], &out[4]], [&I, &U, &I, &U]);
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt"), "a\t3\nb\t1\n");
    }

    #[test]
    fn an_unfinished_session_leaves_the_file_as_it_was() {
        let dir = TestDir::new();
        dir.write("t.txt", "a\t1\n");
        let mut w = open(&dir);
        w.upsert(batch(&[("a", "2"), ("b", "1")])).unwrap();
        drop(w);
        assert_eq!(dir.read("t.txt"), "a\t1\n");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "logs removed");
        // A crash leaves logs behind: the next session starts them afresh.
        dir.write(".t.txt.new.tmp", "junk\tjunk\n");
        dir.write(".t.txt.updates.tmp", "junk");
        let mut w = open(&dir);
        assert_eq!(w.upsert(batch(&[("b", "1")])).unwrap(), [I]);
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt"), "a\t1\nb\t1\n");
        // Nothing written: the file is not touched; no file is created.
        let mut w = open(&dir);
        w.upsert(batch(&[])).unwrap();
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt"), "a\t1\nb\t1\n");
        let empty = TestDir::new();
        open(&empty).finish().unwrap();
        assert!(!empty.path().join("t.txt").exists());
    }

    #[test]
    fn a_file_without_a_final_line_break_gets_one_before_appends() {
        let dir = TestDir::new();
        dir.write("t.txt", "a\t1");
        let mut w = open(&dir);
        assert_eq!(w.upsert(batch(&[("b", "1")])).unwrap(), [I]);
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt"), "a\t1\nb\t1\n");
    }

    #[test]
    fn hash_collisions_compare_the_real_keys() {
        // Force every key into one hash: the index must still tell them apart by
        // reading the keys back.
        let dir = TestDir::new();
        let mut w = open(&dir);
        let mut index = Index::new(IndexFiles::new(dir.path(), "t", "txt"), 0, "t");
        for n in 0..50u64 {
            let found = index
                .find(7, &mut |place| Ok(place == Place::Stored(n / 2 * 2)))
                .unwrap();
            match found {
                Some(_) => assert_eq!(n % 2, 1),
                None => {
                    assert_eq!(n % 2, 0);
                    index.insert(7, Place::Stored(n), n).unwrap();
                }
            }
        }
        assert_eq!(index.keys(), 25);
        // And through the writer, many keys over several table growths.
        let rows: Vec<(String, String)> = (0..5000)
            .map(|n| (format!("k{n}"), n.to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert!(w.upsert(batch(&refs)).unwrap().iter().all(|o| *o == I));
        assert!(w.upsert(batch(&refs)).unwrap().iter().all(|o| *o == C));
        assert_eq!(w.keys(), 5000);
        w.finish().unwrap();
        assert_eq!(dir.read("t.txt").lines().count(), 5000);
    }

    #[test]
    fn the_index_holds_keys_not_records() {
        // 200,000 records of ~1 KiB: 200 MB of records, a few MB of index.
        let dir = TestDir::new();
        let mut w = open(&dir);
        let value = "x".repeat(1000);
        for chunk in 0..200 {
            let rows: Vec<(String, &str)> = (0..1000)
                .map(|n| (format!("key-{chunk}-{n}"), value.as_str()))
                .collect();
            let refs: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), *b)).collect();
            w.upsert(batch(&refs)).unwrap();
        }
        assert_eq!(w.keys(), 200_000);
        // Past one table's worth of keys, the index has its fixed size: the
        // table, the filter and a few fences.
        assert!(w.index_runs() >= 1);
        let bytes = w.index_bytes();
        assert!(bytes <= 24 << 20, "{bytes} bytes of index");
        w.finish().unwrap();
        assert!(std::fs::metadata(dir.path().join("t.txt")).unwrap().len() > 200_000_000);
    }
}
