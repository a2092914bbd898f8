//! The CLI and the daemon are one system: while `weir serve` holds a data directory,
//! every store command run on it goes through the daemon's API (with the token of
//! `<data-dir>/daemon.json`) and answers exactly as it does when it opens the store
//! itself — same output (modulo times and the folder), same exit codes. A daemon
//! killed without shutdown leaves its file behind; the CLI then opens the store.
//!
//! Real binary, real `weir serve` on 127.0.0.1, the demo's data directory.

mod common;
#[path = "common/serve.rs"]
mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "one system test secret key, long enough";
/// A credential given on stdin: must never appear in any output or log.
const SECRET: &str = "s3cret-value-never-shown-7f1c";
const SECRET_2: &str = "second-secret-never-shown-42aa";

/// A folder with the demo's data directory (`weir-demo/weir-data`, project
/// `contacts-sync`, execution 1) and the demo's input folder, plus one bad row.
struct Scene {
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let demo = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("demo")
            .current_dir(dir.path())
            .env_remove("WEIR_DATA_DIR")
            .env("WEIR_SECRET_KEY", KEY)
            .output()
            .unwrap();
        assert!(demo.status.success(), "{}", text(&demo.stderr));
        std::fs::write(dir.path().join("secret.txt"), format!("{SECRET_2}\n")).unwrap();
        // One bad row from now on: runs end in Warning with a record error to show and
        // to re-run (it failed while read: no stored copy to re-send).
        let csv = dir.path().join("weir-demo/crm-export/contacts.csv");
        let mut text = std::fs::read_to_string(&csv).unwrap();
        text.push_str(
            "abc,Bad,Row,bad@example.com,555 0100,Acme,CTO,Paris,FR,2025-02-10T19:28:00Z\n",
        );
        std::fs::write(&csv, text).unwrap();
        // A project file with a misspelled option: refused with its place.
        let project = std::fs::read_to_string(dir.path().join("weir-demo/project.toml")).unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            project.replace("batch_size", "batch_sise"),
        )
        .unwrap();
        Scene { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.root().join("weir-demo/weir-data")
    }

    /// `weir --data-dir <the demo's> ARGS`, with `stdin` as its standard input.
    fn weir_with_input(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .current_dir(self.root())
            .env_remove("WEIR_DATA_DIR")
            .env("WEIR_SECRET_KEY", KEY)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn weir(&self, args: &[&str]) -> Output {
        self.weir_with_input(args, "")
    }

    /// Starts `weir serve` on the data directory; returns it once it listens.
    fn serve(&self) -> Daemon {
        let log = self.root().join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(self.root())
            .env_remove("WEIR_DATA_DIR")
            .env_remove("WEIR_ADMIN_TOKEN")
            .env("WEIR_SECRET_KEY", KEY)
            .env("WEIR_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let address = serve::listening_address(&mut child);
        Daemon {
            child,
            address,
            log,
        }
    }
}

struct Daemon {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Daemon {
    /// SIGTERM, then wait for the exit (a clean shutdown).
    fn stop(mut self) {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("weir serve did not stop on SIGTERM");
    }

    /// SIGKILL: no shutdown, the daemon file stays behind.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The output with what legitimately differs between two runs masked: the scene's
/// folder, wall-clock times (`2026-12-07 04:31:30`, and unix millis in JSON),
/// durations (`(0.44 s)`) and the plugins' measured times.
fn normalized(out: &str, root: &Path) -> String {
    let out = out.replace(&root.display().to_string(), "<root>");
    let chars: Vec<char> = out.chars().collect();
    let mut result = String::new();
    let mut i = 0;
    let shape_at = |i: usize, shape: &str| -> bool {
        let s: Vec<char> = shape.chars().collect();
        i + s.len() <= chars.len()
            && s.iter().enumerate().all(|(k, c)| match c {
                '9' => chars[i + k].is_ascii_digit(),
                c => chars[i + k] == *c,
            })
    };
    while i < chars.len() {
        let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 13 && (i == 0 || !chars[i - 1].is_ascii_digit()) {
            result.push_str("<millis>");
            i += 13;
        } else if shape_at(i, "9999-99-99 99:99:99") {
            result.push_str("<time>");
            i += 19;
        } else if chars[i] == '('
            && chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
                > 0
        {
            // `(12.34 s)`: a duration.
            let end = chars[i..].iter().position(|c| *c == ')').map(|p| i + p);
            match end {
                Some(e) if chars[i + 1..e].iter().collect::<String>().ends_with(" s") => {
                    result.push_str("(<duration>)");
                    i = e + 1;
                }
                _ => {
                    result.push(chars[i]);
                    i += 1;
                }
            }
        } else {
            result.push(chars[i]);
            i += 1;
        }
    }
    // The plugins' measured times (`0.019 s inside`, `"cpu_micros": 1234`) differ
    // between two runs of the same work, like durations.
    result
        .lines()
        .map(|line| {
            let timed = ["_micros\"", " s inside", "slowest call"];
            if timed.iter().any(|t| line.contains(t)) && !line.contains("timeout_micros") {
                line.split(' ')
                    .map(|w| {
                        let bare = w.trim_end_matches([',', ';', ')']);
                        if !bare.is_empty()
                            && bare.contains(|c: char| c.is_ascii_digit())
                            && bare
                                .chars()
                                .all(|c| c.is_ascii_digit() || c == '.' || c == '(')
                        {
                            "<measured>"
                        } else {
                            w
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if result.ends_with('\n') { "\n" } else { "" }
}

/// Every store command once, in an order where each has something to act on, with the
/// exit code it must have. Ids are the same in both modes: the same steps on the same
/// demo make the same executions.
fn script(plugin: &str) -> Vec<(Vec<String>, &'static str, u8)> {
    let install = ["plugin", "install", plugin];
    let steps: Vec<(&[&str], &'static str, u8)> = vec![
        (&["status"], "", 0),
        (
            &[
                "connection",
                "add",
                "files",
                "--plugin",
                "csv",
                "--directory",
                "weir-demo/crm-export",
                "--secret",
                "token=-",
            ],
            SECRET,
            0,
        ),
        (&["connection", "list"], "", 0),
        (&["connection", "list", "--json"], "", 0),
        (&["connection", "check", "files"], "", 0),
        (
            &[
                "connection",
                "update-credentials",
                "files",
                "--secret",
                "token=@secret.txt",
            ],
            "",
            0,
        ),
        (&["project", "list"], "", 0),
        (&["project", "show", "contacts-sync"], "", 0),
        (
            &["project", "show", "contacts-sync", "--version", "1"],
            "",
            0,
        ),
        (&["project", "apply", "-f", "weir-demo/project.toml"], "", 0),
        (&["validate", "contacts-sync"], "", 0),
        (&["validate", "contacts-sync", "--json"], "", 0),
        (&["run", "contacts-sync"], "", 1),
        (&["executions", "list"], "", 0),
        (
            &["executions", "list", "--status", "warning", "--limit", "1"],
            "",
            0,
        ),
        (
            &[
                "executions",
                "list",
                "--since",
                "1d",
                "--project",
                "contacts-sync",
            ],
            "",
            0,
        ),
        (&["executions", "show", "2"], "", 0),
        (&["executions", "errors", "2"], "", 0),
        (&["executions", "staging", "2", "--limit", "2"], "", 0),
        (&["executions", "rerun", "2"], "", 1),
        (&["executions", "rerun", "2", "--failed-only"], "", 0),
        (
            &[
                "project",
                "pause",
                "contacts-sync",
                "--reason",
                "maintenance",
            ],
            "",
            0,
        ),
        (&["project", "resume", "contacts-sync"], "", 0),
        (
            &["executions", "prune", "--keep-last", "2", "--dry-run"],
            "",
            0,
        ),
        (&["executions", "prune", "--keep-last", "3"], "", 0),
        (&install, "", 0),
        (&["plugin", "list"], "", 0),
        // Failing commands: the same exit codes either way.
        (&["run", "no-such-project"], "", 2),
        (&["project", "apply", "-f", "bad.toml"], "", 2),
        (&["validate", "no-such-project"], "", 2),
        (&["project", "show", "no-such-project"], "", 2),
        (&["executions", "show", "999"], "", 2),
        (&["connection", "check", "no-such-connection"], "", 2),
        (&["connection", "delete", "files"], "", 0),
        (&["connection", "delete", "files"], "", 2),
        (&["project", "delete", "contacts-sync"], "", 0),
        (&["project", "list"], "", 0),
    ];
    steps
        .into_iter()
        .map(|(args, stdin, code)| (args.iter().map(|s| s.to_string()).collect(), stdin, code))
        .collect()
}

/// Runs the script; returns each step's normalized stdout (status excluded: it
/// differs by design) and asserts each exit code.
fn play(scene: &Scene, mode: &str) -> Vec<(String, String)> {
    let plugin = common::plugin_path("testkit-connector");
    let mut outputs = Vec::new();
    for (args, stdin, code) in script(&plugin.display().to_string()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = scene.weir_with_input(&args, stdin);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(
            out.status.code(),
            Some(i32::from(code)),
            "{mode}: weir {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        for secret in [SECRET, SECRET_2] {
            assert!(
                !stdout.contains(secret) && !stderr.contains(secret),
                "{mode}: weir {args:?} printed a secret"
            );
        }
        if args[0] != "status" {
            // A failing command's message counts too.
            let said = if code == 0 {
                stdout
            } else {
                format!("{stdout}{stderr}")
            };
            outputs.push((args.join(" "), normalized(&said, scene.root())));
        }
    }
    outputs
}

#[test]
fn every_store_command_answers_the_same_with_and_without_the_daemon() {
    let alone = Scene::new();
    let without = play(&alone, "without a daemon");

    let held = Scene::new();
    let daemon = held.serve();
    let access = held.data_dir().join("daemon.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&access).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the daemon file is readable by others");
    }
    let token = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&access).unwrap())
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = held.weir(&["status"]);
    let said = text(&status.stdout);
    assert!(status.status.success());
    assert!(
        said.contains(&format!("listening on http://{}", daemon.address)),
        "{said}"
    );
    assert!(
        said.contains(&format!("pid {}", daemon.child.id())),
        "{said}"
    );

    let with = play(&held, "with the daemon");

    // The pause went through the daemon: it holds now, not at its next start.
    let paused = held.weir(&["project", "pause", "contacts-sync"]);
    assert!(
        !paused.status.success(),
        "the project was deleted by the script"
    );
    assert_eq!(without.len(), with.len());
    for ((command, a), (_, b)) in without.iter().zip(&with) {
        assert_eq!(
            a, b,
            "`weir {command}` answered differently through the daemon"
        );
    }
    // What the script shows is real: runs completed, the re-run is linked.
    let find = |cmd: &str| &with.iter().find(|(c, _)| c == cmd).unwrap().1;
    let run = find("run contacts-sync");
    assert!(run.contains("status:   Warning"), "{run}");
    assert!(
        run.contains("record error [pull] task contacts key - (line 5002) field `id`"),
        "{run}"
    );
    let failed_only = find("executions rerun 2 --failed-only");
    assert!(
        failed_only.contains("note: 1 records failed while being read"),
        "{failed_only}"
    );
    assert!(find("executions rerun 2").contains("(re-run of 2)"));
    let refused = find("project apply -f bad.toml");
    assert!(
        refused.contains("bad.toml:") && refused.contains("unknown field `batch_sise`"),
        "{refused}"
    );
    // The secret read from stdin reached the daemon's store (its name only is shown).
    assert!(find("connection list").contains("secrets: token (hidden)"));
    assert!(find("validate contacts-sync").contains("valid"));
    assert!(find("plugin list").contains("testkit"));
    assert!(find("executions prune --keep-last 3").contains("pruned 1 executions"));

    let log = daemon.log();
    assert!(
        log.contains("DEBUG") || log.contains("INFO"),
        "no daemon log captured"
    );
    for secret in [SECRET, SECRET_2, token.as_str()] {
        assert!(
            !log.contains(secret),
            "the daemon logged a secret or its token"
        );
    }
    daemon.stop();
    assert!(
        !access.exists(),
        "a clean shutdown leaves no daemon file behind"
    );
    let after = held.weir(&["status"]);
    assert!(text(&after.stdout).contains("daemon: not running"));
}

#[test]
fn pause_through_the_daemon_applies_at_once() {
    let scene = Scene::new();
    let daemon = scene.serve();
    let token = std::fs::read_to_string(scene.data_dir().join("admin-token")).unwrap();
    let paused = scene.weir(&["project", "pause", "contacts-sync", "--reason", "now"]);
    assert!(paused.status.success(), "{}", text(&paused.stderr));
    let view: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!(
            "http://{}/api/v1/projects/contacts-sync",
            daemon.address
        ))
        .bearer_auth(token.trim())
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(view["paused"], true, "{view}");
    assert_eq!(view["paused_reason"], "now", "{view}");
    daemon.stop();
}

#[test]
fn a_stale_daemon_file_does_not_stop_the_cli() {
    let scene = Scene::new();
    let daemon = scene.serve();
    let pid = daemon.child.id();
    daemon.kill_9();
    let access = scene.data_dir().join("daemon.json");
    assert!(access.exists(), "kill -9 leaves the file behind");

    let status = scene.weir(&["status"]);
    let said = text(&status.stdout);
    assert_eq!(status.status.code(), Some(0));
    assert!(said.contains("daemon: not running"), "{said}");
    assert!(said.contains(&format!("pid {pid}")), "{said}");

    // The run ends in Warning (the scene's bad row): exit code 1, and it was recorded.
    for (args, code) in [
        (&["project", "list"][..], 0),
        (&["connection", "list"][..], 0),
        (&["run", "contacts-sync"][..], 1),
        (&["executions", "show", "2"][..], 0),
        (&["validate", "contacts-sync"][..], 0),
    ] {
        let out = scene.weir(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "weir {args:?} with a stale daemon file: {}",
            text(&out.stderr)
        );
    }
    let missing = scene.weir(&["run", "no-such-project"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn status_without_a_daemon_says_the_cli_opens_the_store() {
    let scene = Scene::new();
    let status = scene.weir(&["status"]);
    let said = text(&status.stdout);
    assert_eq!(status.status.code(), Some(0));
    assert!(said.contains("daemon: not running"), "{said}");
    assert!(said.contains("open the store themselves"), "{said}");
    assert!(!said.contains("left by pid"), "{said}");
}
