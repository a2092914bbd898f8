//! The keyed file writer's heap stays small while it writes far more record
//! bytes than that: measured with a counting allocator, in its own test binary
//! so no other test allocates at the same time.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use weir_sdk::files::__test_format::Lines;
use weir_sdk::files::KeyedFileWriter;
use weir_sdk::testing::TestDir;
use weir_sdk::{BatchBuilder, FieldType, UpsertOutcome, Value, Writer};

#[test]
fn heap_is_bounded_by_keys_not_records() {
    const RECORDS: usize = 200_000;
    let dir = TestDir::new();
    let value = "v".repeat(500);
    let mut w = KeyedFileWriter::open(dir.path(), "t", "txt", &["key".to_owned()], Lines).unwrap();
    let base = counting_alloc::mark();
    for round in 0..2 {
        // The second round changes every value, so each record is a real update
        // (the same value again would be `unchanged`, and write nothing).
        let value = if round == 0 {
            value.clone()
        } else {
            "w".repeat(500)
        };
        for chunk in 0..RECORDS / 1000 {
            let mut b = BatchBuilder::new(&[("key", FieldType::Text), ("value", FieldType::Text)]);
            for n in 0..1000 {
                b.push_row(&[
                    Value::Text(format!("key-{chunk}-{n}")),
                    Value::Text(value.clone()),
                ])
                .unwrap();
            }
            let out = w.upsert(b.finish()).unwrap();
            let expected = if round == 0 {
                UpsertOutcome::Inserted
            } else {
                UpsertOutcome::Updated
            };
            assert!(out.iter().all(|o| *o == expected));
        }
    }
    w.finish().unwrap();
    let peak = counting_alloc::peak() - base;
    let written = std::fs::metadata(dir.path().join("t.txt")).unwrap().len() as usize;
    assert!(written > 100_000_000, "{written}");
    // The index at its fixed budget (a 4 MiB table of recent keys, past which it
    // spills into runs on disk and allocates its 16 MiB filter), the sorted chunk
    // of updates (2 MiB), the logs' buffers and one batch: ~25 MB against 200 MB
    // of records written (100 MB kept). Whole records in memory would be over
    // 100 MB.
    assert!(peak < 28 << 20, "peak heap {} MiB", peak >> 20);
    println!(
        "peak heap {:.1} MiB for {written} bytes written",
        peak as f64 / (1 << 20) as f64
    );
}
