//! The keyed writer with its index in the host (`weir:kv/index`), here the
//! SDK's in-memory stand-in for it: sessions match a model, a re-sync of
//! unchanged records reads nothing back and costs one host call per batch, an
//! index that no longer matches its file is rebuilt (never trusted), and a crash
//! at each step of an append leaves a correct file.

use std::cell::Cell;
use std::io::BufRead;
use std::path::Path;
use std::rc::Rc;

use weir_sdk::files::__test_format::Lines;
use weir_sdk::files::{
    __crash_during_append, __memory_index_calls, __use_memory_index, KeyedFileWriter, RecordFormat,
};
use weir_sdk::testing::TestDir;
use weir_sdk::{Batch, Error, RecordError, UpsertOutcome, Writer};

#[path = "common/keyed.rs"]
mod keyed;
use keyed::{Model, batch, contents, names};

use UpsertOutcome::{Inserted as I, Unchanged as C, Updated as U};

/// `Lines`, counting the stored records it reads back one by one.
struct Counting {
    reads: Rc<Cell<u64>>,
}

impl RecordFormat for Counting {
    type Stored = String;
    fn scan(
        &self,
        input: &mut dyn BufRead,
        at: u64,
        keys: bool,
        visit: &mut dyn FnMut(u64, Option<&str>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        Lines.scan(input, at, keys, visit)
    }
    fn read_stored(&self, input: &mut dyn BufRead) -> Result<String, Error> {
        self.reads.set(self.reads.get() + 1);
        Lines.read_stored(input)
    }
    fn stored_key(&self, stored: &String, key: &mut String) -> bool {
        Lines.stored_key(stored, key)
    }
    fn begin_batch(&mut self, records: &Batch) -> Result<(), Error> {
        Lines.begin_batch(records)
    }
    fn batch_key(
        &mut self,
        records: &Batch,
        i: usize,
        key: &mut String,
    ) -> Result<(), RecordError> {
        Lines.batch_key(records, i, key)
    }
    fn encode_new(&mut self, records: &Batch, i: usize, out: &mut Vec<u8>) {
        Lines.encode_new(records, i, out)
    }
    fn encode_update(&mut self, stored: String, records: &Batch, i: usize, out: &mut Vec<u8>) {
        Lines.encode_update(stored, records, i, out)
    }
    fn unchanged(&self, stored: &String, records: &Batch, i: usize) -> bool {
        Lines.unchanged(stored, records, i)
    }
}

fn open(dir: &Path) -> KeyedFileWriter<Lines> {
    KeyedFileWriter::open(dir, "t", "txt", &["key".to_owned()], Lines).unwrap()
}

fn open_counting(dir: &Path, reads: &Rc<Cell<u64>>) -> KeyedFileWriter<Counting> {
    let format = Counting {
        reads: reads.clone(),
    };
    KeyedFileWriter::open(dir, "t", "txt", &["key".to_owned()], format).unwrap()
}

fn rows(tag: &str, n: usize, value: &str) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{tag}{i}"), format!("{value}{i}")))
        .collect()
}

/// A file of ~1.2 MiB (so later sessions append) and its model.
fn big_file(dir: &TestDir, model: &mut Model) {
    let value = "z".repeat(200);
    let mut w = open(dir.path());
    for b in 0..30 {
        let rows = rows(&format!("a{b}-"), 200, &value);
        assert_eq!(w.upsert(batch(&rows)).unwrap(), model.upsert_all(&rows));
    }
    w.finish().unwrap();
    assert!(std::fs::metadata(dir.path().join("t.txt")).unwrap().len() > 1 << 20);
}

