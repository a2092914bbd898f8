//! The `weir` binary end to end: the demo, re-runs, and malformed project files.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

fn weir(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(cwd)
        .env_remove("WEIR_DATA_DIR")
        .output()
        .expect("run weir")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn demo_completes_then_updates_instead_of_duplicating() {
    // From an unrelated working directory: everything travels with the binary.
    let cwd = tempfile::tempdir().unwrap();
    let first = weir(cwd.path(), &["demo"]);
    let out = stdout(&first);
    assert!(first.status.success(), "{out}\n{}", stderr(&first));
    assert!(out.contains("status:   Completed"), "{out}");
    assert!(
        out.contains("read 5000, inserted 5000, updated 0, unchanged 0, failed 0"),
        "{out}"
    );

    let demo = cwd.path().join("weir-demo");
    let csv = std::fs::read_to_string(demo.join("crm-export/contacts.csv")).unwrap();
    let jsonl = std::fs::read_to_string(demo.join("marketing/contacts.jsonl")).unwrap();
    check_destination(&csv, &jsonl);

    let second = weir(cwd.path(), &["demo"]);
    let out = stdout(&second);
    assert!(second.status.success(), "{out}\n{}", stderr(&second));
    assert!(
        out.contains("read 5000, inserted 0, updated 0, unchanged 5000, failed 0"),
        "{out}"
    );
    let again = std::fs::read_to_string(demo.join("marketing/contacts.jsonl")).unwrap();
    assert_eq!(again.lines().count(), 5000, "no duplicates after a re-run");
    check_destination(&csv, &again);

    // The history says the same: the second execution found every record unchanged.
    let data = [
        "--data-dir",
        "weir-demo/weir-data",
        "executions",
        "show",
        "2",
    ];
    let shown = weir(cwd.path(), &data);
    let text = stdout(&shown);
    assert!(
        text.contains("read 5000, inserted 0, updated 0, unchanged 5000, failed 0"),
        "{text}"
    );
    let shown = weir(cwd.path(), &[&data[..], &["--json"]].concat());
    let json: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(json["tasks"][0]["unchanged"], 5000, "{json}");
    assert_eq!(json["tasks"][0]["updated"], 0, "{json}");
}

/// The demo shows the product, not a file copy: its execution is in the demo's own
/// history, and the command it prints (`serve --data-dir …`) starts a daemon whose
/// API — the dashboard's source — shows that execution, Completed, behind the token
/// the demo named.
#[test]
fn demo_execution_is_in_the_history_that_its_serve_command_shows() {
    use std::io::{BufRead, BufReader};
    let cwd = tempfile::tempdir().unwrap();
    let first = weir(cwd.path(), &["demo"]);
    let out = stdout(&first);
    assert!(first.status.success(), "{out}\n{}", stderr(&first));
    let id: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("execution:"))
        .unwrap_or_else(|| panic!("no execution line in {out}"))
        .trim()
        .parse()
        .unwrap();
    // The printed command, run as printed (relative to the same working directory).
    let serve_line = out
        .lines()
        .find(|l| l.contains(" serve --data-dir "))
        .unwrap_or_else(|| panic!("no serve command in {out}"));
    let data_dir = serve_line
        .split(" serve --data-dir ")
        .nth(1)
        .unwrap()
        .trim();
    assert_eq!(data_dir, "weir-demo/weir-data", "{out}");
    assert!(
        out.contains(&format!(
            "/#/executions/{id} and log in with the token in weir-demo/weir-data/admin-token"
        )),
        "{out}"
    );
    let token = std::fs::read_to_string(cwd.path().join(data_dir).join("admin-token")).unwrap();

    let listed = weir(cwd.path(), &["--data-dir", data_dir, "executions", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        stdout(&listed).contains("contacts-sync"),
        "{}",
        stdout(&listed)
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--data-dir", data_dir, "serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd.path())
        .env_remove("WEIR_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    let addr = first_line
        .trim()
        .strip_prefix("weir serve: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first_line:?}"))
        .to_owned();
    let get = |token: &str| {
        reqwest::blocking::Client::new()
            .get(format!("http://{addr}/api/v1/executions/{id}"))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    let refused = get("not-the-demo-token-at-all");
    let answer = get(token.trim());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(refused.status().as_u16(), 401);
    assert!(answer.status().is_success(), "{:?}", answer.status());
    let body: serde_json::Value = answer.json().unwrap();
    let text = body.to_string();
    assert!(text.contains("\"Completed\""), "{text}");
    assert!(text.contains("contacts-sync"), "{text}");
}

/// The destination holds exactly one record per source record, mapped and
/// normalised.
fn check_destination(csv: &str, jsonl: &str) {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(records.len(), rows.len());
    let ids: HashSet<i64> = records
        .iter()
        .map(|r| r["contact_id"].as_i64().expect("integer contact_id"))
        .collect();
    assert_eq!(ids.len(), rows.len(), "one record per key");
    for (row, rec) in rows.iter().zip(&records) {
        assert_eq!(
            rec["contact_id"].as_i64().unwrap().to_string(),
            row[col("id")]
        );
        assert_eq!(rec["first_name"], row[col("first_name")]);
        assert_eq!(rec["title"], row[col("job_title")]);
        assert_eq!(rec["created_at"], row[col("created_at")]);
        let email = row[col("email")].trim().to_lowercase();
        assert_eq!(rec["email"], email.as_str());
        let phone = rec["phone"].as_str().unwrap();
        let digits: String = phone[1..].chars().filter(char::is_ascii_digit).collect();
        assert!(
            phone.starts_with('+') && digits.len() == phone.len() - 1,
            "{phone}"
        );
        assert!((8..=15).contains(&digits.len()), "{phone}");
        let source_digits: String = row[col("phone")]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        assert!(
            digits.ends_with(&source_digits[source_digits.len() - 7..]),
            "{phone} from {}",
            row[col("phone")]
        );
        let full = format!("{} {}", row[col("first_name")], row[col("last_name")]);
        assert_eq!(rec["full_name"], full.as_str());
        let country = rec["country_name"].as_str().unwrap();
        assert!(country.len() > 2 && country != "Unknown", "{rec}");
        assert_eq!(
            rec.as_object().unwrap().len(),
            12,
            "exactly the mapped fields"
        );
    }
}

const PROJECT: &str = r#"[connections.src]
plugin = "csv"
grants = { directory = "in" }

[connections.dst]
plugin = "jsonl"
grants = { directory = "out" }

[connection_sets.main]
source = "src"
destination = "dst"

[project]
name = "p"
connection_set = "main"

[[project.tasks]]
source_entity = "contacts"
destination_entity = "contacts"
key = ["id"]
mappings = [{ destination = "id", source = "id" }]
"#;

/// Writes a project file (with its input folder) and runs `weir run` on it.
fn run_project(text: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(dir.path().join("in/contacts.csv"), "id\n1\n2\n").unwrap();
    std::fs::write(dir.path().join("project.toml"), text).unwrap();
    let out = weir(dir.path(), &["run", "project.toml"]);
    (out, dir)
}

fn refused(text: &str) -> String {
    let (out, _dir) = run_project(text);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    stderr(&out)
}

#[test]
fn the_test_project_itself_runs() {
    let (out, dir) = run_project(PROJECT);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let written = std::fs::read_to_string(dir.path().join("out/contacts.jsonl")).unwrap();
    assert_eq!(written, "{\"id\":\"1\"}\n{\"id\":\"2\"}\n");
}

#[test]
fn unknown_key_is_named_with_its_place() {
    let err = refused(&PROJECT.replace("name = \"p\"", "name = \"p\"\nshedule = \"daily\""));
    assert!(
        err.contains("project.toml:15:1: unknown field `shedule`"),
        "{err}"
    );
}

#[test]
fn wrong_type_is_named_with_its_place() {
    let err = refused(&PROJECT.replace("key = [\"id\"]", "key = \"id\""));
    assert!(
        err.contains("project.toml:20:7:") && err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn missing_connection_is_named_with_its_place() {
    let err = refused(&PROJECT.replace("source = \"src\"", "source = \"crm\""));
    assert!(
        err.contains("project.toml:10:10: connection_sets.main.source: no connection named `crm` (defined: dst, src)"),
        "{err}"
    );
}

#[test]
fn missing_plugin_file_is_named_with_its_place() {
    let err = refused(&PROJECT.replace("plugin = \"csv\"", "plugin = \"plugins/crm.wasm\""));
    assert!(err.contains("project.toml:2:10: plugin"), "{err}");
    assert!(
        err.contains("crm.wasm") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_its_place() {
    let (_, dir) = run_project(PROJECT);
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("text.wasm"), b"hello").unwrap();
    for (file, why) in [
        ("core.wasm", "core WebAssembly module"),
        ("text.wasm", "magic bytes"),
    ] {
        let text = PROJECT.replace("plugin = \"jsonl\"", &format!("plugin = \"{file}\""));
        std::fs::write(dir.path().join("project.toml"), text).unwrap();
        let out = weir(dir.path(), &["run", "project.toml"]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.contains("project.toml:6:10: plugin"), "{err}");
        assert!(
            err.contains("is not a WebAssembly component") && err.contains(why),
            "{err}"
        );
    }
}

#[test]
fn an_unknown_bundled_plugin_lists_the_bundled_ones() {
    let err = refused(&PROJECT.replace("plugin = \"csv\"", "plugin = \"cvs\""));
    assert!(
        err.contains(
            "project.toml:2:10: unknown bundled plugin `cvs` (bundled: csv, jsonl, normalize, rest, postgres)"
        ),
        "{err}"
    );
}

#[test]
fn validate_reports_every_problem_and_run_refuses_the_same_project() {
    let text = PROJECT.replace(
        "mappings = [{ destination = \"id\", source = \"id\" }]",
        "mappings = [\n  { destination = \"id\", source = \"idd\" },\n  { destination = \"id\", expr = '.id + 1' },\n]",
    );
    let (run, dir) = run_project(&text);
    assert_eq!(run.status.code(), Some(2), "run refuses: {}", stdout(&run));
    let refused = stderr(&run);
    assert!(refused.contains("is invalid; nothing was run"), "{refused}");
    assert!(
        !dir.path().join("out/contacts.jsonl").exists(),
        "nothing written"
    );

    let human = weir(dir.path(), &["validate", "project.toml"]);
    assert_eq!(human.status.code(), Some(1));
    let out = stdout(&human);
    assert!(
        out.contains("error[source-field-unknown] task `contacts` field `id`"),
        "{out}"
    );
    assert!(out.contains("fix: did you mean `id`?"), "{out}");
    assert!(out.contains("at project.toml:22:3"), "{out}");
    assert!(out.contains("error[mapping-duplicate]"), "{out}");
    assert!(out.contains("error[type-mismatch]"), "{out}");
    // The same report in the refusal of `run`.
    assert!(refused.contains("error[mapping-duplicate]"), "{refused}");

    let json = weir(dir.path(), &["validate", "project.toml", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let codes: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    // The destination file does not exist yet: a warning, not an error.
    assert_eq!(
        codes,
        [
            "entity-unknown",
            "mapping-duplicate",
            "source-field-unknown",
            "type-mismatch"
        ]
    );
    assert_eq!(report["problems"][0]["severity"], "warning");
}

#[test]
fn preview_stages_records_without_writing_and_predicts_insert_then_update() {
    let text = PROJECT.replace(
        "mappings = [{ destination = \"id\", source = \"id\" }]",
        "mappings = [\n  { destination = \"id\", source = \"id\" },\n  { destination = \"n\", expr = 'to_int!(.id) * 10' },\n]",
    );
    let (out, dir) = run_project(&text);
    assert!(out.status.success(), "{}", stderr(&out));
    // A third source record that is not yet in the destination, and one that
    // fails its mapping.
    std::fs::write(dir.path().join("in/contacts.csv"), "id\n1\n2\n3\nx\n").unwrap();
    let before = std::fs::read(dir.path().join("out/contacts.jsonl")).unwrap();
    let preview = weir(dir.path(), &["preview", "project.toml", "--limit", "10"]);
    let shown = stdout(&preview);
    assert!(preview.status.success(), "{shown}{}", stderr(&preview));
    assert!(shown.contains("update  1  id=\"1\" n=10"), "{shown}");
    assert!(shown.contains("update  2  id=\"2\" n=20"), "{shown}");
    assert!(shown.contains("insert  3  id=\"3\" n=30"), "{shown}");
    assert!(
        shown.contains("reject  x  [map]") && shown.contains("to_int!(.id)"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("out/contacts.jsonl")).unwrap(),
        before,
        "nothing written"
    );
}

/// The issue's "source returning garbage": a CSV export with invalid UTF-8, a
/// value of the wrong type in a typed column, a non-numeric key and an empty key.
/// Each bad record is a record error naming its place (line, field); the good ones
/// are upserted; the execution is a Warning, not a crash or an Error.
#[test]
fn a_source_returning_garbage_costs_only_those_records_each_named_by_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(
        dir.path().join("in/people.csv"),
        b"id,name,amount\n1,Ada,10\n,NoKey,5\n3,Bad\xff\xfeName,7\nabc,WrongType,8\n5,Grace,notanumber\n6,Linus,12\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        r#"[connections.src]
plugin = "csv"
grants = { directory = "in" }
config = { types = "id:integer,amount:integer" }

[connections.dst]
plugin = "jsonl"
grants = { directory = "out" }

[connection_sets.s]
source = "src"
destination = "dst"

[project]
name = "garbage"
connection_set = "s"

[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [
  { destination = "id", source = "id" },
  { destination = "name", source = "name" },
  { destination = "amount", source = "amount" },
]
"#,
    )
    .unwrap();
    let out = weir(dir.path(), &["run", "p.toml"]);
    let text = stdout(&out);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(text.contains("status:   Warning"), "{text}");
    assert!(
        text.contains("read 6, inserted 2, updated 0, unchanged 0, failed 4"),
        "{text}"
    );
    for expected in [
        "(line 4) field `name`: column `name`: the value is not UTF-8 text",
        "(line 5) field `id`: column `id`: `abc` is not an integer",
        "(line 6) field `amount`: column `amount`: `notanumber` is not an integer",
        "field `id`: key field `id` is empty",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let written = std::fs::read_to_string(dir.path().join("out/people.jsonl")).unwrap();
    assert_eq!(
        written,
        "{\"id\":1,\"name\":\"Ada\",\"amount\":10}\n{\"id\":6,\"name\":\"Linus\",\"amount\":12}\n"
    );
}

/// `executions prune` says its rule, keeps what any rule keeps, and lists what would go
/// with `--dry-run` (an administrator lost 95 young executions to `--keep-last 3 --days 30`).
#[test]
fn prune_keeps_what_any_rule_keeps_and_dry_run_deletes_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let demo = weir(cwd.path(), &["demo"]);
    assert!(demo.status.success(), "{}", stderr(&demo));
    let data = ["--data-dir", "weir-demo/weir-data"];
    let with = |args: &[&str]| weir(cwd.path(), &[&data[..], args].concat());
    for _ in 0..4 {
        let run = with(&["run", "contacts-sync"]);
        assert!(run.status.success(), "{}", stderr(&run));
    }
    let listed = |cmd: &Output| -> usize {
        stdout(cmd)
            .lines()
            .filter(|l| l.contains("contacts-sync"))
            .count()
    };
    assert_eq!(listed(&with(&["executions", "list"])), 5);

    let both = with(&[
        "executions",
        "prune",
        "--keep-last",
        "2",
        "--days",
        "30",
        "--dry-run",
    ]);
    assert!(both.status.success(), "{}", stderr(&both));
    let out = stdout(&both);
    assert!(
        out.contains("rule: keep an execution if it is among the newest 2 of its project or younger than 30 days"),
        "{out}"
    );
    assert!(out.contains("would prune 0 executions"), "{out}");

    let dry = with(&["executions", "prune", "--keep-last", "2", "--dry-run"]);
    let out = stdout(&dry);
    assert_eq!(out.matches("would delete execution").count(), 3, "{out}");
    for id in 1..=3 {
        assert!(
            out.contains(&format!("would delete execution {id} of contacts-sync")),
            "{out}"
        );
    }
    assert_eq!(
        listed(&with(&["executions", "list"])),
        5,
        "a dry run deleted"
    );

    let kept = with(&["executions", "prune", "--keep-last", "2", "--days", "30"]);
    assert!(
        stdout(&kept).contains("pruned 0 executions"),
        "{}",
        stdout(&kept)
    );
    let pruned = with(&["executions", "prune", "--keep-last", "2"]);
    assert!(
        stdout(&pruned).contains("pruned 3 executions"),
        "{}",
        stdout(&pruned)
    );
    assert_eq!(listed(&with(&["executions", "list"])), 2);

    let help = stdout(&with(&["executions", "prune", "--help"]));
    assert!(help.contains("kept if ANY rule given keeps it"), "{help}");
    assert!(help.contains("--dry-run"), "{help}");
}

/// A folder with `slow.toml`: 3,000 records read slowly from testkit into jsonl (`out/`),
/// batches of 100, so a signal lands mid-run.
fn slow_run_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let testkit = common::plugin_path("testkit-connector");
    std::fs::write(
        dir.path().join("slow.toml"),
        format!(
            r#"[connections.src]
plugin = "{}"
config = {{ count = "3000", read_spin = "40000000" }}

[connections.dst]
plugin = "jsonl"
grants = {{ directory = "out" }}

[connection_sets.main]
source = "src"
destination = "dst"

[project]
name = "slow"
connection_set = "main"
batch_size = 100

[[project.tasks]]
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [{{ destination = "id", source = "id" }}, {{ destination = "email", source = "email" }}]
"#,
            testkit.display()
        ),
    )
    .unwrap();
    dir
}

/// The writer's temporary files in a destination folder (`.<file>….tmp`).
fn temporary_files(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n.contains(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// SIGTERM during `weir run FILE`: the batch in hand is finished and committed, the run
/// ends interrupted (exit 3), and the destination folder keeps no temporary files; a
/// run afterwards completes with every record once (issue 21: nothing left behind).
#[test]
fn sigterm_stops_a_run_at_a_batch_boundary_and_leaves_no_temporary_files() {
    let dir = slow_run_project();
    let out = dir.path().join("out");
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "slow.toml", "--json"])
        .current_dir(dir.path())
        .env_remove("WEIR_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-write: the writer's logs of new records exist.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while temporary_files(&out).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let done = child.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&done.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&done), stderr(&done)));
    assert_eq!(done.status.code(), Some(3), "{report}");
    let task = &report["tasks"][0];
    assert_eq!(task["interrupted"], true, "{report}");
    let inserted = task["counts"]["inserted"].as_u64().unwrap();
    assert!(inserted < 3000, "stopped before the end: {report}");
    assert_eq!(
        temporary_files(&out),
        Vec::<String>::new(),
        "temporary files left"
    );
    let lines = |out: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("people.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("complete JSON lines only"))
            .collect()
    };
    assert_eq!(
        lines(&out).len() as u64,
        inserted,
        "what was counted is what is there"
    );

    // The next run completes: every record once.
    let again = weir(dir.path(), &["run", "slow.toml"]);
    assert!(
        again.status.success(),
        "{}{}",
        stdout(&again),
        stderr(&again)
    );
    let ids: std::collections::HashSet<i64> = lines(&out)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!((lines(&out).len(), ids.len()), (3000, 3000));
    assert!(temporary_files(&out).is_empty());
}

/// SIGKILL during `weir run FILE` gives the writer no chance to clean up: whatever
/// temporary files it had are gone once the next run has run, which completes with
/// every record once (issue 21: an interrupted run leaves nothing behind).
#[test]
fn sigkill_leaves_no_temporary_files_after_the_next_run() {
    let dir = slow_run_project();
    let out = dir.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "slow.toml"])
        .current_dir(dir.path())
        .env_remove("WEIR_DATA_DIR")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while temporary_files(&out).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let again = weir(dir.path(), &["run", "slow.toml"]);
    assert!(
        again.status.success(),
        "{}{}",
        stdout(&again),
        stderr(&again)
    );
    assert_eq!(
        temporary_files(&out),
        Vec::<String>::new(),
        "temporary files left"
    );
    let text = std::fs::read_to_string(out.join("people.jsonl")).unwrap();
    let ids: std::collections::HashSet<i64> = text
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).expect("complete JSON lines");
            r["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!((text.lines().count(), ids.len()), (3000, 3000));
}

/// The key index's memory budget is the administrator's (`--index-memory-mb`,
/// `WEIR_INDEX_MEMORY_MB`): a small one still runs and re-syncs correctly; one
/// below the floor is refused naming the option, before anything runs.
#[test]
fn the_index_memory_budget_is_set_on_the_command_line_and_checked() {
    let cwd = tempfile::tempdir().unwrap();
    let small = weir(cwd.path(), &["--index-memory-mb", "8", "demo"]);
    assert!(small.status.success(), "{}", stderr(&small));
    let again = weir(cwd.path(), &["--index-memory-mb", "8", "demo"]);
    let out = stdout(&again);
    assert!(
        out.contains("read 5000, inserted 0, updated 0, unchanged 5000, failed 0"),
        "{out}"
    );
    let refused = weir(cwd.path(), &["--index-memory-mb", "2", "demo"]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("--index-memory-mb"), "{err}");
}
