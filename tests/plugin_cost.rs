//! Per-plugin cost in the history (issue 15, item 3): an execution records, per plugin
//! instance, its calls, time inside it, CPU, linear-memory high-water mark and the data
//! that crossed the boundary, and `weir executions show` prints them beside the limits.
//!
//! The figures are checked against what this test measures from outside the process:
//! its CPU time (the kernel's count for the finished child) and its wall time. One test
//! in this binary, so the child CPU counted is that run's alone.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

const KEY: &str = "plugin-cost-test-key-0123456789abcdef";

fn weir(data: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .current_dir(dir)
        .env("WEIR_SECRET_KEY", KEY)
        .env_remove("WEIR_DATA_DIR")
        .output()
        .expect("run weir")
}

fn ok(data: &Path, dir: &Path, args: &[&str]) -> String {
    let out = weir(data, dir, args);
    assert!(
        out.status.success(),
        "weir {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// CPU time of this process's waited-for children so far (`cutime` + `cstime` of
/// /proc/self/stat, in clock ticks of 10 ms).
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 of the whole line: 14 and 15 here.
    let ticks: u64 = fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn project(name: &str, spin: u64, hold_mb: u64) -> String {
    common::testkit_project_file(
        name,
        r#"count = "1000""#,
        &format!(
            r#"upsert_spin = "{spin}", mode = "hold", mb = "{hold_mb}", mode_calls = "upsert""#
        ),
        250,
    )
}

fn run_stored(data: &Path, dir: &Path, name: &str) -> u64 {
    let out = ok(data, dir, &["run", name]);
    out.lines()
        .find_map(|l| l.strip_prefix("execution: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("weir run {name}: no execution id in\n{out}"))
}

fn destination(execution: &Value) -> &Value {
    execution["plugins"]
        .as_array()
        .expect("plugins recorded")
        .iter()
        .find(|p| p["role"]["kind"] == "destination")
        .expect("a destination entry")
}

#[test]
fn a_slow_greedy_destination_shows_its_time_and_memory_within_ten_percent() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, data) = (tmp.path(), tmp.path().join("data"));
    const HOLD_MB: u64 = 40;

    // A cheap run first: the components are compiled and cached, so the measured run's
    // CPU is the plugins' (compiling is multi-threaded and would dwarf them).
    std::fs::write(dir.join("warm.toml"), project("warm", 0, 1)).unwrap();
    ok(&data, dir, &["project", "apply", "-f", "warm.toml"]);
    run_stored(&data, dir, "warm");

    // About 3 s of busy work in the destination (4 batches), holding 40 MiB per call.
    std::fs::write(dir.join("slow.toml"), project("slow", 750_000_000, HOLD_MB)).unwrap();
    ok(&data, dir, &["project", "apply", "-f", "slow.toml"]);
    let (cpu_before, started) = (children_cpu(), Instant::now());
    let id = run_stored(&data, dir, "slow");
    let (cpu, wall) = (children_cpu() - cpu_before, started.elapsed());

    let shown: Value = serde_json::from_str(&ok(
        &data,
        dir,
        &["executions", "show", &id.to_string(), "--json"],
    ))
    .unwrap();
    let dst = destination(&shown);
    let num = |v: &Value, f: &str| v[f].as_u64().unwrap_or_else(|| panic!("{f} in {v}"));
    let (plugin_cpu, plugin_wall) = (
        Duration::from_micros(num(dst, "cpu_micros")),
        Duration::from_micros(num(dst, "wall_micros")),
    );
    eprintln!(
        "outside: cpu {cpu:?}, wall {wall:?}; destination: cpu {plugin_cpu:?}, wall {plugin_wall:?}, high-water {} B",
        num(dst, "memory_high_water_bytes")
    );
    assert!(
        cpu >= Duration::from_secs(1),
        "the busy work is too small to measure: {cpu:?}"
    );
    // The process did little besides the destination's busy work: its CPU within 10%.
    assert!(
        plugin_cpu <= cpu && plugin_cpu.as_secs_f64() >= 0.9 * cpu.as_secs_f64(),
        "destination CPU {plugin_cpu:?} vs the process's {cpu:?}"
    );
    assert!(
        plugin_wall <= wall && plugin_wall.as_secs_f64() >= 0.9 * wall.as_secs_f64(),
        "destination wall {plugin_wall:?} vs the run's {wall:?}"
    );
    // It held 40 MiB per call on top of a small heap.
    let high_water = num(dst, "memory_high_water_bytes");
    assert!(
        high_water >= HOLD_MB << 20 && high_water as f64 <= 1.1 * (HOLD_MB << 20) as f64,
        "high-water {high_water} B for {HOLD_MB} MiB held"
    );
    assert_eq!(
        num(dst, "records_in"),
        1000,
        "every record crossed into the destination"
    );
    assert_eq!(num(dst, "traps"), 0);
    assert_eq!(
        num(dst, "memory_limit_bytes"),
        256 << 20,
        "the default limit, to compare with"
    );
    // The source did the reading and is cheap.
    let src = shown["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"]["kind"] == "source")
        .unwrap();
    assert_eq!(num(src, "records_out"), 1000);
    assert!(
        num(src, "cpu_micros") < num(dst, "cpu_micros") / 10,
        "{src}"
    );

    // The same figures for people, beside the limits.
    let text = ok(&data, dir, &["executions", "show", &id.to_string()]);
    let line = text
        .lines()
        .skip_while(|l| *l != "plugins:")
        .find(|l| l.contains("(destination)"))
        .unwrap_or_else(|| panic!("no destination line in\n{text}"));
    assert!(
        line.contains("s inside") && line.contains("(limit 30 s)"),
        "{line}"
    );
    assert!(
        text.contains(&format!("memory high-water {}.", high_water >> 20))
            || text.contains(&format!(
                "memory high-water {:.1} MiB",
                high_water as f64 / f64::from(1 << 20)
            )),
        "{text}"
    );
}
