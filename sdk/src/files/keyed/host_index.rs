//! The key index of [`super::KeyedFileWriter`] kept by the host, through the
//! `weir:kv/index` import: for each key (its full text, so no two keys share an
//! entry), the place of its latest record and a digest of that record's bytes.
//!
//! Why: with the index in the plugin (`index.rs`), a re-sync of unchanged
//! records reads each one back to compare it (a WASI read per record) and, past
//! the in-memory table, probes the runs on disk (another read or two per key).
//! Here one host call looks up a whole batch, and a record whose new bytes have
//! the stored digest is unchanged without any read. The plugin's memory holds
//! no index at all.
//!
//! Trust: the entries describe the entity file as the table's *meta* says
//! (`Clean` with the file's fingerprint). Anything else — no meta, another tag
//! (other key fields, format options), another fingerprint (the file was
//! replaced, truncated or edited outside weir), `Dirty` (a session changed
//! entries and did not finish) — clears the table and scans the file again.
//! Writes reach the host's store in order, so `Dirty`, written before a
//! session's first put, is found whenever one of its puts is. An append is
//! bracketed like the plugin's manifest does it (`Appending`, made durable
//! before the first appended byte; the next session checks the appended bytes
//! and keeps the append, or truncates it away and rebuilds).
//!
//! A host without the import's store (no data directory, another process
//! holding it, a connection without a directory grant) answers `open` with
//! `unavailable`: the writer then keeps its own index, as before.

use std::fs::File;
use std::io;

use super::index::{Fingerprint, Place, StreamHash};
use crate::Error;

/// Byte strings in one buffer, as the import takes them.
#[derive(Default)]
pub(super) struct Lists {
    pub data: Vec<u8>,
    pub ends: Vec<u32>,
}

impl Lists {
    pub fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.ends.push(self.data.len() as u32);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.data[start..self.ends[i] as usize]
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// A record's bytes as a 128-bit digest: two independent 64-bit stream hashes,
/// so two different records share one with odds of 2^-128 (an unchanged verdict
/// skips the write, so a false one would lose an update).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Digest([u64; 2]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        let mut a = StreamHash::default();
        a.update(b"weir-record-a");
        a.update(bytes);
        let mut b = StreamHash::default();
        b.update(b"weir-record-b\0\0\0");
        b.update(bytes);
        Digest([a.finish(), b.finish()])
    }
}

/// What the index knows of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub place: Place,
    /// The digest of the record's bytes at `place`, when known (a record of a
    /// scanned file that another program wrote may not be).
    pub digest: Option<Digest>,
}

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.place.pack().to_le_bytes());
        if let Some(Digest([a, b])) = self.digest {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?))
        };
        let place = Place::unpack(word(0)?);
        let digest = match bytes.len() {
            8 => None,
            24 => Some(Digest([word(8)?, word(16)?])),
            _ => return None,
        };
        Some(Entry { place, digest })
    }
}

/// What the table's meta says of its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// A session changed entries and has not finished: they describe nothing.
    Dirty,
    /// They describe the entity file that has this fingerprint.
    Clean(Fingerprint),
    /// They describe the entity file once an append completes: the file was
    /// `before` (a prefix fingerprint), and the append adds a line break if
    /// `pad`, then bytes hashing to `sum`, making it `after` bytes long.
    Appending {
        before: Fingerprint,
        after: u64,
        pad: bool,
        sum: u64,
    },
}

const META_MAGIC: &[u8] = b"weir-keyed-host 1\0";

fn encode_meta(tag: u64, state: State) -> Vec<u8> {
    let mut out = META_MAGIC.to_vec();
    out.extend_from_slice(&tag.to_le_bytes());
    let fp = |out: &mut Vec<u8>, f: &Fingerprint| {
        for w in [f.len, f.mtime, f.head, f.tail] {
            out.extend_from_slice(&w.to_le_bytes());
        }
    };
    match state {
        State::Dirty => out.push(0),
        State::Clean(f) => {
            out.push(1);
            fp(&mut out, &f);
        }
        State::Appending {
            before,
            after,
            pad,
            sum,
        } => {
            out.push(2);
            fp(&mut out, &before);
            out.extend_from_slice(&after.to_le_bytes());
            out.push(u8::from(pad));
            out.extend_from_slice(&sum.to_le_bytes());
        }
    }
    out
}

