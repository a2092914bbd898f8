//! End-to-end pipeline benchmark: CSV source plugin → 5 scripted mappings (plus
//! 5 plain ones) → `normalize` transform plugin → JSONL destination plugin, next
//! to a native Rust pipeline doing the same work, in the same run.
//!
//! Run: `cargo bench -p weir-host --bench pipeline` (optionally `-- 100000 1000000`
//! for the record counts, `--rounds 3` for medians of interleaved rounds). For each
//! count it measures, each in a child process of its own:
//! - **first run**: the destination empty (every record inserted);
//! - **re-run, all unchanged**: the same file again (every key already there);
//! - **re-run, 10 % changed**: one record in ten has a new `amount`;
//! - **native**: plain Rust (csv + serde_json, the same mapping, one thread).
//!
//! and prints records/s (wall), **records per CPU-second of all threads** (user +
//! sys from `getrusage`, the headline: weir's stages run on several threads, the
//! native baseline on one), peak RSS, the ratio to native per CPU-second and, for
//! the re-runs, their CPU against the first run's. The per-call overhead of a
//! plugin call and of instantiation from the pre-instantiated component follow.
//! Not a test.

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

/// Writes `n` seeded contacts (10 fields) as CSV; returns the file size. With
/// `changed_every: Some(k)`, every k-th record has another `amount` (the rest are
/// byte-identical to the run without it).
fn generate(path: &Path, n: usize, changed_every: Option<usize>) -> u64 {
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
        let changed = changed_every.is_some_and(|k| i % k == 0);
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
            next() % 100_000 + if changed { 100_000 } else { 0 },
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
            stop_on_failures: Default::default(),
            schema_change: Default::default(),
            duplicate_check: Default::default(),
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

/// User + system CPU seconds of every thread of this process so far (threads
/// that ended included).
fn cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// One measured run in this (child) process; prints
/// `secs cpu_secs rss_mib inserted updated unchanged`.
fn child(which: &str, dir: &Path) {
    let (cpu0, started) = (cpu_secs(), Instant::now());
    let (inserted, updated, unchanged) = match which {
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
            let totals = report.totals();
            (totals.inserted, totals.updated, totals.unchanged)
        }
        _ => (native(dir) as u64, 0, 0),
    };
    println!(
        "{} {} {} {inserted} {updated} {unchanged}",
        started.elapsed().as_secs_f64(),
        cpu_secs() - cpu0,
        peak_rss_mib()
    );
}

/// What one child run measured.
#[derive(Clone, Copy)]
struct Measured {
    secs: f64,
    cpu_secs: f64,
    rss_mib: f64,
    inserted: u64,
    updated: u64,
    unchanged: u64,
}

fn measure(which: &str, dir: &Path) -> Result<Measured, String> {
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
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|p| p.parse::<f64>().unwrap())
        .collect();
    Ok(Measured {
        secs: v[0],
        cpu_secs: v[1],
        rss_mib: v[2],
        inserted: v[3] as u64,
        updated: v[4] as u64,
        unchanged: v[5] as u64,
    })
}

/// The run of median CPU time among rounds.
fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.cpu_secs.total_cmp(&b.cpu_secs));
    runs[runs.len() / 2]
}

fn lines_of(path: &Path) -> usize {
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    std::io::BufRead::lines(f).count()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], Path::new(&args[i + 2]));
        return;
    }
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1)?.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let counts: Vec<usize> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || args[i - 1] != "--rounds")
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
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
    println!(
        "  {:<26} {:>17} {:>8} {:>8} {:>14} {:>8} {:>11} {:>11}",
        "scenario",
        "records",
        "wall s",
        "CPU s",
        "records/CPU-s",
        "RSS MiB",
        "vs native",
        "vs 1st run"
    );
    for n in counts {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        let csv = dir.path().join("in/contacts.csv");
        let out = dir.path().join("out/contacts.jsonl");
        let bytes = generate(&csv, n, None);
        println!(
            "  -- {n} records ({:.0} MB CSV), {rounds} round(s), medians by CPU",
            bytes as f64 / 1e6
        );
        let (mut first, mut same, mut tenth, mut native_runs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut failed = None;
        // Rounds interleave the scenarios, so a slow spell of the machine touches
        // all of them rather than one.
        for _ in 0..rounds {
            generate(&csv, n, None);
            let _ = std::fs::remove_dir_all(dir.path().join("out"));
            let runs = [("first", None), ("same", None), ("tenth", Some(10))];
            for (which, changed) in runs {
                if changed.is_some() {
                    generate(&csv, n, changed);
                }
                match measure("weir", dir.path()) {
                    Ok(m) => {
                        assert_eq!(lines_of(&out), n, "every record written once ({which})");
                        match which {
                            "first" => first.push(m),
                            "same" => same.push(m),
                            _ => tenth.push(m),
                        }
                    }
                    Err(e) => failed = Some(format!("{which}: {e}")),
                }
            }
            native_runs.push(measure("native", dir.path()).unwrap());
        }
        if let Some(e) = failed {
            println!("  weir did not complete: {e}");
            continue;
        }
        let native = median(native_runs);
        let first = median(first);
        let row = |name: &str, m: Measured| {
            let per_cpu = n as f64 / m.cpu_secs;
            println!(
                "  {name:<26} {:>17} {:>8.2} {:>8.2} {:>14.0} {:>8.0} {:>10.2}x {:>11}",
                format!("{}+{}+{}", m.inserted, m.updated, m.unchanged),
                m.secs,
                m.cpu_secs,
                per_cpu,
                m.rss_mib,
                per_cpu / (n as f64 / native.cpu_secs),
                if name.starts_with("weir, re-run") {
                    format!("{:.2}x CPU", m.cpu_secs / first.cpu_secs)
                } else {
                    String::new()
                }
            );
        };
        row("native (1 thread)", native);
        row("weir, first run", first);
        row("weir, re-run all unchanged", median(same));
        row("weir, re-run 10 % changed", median(tenth));
    }
    println!(
        "  (records: inserted+updated+unchanged; vs native: records per CPU-second against native's; vs 1st run: CPU of the re-run over the first run's)"
    );

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
