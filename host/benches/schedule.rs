//! The daemon under many schedules: N cheap projects (testkit source of a few
//! records → testkit destination), each on a cron schedule, their firings spread over
//! the seconds of the period. Runs the real scheduler (tokio, blocking pool, store,
//! plugins) for a while and prints the scheduling lag (due time → start) at p50 and
//! p99, runs per second, skipped runs and the process's memory.
//!
//! `cargo bench -p weir-host --bench schedule -- [projects] [seconds] [period_secs]`
//! (defaults 1000 projects, 30 s, every 10 s: 100 runs due per second).

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
    let runtime: &'static Runtime = Box::leak(Box::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(tmp.path().join("cache")),
            ..RuntimeConfig::default()
        })
        .unwrap(),
    ));
    let store = Store::open(&tmp.path().join("data"), None).unwrap();
    let service = Service::new(store, runtime);
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
            .apply_project_text(&tmp.path().join(format!("p{i}.toml")), &text, tmp.path())
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
}
