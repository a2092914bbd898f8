//! Hostile plugins (issue 8): every misbehaviour costs one call or one execution,
//! never the process, and the next call on the same handle — or the next execution
//! on the same runtime — succeeds. Limits come in obeyed/violated pairs: the same
//! work under a limit it fits and one it does not.
//!
//! What `tests/sandbox.rs` already shows (the transform's time and memory limits,
//! file grants, a panic and a recursion in `check`, the log bound of one call, the
//! component cache) is not repeated here; this file covers every entry point
//! (`check`, `read`, `upsert`, `transform`), mid-batch traps and what the store
//! keeps of them, malformed answers, floods, the environment, clocks and sockets,
//! and hostile projects scheduled in the daemon beside a healthy one.
//!
//! Run with `--nocapture` to see the measured figures quoted in RELIABILITY.md.

mod common;

use std::time::{Duration, Instant};

use common::*;
use weir_host::engine::{Checkpoint, Engine, Quiet, Recorder, RunOptions, Status};
use weir_host::runtime::{
    CallError, ConnectorInstance, Grants, Limits, TransformInstance, TrapKind,
};
use weir_types::{Batch, BatchBuilder, Config, FieldType, ReadRequest, Value, WriteRequest};

// ---------------------------------------------------------------------------------
// Helpers: one handle per entry point, and a way to call it with any options.

fn config(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::default();
    for (k, v) in pairs {
        c.set(k, v);
    }
    c
}

fn limits(timeout_ms: u64, memory_mb: usize) -> Limits {
    Limits {
        call_timeout: Duration::from_millis(timeout_ms),
        memory_bytes: memory_mb << 20,
        ..Limits::default()
    }
}

/// The four entry points a hostile mode can act in.
#[derive(Clone, Copy, Debug)]
enum Entry {
    Check,
    Read,
    Upsert,
    Transform,
}

const ENTRIES: [Entry; 4] = [Entry::Check, Entry::Read, Entry::Upsert, Entry::Transform];

/// A live handle on one plugin, kept across calls: after a trap the runtime must
/// discard the instance behind it and the next call must work.
enum Handle {
    Connector(ConnectorInstance),
    Transform(TransformInstance),
}

impl Handle {
    fn new(entry: Entry, limits: Limits) -> Handle {
        let kind = match entry {
            Entry::Transform => "testkit-transform",
            _ => "testkit-connector",
        };
        let plugin = runtime().load_file(&plugin_path(kind)).unwrap();
        match entry {
            Entry::Transform => Handle::Transform(plugin.transform(limits).unwrap()),
            _ => Handle::Connector(plugin.connector(Grants::none(), limits).unwrap()),
        }
    }

    /// Calls `entry` with `options` (the testkit `mode` and its parameters).
    fn call(&mut self, entry: Entry, options: &[(&str, &str)]) -> Result<(), CallError> {
        let cfg = config(options);
        match (self, entry) {
            (Handle::Connector(c), Entry::Check) => c.check(&cfg),
            (Handle::Connector(c), Entry::Read) => c.read(&cfg, &read_request()).map(|page| {
                page.records.validate().unwrap();
            }),
            (Handle::Connector(c), Entry::Upsert) => {
                let writer = c.open_writer(&cfg, &write_request())?;
                let outcomes = c.upsert(&writer, people(10))?;
                assert_eq!(outcomes.len(), 10);
                c.finish(writer)
            }
            (Handle::Transform(t), Entry::Transform) => {
                let out = t.transform(&cfg, people(10))?;
                assert_eq!(out.records.len(), 10);
                Ok(())
            }
            (_, entry) => panic!("wrong handle for {entry:?}"),
        }
    }

    /// A normal call right after: the handle still works.
    fn still_works(&mut self, entry: Entry) {
        self.call(entry, &[("mode", "ok")])
            .unwrap_or_else(|e| panic!("{entry:?} after a violation: {e}"));
    }
}

fn read_request() -> ReadRequest {
    ReadRequest {
        entity: "people".into(),
        organization: None,
        cursor: None,
        max_records: 10,
    }
}

fn write_request() -> WriteRequest {
    WriteRequest {
        entity: "people".into(),
        organization: None,
        key_fields: vec!["id".into()],
    }
}

