//! End-to-end pipeline benchmark: CSV source plugin → 5 scripted mappings (plus
//! 5 plain ones) → `normalize` transform plugin → JSONL destination plugin, next
//! to a native Rust pipeline doing the same work, in the same run.
//!
//! Run: `cargo bench -p weir-host --bench pipeline` (optionally `-- 100000 1000000`
//! for the record counts). Prints records/s, MB/s, the ratio weir/native, peak RSS
//! of each run (measured in a child process), the per-call overhead of a plugin
//! call and instantiation from the pre-instantiated component. Not a test.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use weir_host::engine::{Engine, Quiet, Status};
use weir_host::project::{Connection, EntityTask, Mapping, PluginRef, Project, TransformStep};
use weir_host::runtime::{Grants, Limits, Runtime, RuntimeConfig};

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Barbara", "Linus", "Margaret", "Ken", "Dennis",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Liskov", "Torvalds", "Hamilton", "Thompson",
];
const CITIES: &[&str] = &[
    "San Francisco",
    "London",
    "Paris",
    "Berlin",
    "Madrid",
    "Sydney",
];
const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Contoso",
];

/// Writes `n` seeded contacts (10 fields) as CSV; returns the file size.
fn generate(path: &Path, n: usize) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        f,
        "id,first_name,last_name,email,phone,company,city,country,amount,created_at"
    )
    .unwrap();
    let mut x: u64 = 20261125;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    for i in 1..=n {
        let (fi, la, co) = (
            FIRST[next() % FIRST.len()],
            LAST[next() % LAST.len()],
            COMPANIES[next() % COMPANIES.len()],
        );
        writeln!(
            f,
            "{i},{fi},{la}, {}.{}@{}.com ,({:03}) 555-{:04},{co},{},US,{},2024-{:02}-{:02}",
            fi.to_uppercase(),
            la,
            co.to_lowercase().replace(' ', ""),
            200 + next() % 700,
            next() % 10_000,
            CITIES[next() % CITIES.len()],
            next() % 100_000,
            next() % 12 + 1,
            next() % 28 + 1
        )
        .unwrap();
    }
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

