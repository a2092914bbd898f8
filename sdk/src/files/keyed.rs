//! An upserting writer for one record-per-entry file (CSV rows, JSON lines) that
//! never holds the records in memory.
//!
//! [`KeyedFileWriter`] keeps one 8-byte slot per key — part of the key's 64-bit
//! hash and the position of the key's latest record — and appends:
//!
//! * a new key's record goes to a log of new records (a dot file next to the
//!   entity file), in the file's own format;
//! * an updated key's record is read back from where it is (the entity file, the
//!   log of new records or the log of updates), merged by the [`RecordFormat`],
//!   and appended to a log of updates;
//! * whenever a slot's hash matches, the record it points to is read back and its
//!   real key compared, so a hash collision never merges two keys.
//!
//! [`Writer::finish`] makes the result durable and visible at once (write a
//! sibling, then rename over the entity file): when the entity file was missing or
//! empty and no key was updated, the log of new records *is* the result and is
//! renamed as it is; otherwise the entity file and the log of new records are
//! copied in one sequential pass, each updated key's record replaced in place by
//! its latest version. Each key appears once, where it first appeared. Until
//! `finish`, the entity file is not touched, so an interrupted session leaves it
//! as it was.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{entity_path, io_error, temp_path};
use crate::{Batch, Error, RecordError, UpsertOutcome, Writer};

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
        self.file.write_all(&self.buf)?;
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

/// Where the latest record of a key is: its position in the entity file followed
/// by the log of new records, or (updated) an entry of [`KeyedFileWriter`]'s list
/// of updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Stored(u64),
    Updated(usize),
}

/// The key index: an open-addressing table of `u64` slots, each the top
/// [`TAG_BITS`] of the key's hash, an "updated" flag and a position (plus one, so
/// that 0 is an empty slot). The table's index bits are the top bits of the hash,
/// so it grows without the keys; the tag's remaining bits keep most non-matching
/// slots from costing a read-back.
#[derive(Default)]
struct KeyIndex {
    slots: Vec<u64>,
    len: usize,
}

const TAG_BITS: u32 = 27;
const POS_BITS: u32 = 36;
const UPDATED: u64 = 1 << POS_BITS;
const POS_MASK: u64 = UPDATED - 1;
/// The largest position a slot holds (64 GiB).
const MAX_POS: u64 = POS_MASK - 1;

impl KeyIndex {
    fn bits(&self) -> u32 {
        self.slots.len().trailing_zeros()
    }

    fn tag(hash: u64) -> u64 {
        hash >> (64 - TAG_BITS)
    }

    fn home(&self, tag: u64) -> usize {
        (tag >> (TAG_BITS - self.bits())) as usize
    }

    fn pack(tag: u64, place: Place) -> u64 {
        let (flag, pos) = match place {
            Place::Stored(p) => (0, p),
            Place::Updated(u) => (UPDATED, u as u64),
        };
        debug_assert!(pos <= MAX_POS);
        tag << (64 - TAG_BITS) | flag | (pos + 1)
    }

    fn place(slot: u64) -> Place {
        let pos = (slot & POS_MASK) - 1;
        if slot & UPDATED != 0 {
            Place::Updated(pos as usize)
        } else {
            Place::Stored(pos)
        }
    }

    /// The slot of the key hashed to `hash` for which `is_key` says yes, or the
    /// empty slot where it would go.
    fn find(
        &self,
        hash: u64,
        mut is_key: impl FnMut(Place) -> Result<bool, Error>,
    ) -> Result<Result<usize, usize>, Error> {
        let tag = Self::tag(hash);
        let mask = self.slots.len() - 1;
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return Ok(Err(i));
            }
            if slot >> (64 - TAG_BITS) == tag && is_key(Self::place(slot))? {
                return Ok(Ok(i));
            }
            i = (i + 1) & mask;
        }
    }

    fn set(&mut self, i: usize, hash: u64, place: Place) {
        self.slots[i] = Self::pack(Self::tag(hash), place);
    }

    /// Fills empty slot `i`; the table may grow after, so slot numbers are stale.
    fn insert_at(&mut self, i: usize, hash: u64, place: Place) -> Result<(), Error> {
        self.set(i, hash, place);
        self.len += 1;
        if self.len * 4 >= self.slots.len() * 3 {
            self.grow()?;
        }
        Ok(())
    }

    fn grow(&mut self) -> Result<(), Error> {
        let bits = if self.slots.is_empty() {
            10
        } else {
            self.bits() + 1
        };
        if bits > TAG_BITS {
            return Err(Error::internal("too many keys for one write session"));
        }
        let old = std::mem::replace(&mut self.slots, vec![0; 1 << bits]);
        let mask = self.slots.len() - 1;
        for slot in old.into_iter().filter(|s| *s != 0) {
            let mut i = self.home(slot >> (64 - TAG_BITS));
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
        }
        Ok(())
    }
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
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^= h >> 30;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 31)
}