/// `n` people records, as testkit reads them.
fn people(n: i64) -> Batch {
    let mut b = BatchBuilder::new(&[
        ("id", FieldType::Integer),
        ("name", FieldType::Text),
        ("email", FieldType::Text),
    ]);
    for id in 1..=n {
        b.push_row(&[
            Value::Integer(id),
            Value::Text(format!("Person {id}")),
            Value::Text(format!("person{id}@example.com")),
        ])
        .unwrap();
    }
    b.finish()
}

/// Calls `entry` in `mode` on a fresh handle under `limits`; returns the error (if
/// any), how long the call took, and the handle (to prove it still works).
fn provoke(
    entry: Entry,
    limits: Limits,
    options: &[(&str, &str)],
) -> (Result<(), CallError>, Duration, Handle) {
    let mut handle = Handle::new(entry, limits);
    // Instantiate first, so the measured time is the call's alone.
    handle.still_works(entry);
    let started = Instant::now();
    let result = handle.call(entry, options);
    (result, started.elapsed(), handle)
}

fn trap_of(result: Result<(), CallError>, what: &str) -> (TrapKind, String) {
    match result {
        Err(e @ CallError::Trap { .. }) => {
            let text = e.to_string();
            let CallError::Trap { trap, plugin } = e else {
                unreachable!()
            };
            assert!(plugin.contains("testkit"), "names the plugin: {text}");
            (trap, text)
        }
        other => panic!("{what}: expected a trap, got {other:?}"),
    }
}

/// The next project after a violation runs to Completed on the same runtime.
fn next_project_runs_normally() {
    let report = run(&testkit_project(250));
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(report.totals().inserted, 250);
}

// ---------------------------------------------------------------------------------
// Limits, in every entry point.

#[test]
fn an_endless_loop_in_every_entry_point_is_stopped_at_its_time_limit() {
    for entry in ENTRIES {
        let (result, took, mut handle) = provoke(entry, limits(300, 64), &[("mode", "loop")]);
        let (trap, text) = trap_of(result, &format!("loop in {entry:?}"));
        assert_eq!(
            trap,
            TrapKind::Timeout(Duration::from_millis(300)),
            "{text}"
        );
        assert!(text.contains("time limit of 300ms"), "{text}");
        // The epoch ticks every 10 ms; the deadline is the call's.
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "{entry:?}: stopped after {took:?}"
        );
        eprintln!("loop in {entry:?}: stopped after {took:?}: {text}");
        handle.still_works(entry);
    }
    next_project_runs_normally();
}

#[test]
fn the_same_busy_work_passes_a_long_time_limit_and_is_stopped_by_a_short_one() {
    // About 0.1-0.5 s of work, depending on the machine.
    let work = [("mode", "busy"), ("iterations", "300000000")];
    for entry in ENTRIES {
        let (result, took, _) = provoke(entry, limits(10_000, 64), &work);
        result.unwrap_or_else(|e| panic!("{entry:?} obeyed: {e}"));
        assert!(
            took > Duration::from_millis(40),
            "{entry:?}: real work, {took:?}"
        );
        let (result, short, mut handle) = provoke(entry, limits(20, 64), &work);
        let (trap, text) = trap_of(result, &format!("busy in {entry:?}"));
        assert_eq!(trap, TrapKind::Timeout(Duration::from_millis(20)), "{text}");
        eprintln!("busy in {entry:?}: {took:?} under 10 s; stopped after {short:?} under 20 ms");
        handle.still_works(entry);
    }
}

