//! The keyed writer's bounded index: upserts across the spill boundary, many
//! sessions at linear cost, the index kept and persisted between sessions, and
//! crashes at each step of an append.

use std::path::Path;

use weir_sdk::files::__test_format::Lines;
use weir_sdk::files::{
    __crash_during_append, __forget_kept_index, __set_index_slots, KeyedFileWriter,
};
use weir_sdk::testing::TestDir;
use weir_sdk::{UpsertOutcome, Writer};

#[path = "common/keyed.rs"]
mod keyed;
use keyed::{Model, batch, contents, names};

use UpsertOutcome::{Inserted as I, Unchanged as C, Updated as U};

fn open(dir: &Path) -> KeyedFileWriter<Lines> {
    KeyedFileWriter::open(dir, "t", "txt", &["key".to_owned()], Lines).unwrap()
}

#[test]
fn upserts_across_the_spill_boundary_in_sessions_kept_and_restored() {
    // A table of 1,024 slots spills every 768 keys: 5,000 keys make runs and
    // merges.
    __set_index_slots(1024);
    let dir = TestDir::new();
    let mut model = Model::default();
    let value = "v".repeat(300);
    for session in 0..6 {
        if session == 3 {
            // As a fresh instance would: from the manifest and runs.
            __forget_kept_index();
        }
        let mut w = open(dir.path());
        assert_eq!(w.keys(), model.values.len(), "session {session}");
        // New keys, then updates of keys from the first session (in the oldest
        // run), of this session's first keys (spilled since) and its last ones
        // (still in the table), with a key repeated inside one batch.
        let base = session * 1000;
        for chunk in 0..5 {
            let rows: Vec<(String, String)> = (0..200)
                .map(|n| (format!("k{}", base + chunk * 200 + n), value.clone()))
                .collect();
            let want: Vec<_> = rows.iter().map(|(k, v)| model.upsert(k, v)).collect();
            assert_eq!(w.upsert(batch(&rows)).unwrap(), want);
        }
        assert!(w.index_runs() >= 1, "spilled");
        if session % 2 == 1 {
            let rows: Vec<(String, String)> = [3, 777, base + 5, base + 999, base + 5, 4321]
                .iter()
                .map(|n| (format!("k{n}"), format!("s{session}-{n}")))
                .collect();
            let want: Vec<_> = rows.iter().map(|(k, v)| model.upsert(k, v)).collect();
            assert_eq!(w.upsert(batch(&rows)).unwrap(), want, "session {session}");
            // The repeated key's second upsert carries the value its first wrote.
            assert_eq!(want[..5], [U, U, U, U, C]);
        }
        w.finish().unwrap();
        assert_eq!(contents(&dir), model.expected(), "session {session}");
    }
    let names = names(&dir);
    assert!(
        names
            .iter()
            .all(|n| n == "t.txt" || n.starts_with(".t.txt.run") || n == ".t.txt.index"),
        "{names:?}"
    );
    __set_index_slots(1 << 18);
}

#[test]
fn many_sessions_cost_linear_bytes() {
    // 200 sessions of 1,000 new records (the engine checkpoints every 10 batches
    // of 100): each session must cost its own records, not the file.
    __set_index_slots(1 << 14);
    let dir = TestDir::new();
    let value = "x".repeat(90);
    let (mut read, mut written, mut index) = (0u64, 0u64, 0u64);
    for session in 0..200 {
        let mut w = open(dir.path());
        for b in 0..10 {
            let rows: Vec<(String, &str)> = (0..100)
                .map(|n| (format!("key-{session}-{b}-{n}"), value.as_str()))
                .collect();
            assert!(w.upsert(batch(&rows)).unwrap().iter().all(|o| *o == I));
        }
        let (ir, iw) = w.index_io_bytes();
        index += ir + iw;
        w.finish().unwrap();
        let (r, wr) = w.io_bytes();
        read += r;
        written += wr;
    }
    let size = std::fs::metadata(dir.path().join("t.txt")).unwrap().len();
    assert_eq!(contents(&dir).len(), 200_000);
    // Files under 1 MiB are copied (at most ~1 MiB each time), the others get
    // appends; the index's runs are read and rewritten O(log n) times, 16 bytes
    // a key (here 16 spills: 4 merges).
    println!("file {size} bytes; read {read}, written {written}, index {index}");
    assert!(
        read + written < 4 * size,
        "read {read} written {written} for {size}"
    );
    assert!(index < 200_000 * 16 * 12, "index {index}");
    // A fresh instance does not scan the file: the runs, then only the records
    // after them.
    __forget_kept_index();
    let mut w = open(dir.path());
    let (r, _) = w.io_bytes();
    assert!(r < size / 10, "read {r} of {size} at open");
    assert_eq!(w.keys(), 200_000);
    assert_eq!(
        w.upsert(batch(&[("key-0-0-0", "y"), ("new", "y")]))
            .unwrap(),
        [U, I]
    );
    drop(w);
    __set_index_slots(1 << 18);
}