/// A write session on one entity file that upserts by key with memory in the
/// number of keys (8 to 16 bytes each), never in their records; the file format
/// is a [`RecordFormat`].
///
/// [`KeyedFileWriter`] keeps one 8-byte slot per key — part of the key's 64-bit
/// hash and the position of the key's latest record — and appends:
///
/// * a new key's record goes to a log of new records (a dot file next to the
///   entity file), in the file's own format;
/// * an updated key's record is read back from where it is (the entity file, the
///   log of new records or the log of updates), merged by the [`RecordFormat`],
///   and appended to a log of updates;
/// * whenever a slot's hash matches, the record it points to is read back and its
///   real key compared, so a hash collision never merges two keys.
///
/// [`Writer::finish`] makes the result durable and visible at once (write a
/// sibling, then rename over the entity file): when the entity file was missing or
/// empty and no key was updated, the log of new records *is* the result and is
/// renamed as it is; otherwise the entity file and the log of new records are
/// copied in one sequential pass, each updated key's record replaced in place by
/// its latest version. Each key appears once, where it first appeared. Until
/// `finish`, the entity file is not touched, so an interrupted session leaves it
/// as it was.
///
/// Semantics: a record whose key is already in the file (or was written earlier
/// in the session) is [`UpsertOutcome::Updated`] — merged into the stored record
/// by [`RecordFormat::encode_update`] — else [`UpsertOutcome::Inserted`]; a key
/// repeated in an existing file matches its first record, the others are kept as
/// they are; a session that writes nothing leaves the file as it was (and creates
/// none).
pub struct KeyedFileWriter<F: RecordFormat> {
    format: F,
    entity: String,
    path: PathBuf,
    dir: PathBuf,
    extension: String,
    /// The entity file as it was at open, if it had any bytes.
    existing: Option<File>,
    /// The entity file's length at open (0 if missing).
    existing_len: u64,
    /// Where its records start (after the preamble).
    data_start: u64,
    /// New records; created at the first.
    new: Option<Log>,
    /// Where records start in `new` (after a preamble it got).
    new_start: u64,
    /// Updated records, each `u32` length-prefixed; created at the first.
    updates: Option<Log>,
    /// For each updated key: the position of its first record and of its latest
    /// version in `updates`.
    updated: Vec<(u64, u64)>,
    index: KeyIndex,
    key: String,
    other_key: String,
    finished: bool,
}

impl<F: RecordFormat> KeyedFileWriter<F> {
    /// Opens a session on `<dir>/<entity>.<extension>` and indexes its keys
    /// (reading the file once, record by record). Errors: no key fields, a bad
    /// entity name, or a file the format refuses.
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
        let mut w = KeyedFileWriter {
            format,
            entity: entity.to_owned(),
            path,
            dir: dir.to_owned(),
            extension: extension.to_owned(),
            existing: None,
            existing_len: 0,
            data_start: 0,
            new: None,
            new_start: 0,
            updates: None,
            updated: Vec::new(),
            index: KeyIndex::default(),
            key: String::new(),
            other_key: String::new(),
            finished: false,
        };
        w.index.grow()?;
        match File::open(&w.path) {
            Ok(file) => {
                let len = file
                    .metadata()
                    .map_err(|e| io_error(entity, &w.path, e))?
                    .len();
                if len > 0 {
                    w.existing_len = len;
                    w.existing = Some(file);
                    w.load()?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(entity, &w.path, e)),
        }
        Ok(w)
    }

    /// The format, e.g. for its state in tests.
    pub fn format(&self) -> &F {
        &self.format
    }

    /// The bytes the key index takes: it grows with the number of keys, not
    /// with the size of their records.
    pub fn index_bytes(&self) -> usize {
        self.index.slots.capacity() * 8 + self.updated.capacity() * 16
    }

    /// The number of distinct keys indexed.
    pub fn keys(&self) -> usize {
        self.index.len
    }

    fn ioe(&self, path: &Path, e: io::Error) -> Error {
        io_error(&self.entity, path, e)
    }