#[test]
fn memory_200_mb_is_allowed_under_the_256_mib_default_300_mb_is_refused() {
    let defaults = Limits::default();
    assert_eq!(defaults.memory_bytes, 256 << 20);
    for entry in ENTRIES {
        let (result, took, _) =
            provoke(entry, defaults.clone(), &[("mode", "hold"), ("mb", "200")]);
        result.unwrap_or_else(|e| panic!("{entry:?} holding 200 MB: {e}"));
        let (result, refused, mut handle) =
            provoke(entry, defaults.clone(), &[("mode", "hold"), ("mb", "300")]);
        let (trap, text) = trap_of(result, &format!("300 MB in {entry:?}"));
        match trap {
            TrapKind::OutOfMemory { limit, wanted } => {
                assert_eq!(limit, 256 << 20);
                assert!(wanted > 256 << 20, "{text}");
            }
            other => panic!("{entry:?}: expected the memory limit, got {other:?}"),
        }
        assert!(text.contains("memory limit of 256 MiB"), "{text}");
        eprintln!(
            "hold in {entry:?}: 200 MB held in {took:?}; 300 MB refused after {refused:?}: {text}"
        );
        handle.still_works(entry);
    }
    // An unbounded allocation loop meets the same wall.
    let (result, took, mut handle) = provoke(Entry::Read, limits(10_000, 32), &[("mode", "alloc")]);
    let (trap, text) = trap_of(result, "alloc in read");
    assert!(matches!(trap, TrapKind::OutOfMemory { .. }), "{text}");
    eprintln!("alloc in read: stopped after {took:?}: {text}");
    handle.still_works(Entry::Read);
    next_project_runs_normally();
}

#[test]
fn a_bounded_recursion_runs_an_unbounded_one_overflows_the_stack_cleanly() {
    for entry in ENTRIES {
        let (result, _, _) = provoke(
            entry,
            Limits::default(),
            &[("mode", "recurse-to"), ("depth", "1000")],
        );
        result.unwrap_or_else(|e| panic!("{entry:?} recursing 1,000 frames: {e}"));
        let (result, took, mut handle) = provoke(entry, Limits::default(), &[("mode", "recurse")]);
        let (trap, text) = trap_of(result, &format!("recursion in {entry:?}"));
        assert!(
            matches!(trap, TrapKind::StackOverflow | TrapKind::Other(_)),
            "{entry:?}: {text}"
        );
        eprintln!("recurse in {entry:?}: stopped after {took:?}: {text}");
        handle.still_works(entry);
    }
    next_project_runs_normally();
}

#[test]
fn a_panic_in_every_entry_point_is_a_trap_and_the_handle_gets_a_fresh_instance() {
    for entry in ENTRIES {
        let (result, _, mut handle) = provoke(entry, Limits::default(), &[("mode", "panic")]);
        let (trap, text) = trap_of(result, &format!("panic in {entry:?}"));
        assert!(
            matches!(&trap, TrapKind::Panic(m) if m.contains("testkit panics on purpose")),
            "{text}"
        );
        handle.still_works(entry);
    }
}

#[test]
fn a_writer_of_a_trapped_instance_is_refused_not_reentered() {
    let plugin = runtime()
        .load_file(&plugin_path("testkit-connector"))
        .unwrap();
    let mut c = plugin.connector(Grants::none(), Limits::default()).unwrap();
    let cfg = config(&[("mode", "panic-after"), ("after", "1")]);
    let writer = c.open_writer(&cfg, &write_request()).unwrap();
    c.upsert(&writer, people(5)).unwrap();
    let err = c.upsert(&writer, people(5)).unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err:?}");
    // The writer belonged to the discarded instance.
    let err = c.upsert(&writer, people(5)).unwrap_err();
    assert!(
        matches!(&err, CallError::Host { message, .. } if message.contains("writer was lost")),
        "{err:?}"
    );
    // A new writer on the fresh instance starts counting from zero again.
    let writer = c.open_writer(&cfg, &write_request()).unwrap();
    c.upsert(&writer, people(5)).unwrap();
    c.finish(writer).unwrap();
}

// ---------------------------------------------------------------------------------
// A trap mid-execution: that batch is not counted, the checkpoints stay behind the
// destination, and the store records an Error that the next run gets past.

/// Keeps every checkpoint.
#[derive(Default)]
struct Kept(Vec<Checkpoint>);
impl Recorder for Kept {
    fn checkpoint(&mut self, checkpoint: Checkpoint) -> Result<(), weir_host::engine::TaskStop> {
        self.0.push(checkpoint);
        Ok(())
    }
}

