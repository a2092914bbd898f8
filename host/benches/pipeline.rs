//! End-to-end pipeline benchmark: CSV source plugin → 5 scripted mappings (plus
//! 5 plain ones) → `normalize` transform plugin → JSONL destination plugin, next
//! to a native Rust pipeline doing the same work, in the same run.
//!
//! Run: `cargo bench -p weir-host --bench pipeline` (optionally `-- 100000 1000000`
//! for the record counts, `--rounds 3` for medians of interleaved rounds, `--index
//! host` or `--index plugin` for one place of the key index only). For each
//! count it measures, each in a child process of its own:
//! - **first run**: the destination empty (every record inserted);
//! - **re-run, all unchanged**: the same file again (every key already there);
//! - **re-run, 10 % changed**: one record in ten has a new `amount`;
//! - **native**: plain Rust (csv + serde_json, the same mapping, one thread).
//!
//! Each weir scenario runs twice: with the JSON Lines writer's key index in the
//! host (`weir:kv/index`, an embedded fjall store under the run's data
//! directory, what `weir run` and `weir serve` do) and in the plugin (its own
//! LSM in the destination folder, what a host without an index directory gets):
//! the A/B of where the index lives.
//!
//! It prints records/s (wall), **records per CPU-second of all threads** (user +
//! sys from `getrusage`, the headline: weir's stages run on several threads, the
//! native baseline on one), peak RSS, the ratio to native per CPU-second and, for
//! the re-runs, their CPU against the first run's.
//!
//! With `WEIR_BENCH_PG_URL` (else `WEIR_TEST_PG_URL`) naming a PostgreSQL server
//! **on this machine**, the same records go into a table too (database
//! `weir_bench`, dropped and created): weir's first run (table empty) and re-run
//! (every row there, unchanged), against `psql \copy` into a staging table + one
//! `INSERT ... SELECT ... ON CONFLICT` doing the same mapping in SQL, first run
//! and re-run. Their CPU is the client's plus the server's (`/proc` times of the
//! postmaster and its processes). `--pg-records N[,M]` sets their counts
//! (default: each count up to 1 M), `--pg-only` skips the file scenarios.
//! Without a server they are skipped with a note.
//!
//! `WEIR_BENCH_PERF=<dir>` runs each weir scenario under `perf record -g` (wasm
//! frames named through wasmtime's perf map) and keeps one profile per run there.
//!
//! The per-call overhead of a plugin call and of instantiation from the
//! pre-instantiated component follow. Not a test.

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
    project_to(
        dir,
        Connection::new("dst", PluginRef::bundled("jsonl")).with_directory(dir.join("out")),
    )
}

/// The bench's project (source, mappings, transform, key) writing to `destination`.
fn project_to(dir: &Path, destination: Connection) -> Project {
    let mut normalize = weir_host::Config::default();
    normalize.set("phone_fields", "phone");
    normalize.set("email_fields", "email");
    Project {
        name: "bench".into(),
        connection_set: "bench".into(),
        source: Connection::new("src", PluginRef::bundled("csv"))
            .with_config("types", "id:integer,amount:integer")
            .with_directory(dir.join("in")),
        destination,
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

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut u) };
    u
}

/// User + system CPU seconds of every thread of this process so far (threads
/// that ended included), and of the children it waited for (`psql`).
fn cpu_secs() -> f64 {
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    let (me, children) = (rusage(libc::RUSAGE_SELF), rusage(libc::RUSAGE_CHILDREN));
    t(me.ru_utime) + t(me.ru_stime) + t(children.ru_utime) + t(children.ru_stime)
}

/// The larger peak RSS of this process and of its largest waited-for child.
fn peak_rss_with_children_mib() -> f64 {
    let child = rusage(libc::RUSAGE_CHILDREN).ru_maxrss as f64 / 1024.0;
    peak_rss_mib().max(child)
}