fn project(dir: &Path) -> Project {
    let mut normalize = weir_host::Config::default();
    normalize.set("phone_fields", "phone");
    normalize.set("email_fields", "email");
    Project {
        name: "bench".into(),
        connection_set: "bench".into(),
        source: Connection::new("src", PluginRef::bundled("csv"))
            .with_config("types", "id:integer,amount:integer")
            .with_directory(dir.join("in")),
        destination: Connection::new("dst", PluginRef::bundled("jsonl"))
            .with_directory(dir.join("out")),
        organization: None,
        batch_size: 1_000,
        schedule: None,
        retry: Default::default(),
        notify: Default::default(),
        lookups: Default::default(),
        tasks: vec![EntityTask {
            incremental: false,
            schema_change: Default::default(),
            name: "contacts".into(),
            source_entity: "contacts".into(),
            destination_entity: "contacts".into(),
            key: vec!["id".into()],
            mappings: vec![
                Mapping::new("id", "id"),
                Mapping::expr(
                    "full_name",
                    r#"(.first_name || "") + " " + (.last_name || "")"#,
                ),
                Mapping::new("email", "email"),
                Mapping::new("phone", "phone"),
                Mapping::expr("company", r#"upcase(.company || "")"#),
                Mapping::expr("city", r#"downcase(.city || "")"#),
                Mapping::new("country", "country"),
                Mapping::expr("amount_cents", "int!(.amount) * 100"),
                Mapping::expr(
                    "tier",
                    r#"if int!(.amount) > 50000 { "large" } else { "small" }"#,
                ),
                Mapping::new("created_at", "created_at"),
            ],
            transforms: vec![TransformStep {
                plugin: PluginRef::bundled("normalize"),
                config: normalize,
                limits: Limits::default(),
            }],
        }],
    }
}

fn e164(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 10 {
        format!("+1{digits}")
    } else {
        format!("+{digits}")
    }
}

/// The same work without plugins: parse CSV, map, normalise, write JSONL.
fn native(dir: &Path) -> usize {
    let mut reader = csv::Reader::from_path(dir.join("in/contacts.csv")).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("native.jsonl")).unwrap());
    let mut n = 0;
    for row in reader.records() {
        let r = row.unwrap();
        let amount: i64 = r[8].parse().unwrap();
        let rec = serde_json::json!({
            "id": r[0].parse::<i64>().unwrap(),
            "full_name": format!("{} {}", &r[1], &r[2]),
            "email": r[3].trim().to_lowercase(),
            "phone": e164(&r[4]),
            "company": r[5].to_uppercase(),
            "city": r[6].to_lowercase(),
            "country": &r[7],
            "amount_cents": amount * 100,
            "tier": if amount > 50_000 { "large" } else { "small" },
            "created_at": &r[9],
        });
        serde_json::to_writer(&mut out, &rec).unwrap();
        out.write_all(b"\n").unwrap();
        n += 1;
    }
    out.flush().unwrap();
    n
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One measured run in this (child) process; prints `secs rss_mib`.
fn child(which: &str, dir: &Path) {
    let started = Instant::now();
    match which {
        "weir" => {
            // The compiled-component cache the parent filled: a daemon has its plugins
            // compiled already, so compiling (~0.3 s per plugin) is not part of a run.
            let runtime = Runtime::new(RuntimeConfig {
                cache_dir: std::env::var_os("WEIR_BENCH_CACHE").map(Into::into),
                ..RuntimeConfig::default()
            })
            .unwrap();
            let report = Engine::new(&runtime)
                .run(&project(dir), &mut Quiet)
                .unwrap();
            if report.status != Status::Completed {
                let why = report
                    .tasks
                    .iter()
                    .find_map(|t| t.error.clone())
                    .unwrap_or_else(|| report.status.to_string());
                println!("ERR {why}");
                return;
            }
        }
        _ => {
            native(dir);
        }
    }
    println!("{} {}", started.elapsed().as_secs_f64(), peak_rss_mib());
}

fn measure(which: &str, dir: &Path) -> Result<(f64, f64), String> {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", which, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if let Some(err) = text.strip_prefix("ERR ") {
        return Err(err.trim().to_owned());
    }
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>().unwrap());
    Ok((parts.next().unwrap(), parts.next().unwrap()))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], Path::new(&args[i + 2]));
        return;
    }
    let counts: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    let counts = if counts.is_empty() {
        vec![100_000, 1_000_000, 10_000_000]
    } else {
        counts
    };
    println!(
        "pipeline benchmark: CSV → 10 mappings (5 VRL expressions) → normalize → JSONL, batches of 1,000"
    );
    let cache = tempfile::tempdir().unwrap();
    {
        let warm = Runtime::new(RuntimeConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..RuntimeConfig::default()
        })
        .unwrap();
        for name in weir_host::bundled::plugin_names() {
            warm.load_bytes(name, weir_host::bundled::plugin(name).unwrap())
                .unwrap();
        }
    }
    // SAFETY: single-threaded here, before any child is spawned.
    unsafe { std::env::set_var("WEIR_BENCH_CACHE", cache.path()) };
    for n in counts {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        let bytes = generate(&dir.path().join("in/contacts.csv"), n);
        let (w_secs, w_rss) = match measure("weir", dir.path()) {
            Ok(m) => m,
            Err(e) => {
                println!(
                    "  {n:>9} records ({:.0} MB CSV): weir did not complete: {e}",
                    bytes as f64 / 1e6
                );
                continue;
            }
        };
        let lines = std::fs::read_to_string(dir.path().join("out/contacts.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(lines, n, "every record written once");
        let (n_secs, n_rss) = measure("native", dir.path()).unwrap();
        println!(
            "  {n:>9} records ({:.0} MB CSV): weir {:>9.0} records/s {:>6.1} MB/s peak RSS {:>6.0} MiB | native {:>9.0} records/s peak RSS {:>5.0} MiB | weir/native {:.0}%",
            bytes as f64 / 1e6,
            n as f64 / w_secs,
            bytes as f64 / 1e6 / w_secs,
            w_rss,
            n as f64 / n_secs,
            n_rss,
            100.0 * n_secs / w_secs
        );
    }

    // Per-call overhead and instantiation from the pre-instantiated component.
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let plugin = runtime
        .load_bytes("csv", weir_host::bundled::plugin("csv").unwrap())
        .unwrap();
    let mut instance = plugin.connector(Grants::none(), Limits::default()).unwrap();
    instance.warm_up().unwrap();
    let calls = 20_000;
    let t = Instant::now();
    for _ in 0..calls {
        instance.check(&weir_host::Config::default()).unwrap_err();
    }
    let per_call = t.elapsed().as_secs_f64() / calls as f64 * 1e6;
    let t = Instant::now();
    let n = 2_000;
    for _ in 0..n {
        let mut i = plugin.connector(Grants::none(), Limits::default()).unwrap();
        i.warm_up().unwrap();
    }
    let per_instance = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!(
        "  plugin call (check, with its typed error) {per_call:.1} µs; new instance from the pool (store + WASI + instantiate) {per_instance:.1} µs; pooling allocator: {}",
        runtime.pooling()
    );
}
