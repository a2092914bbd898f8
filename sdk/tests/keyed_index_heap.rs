//! The keyed writer's heap stays within its fixed budget at 2M keys — over ten
//! spills of the table of recent keys, sessions kept and appended, then updates
//! of keys spread over every run — measured with a counting allocator, in its own
//! test binary so no other test allocates at the same time.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use weir_sdk::files::__test_format::Lines;
use weir_sdk::files::KeyedFileWriter;
use weir_sdk::testing::TestDir;
use weir_sdk::{BatchBuilder, FieldType, UpsertOutcome, Value, Writer};

fn open(dir: &TestDir) -> KeyedFileWriter<Lines> {
    KeyedFileWriter::open(dir.path(), "t", "txt", &["key".to_owned()], Lines).unwrap()
}

fn rows(keys: impl Iterator<Item = u64>, value: &str) -> weir_sdk::Batch {
    let mut b = BatchBuilder::new(&[("key", FieldType::Text), ("value", FieldType::Text)]);
    for k in keys {
        b.push_row(&[Value::Text(format!("key-{k}")), Value::Text(value.into())])
            .unwrap();
    }
    b.finish()
}

#[test]
fn heap_stays_within_the_budget_at_two_million_keys() {
    const KEYS: u64 = 2_000_000;
    let dir = TestDir::new();
    let base = counting_alloc::mark();
    // Four sessions of 500,000 new keys (the index kept between them, appends).
    for session in 0..4 {
        let mut w = open(&dir);
        assert_eq!(w.keys() as u64, session * KEYS / 4);
        for chunk in 0..500 {
            let first = session * KEYS / 4 + chunk * 1000;
            let out = w.upsert(rows(first..first + 1000, "v")).unwrap();
            assert!(out.iter().all(|o| *o == UpsertOutcome::Inserted));
        }
        w.finish().unwrap();
    }
    let inserts_peak = counting_alloc::peak() - base;
    // 300,000 updates of keys spread over the whole range, i.e. over every run
    // (multiplying by a number coprime with the count visits them all once).
    let mut w = open(&dir);
    assert_eq!(w.keys() as u64, KEYS);
    assert!(w.index_runs() >= 2);
    for chunk in 0..300 {
        let keys = (chunk * 1000..chunk * 1000 + 1000).map(|n| n * 7_919 % KEYS);
        let out = w.upsert(rows(keys, "updated")).unwrap();
        assert!(out.iter().all(|o| *o == UpsertOutcome::Updated));
    }
    w.finish().unwrap();
    let peak = counting_alloc::peak() - base;
    let text = std::fs::read_to_string(dir.path().join("t.txt")).unwrap();
    assert_eq!(text.lines().count() as u64, KEYS);
    assert_eq!(text.matches("\tupdated\n").count(), 300_000);
    println!(
        "peak heap {:.1} MiB inserting, {:.1} MiB with updates, for {KEYS} keys",
        inserts_peak as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64
    );
    // The table (4 MiB), the filter (16 MiB), fences (8 bytes per 256 keys), the
    // sorted chunk of updates (2 MiB), the logs' buffers, one batch. The former
    // index alone was 32 MiB at 2M keys (48 MiB while growing).
    assert!(peak < 28 << 20, "peak heap {} MiB", peak >> 20);
}
