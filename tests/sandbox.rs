//! The sandbox holds: limits and grants tested in obeyed/violated pairs, and after
//! every violation the same runtime runs the next project normally.

mod common;

use std::time::{Duration, Instant};

use common::*;
use weir_host::engine::Status;
use weir_host::runtime::{CallError, Grants, Limits, TrapKind};
use weir_types::Config;

fn limits(timeout_ms: u64, memory_mb: usize) -> Limits {
    Limits {
        call_timeout: Duration::from_millis(timeout_ms),
        memory_bytes: memory_mb << 20,
        ..Limits::default()
    }
}

/// The next project after a violation runs to Completed on the same runtime.
fn next_project_runs_normally() {
    let report = run(&testkit_project(250));
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(report.totals().inserted, 250);
}

#[test]
fn time_limit_obeyed_then_violated() {
    // Obeyed: a normal transform finishes well within 2 s.
    let ok = with_transform(testkit_project(300), &[("mode", "ok")], limits(2_000, 64));
    let report = run(&ok);
    assert_eq!(report.status, Status::Completed, "{report}");

    // Violated: an endless loop is stopped at its 300 ms limit.
    let looping = with_transform(testkit_project(300), &[("mode", "loop")], limits(300, 64));
    let started = Instant::now();
    let report = run(&looping);
    let took = started.elapsed();
    assert_eq!(report.status, Status::Error);
    let error = task_error(&report);
    assert!(error.contains("time limit of 300ms"), "{error}");
    assert!(
        error.contains("testkit_transform"),
        "names the plugin: {error}"
    );
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    next_project_runs_normally();
}

#[test]
fn memory_limit_obeyed_then_violated() {
    let ok = with_transform(testkit_project(300), &[("mode", "ok")], limits(10_000, 32));
    assert_eq!(run(&ok).status, Status::Completed);

    let bomb = with_transform(
        testkit_project(300),
        &[("mode", "alloc")],
        limits(10_000, 32),
    );
    let report = run(&bomb);
    assert_eq!(report.status, Status::Error);
    let error = task_error(&report);
    assert!(error.contains("memory limit of 32 MiB"), "{error}");
    next_project_runs_normally();
}

#[test]
fn files_inside_the_grant_are_readable_outside_are_not() {
    let root = tempfile::tempdir().unwrap();
    let granted = root.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    std::fs::write(granted.join("inside.txt"), "ok").unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();

    let mut instance = runtime_connector(Grants::directory(&granted));
    // Obeyed: a file inside the granted directory opens (testkit reports its size).
    let inside = check_with_open(&mut instance, "/data/inside.txt");
    assert!(inside.contains("read 2 bytes"), "{inside}");

    // Violated: every way out of the grant is refused.
    for path in [
        "/data/../secret.txt".to_owned(),
        "/data/../../../../etc/passwd".to_owned(),
        "/etc/passwd".to_owned(),
        secret.display().to_string(),
        "../secret.txt".to_owned(),
        "/data/./../secret.txt/".to_owned(),
    ] {
        let outcome = check_with_open(&mut instance, &path);
        assert!(outcome.contains("cannot open"), "{path}: {outcome}");
        assert!(!outcome.contains("read "), "{path} was read: {outcome}");
    }
    // Writing outside is refused too, and nothing appears.
    let mut config = Config::default();
    config.set("mode", "write-outside");
    config.set("path", "/data/../escaped.txt");
    let err = instance.check(&config).unwrap_err().to_string();
    assert!(
        err.contains("cannot write") && err.contains("not permitted"),
        "{err}"
    );
    assert!(!root.path().join("escaped.txt").exists());

    // Without a grant there is no /data at all.
    let mut ungranted = runtime_connector(Grants::none());
    let outcome = check_with_open(&mut ungranted, "/data/inside.txt");
    assert!(outcome.contains("cannot open"), "{outcome}");
    next_project_runs_normally();
}

fn runtime_connector(grants: Grants) -> weir_host::runtime::ConnectorInstance {
    let plugin = runtime()
        .load_file(&plugin_path("testkit-connector"))
        .unwrap();
    plugin.connector(grants, Limits::default()).unwrap()
}

