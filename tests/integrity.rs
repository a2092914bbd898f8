//! Nothing lost while a run says Completed: one writer per destination across
//! processes, a destination file changed under a run, a source file still being
//! written, a source that lies about its types, and counts that say only what the
//! destination holds. Each case with a real second process where one is involved.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{run, task_error, testkit_project};
use weir_host::engine::Status;

fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env_remove("WEIR_DATA_DIR");
    c
}

/// A CSV of `ids` (`id,name`), in `dir/contacts.csv`.
fn write_contacts(dir: &Path, ids: std::ops::Range<u64>, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = String::from("id,name\n");
    for id in ids {
        text.push_str(&format!("{id},{name} {id}\n"));
    }
    std::fs::write(dir.join("contacts.csv"), text).unwrap();
}

/// A project file: `source` (CSV folder) → `out` (JSON Lines folder), task
/// `contacts` keyed on `id`.
fn project_file(dir: &Path, name: &str, source: &Path, out: &Path) -> PathBuf {
    let text = format!(
        r#"[connections.src]
plugin = "csv"
grants = {{ directory = "{source}" }}
config = {{ types = "id:integer" }}

[connections.out]
plugin = "jsonl"
grants = {{ directory = "{out}" }}

[connection_sets.main]
source = "src"
destination = "out"

[project]
name = "{name}"
connection_set = "main"
batch_size = 1000

[[project.tasks]]
name = "contacts"
source_entity = "contacts"
destination_entity = "contacts"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
]
"#,
        source = source.display(),
        out = out.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn report_of(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every line of a JSON Lines file parsed (a torn line fails the test).
fn ids_in(file: &Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("torn line {l:?}: {e}"));
            v["id"].as_u64().unwrap()
        })
        .collect()
}

/// The issue's first case: two `weir run`s of two projects into one JSON Lines
/// file, at once. The test holds the destination while both start, so both must
/// wait (their overlap is certain, not left to timing); released, they take turns,
/// the second merging into what the first wrote: both Completed, every record of
/// both present once, no torn line.
#[test]
fn two_processes_writing_one_destination_take_turns_and_lose_nothing() {
    use std::io::{BufRead, BufReader};
    use weir_host::engine::lock::{DestinationTarget, lock_destination};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    write_contacts(&dir.path().join("a"), 1..60_001, "A");
    write_contacts(&dir.path().join("b"), 60_001..120_001, "B");
    let a = project_file(dir.path(), "a", &dir.path().join("a"), &out);
    let b = project_file(dir.path(), "b", &dir.path().join("b"), &out);
    let project = weir_host::project::Project::load(&a).unwrap();
    let target = DestinationTarget::of(&project.destination, "contacts").unwrap();
    let held = lock_destination(&target, "the test", Duration::ZERO, None).unwrap();
    let spawn = |project: &Path| {
        weir()
            .args(["--data-dir"])
            .arg(dir.path().join("data"))
            .args(["run", "--json"])
            .arg(project)
            .env("WEIR_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut children = [spawn(&a), spawn(&b)];
    let (tx, rx) = std::sync::mpsc::channel();
    let readers: Vec<_> = children
        .iter_mut()
        .map(|child| {
            let stderr = child.stderr.take().unwrap();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut all = String::new();
                for line in BufReader::new(stderr).lines() {
                    let line = line.unwrap();
                    if line.contains("waiting for the destination") {
                        let _ = tx.send(());
                    }
                    all.push_str(&line);
                    all.push('\n');
                }
                all
            })
        })
        .collect();
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(120))
            .expect("both runs wait while the destination is held");
    }
    drop(held);
    let [first, second] = children.map(|c| c.wait_with_output().unwrap());
    let logs: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let (ra, rb) = (report_of(&first), report_of(&second));
    assert_eq!(ra["status"], "Completed", "{ra}\n{}", logs[0]);
    assert_eq!(rb["status"], "Completed", "{rb}\n{}", logs[1]);
    assert!(first.status.success() && second.status.success());
    for log in &logs {
        assert!(log.contains("the test"), "the holder is named: {log}");
    }
    let ids = ids_in(&out.join("contacts.jsonl"));
    assert_eq!(ids.len(), 120_000, "every record of both runs, once");
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique, (1..120_001).collect());
    assert!(
        std::fs::read_dir(&out).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")),
        "no temporary file left"
    );
}

