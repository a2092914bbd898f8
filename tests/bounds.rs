//! Issue 18: every size a project, an expression or a plugin controls has a
//! bound, and going past it costs that record, that call or that execution —
//! never the process, the daemon's workers or the store.
//!
//! Run with `--nocapture` to see the figures quoted in RELIABILITY.md.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use weir_host::engine::{Quiet, Status};

// ---------------------------------------------------------------------------------
// Helpers

fn weir(cwd: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(cwd)
        .env_remove("WEIR_DATA_DIR")
        .output()
        .expect("run weir")
}

/// `weir serve` on a loopback port over `data`; returns the child and its address.
fn start_serve(data: &Path, token: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--data-dir"])
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("WEIR_ADMIN_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("weir serve: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (child, addr)
}

fn stop(mut daemon: std::process::Child) {
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    assert!(daemon.wait().unwrap().success());
}

/// testkit (`source` options) → jsonl in `out`, batches of `batch`, with
/// `mappings` (TOML rows) and the key `key`.
fn project_toml(
    name: &str,
    plugin: &str,
    source: &str,
    out: &Path,
    batch: u32,
    key: &str,
    mappings: &str,
) -> String {
    format!(
        r#"
[connections.src]
plugin = "{plugin}"
config = {{ {source} }}

[connections.dst]
plugin = "jsonl"
grants = {{ directory = "{out}" }}

[connection_sets.s]
source = "src"
destination = "dst"

[project]
name = "{name}"
connection_set = "s"
batch_size = {batch}

[[project.tasks]]
source_entity = "people"
destination_entity = "{name}"
key = ["{key}"]
mappings = [
{mappings}
]
"#,
        out = out.display(),
    )
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

// ---------------------------------------------------------------------------------
// 10. Mapping values

/// The issue's amplifier, one nesting level deeper than the one that took
/// 1.1 GB: each level splits into characters and joins them with the field
/// itself (over the 1,000-character name, a 1,000-byte separator as in the
/// issue; over a one-letter name, slow growth that passes).
fn amplifier() -> String {
    let level = |inner: &str| format!(r#"join(split!({inner}, ""), string!(.name))"#);
    format!("strlen({})", level(&level(&level("string!(.name)"))))
}

/// Through `weir serve`: the record whose name is 1,000 characters fails with a
/// record error naming the expression and the limit, the others are written,
/// and the daemon answers `/health` throughout.
#[test]
fn an_amplifying_mapping_fails_its_record_and_weir_serve_keeps_answering() {
    const TOKEN: &str = "a-token-for-the-amplifier-test";
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Record 3's name is 1,000 bytes, the others' one letter (testkit's
    // `long_name_at`), so only record 3 amplifies.
    let text = project_toml(
        "amplified",
        &plugin_path("testkit-connector").display().to_string(),
        r#"count = "5", long_name_at = "3", long_name_bytes = "1000""#,
        &out,
        100,
        "id",
        &format!(
            "  {{ destination = \"id\", source = \"id\" }},\n  {{ destination = \"len\", expr = {:?} }},",
            amplifier()
        ),
    );
    let (daemon, addr) = start_serve(&tmp.path().join("data"), TOKEN);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let put = http
        .put(format!("http://{addr}/api/v1/projects/amplified"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/toml")
        .body(text)
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().unwrap());
    let started = Instant::now();
    let run: serde_json::Value = http
        .post(format!("http://{addr}/api/v1/projects/amplified/run"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = run["execution"].as_u64().expect("an execution id");
    let mut health_checks = 0;
    let execution = loop {
        let health = http.get(format!("http://{addr}/health")).send().unwrap();
        assert!(health.status().is_success());
        health_checks += 1;
        let e: serde_json::Value = http
            .get(format!("http://{addr}/api/v1/executions/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if e["status"] != "Running" {
            break e;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{e}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    assert_eq!(execution["status"], "Warning", "{execution}");
    let errors: serde_json::Value = http
        .get(format!("http://{addr}/api/v1/executions/{id}/errors"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let text = errors.to_string();
    assert!(
        text.contains("`split` would produce a value of")
            && text.contains("the limit for any value in a mapping is 1048576 bytes (1 MiB)")
            && text.contains("mapping `len` = `strlen(join(split!("),
        "{text}"
    );
    let written = std::fs::read_to_string(out.join("amplified.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 4, "{written}");
    println!(
        "amplifier through weir serve: {} in {took:?}, /health answered {health_checks} times; {}",
        execution["status"],
        &text[..text.len().min(400)]
    );
    stop(daemon);
}

// ---------------------------------------------------------------------------------
// 11. Plugin files

/// Things named as a plugin that are no plugin: each refused within a second,
/// by `weir validate` and through the API, naming what it is.
#[test]
fn plugin_files_that_are_no_plugins_are_refused_within_a_second() {
    const TOKEN: &str = "a-token-for-the-plugin-file-test";
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let fifo = tmp.path().join("plugin.fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let sparse = tmp.path().join("huge.wasm");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(500_000_000)
        .unwrap();
    let cases: [(&str, PathBuf, &str); 4] = [
        ("zero", PathBuf::from("/dev/zero"), "is a character device"),
        ("fifo", fifo, "is a FIFO (named pipe)"),
        (
            "sparse",
            sparse,
            "is 500000000 bytes; plugins are at most 67108864 bytes (64 MiB)",
        ),
        ("dir", tmp.path().to_path_buf(), "is a directory"),
    ];
    let mapping = "  { destination = \"id\", source = \"id\" },";
    for (name, plugin, expected) in &cases {
        let text = project_toml(
            name,
            &plugin.display().to_string(),
            "",
            &out,
            10,
            "id",
            mapping,
        );
        std::fs::write(tmp.path().join(format!("{name}.toml")), &text).unwrap();
        for command in ["validate", "run"] {
            let started = Instant::now();
            let o = weir(tmp.path(), &[command, &format!("{name}.toml")]);
            let took = started.elapsed();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(!o.status.success(), "{name} {command}: {all}");
            assert!(all.contains(expected), "{name} {command}: {all}");
            assert!(took < Duration::from_secs(1), "{name} {command}: {took:?}");
            println!("weir {command} with {name}: {took:?}: {}", all.trim());
        }
    }
    for (name, plugin, expected) in &cases {
        let started = Instant::now();
        let o = weir(
            tmp.path(),
            &[
                "--data-dir",
                "install-data",
                "plugin",
                "install",
                &plugin.display().to_string(),
            ],
        );
        let took = started.elapsed();
        let all = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !o.status.success() && all.contains(expected),
            "{name}: {all}"
        );
        assert!(took < Duration::from_secs(1), "{name} install: {took:?}");
        println!("weir plugin install with {name}: {took:?}: {}", all.trim());
    }
    let (daemon, addr) = start_serve(&tmp.path().join("data"), TOKEN);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let put_project = |name: &str, text: String| {
        http.put(format!("http://{addr}/api/v1/projects/{name}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/toml")
            .body(text)
            .send()
            .expect("the PUT is answered")
    };
    // A plugin that is a real one for now: stored, then swapped for a FIFO
    // behind the daemon's back (below). It also has the daemon compile jsonl
    // (the destination) before the timings, so they measure the refusal.
    let swap = tmp.path().join("swap.wasm");
    std::fs::copy(plugin_path("testkit-connector"), &swap).unwrap();
    let swapped = project_toml(
        "swapped",
        &swap.display().to_string(),
        "",
        &out,
        10,
        "id",
        mapping,
    );
    assert!(put_project("swapped", swapped).status().is_success());
    for (name, plugin, expected) in &cases {
        let text = project_toml(
            name,
            &plugin.display().to_string(),
            "",
            &out,
            10,
            "id",
            mapping,
        );
        let started = Instant::now();
        let put = put_project(name, text);
        let took = started.elapsed();
        let status = put.status();
        let text = put.text().unwrap();
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{name}: {text}");
        assert!(text.contains(expected), "{name}: {text}");
        assert!(took < Duration::from_secs(1), "{name}: {took:?}");
        println!("API PUT with {name}: {took:?}: {status} {text}");
    }
    stop(daemon);
    // The stored project's plugin is now a FIFO: the daemon starts, serves,
    // refuses the project's validation at once and stops on SIGTERM.
    std::fs::remove_file(&swap).unwrap();
    let c = std::ffi::CString::new(swap.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let started = Instant::now();
    let (daemon, addr) = start_serve(&tmp.path().join("data"), TOKEN);
    assert!(
        http.get(format!("http://{addr}/health"))
            .send()
            .unwrap()
            .status()
            .is_success()
    );
    let validate = http
        .post(format!("http://{addr}/api/v1/projects/swapped/validate"))
        .bearer_auth(TOKEN)
        .send()
        .expect("validate is answered")
        .text()
        .unwrap();
    assert!(validate.contains("is a FIFO (named pipe)"), "{validate}");
    stop(daemon);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    println!(
        "restart with a stored project whose plugin became a FIFO, validate, SIGTERM: {took:?}"
    );
}

// ---------------------------------------------------------------------------------
// 12. Strings and counts a plugin hands the host

/// A 32 MiB cursor and 600,000 rejects for a page of 100 are contract errors; a
/// recorded execution of each ends Error naming the bound, and the store grows
/// by little (here: under 8 MiB for both executions).
#[test]
fn a_huge_cursor_and_more_rejects_than_records_are_refused_and_the_store_stays_bounded() {
    use weir_host::service::Service;
    use weir_host::store::{Store, Trigger};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let svc = Service::new(Store::open(&data, None).unwrap(), runtime());
    let testkit = plugin_path("testkit-connector").display().to_string();
    let mapping = "  { destination = \"id\", source = \"id\" },";
    let cases = [
        (
            "cursor",
            r#"count = "1200", cursor_bytes = "33554432""#,
            "read returned a cursor of 33554432 bytes; a cursor is at most 4096 bytes (4 KiB)",
        ),
        (
            "rejects",
            r#"count = "300", rejects_per_page = "600000""#,
            "read returned 0 records and 600000 rejected records for a page of at most 100",
        ),
    ];
    svc.store.flush().unwrap();
    let before = dir_size(&data);
    for (name, source, expected) in cases {
        let text = project_toml(name, &testkit, source, &out, 100, "id", mapping);
        svc.apply_project_text(
            &tmp.path().join("p.toml"),
            &text,
            tmp.path(),
            &weir_host::project::EnvPolicy::default(),
        )
        .unwrap();
        let started = Instant::now();
        let (id, report) = svc.run(name, Trigger::Manual, &mut Quiet).unwrap();
        let took = started.elapsed();
        assert_eq!(report.status, Status::Error, "{report}");
        let error = task_error(&report);
        assert!(error.contains(expected), "{name}: {error}");
        let stored = svc.store.execution(id).unwrap().unwrap();
        assert_eq!(stored.record_errors, 0, "{name}: {stored:?}");
        println!("{name}: {took:?}: {error}");
    }
    svc.store.flush().unwrap();
    let grown = dir_size(&data).saturating_sub(before);
    println!("store grew by {grown} bytes for both executions");
    assert!(grown < 8 << 20, "the store grew by {grown} bytes");
}

/// Rejected records within the page size but with 64 KiB positions and keys:
/// cut to 1 KiB each where they enter the host.
#[test]
fn long_positions_and_keys_of_rejected_records_are_cut() {
    let mut project = testkit_project(50);
    project.source = project
        .source
        .clone()
        .with_config("rejects_per_page", "5")
        .with_config("reject_text_bytes", "65536");
    project.batch_size = 100;
    let report = run(&project);
    assert_eq!(report.status, Status::Warning, "{report}");
    let failures = &report.tasks[0].failures;
    assert_eq!(failures.len(), 5, "{report}");
    for f in failures {
        let position = f.position.as_deref().unwrap();
        let key = f.key.as_deref().unwrap();
        assert!(position.len() < 1_200 && key.len() < 1_200, "{f:?}");
        assert!(
            position.contains("more bytes cut by the host"),
            "{position}"
        );
        assert!(f.message.len() <= 8 * 1024 + 64, "{}", f.message.len());
    }
}

// ---------------------------------------------------------------------------------
// 14. Keys

/// Within one read: a key of spaces only and an empty key fail their records
/// naming the field; a repeated key fails the repeat naming the key and the
/// first record — against an empty destination nothing counts as "updated".
#[test]
fn blank_and_duplicate_keys_in_one_read_are_record_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // ids 1..=4 then 1..=4 again (id_modulo); code is "   " for id 2 and "" for id 3.
    let text = project_toml(
        "keys",
        &plugin_path("testkit-connector").display().to_string(),
        r#"count = "8", id_modulo = "4""#,
        &out,
        3,
        "code",
        concat!(
            "  { destination = \"code\", expr = 'if .id == 2 { \"   \" } else if .id == 3 { \"\" } else { to_string(.id) }' },\n",
            "  { destination = \"name\", source = \"name\" },",
        ),
    );
    std::fs::write(tmp.path().join("keys.toml"), text).unwrap();
    let o = weir(tmp.path(), &["run", "keys.toml"]);
    let all = String::from_utf8_lossy(&o.stdout).into_owned();
    println!("{all}");
    assert!(all.contains("status:   Warning"), "{all}");
    // 8 read: 1 and 4 inserted once; 2 and 3 refused twice; 1 and 4 repeated.
    assert!(
        all.contains("read 8, inserted 2, updated 0, unchanged 0, failed 6"),
        "{all}"
    );
    for expected in [
        "field `code`: key field `code` is blank (only whitespace)",
        "field `code`: key field `code` is empty",
        "duplicate key `1` in this read (first as record 1 of the read)",
        "duplicate key `4` in this read (first as record 4 of the read)",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    let written = std::fs::read_to_string(out.join("keys.jsonl")).unwrap();
    assert_eq!(written.lines().count(), 2, "{written}");
}

/// The duplicate-key check holds at most the task's `duplicate_check_memory_mb`:
/// 15,000 keys, each read twice. With 1 MiB (room for 14,336 keys) the repeats
/// of the first 14,336 fail and the rest reach the destination undetected, with
/// the warning naming the setting; with 2 MiB every repeat fails and nothing is
/// said.
#[test]
fn the_duplicate_check_remembers_as_many_keys_as_its_budget_holds() {
    use weir_host::engine::keys::tracked_keys;
    use weir_host::project::KeyCheckBudget;
    let keys = 15_000;
    let room = |mib| tracked_keys(KeyCheckBudget::from_mib(mib).unwrap().bytes());
    assert!(room(1) < keys && room(2) >= keys, "{} {}", room(1), room(2));
    for (mib, detected) in [(1, room(1)), (2, keys)] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let text = project_toml(
            "budget",
            &plugin_path("testkit-connector").display().to_string(),
            &format!(r#"count = "{}", id_modulo = "{keys}""#, 2 * keys),
            &out,
            5_000,
            "id",
            concat!(
                "  { destination = \"id\", source = \"id\" },\n",
                "  { destination = \"name\", source = \"name\" },",
            ),
        )
        .replace(
            r#"key = ["id"]"#,
            &format!("key = [\"id\"]\nduplicate_check_memory_mb = {mib}"),
        );
        std::fs::write(tmp.path().join("budget.toml"), text).unwrap();
        let o = weir(tmp.path(), &["run", "budget.toml"]);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(all.contains("status:   Warning"), "{mib} MiB: {all}");
        assert!(
            all.contains(&format!("read {}, inserted {keys},", 2 * keys)),
            "{mib} MiB: {all}"
        );
        let failed = format!("failed {detected}");
        assert!(
            all.match_indices(&failed)
                .any(|(i, m)| !all[i + m.len()..].starts_with(|c: char| c.is_ascii_digit())),
            "{mib} MiB: {detected} repeats detected: {all}"
        );
        let warning = format!(
            "more than {} distinct keys in this read; duplicate keys past them are not detected (the task's duplicate_check_memory_mb is {mib} MiB",
            room(1)
        );
        let written = std::fs::read_to_string(out.join("budget.jsonl")).unwrap();
        assert_eq!(written.lines().count(), keys, "each key once in the file");
        // `weir run FILE` records nothing and prints no log: the same file through
        // the engine, with a recorder that keeps the log the store would.
        struct Log(Vec<String>);
        impl weir_host::engine::Recorder for Log {
            fn checkpoint(
                &mut self,
                cp: weir_host::engine::Checkpoint,
            ) -> Result<(), weir_host::engine::TaskStop> {
                self.0.extend(cp.log);
                Ok(())
            }
        }
        let project = weir_host::project::Project::load(&tmp.path().join("budget.toml")).unwrap();
        let mut log = Log(Vec::new());
        let report = weir_host::engine::Engine::new(runtime())
            .execute(&project, &Default::default(), &mut Quiet, &mut log)
            .unwrap();
        assert_eq!(report.tasks[0].counts.failed, detected as u64, "{report}");
        let warned = log.0.iter().any(|l| l.contains(&warning));
        assert_eq!(warned, mib == 1, "{mib} MiB: {:?}", log.0);
    }
}