/// The meta's tag and state; `None` for anything this version did not write.
fn decode_meta(bytes: &[u8]) -> Option<(u64, State)> {
    let rest = bytes.strip_prefix(META_MAGIC)?;
    let word = |i: usize| -> Option<u64> {
        Some(u64::from_le_bytes(rest.get(i..i + 8)?.try_into().ok()?))
    };
    let fp = |at: usize| -> Option<Fingerprint> {
        Some(Fingerprint {
            len: word(at)?,
            mtime: word(at + 8)?,
            head: word(at + 16)?,
            tail: word(at + 24)?,
        })
    };
    let tag = word(0)?;
    let state = match (rest.get(8)?, rest.len()) {
        (0, 9) => State::Dirty,
        (1, 41) => State::Clean(fp(9)?),
        (2, 58) => State::Appending {
            before: fp(9)?,
            after: word(41)?,
            pad: *rest.get(49)? != 0,
            sum: word(50)?,
        },
        _ => return None,
    };
    Some((tag, state))
}

/// One table of the host's index, with this session's view of it.
pub(super) struct HostIndex {
    table: backend::Table,
    tag: u64,
    what: String,
    /// Whether this session wrote `Dirty` (before its first put).
    marked_dirty: bool,
    /// Puts not sent yet (sent at the end of each batch and before the meta).
    put_keys: Lists,
    put_values: Lists,
    /// Scratch for lookups.
    ask: Lists,
    /// Entries this session put: an estimate of the table's size, for the SDK's
    /// own accounting.
    pub put_count: u64,
}

/// Puts sent at once at most (one crossing per this many).
const PUT_CHUNK: usize = 8192;

impl HostIndex {
    /// The host's table for this entity file, or `None` when the host keeps no
    /// index for this connection (the writer then keeps its own).
    pub fn open(entity: &str, extension: &str, tag: u64) -> Option<HostIndex> {
        let table = backend::Table::open(&format!("{entity}.{extension}"))?;
        Some(HostIndex {
            table,
            tag,
            what: format!("entity `{entity}`"),
            marked_dirty: false,
            put_keys: Lists::default(),
            put_values: Lists::default(),
            ask: Lists::default(),
            put_count: 0,
        })
    }

    fn err(&self, e: String) -> Error {
        Error::internal(format!("{}: the host's key index: {e}", self.what))
    }

    /// What the meta says, when it is this writer's (same tag).
    pub fn state(&self) -> Result<Option<State>, Error> {
        let meta = self.table.meta().map_err(|e| self.err(e))?;
        Ok(meta
            .as_deref()
            .and_then(decode_meta)
            .filter(|(tag, _)| *tag == self.tag)
            .map(|(_, s)| s))
    }

    /// Forgets every entry (a rebuild follows, or the file is gone).
    pub fn clear(&mut self) -> Result<(), Error> {
        self.put_keys.clear();
        self.put_values.clear();
        self.table.clear().map_err(|e| self.err(e))?;
        // Cleared means "describes nothing yet": entries put from here on are a
        // rebuild in progress.
        self.marked_dirty = false;
        Ok(())
    }