    fn log_path(&self, what: &str) -> PathBuf {
        self.dir
            .join(format!(".{}.{}.{what}.tmp", self.entity, self.extension))
    }

    fn too_large(&self) -> Error {
        Error::internal(format!(
            "entity `{}`: the file is too large for an upserting session (over {MAX_POS} bytes)",
            self.entity
        ))
    }

    /// Indexes the existing file: the first record of each key.
    fn load(&mut self) -> Result<(), Error> {
        let mut file = File::open(&self.path).map_err(|e| self.ioe(&self.path, e))?;
        self.data_start = self
            .format
            .read_preamble(&mut BufReader::with_capacity(8 * 1024, &file))?;
        file.seek(SeekFrom::Start(self.data_start))
            .map_err(|e| self.ioe(&self.path, e))?;
        let mut input = BufReader::with_capacity(64 * 1024, file);
        let start = self.data_start;
        let too_large = self.too_large();
        let Self {
            format,
            index,
            existing,
            other_key,
            entity,
            path,
            ..
        } = self;
        let format: &F = format;
        // The format reads the file through `input`; a read-back on a hash match
        // goes through the other handle.
        let back = existing.as_ref().expect("open");
        let mut visit = |pos: u64, key: Option<&str>| -> Result<(), Error> {
            let Some(key) = key else {
                return Ok(());
            };
            if pos > MAX_POS {
                return Err(too_large.clone());
            }
            let hash = hash_key(key);
            let found = index.find(hash, |place| {
                let Place::Stored(at) = place else {
                    return Ok(false);
                };
                let stored = read_file_at(back, at, |r| format.read_stored(r))
                    .map_err(|e| io_error(entity, path, e))??;
                Ok(format.stored_key(&stored, other_key) && other_key == key)
            })?;
            // A key repeated in the file: its first record is the one matched.
            if let Err(empty) = found {
                index.insert_at(empty, hash, Place::Stored(pos))?;
            }
            Ok(())
        };
        format.scan(&mut input, start, true, &mut visit)
    }

    /// Reads the latest record of a key back.
    fn read_place(&self, place: Place) -> Result<F::Stored, Error> {
        let (log, at) = match place {
            Place::Updated(u) => {
                let log = self.updates.as_ref().expect("an update was written");
                // Skip the length prefix.
                (log, self.updated[u].1 + 4)
            }
            Place::Stored(pos) if pos < self.existing_len => {
                let file = self.existing.as_ref().expect("a position in the file");
                return read_file_at(file, pos, |r| self.format.read_stored(r))
                    .map_err(|e| self.ioe(&self.path, e))?;
            }
            Place::Stored(pos) => (
                self.new.as_ref().expect("a new record was written"),
                pos - self.existing_len,
            ),
        };
        log.read_at(at, |r| self.format.read_stored(r))
            .map_err(|e| self.ioe(&log.path, e))?
    }

    fn upsert_one(&mut self, records: &Batch, i: usize) -> Result<UpsertOutcome, Error> {
        let hash = hash_key(&self.key);
        let mut other = std::mem::take(&mut self.other_key);
        let mut found = None;
        let slot = self.index.find(hash, |place| {
            let stored = self.read_place(place)?;
            let same = self.format.stored_key(&stored, &mut other) && other == self.key;
            if same {
                found = Some(stored);
            }
            Ok(same)
        });
        self.other_key = other;
        match slot? {
            Err(empty) => {
                let pos = self.append_new(records, i)?;
                self.index.insert_at(empty, hash, Place::Stored(pos))?;
                Ok(UpsertOutcome::Inserted)
            }
            Ok(s) => {
                let stored = found.expect("the matching record");
                let at = self.append_update(stored, records, i)?;
                match KeyIndex::place(self.index.slots[s]) {
                    Place::Stored(home) => {
                        self.updated.push((home, at));
                        let u = self.updated.len() - 1;
                        self.index.set(s, hash, Place::Updated(u));
                    }
                    Place::Updated(u) => self.updated[u].1 = at,
                }
                Ok(UpsertOutcome::Updated)
            }
        }
    }

    fn create_log(&self, what: &str) -> Result<Log, Error> {
        let path = self.log_path(what);
        Log::create(path.clone()).map_err(|e| self.ioe(&path, e))
    }