/// A file of ~1.2 MiB (appends from there on) and its model.
fn big_file(dir: &TestDir, model: &mut Model) {
    let value = "z".repeat(200);
    let mut w = open(dir.path());
    for b in 0..30 {
        let rows: Vec<(String, &str)> = (0..200)
            .map(|n| (format!("a{b}-{n}"), value.as_str()))
            .collect();
        for (k, v) in &rows {
            model.upsert(k, v);
        }
        w.upsert(batch(&rows)).unwrap();
    }
    w.finish().unwrap();
    assert!(std::fs::metadata(dir.path().join("t.txt")).unwrap().len() > 1 << 20);
}

fn session_rows(tag: &str) -> Vec<(String, String)> {
    (0..500)
        .map(|n| (format!("{tag}{n}"), format!("w{n}")))
        .collect()
}

#[test]
fn a_crash_at_each_step_of_an_append_leaves_a_correct_file() {
    __set_index_slots(1024);
    for step in 1..=3u8 {
        for fresh in [false, true] {
            let dir = TestDir::new();
            let mut model = Model::default();
            big_file(&dir, &mut model);
            let before = dir.read("t.txt");
            let rows = session_rows("b");
            let mut w = open(dir.path());
            assert!(w.upsert(batch(&rows)).unwrap().iter().all(|o| *o == I));
            __crash_during_append(step);
            assert!(w.finish().is_err());
            // A crash: no cleanup runs.
            std::mem::forget(w);
            if fresh {
                __forget_kept_index();
            }
            let after = dir.read("t.txt");
            match step {
                1 => assert_eq!(after, before),
                // Half the records, the last one likely cut.
                2 => assert!(after.starts_with(&before) && after.len() > before.len()),
                _ => assert!(after.starts_with(&before) && after.ends_with("w499\n")),
            }
            // The next session (the engine re-sends the records after the last
            // checkpoint): a torn append is undone, a complete one kept.
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
            for (k, v) in &rows {
                model.upsert(k, v);
            }
            // And more on top, with an update.
            let more = session_rows("c");
            for (k, v) in &more {
                model.upsert(k, v);
            }
            w.upsert(batch(&more)).unwrap();
            assert_eq!(w.upsert(batch(&[("a0-0", "new")])).unwrap(), [U]);
            model.upsert("a0-0", "new");
            w.finish().unwrap();
            assert_eq!(
                contents(&dir),
                model.expected(),
                "step {step} fresh {fresh}"
            );
            let left: Vec<_> = names(&dir)
                .into_iter()
                .filter(|n| n.ends_with(".tmp"))
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
    }
    __set_index_slots(1 << 18);
}

#[test]
fn a_damaged_or_stale_index_is_dropped_and_the_file_scanned() {
    __set_index_slots(1024);
    let dir = TestDir::new();
    let mut model = Model::default();
    big_file(&dir, &mut model);
    let rows = session_rows("b");
    let mut w = open(dir.path());
    w.upsert(batch(&rows)).unwrap();
    w.finish().unwrap();
    for (k, v) in &rows {
        model.upsert(k, v);
    }
    let manifest = dir.path().join(".t.txt.index");
    assert!(manifest.exists());
    let keys = model.values.len();
    let check = |what: &str, model: &mut Model, key: &str| {
        __forget_kept_index();
        let mut w = open(dir.path());
        assert_eq!(w.keys(), model.values.len(), "{what}");
        // An existing key from the start, one from the last session, a new one.
        let rows = [("a0-1", what), ("b7", what), (key, what)];
        assert_eq!(w.upsert(batch(&rows)).unwrap(), [U, U, I], "{what}");
        for (k, v) in rows {
            model.upsert(k, v);
        }
        w.finish().unwrap();
        assert_eq!(contents(&dir), model.expected(), "{what}");
    };
    // The updates rewrote the file: its index went with the old positions.
    check("rescan after a rewrite", &mut model, "n1");
    assert_eq!(model.values.len(), keys + 1);
    // Build a manifest again (a session of new records only), then damage it.
    let append_only = |model: &mut Model, tag: &str| {
        let rows = session_rows(tag);
        let mut w = open(dir.path());
        w.upsert(batch(&rows)).unwrap();
        w.finish().unwrap();
        for (k, v) in &rows {
            model.upsert(k, v);
        }
        assert!(manifest.exists());
    };
    append_only(&mut model, "d");
    let text = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    check("truncated manifest", &mut model, "n2");
    append_only(&mut model, "e");
    let run = names(&dir)
        .into_iter()
        .find(|n| n.starts_with(".t.txt.run"))
        .expect("a run");
    let run = dir.path().join(run);
    let bytes = std::fs::read(&run).unwrap();
    std::fs::write(&run, &bytes[..bytes.len() - 16]).unwrap();
    check("truncated run", &mut model, "n3");
    append_only(&mut model, "f");
    // Another program appends a line: the kept index and the manifest no longer
    // describe the file.
    let mut text = dir.read("t.txt");
    text.push_str("other\t1\n");
    std::fs::write(dir.path().join("t.txt"), &text).unwrap();
    model.upsert("other", "1");
    let mut w = open(dir.path());
    assert_eq!(w.upsert(batch(&[("other", "2")])).unwrap(), [U]);
    model.upsert("other", "2");
    w.finish().unwrap();
    assert_eq!(contents(&dir), model.expected());
    // Other key fields: the index is not reused (the key `value` is new).
    // (`Lines` keys by `key` whatever it is told, so only the scan shows.)
    let size = std::fs::metadata(dir.path().join("t.txt")).unwrap().len();
    let w = KeyedFileWriter::open(dir.path(), "t", "txt", &["value".to_owned()], Lines).unwrap();
    assert!(w.io_bytes().0 >= size, "scanned whole");
    drop(w);
    // The entity file deleted: its index files go at the next open.
    std::fs::remove_file(dir.path().join("t.txt")).unwrap();
    let w = open(dir.path());
    assert_eq!(w.keys(), 0);
    drop(w);
    assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    __set_index_slots(1 << 18);
}

#[test]
fn an_unfinished_session_keeps_the_committed_index() {
    __set_index_slots(1024);
    let dir = TestDir::new();
    let mut model = Model::default();
    big_file(&dir, &mut model);
    let before_names = names(&dir);
    let before = dir.read("t.txt");
    // Many new keys (spills, merges with committed runs), then dropped.
    let mut w = open(dir.path());
    for tag in ["p", "q", "r", "s"] {
        w.upsert(batch(&session_rows(tag))).unwrap();
    }
    drop(w);
    assert_eq!(dir.read("t.txt"), before);
    assert_eq!(names(&dir), before_names, "the session's runs went");
    __forget_kept_index();
    let mut w = open(dir.path());
    assert_eq!(w.keys(), model.values.len());
    assert_eq!(
        w.upsert(batch(&[("p1", "x"), ("a3-3", "x")])).unwrap(),
        [I, U]
    );
    drop(w);
    __set_index_slots(1 << 18);
}