    /// The entries of `keys` (each key's bytes), in order. Puts not sent yet
    /// are not seen: the writer sends them at the end of each batch and keeps
    /// its own view of the batch in between.
    pub fn lookup(&mut self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, Error> {
        let mut ask = std::mem::take(&mut self.ask);
        ask.clear();
        for k in keys {
            ask.push(k);
        }
        let found = self.table.lookup(&ask).map_err(|e| self.err(e));
        self.ask = ask;
        let (present, values) = found?;
        let mut out = Vec::with_capacity(keys.len());
        for (i, p) in present.iter().enumerate() {
            out.push(if *p {
                Some(
                    Entry::decode(values.get(i))
                        .ok_or_else(|| self.err("an entry this version did not write".into()))?,
                )
            } else {
                None
            });
        }
        Ok(out)
    }

    /// Queues `key` → `entry`; marks the table `Dirty` before the first.
    pub fn put(&mut self, key: &[u8], entry: Entry) -> Result<(), Error> {
        if !self.marked_dirty {
            self.set_state(State::Dirty, false)?;
            self.marked_dirty = true;
        }
        self.put_keys.push(key);
        let mut v = Vec::with_capacity(24);
        entry.encode(&mut v);
        self.put_values.push(&v);
        self.put_count += 1;
        if self.put_keys.len() >= PUT_CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the queued puts.
    pub fn flush(&mut self) -> Result<(), Error> {
        if self.put_keys.len() == 0 {
            return Ok(());
        }
        let result = self.table.put(&self.put_keys, &self.put_values);
        self.put_keys.clear();
        self.put_values.clear();
        result.map_err(|e| self.err(e))
    }

    /// Whether this session changed entries.
    pub fn changed(&self) -> bool {
        self.marked_dirty
    }

    /// Sends the queued puts, then records `state` (durably if asked).
    pub fn set_state(&mut self, state: State, durable: bool) -> Result<(), Error> {
        self.flush()?;
        let meta = encode_meta(self.tag, state);
        self.table
            .set_meta(&meta, durable)
            .map_err(|e| self.err(e))?;
        if !matches!(state, State::Dirty) {
            self.marked_dirty = false;
        }
        Ok(())
    }

    /// The entries describe `file` as it is now.
    pub fn commit(&mut self, file: &File, durable: bool) -> Result<(), Error> {
        let fp = Fingerprint::of(file).map_err(|e| self.err(e.to_string()))?;
        self.set_state(State::Clean(fp), durable)
    }
}

/// Whether `state` says the entries describe the file `now` (its fingerprint,
/// `None` when there is no file): an `Appending` that completed counts, with
/// `check_append` deciding from the file's bytes.
pub(super) fn describes(
    state: Option<State>,
    now: Option<&Fingerprint>,
    check_append: impl FnOnce(&Fingerprint, u64, bool, u64) -> io::Result<bool>,
) -> io::Result<bool> {
    Ok(match (state, now) {
        (Some(State::Clean(fp)), Some(now)) => fp == *now,
        (
            Some(State::Appending {
                before,
                after,
                pad,
                sum,
            }),
            Some(now),
        ) => now.len == after && check_append(&before, after, pad, sum)?,
        _ => false,
    })
}

#[cfg(target_os = "wasi")]
mod backend {
    use super::Lists;

    mod bindings {
        wit_bindgen::generate!({
            path: "../wit/kv/since_v0.1.0",
            world: "index-client",
        });
    }
    use bindings::weir::kv::index as wit;

    pub struct Table(wit::Table);

    fn text(e: wit::Error) -> String {
        match e {
            wit::Error::Unavailable(m) => format!("unavailable: {m}"),
            wit::Error::Invalid(m) => format!("refused: {m}"),
            wit::Error::Io(m) => format!("I/O: {m}"),
        }
    }

    fn list(l: &Lists) -> wit::ByteList {
        wit::ByteList {
            data: l.data.clone(),
            ends: l.ends.clone(),
        }
    }

    impl Table {
        pub fn open(name: &str) -> Option<Table> {
            wit::Table::open(name).ok().map(Table)
        }

        pub fn lookup(&self, keys: &Lists) -> Result<(Vec<bool>, Lists), String> {
            let found = self.0.lookup(&list(keys)).map_err(text)?;
            Ok((
                found.present,
                Lists {
                    data: found.values.data,
                    ends: found.values.ends,
                },
            ))
        }

        pub fn put(&self, keys: &Lists, values: &Lists) -> Result<(), String> {
            self.0.put(&list(keys), &list(values)).map_err(text)
        }

        pub fn clear(&self) -> Result<(), String> {
            self.0.clear().map_err(text)
        }

        pub fn meta(&self) -> Result<Option<Vec<u8>>, String> {
            self.0.meta().map_err(text)
        }

        pub fn set_meta(&self, meta: &[u8], durable: bool) -> Result<(), String> {
            self.0.set_meta(meta, durable).map_err(text)
        }
    }
}

/// Outside WASI there is no host: the SDK's own tests put a table in memory
/// in its place (`__use_memory_index`); anything else keeps its own index.
#[cfg(not(target_os = "wasi"))]
mod backend {
    use super::Lists;

    #[cfg(any(test, feature = "test-hooks"))]
    pub use memory::*;

    #[cfg(not(any(test, feature = "test-hooks")))]
    pub enum Table {}

    #[cfg(not(any(test, feature = "test-hooks")))]
    impl Table {
        pub fn open(_name: &str) -> Option<Table> {
            None
        }
        pub fn lookup(&self, _: &Lists) -> Result<(Vec<bool>, Lists), String> {
            match *self {}
        }
        pub fn put(&self, _: &Lists, _: &Lists) -> Result<(), String> {
            match *self {}
        }
        pub fn clear(&self) -> Result<(), String> {
            match *self {}
        }
        pub fn meta(&self) -> Result<Option<Vec<u8>>, String> {
            match *self {}
        }
        pub fn set_meta(&self, _: &[u8], _: bool) -> Result<(), String> {
            match *self {}
        }
    }

    #[cfg(any(test, feature = "test-hooks"))]
    mod memory {
        use super::Lists;
        use std::cell::{Cell, RefCell};
        use std::collections::HashMap;
        use std::rc::Rc;

        #[derive(Default)]
        struct Data {
            entries: HashMap<Vec<u8>, Vec<u8>>,
            meta: Option<Vec<u8>>,
            calls: u64,
        }

        thread_local! {
            static ON: Cell<bool> = const { Cell::new(false) };
            static TABLES: RefCell<HashMap<String, Rc<RefCell<Data>>>> = RefCell::new(HashMap::new());
        }

        /// Makes writers opened afterwards on this thread keep their index in an
        /// in-memory stand-in for the host's (`on`), or their own (`!on`, the
        /// default); either way the tables so far are forgotten. For tests.
        #[doc(hidden)]
        pub fn __use_memory_index(on: bool) {
            ON.with(|o| o.set(on));
            TABLES.with(|t| t.borrow_mut().clear());
        }

        /// The host calls made on the in-memory table `name` so far. For tests.
        #[doc(hidden)]
        pub fn __memory_index_calls(name: &str) -> u64 {
            TABLES.with(|t| t.borrow().get(name).map_or(0, |d| d.borrow().calls))
        }

        pub struct Table(Rc<RefCell<Data>>);

        impl Table {
            pub fn open(name: &str) -> Option<Table> {
                if !ON.with(|o| o.get()) {
                    return None;
                }
                let data =
                    TABLES.with(|t| t.borrow_mut().entry(name.to_owned()).or_default().clone());
                data.borrow_mut().calls += 1;
                Some(Table(data))
            }

            pub fn lookup(&self, keys: &Lists) -> Result<(Vec<bool>, Lists), String> {
                let mut d = self.0.borrow_mut();
                d.calls += 1;
                let mut present = Vec::new();
                let mut values = Lists::default();
                for i in 0..keys.len() {
                    match d.entries.get(keys.get(i)) {
                        Some(v) => {
                            present.push(true);
                            values.push(v);
                        }
                        None => {
                            present.push(false);
                            values.push(&[]);
                        }
                    }
                }
                Ok((present, values))
            }

            pub fn put(&self, keys: &Lists, values: &Lists) -> Result<(), String> {
                let mut d = self.0.borrow_mut();
                d.calls += 1;
                for i in 0..keys.len() {
                    d.entries
                        .insert(keys.get(i).to_vec(), values.get(i).to_vec());
                }
                Ok(())
            }

            pub fn clear(&self) -> Result<(), String> {
                let mut d = self.0.borrow_mut();
                d.calls += 1;
                d.entries.clear();
                d.meta = None;
                Ok(())
            }

            pub fn meta(&self) -> Result<Option<Vec<u8>>, String> {
                let mut d = self.0.borrow_mut();
                d.calls += 1;
                Ok(d.meta.clone())
            }

            pub fn set_meta(&self, meta: &[u8], _durable: bool) -> Result<(), String> {
                let mut d = self.0.borrow_mut();
                d.calls += 1;
                d.meta = Some(meta.to_vec());
                Ok(())
            }
        }
    }
}

#[cfg(all(not(target_os = "wasi"), any(test, feature = "test-hooks")))]
pub use backend::{__memory_index_calls, __use_memory_index};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_and_entries_round_trip_and_anything_else_is_refused() {
        let fp = Fingerprint {
            len: 10,
            mtime: 20,
            head: 30,
            tail: 40,
        };
        for state in [
            State::Dirty,
            State::Clean(fp),
            State::Appending {
                before: fp,
                after: 99,
                pad: true,
                sum: 7,
            },
        ] {
            assert_eq!(decode_meta(&encode_meta(5, state)), Some((5, state)));
        }
        assert_eq!(decode_meta(b"weir-keyed-host 2\0........."), None);
        let mut m = encode_meta(5, State::Clean(fp));
        m.pop();
        assert_eq!(decode_meta(&m), None, "a torn meta is no meta");
        for e in [
            Entry {
                place: Place::Stored(3),
                digest: None,
            },
            Entry {
                place: Place::Updated(4),
                digest: Some(Digest::of(b"x")),
            },
        ] {
            let mut v = Vec::new();
            e.encode(&mut v);
            assert_eq!(Entry::decode(&v), Some(e));
        }
        assert_ne!(Digest::of(b"ab"), Digest::of(b"ba"));
    }
}