/// One measured run in this (child) process; prints
/// `secs cpu_secs rss_mib inserted updated unchanged`.
fn child(which: &str, dir: &Path) {
    let (cpu0, started) = (cpu_secs(), Instant::now());
    let pg_server = || pg::Server::from_url(&pg::url().expect("a server URL")).unwrap();
    let (inserted, updated, unchanged) = match which {
        "weir" | "weir-pg" => {
            let project = if which == "weir" {
                project(dir)
            } else {
                pg::project(dir, &pg_server())
            };
            // The compiled-component cache the parent filled: a daemon has its plugins
            // compiled already, so compiling (~0.3 s per plugin) is not part of a run.
            // The index directory lives beside the destination, as a data
            // directory's does: re-runs find what the first run put there.
            let index_dir = match std::env::var("WEIR_BENCH_INDEX").as_deref() {
                Ok("plugin") => None,
                _ => Some(dir.join("index")),
            };
            let runtime = Runtime::new(RuntimeConfig {
                cache_dir: std::env::var_os("WEIR_BENCH_CACHE").map(Into::into),
                index_dir,
                ..RuntimeConfig::default()
            })
            .unwrap();
            let report = Engine::new(&runtime).run(&project, &mut Quiet).unwrap();
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
        "native-pg" => {
            let (inserted, updated) = pg::native(dir, &pg_server());
            let records: u64 = std::env::var("WEIR_BENCH_RECORDS")
                .ok()
                .and_then(|n| n.parse().ok())
                .expect("WEIR_BENCH_RECORDS");
            (inserted, updated, records - inserted - updated)
        }
        _ => (native(dir) as u64, 0, 0),
    };
    println!(
        "{} {} {} {inserted} {updated} {unchanged}",
        started.elapsed().as_secs_f64(),
        cpu_secs() - cpu0,
        peak_rss_with_children_mib()
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

fn measure(which: &str, dir: &Path, records: usize, index: &str) -> Result<Measured, String> {
    let exe = std::env::current_exe().unwrap();
    // `WEIR_BENCH_PERF=<dir>`: each weir run under `perf record` (call graphs,
    // wasm frames named through wasmtime's perf map), one file per run in
    // that directory. Its figures then include perf's own cost.
    let mut command = match std::env::var_os("WEIR_BENCH_PERF") {
        Some(perf_dir) if which.starts_with("weir") => {
            static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let data = Path::new(&perf_dir).join(format!("{which}-{index}-{records}-{n}.data"));
            let mut c = Command::new("perf");
            c.args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-q", "-o"])
                .arg(data)
                .arg("--")
                .arg(&exe)
                .env("WEIR_PERF_MAP", "1");
            c
        }
        _ => Command::new(&exe),
    };
    let out = command
        .args(["--child", which, dir.to_str().unwrap()])
        .env("WEIR_BENCH_RECORDS", records.to_string())
        .env("WEIR_BENCH_INDEX", index)
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
        .filter(|(i, _)| {
            *i == 0 || !["--rounds", "--pg-records", "--index"].contains(&args[i - 1].as_str())
        })
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![100_000, 1_000_000, 10_000_000]
    } else {
        counts
    };
    // The PostgreSQL pair runs at `--pg-records N[,M...]`, else at each count up
    // to 1,000,000 (a 10 M upsert one statement per row is a long wait).
    let pg_counts: Vec<usize> = match args.iter().position(|a| a == "--pg-records") {
        Some(i) => args
            .get(i + 1)
            .map(|list| {
                list.split(',')
                    .filter_map(|n| n.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        None => counts.iter().copied().filter(|&n| n <= 1_000_000).collect(),
    };
    // `--pg-only`: the PostgreSQL pair alone (its native baseline is in it).
    let counts = if args.iter().any(|a| a == "--pg-only") {
        Vec::new()
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
        const INDEXES: [&str; 2] = ["host", "plugin"];
        // `--index host|plugin`: one place only (a 10 M round of both is long).
        let only_index = args
            .iter()
            .position(|a| a == "--index")
            .and_then(|i| args.get(i + 1))
            .cloned();
        let wanted = |index: &str| only_index.as_deref().is_none_or(|o| o == index);
        // Per index: first runs, re-runs all unchanged, re-runs 10 % changed.
        let mut runs: [[Vec<Measured>; 3]; 2] = Default::default();
        let mut native_runs = Vec::new();
        let mut failed = None;
        // Rounds interleave the scenarios, so a slow spell of the machine touches
        // all of them rather than one.
        for _ in 0..rounds {
            for (x, index) in INDEXES.iter().enumerate() {
                if !wanted(index) {
                    continue;
                }
                generate(&csv, n, None);
                let _ = std::fs::remove_dir_all(dir.path().join("out"));
                let _ = std::fs::remove_dir_all(dir.path().join("index"));
                let scenarios = [("first", None), ("same", None), ("tenth", Some(10))];
                for (s, (which, changed)) in scenarios.into_iter().enumerate() {
                    if changed.is_some() {
                        generate(&csv, n, changed);
                    }
                    match measure("weir", dir.path(), n, index) {
                        Ok(m) => {
                            assert_eq!(
                                lines_of(&out),
                                n,
                                "every record written once ({which}, index in the {index})"
                            );
                            runs[x][s].push(m);
                        }
                        Err(e) => failed = Some(format!("{which} (index in the {index}): {e}")),
                    }
                }
            }
            native_runs.push(measure("native", dir.path(), n, "host").unwrap());
        }
        if let Some(e) = failed {
            println!("  weir did not complete: {e}");
            continue;
        }
        let native = median(native_runs);
        let row = |name: &str, m: Measured, first: Measured| {
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
        row("native (1 thread)", native, native);
        for (x, index) in INDEXES.iter().enumerate() {
            if !wanted(index) {
                continue;
            }
            let [first, same, tenth] = runs[x].clone();
            let first = median(first);
            println!("  [key index in the {index}]");
            row("weir, first run", first, first);
            row("weir, re-run all unchanged", median(same), first);
            row("weir, re-run 10 % changed", median(tenth), first);
        }
    }
    println!(
        "  (records: inserted+updated+unchanged; vs native: records per CPU-second against native's; vs 1st run: CPU of the re-run over the first run's)"
    );

    postgres_pair(&pg_counts, rounds);

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

/// Runs the PostgreSQL scenarios at each count, if a server is named.
fn postgres_pair(counts: &[usize], rounds: usize) {
    let Some(url) = pg::url() else {
        println!(
            "  PostgreSQL pair skipped: set WEIR_BENCH_PG_URL (or WEIR_TEST_PG_URL) to a server on this machine, e.g. postgres://weir:weir@127.0.0.1:5434/postgres"
        );
        return;
    };
    let server = match pg::Server::from_url(&url) {
        Ok(s) => s,
        Err(e) => {
            println!("  PostgreSQL pair skipped: {e}");
            return;
        }
    };
    let postmaster = match server.postmaster() {
        Ok(pid) => pid,
        Err(e) => {
            println!("  PostgreSQL pair skipped: {e}");
            return;
        }
    };
    println!(
        "pipeline benchmark, PostgreSQL: the same CSV and mapping → table `contacts` (primary key id) at {}:{} (postmaster pid {postmaster}); native: psql \\copy into a TEMP staging table + one INSERT ... SELECT ... ON CONFLICT (id) DO UPDATE ... WHERE ... IS DISTINCT FROM ...",
        server.host, server.port
    );
    println!(
        "  {:<22} {:>17} {:>8} {:>8} {:>8} {:>8} {:>14} {:>8} {:>10}",
        "scenario",
        "records",
        "wall s",
        "CPU s",
        "client",
        "server",
        "records/CPU-s",
        "RSS MiB",
        "vs native"
    );
    for &n in counts {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        let bytes = generate(&dir.path().join("in/contacts.csv"), n, None);
        if let Err(e) = server.reset() {
            println!("  PostgreSQL pair skipped: {e}");
            return;
        }
        println!(
            "  -- {n} records ({:.0} MB CSV), {rounds} round(s), medians by CPU (client + server)",
            bytes as f64 / 1e6
        );
        // (measured, server CPU) per scenario, in the order printed.
        let mut runs: [Vec<(Measured, f64)>; 4] = Default::default();
        let scenarios = [
            ("weir-pg", "contacts"),
            ("weir-pg", ""),
            ("native-pg", "contacts_native"),
            ("native-pg", ""),
        ];
        for _ in 0..rounds {
            for (i, (which, empty_first)) in scenarios.iter().enumerate() {
                if !empty_first.is_empty() {
                    server.empty(empty_first);
                }
                pg::wait_backends_gone(postmaster);
                let running = pg::child_pids(postmaster);
                let server_before = pg::server_cpu(postmaster);
                let measured = measure(which, dir.path(), n, "host");
                pg::wait_new_children_gone(postmaster, &running);
                let server_cpu = pg::server_cpu(postmaster) - server_before;
                match measured {
                    Ok(m) => runs[i].push((m, server_cpu)),
                    Err(e) => {
                        println!("  weir did not complete ({which}): {e}");
                        return;
                    }
                }
            }
            // The two tables must hold the same rows, every record once.
            let (rows, differ) = server.compare();
            assert_eq!(rows as usize, n, "every record once in `contacts`");
            assert_eq!(differ, 0, "weir's table and the native one differ");
        }
        let medians: Vec<(Measured, f64)> = runs
            .into_iter()
            .map(|mut r| {
                r.sort_by(|a, b| (a.0.cpu_secs + a.1).total_cmp(&(b.0.cpu_secs + b.1)));
                r[r.len() / 2]
            })
            .collect();
        let per_cpu = |(m, server): (Measured, f64)| n as f64 / (m.cpu_secs + server);
        let names = [
            "weir, first run",
            "weir, re-run unchanged",
            "native, first run",
            "native, re-run",
        ];
        for (i, name) in names.iter().enumerate() {
            let (m, server_cpu) = medians[i];
            let native = medians[2 + i % 2];
            println!(
                "  {name:<22} {:>17} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>14.0} {:>8.0} {:>9.2}x",
                format!("{}+{}+{}", m.inserted, m.updated, m.unchanged),
                m.secs,
                m.cpu_secs + server_cpu,
                m.cpu_secs,
                server_cpu,
                per_cpu(medians[i]),
                m.rss_mib,
                per_cpu(medians[i]) / per_cpu(native)
            );
        }
    }
    println!(
        "  (CPU s = client (all threads, psql included) + server (postmaster and its processes, /proc); RSS: the client's; vs native: records per CPU-second against native's same scenario)"
    );
}

/// The PostgreSQL pair: the same records into a table, weir against `psql \copy`
/// into a staging table plus one `INSERT ... SELECT ... ON CONFLICT`, first run
/// (table empty) and re-run (every row there, unchanged). CPU is the client's
/// (the child process, all threads, and its own children: `psql`) plus the
/// server's: the `/proc` times of the postmaster and every process it forked
/// (backends, checkpointer, WAL writer...; exited children through the
/// postmaster's `cutime`/`cstime`), read before and after each scenario. So the
/// server must run on this machine, in this PID namespace.
mod pg {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use weir_host::project::{Connection, PluginRef, Project};
    use weir_host::runtime::{Grants, PostgresGrant, Secret};

    /// The database the scenarios write into (dropped and created by the bench).
    pub const DB: &str = "weir_bench";

    /// The columns of both tables, in order (the mapping's destinations).
    const COLUMNS: [&str; 10] = [
        "id",
        "full_name",
        "email",
        "phone",
        "company",
        "city",
        "country",
        "amount_cents",
        "tier",
        "created_at",
    ];

    /// The server named by `WEIR_BENCH_PG_URL` (else `WEIR_TEST_PG_URL`), if any.
    pub fn url() -> Option<String> {
        ["WEIR_BENCH_PG_URL", "WEIR_TEST_PG_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
    }

    /// The server's address and credentials, from the URL.
    pub struct Server {
        pub host: String,
        pub port: u16,
        pub user: String,
        pub password: String,
        pub admin_db: String,
    }

    impl Server {
        pub fn from_url(url: &str) -> Result<Server, String> {
            let config: postgres::Config = url.parse().map_err(|e| format!("{url}: {e}"))?;
            let host = match config.get_hosts().first() {
                Some(postgres::config::Host::Tcp(h)) => h.clone(),
                _ => return Err("the URL must name a TCP host".into()),
            };
            Ok(Server {
                host,
                port: config.get_ports().first().copied().unwrap_or(5432),
                user: config.get_user().unwrap_or("postgres").to_owned(),
                password: config
                    .get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_default(),
                admin_db: config.get_dbname().unwrap_or("postgres").to_owned(),
            })
        }

        pub fn client(&self, db: &str) -> Result<postgres::Client, String> {
            postgres::Config::new()
                .host(&self.host)
                .port(self.port)
                .user(&self.user)
                .password(&self.password)
                .dbname(db)
                .connect_timeout(Duration::from_secs(10))
                .connect(postgres::NoTls)
                .map_err(|e| format!("connect to {}:{}/{db}: {e}", self.host, self.port))
        }

        /// The postmaster's PID: the parent of this session's backend, which
        /// must be a process of this machine named `postgres`.
        pub fn postmaster(&self) -> Result<i32, String> {
            let mut c = self.client(&self.admin_db)?;
            let backend: i32 = c
                .query_one("SELECT pg_backend_pid()", &[])
                .map_err(|e| e.to_string())?
                .get(0);
            let stat = Stat::of(backend).filter(|s| s.comm == "postgres").ok_or(
                "the server's backend is not a process of this machine: its CPU cannot be counted (run the server locally)",
            )?;
            Stat::of(stat.ppid)
                .filter(|s| s.comm == "postgres")
                .map(|_| stat.ppid)
                .ok_or_else(|| "the backend's parent is not the postmaster".to_owned())
        }

        /// A fresh [`DB`] with the two tables (autovacuum off on both, so a
        /// vacuum of one scenario's rows does not land in another's CPU).
        /// `created_at` is text, as the mapping gives it (validation refuses
        /// text into a date column without a conversion).
        pub fn reset(&self) -> Result<(), String> {
            let mut admin = self.client(&self.admin_db)?;
            // Two statements: neither may run inside a (multi-statement) transaction.
            for sql in [
                format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)"),
                format!("CREATE DATABASE {DB}"),
            ] {
                admin.batch_execute(&sql).map_err(|e| e.to_string())?;
            }
            let mut c = self.client(DB)?;
            let columns = "(id bigint PRIMARY KEY, full_name text, email text, phone text, \
                 company text, city text, country text, amount_cents bigint, tier text, \
                 created_at text) WITH (autovacuum_enabled = off)";
            c.batch_execute(&format!(
                "CREATE TABLE contacts {columns}; CREATE TABLE contacts_native {columns};"
            ))
            .map_err(|e| e.to_string())
        }

        /// Empties a table and writes out dirty pages, outside any measurement.
        pub fn empty(&self, table: &str) {
            let mut c = self.client(DB).unwrap();
            c.batch_execute(&format!("TRUNCATE {table}")).unwrap();
            self.settle(&mut c);
        }

        /// A checkpoint now (if the role may), so one scenario's dirty pages are
        /// not written during the next one's measurement.
        pub fn settle(&self, c: &mut postgres::Client) {
            let _ = c.batch_execute("CHECKPOINT");
        }

        /// Rows of `contacts` (weir's) and rows differing between it and
        /// `contacts_native` (either side).
        pub fn compare(&self) -> (i64, i64) {
            let mut c = self.client(DB).unwrap();
            let rows: i64 = c
                .query_one("SELECT count(*) FROM contacts", &[])
                .unwrap()
                .get(0);
            let differ: i64 = c
                .query_one(
                    "SELECT count(*) FROM ((TABLE contacts EXCEPT TABLE contacts_native) \
                     UNION ALL (TABLE contacts_native EXCEPT TABLE contacts)) d",
                    &[],
                )
                .unwrap()
                .get(0);
            self.settle(&mut c);
            (rows, differ)
        }

        pub fn grant(&self) -> PostgresGrant {
            PostgresGrant {
                host: self.host.clone(),
                port: self.port,
                dbname: DB.into(),
                user: self.user.clone(),
                password: Some(Secret::new(self.password.clone())),
            }
        }
    }

    /// The bench's project writing to the table `contacts` through the bundled
    /// `postgres` plugin.
    pub fn project(dir: &Path, server: &Server) -> Project {
        let mut destination = Connection::new("dst", PluginRef::bundled("postgres"));
        destination.grants = Grants {
            postgres: Some(server.grant()),
            ..Grants::none()
        };
        super::project_to(dir, destination)
    }

    /// The native baseline's script: the same mapping and normalisation in SQL.
    fn script(csv: &Path) -> String {
        let set: Vec<String> = COLUMNS[1..]
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let mine: Vec<String> = COLUMNS[1..].iter().map(|c| format!("t.{c}")).collect();
        let theirs: Vec<String> = COLUMNS[1..]
            .iter()
            .map(|c| format!("EXCLUDED.{c}"))
            .collect();
        format!(
            "CREATE TEMP TABLE staging (id bigint, first_name text, last_name text, email text, \
             phone text, company text, city text, country text, amount bigint, created_at text);\n\
             \\copy staging FROM '{}' WITH (FORMAT csv, HEADER true)\n\
             WITH u AS (INSERT INTO contacts_native AS t ({}) \
             SELECT id, first_name || ' ' || last_name, lower(btrim(email)), \
             '+1' || regexp_replace(phone, '[^0-9]', '', 'g'), upper(company), lower(city), \
             country, amount * 100, CASE WHEN amount > 50000 THEN 'large' ELSE 'small' END, \
             created_at FROM staging \
             ON CONFLICT (id) DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({}) \
             RETURNING (xmax = 0) AS inserted) \
             SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM u;\n",
            csv.display(),
            COLUMNS.join(", "),
            set.join(", "),
            mine.join(", "),
            theirs.join(", ")
        )
    }

    /// `psql` running the native script; returns (inserted, updated).
    pub fn native(dir: &Path, server: &Server) -> (u64, u64) {
        let script_path = dir.join("native.sql");
        std::fs::write(&script_path, script(&dir.join("in/contacts.csv"))).unwrap();
        let out = std::process::Command::new(psql())
            .args(["-X", "-q", "-t", "-A", "-F", " ", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", &server.host, "-p", &server.port.to_string()])
            .args(["-U", &server.user, "-d", DB, "-f"])
            .arg(&script_path)
            .env("PGPASSWORD", &server.password)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let counts: Vec<u64> = text
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        (counts[0], counts[1])
    }

    /// `psql` on the PATH, else in the newest `/usr/lib/postgresql/*/bin`.
    pub fn psql() -> std::path::PathBuf {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.join("psql"))
            .find(|p| p.exists());
        on_path
            .or_else(|| {
                let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .filter_map(|e| e.ok().map(|e| e.path().join("bin/psql")))
                    .filter(|p| p.exists())
                    .collect();
                dirs.sort();
                dirs.pop()
            })
            .unwrap_or_else(|| "psql".into())
    }

    /// The fields of `/proc/<pid>/stat` the bench uses.
    struct Stat {
        comm: String,
        state: char,
        ppid: i32,
        /// utime + stime, clock ticks.
        own: u64,
        /// cutime + cstime: children this process waited for.
        children: u64,
    }

    impl Stat {
        fn of(pid: i32) -> Option<Stat> {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name is in parentheses and may hold spaces: split after
            // the last `)`.
            let (head, tail) = text.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_owned();
            let f: Vec<&str> = tail.split_whitespace().collect();
            // Fields from 3 on (state): utime is field 14, so f[11].
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            Some(Stat {
                comm,
                state: f.first()?.chars().next()?,
                ppid: f.get(1)?.parse().ok()?,
                own: n(11)? + n(12)?,
                children: n(13)? + n(14)?,
            })
        }
    }

    /// The postmaster's children: (pid, stat).
    fn children(postmaster: i32) -> Vec<(i32, Stat)> {
        std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                    .filter_map(|pid| Some((pid, Stat::of(pid)?)))
                    .filter(|(_, s)| s.ppid == postmaster)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// CPU seconds the server has used so far: the postmaster, its live children
    /// and those that exited.
    pub fn server_cpu(postmaster: i32) -> f64 {
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let pm = Stat::of(postmaster).expect("the postmaster is gone");
        let live: u64 = children(postmaster).iter().map(|(_, s)| s.own).sum();
        (pm.own + pm.children + live) as f64 / tick
    }

    /// The postmaster's children now: backends and background processes.
    pub fn child_pids(postmaster: i32) -> std::collections::HashSet<i32> {
        children(postmaster)
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Waits (up to 30 s) until every child of the postmaster not in `before`
    /// (the scenario's backends) has exited and been reaped, so its CPU is in
    /// the postmaster's `cutime` when that is read. Waiting for the process to
    /// vanish, not for its title or a zombie state: an exiting backend has an
    /// empty command line and is not yet a zombie, and reading the postmaster
    /// and then its children while one is reaped in between would miss it
    /// (the first version of this bench saw a re-run's 21 s of server CPU as
    /// 0.2 s that way).
    pub fn wait_new_children_gone(postmaster: i32, before: &std::collections::HashSet<i32>) {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if child_pids(postmaster).is_subset(before) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "  (a backend of the scenario was still running after 30 s: its CPU may be missing)"
        );
    }

    /// Waits (up to 10 s) until no backend is connected to [`DB`] (the bench's
    /// own set-up sessions), so a scenario starts from a quiet server.
    pub fn wait_backends_gone(postmaster: i32) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            let busy = children(postmaster).iter().any(|(pid, s)| {
                s.state == 'Z'
                    || std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.is_empty() || String::from_utf8_lossy(&c).contains(DB))
            });
            if !busy {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