/// While another execution holds the destination, a run waits at most its wait and
/// then ends in Error naming the holder — writing nothing.
#[test]
fn a_run_that_cannot_get_its_destination_says_who_holds_it() {
    use weir_host::engine::lock::{DestinationTarget, lock_destination};
    use weir_host::engine::{Engine, NoRecorder, Quiet, RunOptions};
    use weir_host::project::Project;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    write_contacts(&dir.path().join("a"), 1..101, "A");
    let project =
        Project::load(&project_file(dir.path(), "a", &dir.path().join("a"), &out)).unwrap();
    let target = DestinationTarget::of(&project.destination, "contacts").unwrap();
    let held = lock_destination(
        &target,
        "execution 41 of project `other` (pid 1)",
        Duration::ZERO,
        None,
    )
    .unwrap();
    let options = RunOptions {
        destination_wait: Some(Duration::from_millis(300)),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let report = Engine::new(common::runtime())
        .execute(&project, &options, &mut Quiet, &mut NoRecorder)
        .unwrap();
    assert_eq!(report.status, Status::Error);
    let error = task_error(&report);
    assert!(
        error.contains("is being written by execution 41 of project `other` (pid 1)"),
        "{error}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!out.join("contacts.jsonl").exists(), "nothing written");
    drop(held);
    // Released: the next run goes through.
    let report = Engine::new(common::runtime())
        .execute(&project, &options, &mut Quiet, &mut NoRecorder)
        .unwrap();
    assert_eq!(report.status, Status::Completed, "{report}");
}

/// A real second process appends to the destination file all through a run that
/// rewrites it (every key is an update with new values): the run ends in Error naming the change,
/// and every appended line is still there, in order, none torn.
#[test]
fn an_appender_during_a_run_keeps_every_line_and_the_run_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    write_contacts(&dir.path().join("a"), 1..60_001, "A");
    let a = project_file(dir.path(), "a", &dir.path().join("a"), &out);
    let run_a = || {
        weir()
            .args(["--data-dir"])
            .arg(dir.path().join("data"))
            .args(["run", "--json"])
            .arg(&a)
            .output()
            .unwrap()
    };
    assert_eq!(report_of(&run_a())["status"], "Completed");
    let file = out.join("contacts.jsonl");
    // Appends a line every 2 ms until killed: ids from 1,000,001 up.
    let mut appender = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i=1000001; while true; do echo \"{{\\\"id\\\":$i,\\\"name\\\":\\\"appended\\\"}}\" >> '{}'; i=$((i+1)); sleep 0.002; done",
            file.display()
        ))
        .spawn()
        .unwrap();
    // Every record changes (a run of the same values would write nothing, and
    // so have nothing to protect).
    write_contacts(&dir.path().join("a"), 1..60_001, "B");
    std::thread::sleep(Duration::from_millis(100));
    let second = run_a();
    std::thread::sleep(Duration::from_millis(50));
    appender.kill().unwrap();
    appender.wait().unwrap();
    let report = report_of(&second);
    assert_eq!(report["status"], "Error", "{report}");
    let text = report.to_string();
    assert!(
        text.contains("grew (another program appended to it)"),
        "{text}"
    );
    assert!(text.contains("it was not replaced"), "{text}");
    // Counts say only what the destination holds: nothing of this run.
    assert_eq!(report["tasks"][0]["counts"]["updated"], 0, "{report}");
    assert_eq!(report["tasks"][0]["counts"]["inserted"], 0, "{report}");
    assert!(
        text.contains(
            "60000 records sent to the destination since the last checkpoint were not committed"
        ),
        "{text}"
    );
    let ids = ids_in(&file);
    let appended: Vec<u64> = ids.iter().copied().filter(|i| *i > 1_000_000).collect();
    assert!(appended.len() > 10, "the appender ran during the run");
    let expected: Vec<u64> = (1_000_001..1_000_001 + appended.len() as u64).collect();
    assert_eq!(appended, expected, "every appended line kept, none lost");
    assert_eq!(ids.len(), 60_000 + appended.len());
}

