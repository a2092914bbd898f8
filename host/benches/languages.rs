//! The same transform in Rust, Python and JavaScript: the country lookup of
//! `plugins/country-lookup`, `examples/python-sdk/transform.py` and
//! `examples/js-sdk/transform.js`, called on batches of 1,000 records through the
//! runtime that runs projects.
//!
//! Run: `cargo bench -p weir-host --bench languages -- PYTHON.wasm JS.wasm [RECORDS]`
//! (`.ci/languages.sh --bench` builds both and passes them). Prints, per language,
//! records/s (wall clock) and records per CPU-second of all the process's threads
//! (getrusage), after one warm-up batch (compilation and instantiation excluded).
//! Not a test.

use std::path::Path;
use std::time::Instant;

use weir_host::runtime::{Limits, Runtime, RuntimeConfig};
use weir_types::{BatchBuilder, Config, FieldType, Value};

const BATCH: usize = 1_000;
const CODES: &[&str] = &["FR", "DE", "IT", "ES", "NL"];

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn batch(offset: usize) -> weir_types::Batch {
    let mut b = BatchBuilder::with_capacity(
        &[
            ("id", FieldType::Integer),
            ("name", FieldType::Text),
            ("country", FieldType::Text),
        ],
        BATCH,
    );
    for i in 0..BATCH {
        let id = (offset + i) as i64 + 1;
        b.push_row(&[
            Value::Integer(id),
            Value::Text(format!("Person {id}")),
            Value::Text(CODES[i % CODES.len()].to_owned()),
        ])
        .unwrap();
    }
    b.finish()
}

fn measure(runtime: &Runtime, language: &str, path: &Path, records: usize) {
    let plugin = runtime
        .load_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut t = plugin.transform(Limits::default()).unwrap();
    let config = Config::new(vec![
        (
            "table".into(),
            "FR=France;DE=Germany;IT=Italy;ES=Spain".into(),
        ),
        ("missing".into(), "null".into()),
    ]);
    let out = t.transform(&config, batch(0)).unwrap();
    assert_eq!(out.records.len(), BATCH);
    let batches: Vec<_> = (0..records / BATCH).map(|k| batch(k * BATCH)).collect();
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for b in batches {
        let out = t.transform(&config, b).unwrap();
        assert!(out.failures.is_empty());
    }
    let (wall, cpu) = (wall.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let n = (records / BATCH * BATCH) as f64;
    println!(
        "| {language:<10} | {:>12.0} | {:>21.0} | {:>8.2} MiB |",
        n / wall,
        n / cpu,
        std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1048576.0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(python), Some(js)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: cargo bench -p weir-host --bench languages -- PYTHON.wasm JS.wasm [RECORDS]"
        );
        std::process::exit(2);
    };
    let records: usize = args.get(2).map_or(100_000, |n| n.parse().unwrap());
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(tempfile::tempdir().unwrap().keep()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let rust =
        Path::new(weir_host::bundled::PLUGIN_BUILD_DIR).join("weir_plugin_country_lookup.wasm");
    println!("country lookup, {records} records in batches of {BATCH}:");
    println!("| language   |    records/s | records per CPU-second | component |");
    println!("|------------|--------------|------------------------|-----------|");
    measure(&runtime, "Rust", &rust, records);
    measure(&runtime, "Python", Path::new(python), records);
    measure(&runtime, "JavaScript", Path::new(js), records);
}
