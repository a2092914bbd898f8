//! The store-backed `weir`: connections with encrypted secrets, versioned
//! projects, the execution history with drill-down, re-runs, and crash safety.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{people_project_toml as project, plugin_path};

const KEY: &str = "correct horse battery staple";
const SECRET: &str = "S3cr3t-VALUE-7b1f";

fn weir(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(dir)
        .env("WEIR_SECRET_KEY", KEY)
        .env("WEIR_LOG", "debug")
        .env_remove("WEIR_DATA_DIR")
        .output()
        .expect("run weir")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = weir(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "weir {args:?} failed:\n{text}");
    assert!(
        !text.contains(SECRET),
        "weir {args:?} printed the secret:\n{text}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn testkit() -> String {
    plugin_path("testkit-connector").display().to_string()
}

/// Every file under `dir`, read as bytes, does not contain `needle`.
fn nowhere_in(dir: &Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            nowhere_in(&path, needle);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "secret found in {}",
                path.display()
            );
        }
    }
}

#[test]
fn warning_errors_then_failed_only_rerun_completes_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let added = ok(
        d,
        &[
            "connection",
            "add",
            "src",
            "--plugin",
            &testkit(),
            "--config",
            "count=100",
            "--secret",
            &format!("token={SECRET}"),
        ],
    );
    assert!(added.contains("connection src: Connected"), "{added}");
    ok(
        d,
        &[
            "connection",
            "add",
            "dst",
            "--plugin",
            &testkit(),
            "--config",
            "reject_contains=person7",
        ],
    );
    let list = ok(d, &["connection", "list"]);
    assert!(list.contains("secrets: token (hidden)"), "{list}");
    assert!(ok(d, &["connection", "list", "--json"]).contains("\"token\""));

    std::fs::write(d.join("p.toml"), project("people-sync", 10)).unwrap();
    assert!(
        ok(d, &["project", "apply", "-f", "p.toml"]).contains("project people-sync: version 1")
    );
    assert!(ok(d, &["project", "apply", "-f", "p.toml"]).contains("version 1 (unchanged)"));

    let run = weir(d, &["run", "people-sync"]);
    assert_eq!(run.status.code(), Some(1), "Warning exits 1");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        out.contains("status:   Warning") && out.contains("execution: 1"),
        "{out}"
    );

    // Exactly the failed records, with reasons and the source record.
    let errors = ok(
        d,
        &["executions", "errors", "1", "--json", "--limit", "100"],
    );
    let errors: serde_json::Value = serde_json::from_str(&errors).unwrap();
    assert_eq!(errors["total"], 11);
    let mut keys: Vec<i64> = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().parse().unwrap())
        .collect();
    keys.sort();
    assert_eq!(keys, [7, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79]);
    assert!(
        errors["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("rejected by testkit")
    );
    assert_eq!(errors["errors"][0]["stage"], "upsert");
    // For people: `field=value` pairs, not nested JSON pair arrays.
    let text = ok(d, &["executions", "errors", "1", "--limit", "1"]);
    let record = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("record: "))
        .unwrap_or_else(|| panic!("no record line:\n{text}"));
    assert!(!record.contains("[["), "{text}");
    assert!(record.split(' ').any(|p| p.starts_with("id=")), "{text}");
    let staged_text = ok(d, &["executions", "staging", "1", "--limit", "1"]);
    assert!(
        !staged_text.contains("[[") && staged_text.contains("id="),
        "{staged_text}"
    );
    let listed = ok(
        d,
        &[
            "executions",
            "list",
            "--project",
            "people-sync",
            "--status",
            "warning",
        ],
    );
    assert!(
        listed.contains("Warning") && listed.contains("failed 11"),
        "{listed}"
    );
    assert!(
        ok(d, &["executions", "list", "--status", "completed"])
            .trim()
            .is_empty()
    );

    // Fix the cause (the destination stops rejecting), then re-send only the failures.
    ok(d, &["connection", "add", "dst", "--plugin", &testkit()]);
    // Re-reading single keys is refused, clearly, and runs nothing.
    let reread = weir(
        d,
        &["executions", "rerun", "1", "--failed-only", "--reread"],
    );
    let said = String::from_utf8_lossy(&reread.stderr);
    assert!(!reread.status.success(), "{said}");
    assert!(
        said.contains("cannot re-read single records") && said.contains("Nothing was run"),
        "{said}"
    );
    let rerun = ok(d, &["executions", "rerun", "1", "--failed-only"]);
    assert!(
        rerun.starts_with("note: re-sending the stored copies") && rerun.contains("not read again"),
        "said when it starts: {rerun}"
    );
    assert!(rerun.contains("status:   Completed"), "{rerun}");
    assert!(
        rerun.contains("read 11, inserted 11, updated 0, unchanged 0, failed 0"),
        "{rerun}"
    );
    let show = ok(d, &["executions", "show", "2"]);
    assert!(
        show.contains("parent:   execution 1") && show.contains("Rerun"),
        "{show}"
    );
    let staged = ok(d, &["executions", "staging", "2", "--json"]);
    let staged: serde_json::Value = serde_json::from_str(&staged).unwrap();
    assert_eq!(staged["total"], 11);

    // The secret is in no file of the data directory, and no output printed it
    // (ok() checks stdout and stderr, with debug logs on).
    nowhere_in(&d.join("weir-data"), SECRET.as_bytes());
    ok(d, &["executions", "show", "1", "--json"]);
    ok(
        d,
        &[
            "connection",
            "update-credentials",
            "src",
            "--secret",
            &format!("token={SECRET}2"),
        ],
    );
    nowhere_in(&d.join("weir-data"), SECRET.as_bytes());

    // Without the key, secrets cannot be read.
    let no_key = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "people-sync"])
        .current_dir(d)
        .env("WEIR_SECRET_KEY", "another key entirely, wrong")
        .output()
        .unwrap();
    assert!(!no_key.status.success());
    let err = String::from_utf8_lossy(&no_key.stderr);
    assert!(err.contains("src") && !err.contains(SECRET), "{err}");
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn sigkill_mid_execution_is_marked_interrupted_and_the_next_run_resumes_without_duplicates() {
    const COUNT: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    // An earlier execution that must stay intact.
    ok(
        d,
        &[
            "connection",
            "add",
            "src",
            "--plugin",
            &testkit(),
            "--config",
            &format!("count={COUNT}"),
            "--config",
            "read_spin=30000000",
        ],
    );
    ok(
        d,
        &[
            "connection",
            "add",
            "dst",
            "--plugin",
            "jsonl",
            "--directory",
            "out",
        ],
    );
    ok(
        d,
        &[
            "connection",
            "add",
            "small",
            "--plugin",
            &testkit(),
            "--config",
            "count=5",
        ],
    );
    std::fs::write(
        d.join("small.toml"),
        project("small", 10)
            .replace("source = \"src\"", "source = \"small\"")
            .replace("destination = \"dst\"", "destination = \"small\""),
    )
    .unwrap();
    ok(d, &["project", "apply", "-f", "small.toml"]);
    assert!(ok(d, &["run", "small"]).contains("status:   Completed"));

    std::fs::write(d.join("big.toml"), project("big", 100)).unwrap();
    ok(d, &["project", "apply", "-f", "big.toml"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "big"])
        .current_dir(d)
        .env("WEIR_SECRET_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for at least two checkpoints (the destination file grows at each).
    let started = Instant::now();
    loop {
        if lines(&out.join("people.jsonl")).len() >= 2_000 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be killed; slow the source down"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint within 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed = lines(&out.join("people.jsonl")).len();
    assert!(committed < COUNT, "killed mid-run ({committed} written)");

    // After restart: the execution is Error "interrupted" with its counts so far.
    let list = ok(d, &["executions", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let big = &list[0];
    assert_eq!(big["project"], "big");
    assert_eq!(big["status"], "Error");
    assert!(
        big["error"].as_str().unwrap().contains("interrupted"),
        "{big}"
    );
    assert!(big["inserted"].as_u64().unwrap() >= 1_000, "{big}");
    let small = &list[1];
    assert_eq!(
        (
            small["project"].as_str(),
            small["status"].as_str(),
            small["inserted"].as_u64()
        ),
        (Some("small"), Some("Completed"), Some(5))
    );

    // The next run resumes from the committed cursor: no duplicates, nothing lost.
    let resumed = ok(d, &["run", "big", "--json"]);
    let resumed: serde_json::Value = serde_json::from_str(&resumed).unwrap();
    assert_eq!(resumed["report"]["status"], "Completed");
    let read = resumed["report"]["tasks"][0]["counts"]["read"]
        .as_u64()
        .unwrap() as usize;
    assert!(read < COUNT, "resumed, not restarted (read {read})");
    let records = lines(&out.join("people.jsonl"));
    assert_eq!(records.len(), COUNT);
    let ids: HashSet<i64> = records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), COUNT, "no duplicates");
    let show = ok(d, &["executions", "show", "3"]);
    assert!(
        show.contains("resuming from cursor") && show.contains("parent:   execution 2"),
        "{show}"
    );
}
