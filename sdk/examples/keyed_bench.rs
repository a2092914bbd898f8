//! The keyed writer alone, natively: `cargo run --release --example keyed_bench
//! -- <records> [<records per session>]`. Prints records/s of appends (one
//! session, then sessions like the engine's checkpoints) and of updates, and the
//! process's peak RSS. Figures, not a pass/fail.

use std::time::{Duration, Instant};

use weir_sdk::files::__test_format::Lines;
use weir_sdk::files::{__forget_kept_index, KeyedFileWriter};
use weir_sdk::testing::TestDir;
use weir_sdk::{Batch, BatchBuilder, FieldType, Value, Writer};

fn open(dir: &TestDir) -> KeyedFileWriter<Lines> {
    KeyedFileWriter::open(dir.path(), "t", "txt", &["key".to_owned()], Lines).unwrap()
}

fn batch(keys: impl Iterator<Item = u64>, tag: &str) -> Batch {
    let mut b = BatchBuilder::new(&[("key", FieldType::Text), ("value", FieldType::Text)]);
    for k in keys {
        // ~100 bytes a record, like a contact.
        b.push_row(&[
            Value::Text(format!("contact-{k:010}")),
            Value::Text(format!(
                "{tag} name-{k} mail-{k}@example.org +33 1 23 45 67 89 somewhere street {k}"
            )),
        ])
        .unwrap();
    }
    b.finish()
}

fn peak_rss_mib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Upserts `n` records from `first` (stride `step`) in sessions of `per_session`;
/// returns the time spent in the writer (open, upsert, finish).
fn run(dir: &TestDir, n: u64, per_session: u64, tag: &str, key: impl Fn(u64) -> u64) -> Duration {
    let mut spent = Duration::ZERO;
    let mut parts = [Duration::ZERO; 3];
    let mut done = 0;
    while done < n {
        let t = Instant::now();
        let mut w = open(dir);
        spent += t.elapsed();
        parts[0] += t.elapsed();
        let end = (done + per_session).min(n);
        while done < end {
            let to = (done + 1000).min(end);
            let b = batch((done..to).map(&key), tag);
            let t = Instant::now();
            w.upsert(b).unwrap();
            spent += t.elapsed();
            parts[1] += t.elapsed();
            done = to;
        }
        let t = Instant::now();
        w.finish().unwrap();
        spent += t.elapsed();
        parts[2] += t.elapsed();
    }
    if std::env::var_os("PARTS").is_some() {
        eprintln!(
            "  open {:?}, upsert {:?}, finish {:?}",
            parts[0], parts[1], parts[2]
        );
    }
    spent
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let per_session: u64 = args.next().map_or(10_000, |a| a.parse().unwrap());
    let rate = |d: Duration, n: u64| n as f64 / d.as_secs_f64();
    // Batches cost time to build; measure it apart.
    let t = Instant::now();
    for c in 0..(n / 1000).min(1000) {
        std::hint::black_box(batch(c * 1000..c * 1000 + 1000, "x"));
    }
    let build = t.elapsed().as_secs_f64() / (n / 1000).min(1000) as f64 * 1000.0;
    println!("(building a batch of 1,000: {build:.2} ms, not counted)");

    let only_sessions = std::env::var_os("ONLY_SESSIONS").is_some();
    let dir = TestDir::new();
    let d = if only_sessions {
        Duration::from_secs(1)
    } else {
        run(&dir, n, n, "a", |k| k)
    };
    let size = std::fs::metadata(dir.path().join("t.txt")).map_or(0, |m| m.len());
    println!(
        "appends, one session:        {n} records, {:.0} records/s ({:.0} ns each), {} MiB file, peak RSS {} MiB",
        rate(d, n),
        d.as_nanos() as f64 / n as f64,
        size >> 20,
        peak_rss_mib()
    );
    drop(dir);

    let dir = TestDir::new();
    let d = run(&dir, n, per_session, "a", |k| k);
    println!(
        "appends, sessions of {per_session}: {n} records, {:.0} records/s, peak RSS {} MiB",
        rate(d, n),
        peak_rss_mib()
    );
    if only_sessions {
        return;
    }

    // Updates: a session of updates of keys spread over the file (finish
    // rewrites it), on the file just written, by a fresh instance.
    __forget_kept_index();
    let m = (n / 10).max(1000);
    let d = run(&dir, m, m, "b", |k| k * 7_919 % n);
    println!(
        "updates, one session:        {m} records over {n} keys, {:.0} records/s (rewrite included), peak RSS {} MiB",
        rate(d, m),
        peak_rss_mib()
    );
    // And a fresh instance opening the rewritten file (a full scan: no index).
    __forget_kept_index();
    let t = Instant::now();
    let w = open(&dir);
    println!(
        "open after the rewrite (scan of {n} records): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    drop(w);
    // A fresh instance after append-only sessions: runs + the tail, no scan.
    let d = run(&dir, 1000, 1000, "c", |k| n + k);
    let _ = d;
    __forget_kept_index();
    let t = Instant::now();
    let w = open(&dir);
    println!(
        "open from the manifest ({n} keys): {:.3} s",
        t.elapsed().as_secs_f64()
    );
    drop(w);
}