    /// Appends record `i` as new; returns its position.
    fn append_new(&mut self, records: &Batch, i: usize) -> Result<u64, Error> {
        if self.new.is_none() {
            let mut log = self.create_log("new")?;
            if self.existing.is_none() {
                self.format.write_preamble(&mut log.buf);
                self.new_start = log.len();
            }
            self.new = Some(log);
        }
        let log = self.new.as_mut().expect("created");
        let pos = self.existing_len + log.len();
        if pos > MAX_POS {
            return Err(self.too_large());
        }
        self.format.encode_new(records, i, &mut log.buf);
        log.maybe_flush()
            .map_err(|e| io_error(&self.entity, &log.path, e))?;
        Ok(pos)
    }

    /// Appends `stored` updated with record `i`; returns its position in the log
    /// of updates.
    fn append_update(
        &mut self,
        stored: F::Stored,
        records: &Batch,
        i: usize,
    ) -> Result<u64, Error> {
        if self.updates.is_none() {
            self.updates = Some(self.create_log("updates")?);
        }
        let log = self.updates.as_mut().expect("created");
        let at = log.len();
        log.buf.extend_from_slice(&[0; 4]);
        let start = log.buf.len();
        self.format.encode_update(stored, records, i, &mut log.buf);
        let len = u32::try_from(log.buf.len() - start)
            .map_err(|_| Error::internal("a record over 4 GiB"))?;
        log.buf[start - 4..start].copy_from_slice(&len.to_le_bytes());
        log.maybe_flush()
            .map_err(|e| io_error(&self.entity, &log.path, e))?;
        Ok(at)
    }