/// Runs testkit's `check` in `open` mode; returns the error text (testkit always
/// answers with an error, saying whether the read worked).
fn check_with_open(instance: &mut weir_host::runtime::ConnectorInstance, path: &str) -> String {
    let mut config = Config::default();
    config.set("mode", "open");
    config.set("path", path);
    instance.check(&config).unwrap_err().to_string()
}

#[test]
fn a_panicking_plugin_fails_its_call_and_the_next_call_gets_a_fresh_instance() {
    let mut instance = runtime_connector(Grants::none());
    let mut panic = Config::default();
    panic.set("mode", "panic");
    let err = instance.check(&panic).unwrap_err();
    match &err {
        CallError::Trap {
            trap: TrapKind::Panic(msg),
            ..
        } => assert!(msg.contains("testkit panics on purpose"), "{msg}"),
        other => panic!("expected a panic trap, got {other:?}"),
    }
    // The trapped instance was discarded; the same handle works again.
    instance.check(&Config::default()).unwrap();
    next_project_runs_normally();
}

#[test]
fn deep_recursion_is_stopped_cleanly() {
    let mut instance = runtime_connector(Grants::none());
    let mut recurse = Config::default();
    recurse.set("mode", "recurse");
    let err = instance.check(&recurse).unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Trap {
                trap: TrapKind::StackOverflow | TrapKind::Other(_),
                ..
            }
        ),
        "{err:?}"
    );
    instance.check(&Config::default()).unwrap();
    next_project_runs_normally();
}

#[test]
fn a_log_flood_is_bounded() {
    let mut instance = runtime_connector(Grants::none());
    let mut flood = Config::default();
    flood.set("mode", "log-flood");
    instance.check(&flood).unwrap();
    let weir_host::runtime::PluginLogs { lines, dropped } = instance.take_logs();
    assert_eq!(lines.len(), Limits::default().log_lines_per_call);
    assert_eq!(lines.len() + dropped, 100_000);
    assert!(lines.iter().all(|l| l.message.len() <= 4096 + 20));
}

#[test]
fn compiled_components_are_cached_and_a_corrupted_entry_is_rebuilt_not_loaded() {
    use weir_host::runtime::{CacheOutcome, Runtime, RuntimeConfig};
    let dir = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        pooling: false,
        ..RuntimeConfig::default()
    };
    let path = plugin_path("testkit-connector");
    let first = Runtime::new(config()).unwrap().load_file(&path).unwrap();
    assert_eq!(first.cache_outcome(), CacheOutcome::Miss);
    let second = Runtime::new(config()).unwrap().load_file(&path).unwrap();
    assert_eq!(second.cache_outcome(), CacheOutcome::Hit);

    // Truncate the entry: it must be detected, rebuilt, and the plugin still work.
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
    let runtime = Runtime::new(config()).unwrap();
    let rebuilt = runtime.load_file(&path).unwrap();
    assert_eq!(rebuilt.cache_outcome(), CacheOutcome::Rebuilt);
    let mut instance = rebuilt
        .connector(Grants::none(), Limits::default())
        .unwrap();
    instance.check(&Config::default()).unwrap();
    // One flipped byte in the middle is caught by the checksum too.
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let again = Runtime::new(config()).unwrap().load_file(&path).unwrap();
    assert_eq!(again.cache_outcome(), CacheOutcome::Rebuilt);
}

/// A full instance pool is named as such (not blamed on the plugin), and a slot
/// freed by dropping an instance is usable again.
#[test]
fn a_full_instance_pool_is_named_and_a_freed_slot_is_reused() {
    use weir_host::runtime::{Runtime, RuntimeConfig};
    let runtime = Runtime::new(RuntimeConfig {
        pooling: true,
        pool_instances: 1,
        cache_dir: None,
        cache_writes: true,
        index_dir: None,
        index_memory_mb: weir_host::runtime::DEFAULT_INDEX_MEMORY_MB,
    })
    .unwrap();
    assert!(runtime.pooling());
    let plugin = runtime
        .load_file(&plugin_path("testkit-connector"))
        .unwrap();
    let config = Config::default();
    let mut first = plugin.connector(Grants::none(), Limits::default()).unwrap();
    first.check(&config).unwrap();
    let mut second = plugin.connector(Grants::none(), Limits::default()).unwrap();
    let err = second.check(&config).unwrap_err().to_string();
    assert!(
        err.contains("every slot of the host's instance pool is in use"),
        "{err}"
    );
    drop(first);
    second.check(&config).unwrap();
}