#[test]
fn a_panic_mid_execution_fails_it_without_counting_the_batch_and_checkpoints_stay_behind() {
    // 100 people in batches of 10; the destination panics on its 5th upsert.
    let mut project = testkit_project(100);
    project.batch_size = 10;
    project.destination = project
        .destination
        .clone()
        .with_config("mode", "panic-after")
        .with_config("after", "4")
        .with_config("mode_calls", "upsert");
    let options = RunOptions {
        checkpoint_every: 2,
        ..RunOptions::default()
    };
    let mut kept = Kept::default();
    let report = Engine::new(runtime())
        .execute(&project, &options, &mut Quiet, &mut kept)
        .expect("the project starts");
    assert_eq!(report.status, Status::Error, "{report}");
    let task = &report.tasks[0];
    let error = task.error.as_deref().unwrap_or_default();
    assert!(error.contains("panics on purpose at call 5"), "{error}");
    assert_eq!(
        task.counts.upserted(),
        40,
        "4 batches upserted, the 5th not counted: {report}"
    );
    // The last checkpoint recorded before the trap is at 40 records (cursor 41):
    // never ahead of what the destination finished.
    let committed: Vec<_> = kept
        .0
        .iter()
        .flat_map(|c| c.tasks.iter())
        .filter_map(|t| {
            t.cursor
                .as_deref()
                .map(|c| (c.to_owned(), t.counts.upserted()))
        })
        .collect();
    let (cursor, upserted) = committed.last().expect("a checkpoint").clone();
    assert!(
        cursor.parse::<u64>().unwrap() <= 41 && upserted <= 40,
        "checkpoints: {committed:?}"
    );
    eprintln!("panic at the 5th upsert: {error}; checkpoints {committed:?}");
    next_project_runs_normally();
}