    /// Writes the result and renames it over the entity file.
    fn commit(&mut self) -> Result<(), Error> {
        if self.new.is_none() && self.updated.is_empty() {
            // Nothing written: the file stays as it was (or absent).
            return Ok(());
        }
        for log in [self.new.as_mut(), self.updates.as_mut()]
            .into_iter()
            .flatten()
        {
            log.flush()
                .map_err(|e| io_error(&self.entity, &log.path, e))?;
        }
        if self.existing.is_none() && self.updated.is_empty() && !self.format.preamble_changed() {
            // Pure appends to a new file: the log is the result.
            let log = self.new.as_ref().expect("records were written");
            sync(&log.file).map_err(|e| self.ioe(&log.path, e))?;
            return std::fs::rename(&log.path, &self.path).map_err(|e| self.ioe(&self.path, e));
        }
        let tmp = temp_path(&self.dir, &self.entity, &self.extension);
        let result = self
            .write_merged(&tmp)
            .and_then(|()| std::fs::rename(&tmp, &self.path).map_err(|e| self.ioe(&self.path, e)));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The entity file then the new records, each updated key's first record
    /// replaced by its latest version, into `tmp`.
    fn write_merged(&mut self, tmp: &Path) -> Result<(), Error> {
        let mut out = Out {
            file: File::create(tmp).map_err(|e| self.ioe(tmp, e))?,
            buf: Vec::with_capacity(FLUSH_AT + 64 * 1024),
            written_last: None,
        };
        let err = |e: io::Error| io_error(&self.entity, tmp, e);
        self.updated.sort_unstable_by_key(|u| u.0);
        let changed = self.format.preamble_changed();
        if changed {
            self.format.write_preamble(&mut out.buf);
        }
        let plain = !changed && self.updated.is_empty();
        if self.existing.is_some() {
            if plain {
                self.copy_raw(&self.path, 0, self.existing_len, &mut out, tmp)?;
                if out.last_byte().is_some_and(|b| b != b'\n') {
                    out.buf.push(b'\n');
                }
            } else if !changed && self.data_start > 0 {
                // The preamble, passed as a record: its line break made one `\n`.
                let mut preamble = Vec::new();
                let file = File::open(&self.path).map_err(|e| self.ioe(&self.path, e))?;
                file.take(self.data_start)
                    .read_to_end(&mut preamble)
                    .map_err(|e| self.ioe(&self.path, e))?;
                self.format.copy_record(&preamble, &mut out.buf);
            }
            if !plain {
                self.splice(
                    &self.path,
                    0,
                    self.data_start,
                    self.existing_len,
                    &mut out,
                    tmp,
                )?;
            }
        }
        if let Some(log) = &self.new {
            let end = if plain { log.len() } else { self.new_start };
            if !changed {
                self.copy_raw(&log.path, 0, end, &mut out, tmp)?;
            }
            if !plain {
                self.splice(
                    &log.path,
                    self.existing_len,
                    self.new_start,
                    log.len(),
                    &mut out,
                    tmp,
                )?;
            }
        }
        out.buf_flush().map_err(err)?;
        sync(&out.file).map_err(err)
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
    ) -> Result<(), Error> {
        let open_at = |at: u64| -> Result<BufReader<File>, Error> {
            let mut file = File::open(src).map_err(|e| self.ioe(src, e))?;
            file.seek(SeekFrom::Start(at))
                .map_err(|e| self.ioe(src, e))?;
            Ok(BufReader::with_capacity(64 * 1024, file))
        };
        let mut scanned = open_at(from)?.take(to - from);
        let mut bytes = open_at(from)?;
        let mut at = from;
        let mut next = self.updated.partition_point(|u| u.0 < base + from);
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
            if self.updated.get(next).is_some_and(|u| u.0 == base + start) {
                let log = self.updates.as_ref().expect("updates were written");
                let pos = self.updated[next].1;
                next += 1;
                log.read_at(pos, |r| -> io::Result<()> {
                    let mut len = [0; 4];
                    r.read_exact(&mut len)?;
                    raw.clear();
                    r.take(u32::from_le_bytes(len) as u64)
                        .read_to_end(&mut raw)?;
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
        for log in [self.new.take(), self.updates.take()].into_iter().flatten() {
            let _ = std::fs::remove_file(&log.path);
        }
    }
}

impl<F: RecordFormat> Writer for KeyedFileWriter<F> {
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
        if self.finished {
            return Err(Error::internal(format!(
                "entity `{}`: the write session is finished",
                self.entity
            )));
        }
        self.format.begin_batch(&records)?;
        let mut outcomes = Vec::with_capacity(records.len());
        for i in 0..records.len() {
            self.key.clear();
            let mut key = std::mem::take(&mut self.key);
            let keyed = self.format.batch_key(&records, i, &mut key);
            self.key = key;
            match keyed {
                Ok(()) => outcomes.push(self.upsert_one(&records, i)?),
                Err(failure) => outcomes.push(UpsertOutcome::Failed(failure)),
            }
        }
        Ok(outcomes)
    }

    fn finish(&mut self) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        let result = self.commit();
        self.finished = true;
        self.remove_logs();
        result
    }
}

impl<F: RecordFormat> Drop for KeyedFileWriter<F> {
    /// An unfinished session leaves the entity file as it was; its logs go.
    fn drop(&mut self) {
        self.remove_logs();
    }
}

/// The output of `finish`, written in large blocks.
struct Out {
    file: File,
    buf: Vec<u8>,
    /// The last byte written out of `buf`.
    written_last: Option<u8>,
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
        self.buf.clear();
        Ok(())
    }
}

/// Calls `f` with a reader at byte `pos` of `file` (a handle used only for this).
fn read_file_at<T>(file: &File, pos: u64, f: impl FnOnce(&mut dyn BufRead) -> T) -> io::Result<T> {
    let mut handle = file;
    handle.seek(SeekFrom::Start(pos))?;
    Ok(f(&mut BufReader::with_capacity(4096, handle)))
}

/// Durable before a rename makes it visible. A host without fsync support still
/// gets the atomic replace.
fn sync(file: &File) -> io::Result<()> {
    match file.sync_all() {
        Err(e) if e.kind() != io::ErrorKind::Unsupported => Err(e),
        _ => Ok(()),
    }
}

/// A line format for tests: `key<TAB>value\n`; an update replaces the value.
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

    use UpsertOutcome::{Inserted as I, Updated as U};

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
        let mut index = KeyIndex::default();
        index.grow().unwrap();
        for n in 0..50u64 {
            let found = index
                .find(7, |place| Ok(place == Place::Stored(n / 2 * 2)))
                .unwrap();
            match found {
                Ok(_) => assert_eq!(n % 2, 1),
                Err(empty) => {
                    assert_eq!(n % 2, 0);
                    index.insert_at(empty, 7, Place::Stored(n)).unwrap();
                }
            }
        }
        assert_eq!(index.len, 25);
        // And through the writer, many keys over several table growths.
        let rows: Vec<(String, String)> = (0..5000)
            .map(|n| (format!("k{n}"), n.to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert!(w.upsert(batch(&refs)).unwrap().iter().all(|o| *o == I));
        assert!(w.upsert(batch(&refs)).unwrap().iter().all(|o| *o == U));
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
        let per_key = w.index_bytes() as f64 / 200_000.0;
        assert!(per_key <= 24.0, "{per_key} bytes per key");
        w.finish().unwrap();
        assert!(std::fs::metadata(dir.path().join("t.txt")).unwrap().len() > 200_000_000);
    }
}
