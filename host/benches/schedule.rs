//! The daemon under many schedules: N cheap projects (testkit source of a few
//! records → testkit destination), each on a cron schedule, their firings spread over
//! the seconds of the period. Runs the real scheduler (tokio, blocking pool, store,
//! plugins) for a while and prints the scheduling lag (due time → start) at p50 and
//! p99, runs per second, skipped runs and the process's memory.
//!
//! `cargo bench -p weir-host --bench schedule -- [projects] [seconds] [period_secs]`
//! (defaults 1000 projects, 30 s, every 10 s: 100 runs due per second).
//!
//! Then the daemon's cold start: the `weir serve` binary over a data directory with 20
//! projects naming 20 distinct plugins already in the compiled-component cache, from
//! process start until it answers (it loads every plugin before listening).

use std::time::{Duration, Instant};

use weir_host::bundled::PLUGIN_BUILD_DIR;
use weir_host::daemon::{Daemon, DaemonSettings};
use weir_host::runtime::{Runtime, RuntimeConfig};
use weir_host::service::Service;
use weir_host::store::{ExecStatus, ExecutionFilter, Store};

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A copy of a component that hashes differently (a custom section appended), so the
/// cache holds one compiled entry per copy.
fn distinct_copy(wasm: &[u8], i: usize) -> Vec<u8> {
    let name = b"weir-bench-copy";
    let payload = format!("{i}");
    let mut body = vec![name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(payload.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push(body.len() as u8); // < 128: one LEB byte
    out.extend_from_slice(&body);
    out
}

fn cold_start() {
    use std::io::{BufRead, BufReader};
    let weir = env!("CARGO_BIN_EXE_weir");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let testkit = std::fs::read(format!(
        "{PLUGIN_BUILD_DIR}/weir_plugin_testkit_connector.wasm"
    ))
    .unwrap();
    for i in 0..20 {
        let plugin = tmp.path().join(format!("plugin{i}.wasm"));
        std::fs::write(&plugin, distinct_copy(&testkit, i)).unwrap();
        let project = tmp.path().join(format!("p{i}.toml"));
        std::fs::write(
            &project,
            format!(
                r#"
[connections.src]
plugin = "plugin{i}.wasm"
[connections.dst]
plugin = "plugin{i}.wasm"
[connection_sets.s]
source = "src"
destination = "dst"
[project]
name = "cold{i:02}"
connection_set = "s"
schedule = "0 3 * * *"
[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [{{ destination = "id", source = "id" }}]
"#
            ),
        )
        .unwrap();
        let ok = std::process::Command::new(weir)
            .arg("--data-dir")
            .arg(&data)
            .args(["project", "apply", "-f"])
            .arg(&project)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    }
    let start = || -> (Duration, Duration) {
        let t0 = Instant::now();
        let mut child = std::process::Command::new(weir)
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("WEIR_ADMIN_TOKEN", "cold-start-bench-token")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listening = t0.elapsed();
        let addr = line.trim().rsplit("http://").next().unwrap().to_owned();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        use std::io::{Read, Write};
        // The daemon answers only for its own address (the Host check against DNS rebinding).
        s.write_all(
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let answered = t0.elapsed();
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().unwrap();
        (listening, answered)
    };
    let (first, _) = start(); // compiles the 20 plugins into the cache
    let mut runs: Vec<(Duration, Duration)> = (0..5).map(|_| start()).collect();
    runs.sort();
    let (listening, answered) = runs[runs.len() / 2];
    println!(
        "  serve cold start, 20 projects with 20 distinct cached plugins (median of 5): listening after {} ms, /health answered after {} ms (first start, compiling them: {} ms)",
        listening.as_millis(),
        answered.as_millis(),
        first.as_millis()
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let projects: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let period: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    assert!(
        (1..=60).contains(&period) && 60 % period == 0,
        "period must divide 60"
    );

    let tmp = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(tmp.path().join("cache")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let store = Store::open(&tmp.path().join("data"), None).unwrap();
    let service = Service::new(store, &runtime);
    let testkit = format!("{PLUGIN_BUILD_DIR}/weir_plugin_testkit_connector.wasm");
    let setup = Instant::now();
    for i in 0..projects {
        // Spread the firings: project i fires at second (i mod period) of each period.
        let schedule = format!("{}/{period} * * * * *", i % period);
        let text = format!(
            r#"
[connections.src]
plugin = "{testkit}"
config = {{ count = 5 }}
[connections.dst]
plugin = "{testkit}"
[connection_sets.s]
source = "src"
destination = "dst"
[project]
name = "p{i:04}"
connection_set = "s"
schedule = "{schedule}"
[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [{{ destination = "id", source = "id" }}, {{ destination = "email", source = "email" }}]
"#
        );
        service
            .apply_project_text(
                &tmp.path().join(format!("p{i}.toml")),
                &text,
                tmp.path(),
                &weir_host::project::EnvPolicy::default(),
            )
            .unwrap();
    }
    let applied = setup.elapsed();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let started = Instant::now();
        let daemon = Daemon::new(service, DaemonSettings::default(), None).unwrap();
        let loaded = started.elapsed();
        let rss_idle = rss_kib("VmRSS:");
        daemon.start();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let stats = daemon.stats();
        let rss = rss_kib("VmRSS:");
        let hwm = rss_kib("VmHWM:");
        daemon.shutdown(Duration::from_secs(30)).await;
        let all = daemon
            .service()
            .store
            .executions(&ExecutionFilter::default())
            .unwrap();
        let count = |s: ExecStatus| all.iter().filter(|e| e.status == s).count();
        println!("schedule bench: {projects} projects, each every {period} s, for {seconds} s (2 cores, concurrency 4)");
        println!("  apply {projects} projects: {:.1} s; daemon load: {} ms", applied.as_secs_f64(), loaded.as_millis());
        println!(
            "  runs due: {}  started: {}  skipped (still running): {}  -> {:.1} runs/s",
            stats.fired,
            stats.started,
            stats.skipped,
            stats.started as f64 / seconds as f64
        );
        println!(
            "  scheduling lag (due -> start): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            stats.lag_p50_ms, stats.lag_p99_ms, stats.lag_max_ms
        );
        println!(
            "  executions stored: {} (Completed {}, Error {}, Skipped {})",
            all.len(),
            count(ExecStatus::Completed),
            count(ExecStatus::Error),
            count(ExecStatus::Skipped)
        );
        println!(
            "  daemon memory: RSS {:.1} MiB loaded and idle, {:.1} MiB at the end, peak {:.1} MiB",
            rss_idle as f64 / 1024.0,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    });
    cold_start();
}