#[test]
fn sessions_through_the_host_index_match_a_model_and_leave_only_the_file() {
    __use_memory_index(true);
    let dir = TestDir::new();
    let mut model = Model::default();
    big_file(&dir, &mut model);
    for session in 0..5 {
        let mut w = open(dir.path());
        // New keys (appended at finish), unchanged ones, and, every other
        // session, updates (the file is rewritten) with a key repeated in a batch.
        let new = rows(&format!("s{session}-"), 300, "n");
        assert_eq!(w.upsert(batch(&new)).unwrap(), model.upsert_all(&new));
        let again = rows(&format!("s{session}-"), 100, "n");
        let want = model.upsert_all(&again);
        assert!(want.iter().all(|o| *o == C));
        assert_eq!(w.upsert(batch(&again)).unwrap(), want, "session {session}");
        if session % 2 == 1 {
            let changed: Vec<(String, String)> = ["a0-1", "a29-199", "s0-5", "a0-1", "s0-6"]
                .iter()
                .map(|k| ((*k).to_owned(), format!("u{session}")))
                .collect();
            let want = model.upsert_all(&changed);
            assert_eq!(want, [U, U, U, C, U]);
            assert_eq!(
                w.upsert(batch(&changed)).unwrap(),
                want,
                "session {session}"
            );
        }
        w.finish().unwrap();
        assert_eq!(contents(&dir), model.expected(), "session {session}");
        assert_eq!(names(&dir), ["t.txt"], "no index file of the plugin's own");
    }
    __use_memory_index(false);
}

#[test]
fn a_resync_of_unchanged_records_reads_none_back_and_calls_the_host_once_per_batch() {
    __use_memory_index(true);
    let dir = TestDir::new();
    let reads = Rc::new(Cell::new(0));
    let all: Vec<Vec<(String, String)>> =
        (0..10).map(|b| rows(&format!("b{b}-"), 100, "v")).collect();
    let mut w = open_counting(dir.path(), &reads);
    for rows in &all {
        assert!(w.upsert(batch(rows)).unwrap().iter().all(|o| *o == I));
    }
    w.finish().unwrap();
    let file = dir.read("t.txt");
    // The re-sync: every record as stored.
    let calls = __memory_index_calls("t.txt");
    let mut w = open_counting(dir.path(), &reads);
    let opened = __memory_index_calls("t.txt") - calls;
    for rows in &all {
        assert!(w.upsert(batch(rows)).unwrap().iter().all(|o| *o == C));
    }
    assert_eq!(w.unchanged(), 1000);
    w.finish().unwrap();
    assert_eq!(reads.get(), 0, "no stored record read back");
    assert_eq!(
        __memory_index_calls("t.txt") - calls - opened,
        10,
        "one lookup per batch, no put, no meta"
    );
    assert_eq!(dir.read("t.txt"), file, "nothing rewritten");
    // Violated: one record in ten changed is read back (to merge) and updated.
    let mut w = open_counting(dir.path(), &reads);
    for rows in &all {
        let mut rows = rows.clone();
        rows[7].1 = "changed".into();
        let out = w.upsert(batch(&rows)).unwrap();
        assert_eq!(out.iter().filter(|o| **o == U).count(), 1);
        assert_eq!(out.iter().filter(|o| **o == C).count(), 99);
    }
    w.finish().unwrap();
    assert_eq!(reads.get(), 10);
    __use_memory_index(false);
}