#[test]
fn a_recorded_execution_that_traps_is_stored_as_error_and_the_store_stays_consistent() {
    use weir_host::service::Service;
    use weir_host::store::{ExecStatus, Store, Trigger};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let svc = Service::new(Store::open(&data, None).unwrap(), runtime());
    let text = |dst: &str| project_file("trapping", 200, "", dst);
    svc.apply_project_text(
        &tmp.path().join("p.toml"),
        &text(r#"mode = "panic-after", after = "12", mode_calls = "upsert""#),
        tmp.path(),
        &weir_host::project::EnvPolicy::default(),
    )
    .unwrap();
    let (id, report) = svc.run("trapping", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(report.status, Status::Error, "{report}");
    let stored = svc.store.execution(id).unwrap().unwrap();
    assert_eq!(stored.status, ExecStatus::Error);
    let error = stored.error.clone().unwrap_or_default();
    assert!(error.contains("panic"), "{stored:?}");
    let t = &stored.tasks[0];
    // 12 batches of 10 upserted; the checkpoint after 10 is the committed one.
    assert!(t.inserted + t.updated <= 120, "{stored:?}");
    assert!(
        t.cursor
            .as_deref()
            .map_or(true, |c| c.parse::<u64>().unwrap() <= 121),
        "{stored:?}"
    );
    drop(svc);
    // The store reopens with nothing left Running, and the fixed project runs.
    let svc = Service::new(Store::open(&data, None).unwrap(), runtime());
    assert!(svc.store.interrupted_on_open().is_empty());
    svc.apply_project_text(
        &tmp.path().join("p.toml"),
        &text(""),
        tmp.path(),
        &weir_host::project::EnvPolicy::default(),
    )
    .unwrap();
    let (again, report) = svc.run("trapping", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(report.status, Status::Completed, "{report}");
    assert_eq!(report.totals().upserted(), 200);
    assert!(again > id);
    eprintln!(
        "stored after the trap: {:?} / {:?}",
        stored.status, stored.tasks[0]
    );
}

/// A project file: testkit (`count` people, `source` options) → testkit
/// (`destination` options), batches of 10.
fn project_file(name: &str, count: usize, source: &str, destination: &str) -> String {
    let testkit = plugin_path("testkit-connector");
    let sep = if source.is_empty() { "" } else { ", " };
    format!(
        r#"
[connections.src]
plugin = "{testkit}"
config = {{ count = "{count}"{sep}{source} }}

[connections.dst]
plugin = "{testkit}"
config = {{ {destination} }}

[connection_sets.s]
source = "src"
destination = "dst"

[project]
name = "{name}"
connection_set = "s"
batch_size = 10

[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
  {{ destination = "email", source = "email" }},
]
"#,
        testkit = testkit.display(),
    )
}

// ---------------------------------------------------------------------------------
// Malformed answers are contract errors.

#[test]
fn malformed_transform_output_is_a_contract_error_and_costs_only_that_call() {
    let plugin = runtime()
        .load_file(&plugin_path("testkit-transform"))
        .unwrap();
    let mut t = plugin.transform(Limits::default()).unwrap();
    for (how, expect) in [
        ("offsets-past-end", "offsets"),
        ("offsets-backwards", "offsets"),
        ("column-length", "column"),
        ("utf8", "UTF-8"),
        ("nulls-length", "column"),
        ("duplicate-column", "column"),
        ("batch-length", ""),
        ("drop-record", "transform returned 9 records for 10"),
        ("failure-index", "failure for record 1010 of 10"),
    ] {
        let err = t
            .transform(&config(&[("malform", how)]), people(10))
            .expect_err(how);
        let text = err.to_string();
        assert!(
            matches!(err, CallError::Contract { .. }),
            "{how}: expected a contract error, got {err:?}"
        );
        assert!(text.contains("broke the contract"), "{how}: {text}");
        assert!(text.contains(expect), "{how}: {text}");
        eprintln!("malform {how}: {text}");
        // Not a trap: the same instance answers the next call.
        t.transform(&Config::default(), people(10)).unwrap();
    }
    // In an execution: Error, with the contract named; the next one completes.
    let report = run(&with_transform(
        testkit_project(50),
        &[("malform", "utf8")],
        Limits::default(),
    ));
    assert_eq!(report.status, Status::Error);
    assert!(
        task_error(&report).contains("broke the contract"),
        "{report}"
    );
    next_project_runs_normally();
}

#[test]
fn malformed_source_pages_are_refused_and_cost_only_that_execution() {
    let plugin = runtime()
        .load_file(&plugin_path("testkit-connector"))
        .unwrap();
    let mut c = plugin.connector(Grants::none(), Limits::default()).unwrap();
    for (how, expect) in [("utf8", "not UTF-8"), ("offsets", "malformed offsets")] {
        let err = c
            .read(&config(&[("malform_read", how)]), &read_request())
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CallError::Contract { .. }), "{how}: {err:?}");
        assert!(text.contains(expect), "{how}: {text}");
        eprintln!("malform_read {how}: {text}");
        c.read(&Config::default(), &read_request()).unwrap();
    }
    // A page that claims 4,294,967,295 records and has no columns is well formed
    // as a batch; the runtime refuses it against the page size asked for.
    for how in ["utf8", "offsets", "huge-len"] {
        let mut project = testkit_project(50);
        project.source = project.source.clone().with_config("malform_read", how);
        let report = run(&project);
        assert_eq!(report.status, Status::Error, "{how}: {report}");
        assert_eq!(report.totals().upserted(), 0, "{how}: {report}");
        let error = task_error(&report);
        if how == "huge-len" {
            assert!(
                error.contains(
                    "returned 4294967295 records and 0 rejected records for a page of at most 100"
                ),
                "{error}"
            );
        }
        eprintln!("malform_read {how} in an execution: {error}");
    }
    next_project_runs_normally();
}

#[test]
fn the_wrong_number_of_outcomes_is_a_contract_error() {
    let plugin = runtime()
        .load_file(&plugin_path("testkit-connector"))
        .unwrap();
    let mut c = plugin.connector(Grants::none(), Limits::default()).unwrap();
    let writer = c
        .open_writer(&config(&[("broken", "outcome-count")]), &write_request())
        .unwrap();
    let err = c.upsert(&writer, people(10)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, CallError::Contract { .. }), "{err:?}");
    assert!(
        text.contains("upsert returned 9 outcomes for 10 records"),
        "{text}"
    );
    let mut project = testkit_project(30);
    project.destination = project
        .destination
        .clone()
        .with_config("broken", "outcome-count");
    let report = run(&project);
    assert_eq!(report.status, Status::Error);
    assert_eq!(report.totals().upserted(), 0, "{report}");
    next_project_runs_normally();
}