/// An incremental CSV task meets a last line another program is still writing
/// (`3,Car` of `3,Carol`): it is not read, the run says Warning, the committed
/// cursor stays before it, and the next run reads it whole — the destination never
/// holds `Car`.
#[test]
fn a_half_written_last_line_is_read_whole_by_the_next_run() {
    use weir_host::engine::Quiet;
    use weir_host::service::Service;
    use weir_host::store::{Store, Trigger};
    let dir = tempfile::tempdir().unwrap();
    let (src, out) = (dir.path().join("src"), dir.path().join("out"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(src.join("contacts.csv"), "id,name\n1,Ada\n2,Bo\n3,Car").unwrap();
    let text = std::fs::read_to_string(project_file(dir.path(), "inc", &src, &out))
        .unwrap()
        .replace("key = [\"id\"]", "key = [\"id\"]\nincremental = true");
    let svc = Service::new(
        Store::open(&dir.path().join("store"), None).unwrap(),
        common::runtime(),
    );
    svc.apply_project_text(
        &dir.path().join("inc.toml"),
        &text,
        dir.path(),
        &weir_host::project::EnvPolicy::default(),
    )
    .unwrap();
    let (_, first) = svc.run("inc", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(first.status, Status::Warning, "{first}");
    let failure = &first.tasks[0].failures[0];
    assert_eq!(failure.position.as_deref(), Some("line 4"));
    assert!(failure.message.contains("no line end yet"), "{failure}");
    let names = |file: &Path| -> Vec<String> {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(names(&out.join("contacts.jsonl")), ["Ada", "Bo"]);
    // The writer finishes the line; the next incremental run starts before it.
    std::fs::write(src.join("contacts.csv"), "id,name\n1,Ada\n2,Bo\n3,Carol\n").unwrap();
    let (_, second) = svc.run("inc", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(second.status, Status::Completed, "{second}");
    assert_eq!(second.tasks[0].counts.read, 1, "only the finished line");
    assert_eq!(names(&out.join("contacts.jsonl")), ["Ada", "Bo", "Carol"]);
}

/// A source that declares `age` an integer and sends the text `abc`: that record
/// fails at pull with field, declared type and value; the others are written.
#[test]
fn a_source_lying_about_a_type_fails_only_those_records() {
    let mut project = testkit_project(30);
    project.source = project
        .source
        .clone()
        .with_config("extra_fields", "age:integer")
        .with_config("malform_read", "lying-type");
    let report = run(&project);
    assert_eq!(report.status, Status::Warning, "{report}");
    let counts = report.tasks[0].counts;
    assert_eq!(counts.failed, 1, "{report}");
    assert_eq!(counts.inserted, 29, "{report}");
    let failure = &report.tasks[0].failures[0];
    assert_eq!(failure.field.as_deref(), Some("age"));
    assert!(
        failure
            .message
            .contains("declared field `age` as integer, but sent text `abc`"),
        "{failure}"
    );
    assert_eq!(failure.key.as_deref(), Some("1"), "{failure}");
}

/// The destination edited by hand between two runs (a line removed from the
/// middle, a value changed to a longer one, a line appended), past the size
/// where the writer's key index spills to disk and is kept for the next run: the
/// next run does not trust positions that moved. Every key is there exactly
/// once, the edited value is set back from the source, the removed record comes
/// back, and the appended line stays.
#[test]
fn a_destination_edited_between_runs_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 300_000u64;
    write_contacts(&dir.path().join("a"), 1..n + 1, "A");
    let a = project_file(dir.path(), "a", &dir.path().join("a"), &out);
    let run_a = || {
        let out = weir()
            .args(["--data-dir"])
            .arg(dir.path().join("data"))
            .args(["run", "--json"])
            .arg(&a)
            .output()
            .unwrap();
        report_of(&out)
    };
    let first = run_a();
    assert_eq!(first["status"], "Completed", "{first}");
    // An unchanged re-run keeps the file and its index as they are.
    let second = run_a();
    assert_eq!(second["status"], "Completed", "{second}");
    assert_eq!(second["tasks"][0]["counts"]["inserted"], 0, "{second}");

    let file = out.join("contacts.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut edited = String::new();
    for line in text.lines() {
        if line.contains("\"id\":150000,") {
            continue;
        }
        if line.contains("\"id\":7,") {
            edited.push_str("{\"id\":7,\"name\":\"edited by hand, and longer than before\"}\n");
            continue;
        }
        edited.push_str(line);
        edited.push('\n');
    }
    edited.push_str("{\"id\":999999999,\"name\":\"appended by hand\"}\n");
    std::fs::write(&file, edited).unwrap();

    let third = run_a();
    assert_eq!(third["status"], "Completed", "{third}");
    assert_eq!(third["tasks"][0]["counts"]["inserted"], 1, "{third}");
    let mut ids = ids_in(&file);
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "no key twice");
    let expected: Vec<u64> = (1..n + 1).chain([999_999_999]).collect();
    assert_eq!(ids, expected, "every key once, none lost");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("{\"id\":7,\"name\":\"A 7\"}"),
        "the edit is undone"
    );
    assert!(text.contains("appended by hand"));
}