#[test]
fn an_index_that_no_longer_matches_its_file_is_rebuilt_and_nothing_is_lost_or_doubled() {
    __use_memory_index(true);
    let dir = TestDir::new();
    let mut model = Model::default();
    big_file(&dir, &mut model);
    let path = dir.path().join("t.txt");
    let session = |model: &mut Model, what: &str| {
        let rows: Vec<(String, String)> = vec![
            ("a0-1".into(), what.into()),
            ("a29-199".into(), format!("z{}", 199)),
            (format!("new-{what}"), "1".into()),
        ];
        let want = model.upsert_all(&rows);
        let mut w = open(dir.path());
        assert_eq!(w.upsert(batch(&rows)).unwrap(), want, "{what}");
        w.finish().unwrap();
        assert_eq!(contents(&dir), model.expected(), "{what}");
    };
    // Another program appends a record.
    let mut text = dir.read("t.txt");
    text.push_str("other\t1\n");
    std::fs::write(&path, &text).unwrap();
    model.upsert("other", "1");
    session(&mut model, "after-append");
    // ... edits one in the middle, same length (the digest it had is stale).
    let text = dir.read("t.txt").replacen("a5-5\tz", "a5-5\ty", 1);
    std::fs::write(&path, &text).unwrap();
    let old = model.values["a5-5"].clone();
    model
        .values
        .insert("a5-5".into(), old.replacen('z', "y", 1));
    let mut w = open(dir.path());
    let back = vec![("a5-5".to_owned(), old.clone())];
    assert_eq!(w.upsert(batch(&back)).unwrap(), [U], "the edit is seen");
    model.upsert("a5-5", &old);
    w.finish().unwrap();
    assert_eq!(contents(&dir), model.expected());
    // ... truncates it to its first half (whole lines).
    let text = dir.read("t.txt");
    let half: String = text.lines().take(3000).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &half).unwrap();
    let mut model = Model::default();
    for l in half.lines() {
        let (k, v) = l.split_once('\t').unwrap();
        model.upsert(k, v);
    }
    session(&mut model, "after-truncate");
    // ... replaces it with another file.
    std::fs::write(&path, "x\t1\ny\t2\n").unwrap();
    let mut model = Model::default();
    model.upsert("x", "1");
    model.upsert("y", "2");
    let mut w = open(dir.path());
    assert_eq!(
        w.upsert(batch(&[("y", "2"), ("a0-1", "q")])).unwrap(),
        [C, I]
    );
    model.upsert("a0-1", "q");
    w.finish().unwrap();
    assert_eq!(contents(&dir), model.expected());
    // ... removes it: nothing is known any more.
    std::fs::remove_file(&path).unwrap();
    let mut w = open(dir.path());
    assert_eq!(w.upsert(batch(&[("y", "2")])).unwrap(), [I]);
    w.finish().unwrap();
    assert_eq!(dir.read("t.txt"), "y\t2\n");
    __use_memory_index(false);
}

#[test]
fn an_unfinished_session_leaves_an_index_that_is_rebuilt_not_trusted() {
    __use_memory_index(true);
    let dir = TestDir::new();
    let mut model = Model::default();
    big_file(&dir, &mut model);
    let before = dir.read("t.txt");
    // New keys and an update, then dropped: entries were put for records that
    // were never written.
    let mut w = open(dir.path());
    w.upsert(batch(&rows("p", 500, "x"))).unwrap();
    assert_eq!(w.upsert(batch(&[("a1-1", "changed")])).unwrap(), [U]);
    drop(w);
    assert_eq!(dir.read("t.txt"), before);
    let mut w = open(dir.path());
    assert_eq!(
        w.upsert(batch(&[("p1", "x1"), ("a1-1", "changed")]))
            .unwrap(),
        [I, U]
    );
    model.upsert("p1", "x1");
    model.upsert("a1-1", "changed");
    w.finish().unwrap();
    assert_eq!(contents(&dir), model.expected());
    __use_memory_index(false);
}

#[test]
fn a_crash_at_each_step_of_an_append_leaves_a_correct_file() {
    for step in 1..=3u8 {
        __use_memory_index(true);
        let dir = TestDir::new();
        let mut model = Model::default();
        big_file(&dir, &mut model);
        let before = dir.read("t.txt");
        let rows = rows("b", 500, "w");
        let mut w = open(dir.path());
        assert!(w.upsert(batch(&rows)).unwrap().iter().all(|o| *o == I));
        __crash_during_append(step);
        assert!(w.finish().is_err());
        // A crash: no cleanup runs.
        std::mem::forget(w);
        let after = dir.read("t.txt");
        match step {
            1 => assert_eq!(after, before),
            2 => assert!(after.starts_with(&before) && after.len() > before.len()),
            _ => assert!(after.starts_with(&before) && after.ends_with("w499\n")),
        }
        // The engine re-sends the records after its last checkpoint: a torn
        // append is undone, a complete one kept.
        let mut w = open(dir.path());
        let out = w.upsert(batch(&rows)).unwrap();
        let expected = if step == 3 { C } else { I };
        assert!(
            out.iter().all(|o| *o == expected),
            "step {step}: {:?}",
            &out[..3]
        );
        if step < 3 {
            assert_eq!(dir.read("t.txt"), before, "step {step}: rolled back");
        }
        model.upsert_all(&rows);
        assert_eq!(w.upsert(batch(&[("a0-0", "new")])).unwrap(), [U]);
        model.upsert("a0-0", "new");
        w.finish().unwrap();
        assert_eq!(contents(&dir), model.expected(), "step {step}");
        assert_eq!(names(&dir), ["t.txt"], "step {step}");
    }
    __use_memory_index(false);
}