// ---------------------------------------------------------------------------------
// Floods: what the host keeps is bounded.

#[test]
fn a_stderr_flood_is_kept_to_its_bound_in_the_panic_message() {
    let (result, took, mut handle) = provoke(
        Entry::Check,
        Limits::default(),
        &[("mode", "stderr-flood"), ("mb", "10")],
    );
    let (trap, text) = trap_of(result, "stderr flood");
    assert!(matches!(trap, TrapKind::Panic(_)), "{trap:?}");
    // The host keeps the tail of stderr: the panic message written after the flood
    // is in the trap's message, after a count of what is not shown.
    assert!(
        text.contains("testkit panics after flooding stderr"),
        "the panic message is kept: {text}"
    );
    let dropped: u64 = text
        .split_once("[... ")
        .and_then(|(_, rest)| rest.split_once(" bytes dropped]"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("says how much was dropped: {text}"));
    let flood = 10u64 << 20;
    assert!(
        (flood - 4096..=flood).contains(&dropped),
        "{dropped} bytes said dropped of {flood}"
    );
    assert!(text.len() <= 4096, "{} bytes kept of 10 MiB", text.len());
    eprintln!(
        "stderr flood of 10 MiB: {} bytes in the message ({dropped} said dropped), {took:?}",
        text.len()
    );
    handle.still_works(Entry::Check);
}

#[test]
fn a_log_flood_in_an_execution_is_bounded_per_call() {
    // The source logs 100,000 lines of 1 KiB in each of its 3 reads.
    let mut project = testkit_project(250);
    project.source = project
        .source
        .clone()
        .with_config("mode", "log-flood")
        .with_config("mode_calls", "read");
    let started = Instant::now();
    let report = run(&project);
    assert_eq!(report.status, Status::Completed, "{report}");
    let per_call = Limits::default().log_lines_per_call;
    assert!(
        report.log.len() <= 3 * (per_call + 1) + 20,
        "{} lines kept",
        report.log.len()
    );
    assert!(
        report.log.iter().all(|l| l.len() <= 4096 + 200),
        "lines are cut"
    );
    eprintln!(
        "log flood of 300,000 lines: {} kept, run took {:?}",
        report.log.len(),
        started.elapsed()
    );
}

/// FINDING (issue 8): the message of a plugin's error is not bounded on the host
/// side — a plugin can return a 16 MiB error that then travels into the report,
/// the store and the API. Ignored until the runtime truncates it (as it does log
/// lines and stderr); run with `--ignored` to see the size.
#[test]
fn a_huge_error_message_is_cut_to_a_bound() {
    let (result, _, mut handle) = provoke(
        Entry::Check,
        Limits::default(),
        &[("mode", "huge-error"), ("mb", "16")],
    );
    let text = result.unwrap_err().to_string();
    eprintln!(
        "a 16 MiB error message reached the host as {} bytes",
        text.len()
    );
    assert!(text.len() <= 64 << 10, "{} bytes", text.len());
    handle.still_works(Entry::Check);
}

// ---------------------------------------------------------------------------------
// Nothing granted means nothing: environment, clocks, sockets, DNS.

#[test]
fn a_plugin_sees_no_environment_a_frozen_clock_and_no_network() {
    // SAFETY: set before any thread of this test reads the environment; the value
    // only has to exist in the host process.
    unsafe { std::env::set_var("WEIR_HOSTILE_CANARY", "host-only") };
    let mut c = Handle::new(Entry::Check, Limits::default());
    let check = |c: &mut Handle, options: &[(&str, &str)]| -> String {
        match c.call(Entry::Check, options) {
            Err(CallError::Plugin { error, .. }) => {
                // testkit answers InvalidConfig when refused, Internal when it got through.
                assert!(
                    matches!(error, weir_types::PluginError::InvalidConfig(_)),
                    "{options:?} got through: {error}"
                );
                error.to_string()
            }
            other => panic!("{options:?}: {other:?}"),
        }
    };
    let env = check(&mut c, &[("mode", "env")]);
    assert!(
        env.contains("0 variables") && env.contains("0 arguments"),
        "{env}"
    );
    assert!(!env.contains("WEIR_HOSTILE_CANARY"), "{env}");

    let clock = check(&mut c, &[("mode", "clock")]);
    assert!(clock.contains("wall 0 s since the epoch"), "{clock}");
    assert!(clock.contains("monotonic moved 0 ns"), "{clock}");

    // A listener on loopback: the plugin must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let connect = check(&mut c, &[("mode", "connect"), ("addr", &addr)]);
    assert!(connect.contains("cannot connect"), "{connect}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing connected"
    );
    for host in ["localhost", "example.com"] {
        let resolve = check(&mut c, &[("mode", "resolve"), ("host", host)]);
        assert!(resolve.contains("cannot resolve"), "{resolve}");
        eprintln!("resolve: {resolve}");
    }
    eprintln!("env: {env}\nclock: {clock}\nconnect: {connect}");
    c.still_works(Entry::Check);
}

// ---------------------------------------------------------------------------------
// The daemon: hostile projects on a schedule next to a healthy one.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_projects_in_the_daemon_fail_their_own_runs_and_a_healthy_one_keeps_its_schedule() {
    use weir_host::daemon::{Daemon, DaemonSettings};
    use weir_host::service::Service;
    use weir_host::store::{ExecStatus, ExecutionFilter, Store};

    let tmp = tempfile::tempdir().unwrap();
    let svc = Service::new(
        Store::open(&tmp.path().join("data"), None).unwrap(),
        runtime(),
    );
    let every = |secs: u32| {
        format!(
            "schedule = \"*/{secs} * * * * *\"\nretry = {{ attempts = 1, pause_after_errors = 0 }}"
        )
    };
    let projects = [
        ("healthy", 1, "", "", "Completed"),
        (
            "looping",
            2,
            r#"mode = "loop", mode_calls = "read""#,
            "",
            "time limit",
        ),
        (
            "bomb",
            2,
            r#"mode = "alloc", mode_calls = "read""#,
            "",
            "memory limit",
        ),
        (
            "panicking",
            2,
            "",
            r#"mode = "panic-after", after = "2", mode_calls = "upsert""#,
            "panicked",
        ),
        (
            "recursing",
            2,
            "",
            r#"mode = "recurse", mode_calls = "upsert""#,
            "stack",
        ),
    ];
    for (name, secs, source, destination, _) in projects {
        let mut text = project_file(name, 50, source, destination);
        text = text.replace(
            "batch_size = 10",
            &format!("batch_size = 10\n{}", every(secs)),
        );
        // The hostile source gets tight limits, as an administrator would set.
        text = text.replace(
            "[connections.dst]",
            "limits = { call_timeout_secs = 0.5, memory_mb = 64 }\n\n[connections.dst]",
        );
        svc.apply_project_text(
            &tmp.path().join(format!("{name}.toml")),
            &text,
            tmp.path(),
            &weir_host::project::EnvPolicy::default(),
        )
        .unwrap();
    }
    let daemon = Daemon::new(
        svc,
        DaemonSettings {
            concurrency: 4,
            tick: Duration::from_millis(200),
        },
        None,
    )
    .unwrap();
    let scheduler = daemon.start();
    let window = Duration::from_secs(9);
    tokio::time::sleep(window).await;
    // Still serving while the hostile ones run.
    assert_eq!(daemon.projects().unwrap().len(), projects.len());
    let left = daemon.shutdown(Duration::from_secs(10)).await;
    scheduler.abort();
    assert_eq!(left, 0, "every run ended within the grace");

    let store = &daemon.service().store;
    for (name, _, _, _, expect) in projects {
        let all = store
            .executions(&ExecutionFilter {
                project: Some(name.into()),
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        let count = |s: ExecStatus| all.iter().filter(|e| e.status == s).count();
        let (completed, errors, skipped) = (
            count(ExecStatus::Completed),
            count(ExecStatus::Error),
            count(ExecStatus::Skipped),
        );
        eprintln!(
            "{name}: {} executions in {window:?}: {completed} Completed, {errors} Error, {skipped} Skipped",
            all.len()
        );
        assert_eq!(count(ExecStatus::Running), 0, "{name}: none left Running");
        if name == "healthy" {
            assert!(
                completed >= 5,
                "the healthy project kept its 1 s schedule: {completed} runs in {window:?}"
            );
            // A run may have been stopped by the shutdown at a batch boundary.
            let bad: Vec<_> = all
                .iter()
                .filter(|e| {
                    e.status == ExecStatus::Error
                        && !e.error.as_deref().unwrap_or("").starts_with("interrupted")
                })
                .collect();
            assert!(bad.is_empty(), "healthy runs failed: {bad:?}");
            // Its start times: no gap much longer than the schedule.
            let mut starts: Vec<i64> = all.iter().map(|e| e.started_at).collect();
            starts.sort();
            let gap = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
            eprintln!("healthy: longest gap between starts {gap} ms");
            assert!(gap <= 2_500, "longest gap between healthy runs {gap} ms");
        } else {
            // The shutdown may stop any project's run in flight ("interrupted"): only
            // the plugin's own failures say what it did.
            let failed: Vec<_> = all
                .iter()
                .filter(|e| {
                    e.status == ExecStatus::Error
                        && !e.error.as_deref().unwrap_or("").starts_with("interrupted")
                })
                .collect();
            assert!(failed.len() >= 2, "{name}: {errors} Error runs: {failed:?}");
            let text = failed[0].error.clone().unwrap_or_default();
            assert!(text.contains(expect), "{name}: {text}");
            eprintln!("{name}: {text}");
        }
    }
}

/// "Asking for another connection's secret": the WIT contract has no call that
/// names another connection, so the question is what a plugin can see. Source and
/// destination run the same testkit plugin, each with its own secret; in `snoop`
/// mode each writes down everything it can see (config, environment, arguments,
/// every file it can list and read) into its own granted folder. Each sees its own
/// secret (the obeyed half: the channel works) and never the other's, though both
/// instances come from one pre-instantiated component in the same process.
#[test]
fn a_plugin_sees_its_own_connections_secret_and_never_another_ones() {
    const SRC_SECRET: &str = "src-secret-7f3a91";
    const DST_SECRET: &str = "dst-secret-c05e22";
    let src_dir = tempfile::tempdir().unwrap();
    let dst_dir = tempfile::tempdir().unwrap();
    let mut p = testkit_project(50);
    p.source = p
        .source
        .with_config("mode", "snoop")
        .with_config("mode_calls", "read")
        .with_config("token", SRC_SECRET);
    p.source.grants = Grants::directory(src_dir.path());
    p.destination = p
        .destination
        .with_config("mode", "snoop")
        .with_config("mode_calls", "upsert")
        .with_config("token", DST_SECRET);
    p.destination.grants = Grants::directory(dst_dir.path());
    std::fs::write(src_dir.path().join("own.txt"), "a file of the source's own").unwrap();
    std::fs::write(dst_dir.path().join("own.txt"), DST_SECRET).unwrap();
    let report = run(&p);
    assert_eq!(report.status, Status::Completed, "{report}");
    let seen =
        |dir: &tempfile::TempDir| std::fs::read_to_string(dir.path().join("seen.txt")).unwrap();
    let (src_seen, dst_seen) = (seen(&src_dir), seen(&dst_dir));
    assert!(
        src_seen.contains(&format!("config token={SRC_SECRET}")),
        "{src_seen}"
    );
    assert!(
        dst_seen.contains(&format!("config token={DST_SECRET}")),
        "{dst_seen}"
    );
    assert!(
        !src_seen.contains(DST_SECRET),
        "the source saw the destination's secret"
    );
    assert!(
        !dst_seen.contains(SRC_SECRET),
        "the destination saw the source's secret"
    );
    // Nothing of the host either: no environment, and only its own folder.
    assert!(
        src_seen.contains("a file of the source's own"),
        "{src_seen}"
    );
    assert!(!src_seen.contains("\nenv "), "{src_seen}");
    let files: Vec<&str> = src_seen
        .lines()
        .filter(|l| l.starts_with("file "))
        .collect();
    assert!(
        files.iter().all(|f| f.starts_with("file /data")),
        "{files:?}"
    );
    println!(
        "source saw {} lines ({} files), destination {} lines; neither the other's secret",
        src_seen.lines().count(),
        files.len(),
        dst_seen.lines().count()
    );
}
