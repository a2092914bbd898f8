//! The data directory's disk: full at start, filling up mid-run, read-only, and a
//! database snapshot cut short by a full disk. Nothing stored may be lost.
//!
//! Each test runs in a private mount namespace (`unshare`) on a small tmpfs mounted
//! over the data directory, so it can fill a real file system without touching the
//! machine's: the test re-runs itself inside `unshare -m` (as root) or
//! `unshare -rm` (otherwise), and the tmpfs disappears with that process.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{people_project_toml, plugin_path};

const KEY: &str = "correct horse battery staple";
const INSIDE: &str = "WEIR_DISK_TEST_INSIDE";

/// Runs `test` (this file's test of that name) in a private mount namespace and
/// fails if it fails there. Returns true when already inside (run the body).
fn inside_namespace(test: &str) -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return true;
    }
    let me = std::env::current_exe().unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let out = Command::new("unshare")
        .arg(if root { "-m" } else { "-rm" })
        .arg("--propagation")
        .arg("private")
        .arg(&me)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(INSIDE, "1")
        .output()
        .expect("run unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test} failed in its mount namespace:\n{text}"
    );
    false
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scenario: a work directory, a tmpfs data directory, two connections and a
/// project `p` (testkit source of `count` records → jsonl file outside the tmpfs).
struct Scene {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
    /// `WEIR_MIN_FREE_MB` for every command (None: the default).
    min_free_mb: Option<&'static str>,
}

impl Scene {
    fn new(tmpfs_size: &str, count: u64, read_spin: u64) -> Scene {
        Scene::with_min_free(tmpfs_size, count, read_spin, None)
    }

    fn with_min_free(
        tmpfs_size: &str,
        count: u64,
        read_spin: u64,
        min_free_mb: Option<&'static str>,
    ) -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={tmpfs_size}"),
                "tmpfs",
                data.to_str().unwrap(),
            ],
        );
        let scene = Scene {
            _tmp: tmp,
            dir,
            data,
            min_free_mb,
        };
        let testkit = plugin_path("testkit-connector").display().to_string();
        scene.ok(&[
            "connection",
            "add",
            "src",
            "--plugin",
            &testkit,
            "--config",
            &format!("count={count}"),
            "--config",
            &format!("read_spin={read_spin}"),
        ]);
        scene.ok(&[
            "connection",
            "add",
            "dst",
            "--plugin",
            "jsonl",
            "--directory",
            "out",
        ]);
        std::fs::write(scene.dir.join("p.toml"), people_project_toml("p", 100)).unwrap();
        scene.ok(&["project", "apply", "-f", "p.toml"]);
        scene
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
        c.args(args)
            .current_dir(&self.dir)
            .env("WEIR_SECRET_KEY", KEY)
            .env("WEIR_DATA_DIR", &self.data)
            .env("NO_COLOR", "1")
            .env_remove("WEIR_MIN_FREE_MB");
        if let Some(mb) = self.min_free_mb {
            c.env("WEIR_MIN_FREE_MB", mb);
        }
        c
    }

    fn weir(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.weir(args);
        assert!(
            out.status.success(),
            "weir {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `weir args`, expecting failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.weir(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "weir {args:?} should have failed");
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    fn executions(&self) -> Vec<serde_json::Value> {
        let list = self.ok(&["executions", "list", "--json"]);
        serde_json::from_str::<serde_json::Value>(&list)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    fn free_bytes(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.data)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Fills the data directory's file system until `leave` bytes are free.
    fn fill_leaving(&self, leave: u64) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.data.join("filler")).unwrap();
        let chunk = vec![0u8; 1 << 20];
        loop {
            let free = self.free_bytes();
            if free <= leave {
                break;
            }
            let n = ((free - leave) as usize).min(chunk.len());
            if f.write_all(&chunk[..n]).is_err() {
                break;
            }
        }
        f.sync_all().ok();
    }

    fn unfill(&self) {
        std::fs::remove_file(self.data.join("filler")).unwrap();
    }

    fn ids_written(&self) -> (usize, usize) {
        let text = std::fs::read_to_string(self.dir.join("out/people.jsonl")).unwrap_or_default();
        let mut ids = HashSet::new();
        let mut lines = 0;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            ids.insert(v["id"].to_string());
            lines += 1;
        }
        (lines, ids.len())
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.data).status();
    }
}

fn data_dir_text(scene: &Scene) -> String {
    scene.data.display().to_string()
}

#[test]
fn a_data_directory_low_on_space_is_refused_at_start_and_nothing_stored_is_lost() {
    if !inside_namespace(
        "a_data_directory_low_on_space_is_refused_at_start_and_nothing_stored_is_lost",
    ) {
        return;
    }
    let scene = Scene::new("128m", 50, 0);
    assert!(scene.ok(&["run", "p"]).contains("status:   Completed"));

    scene.fill_leaving(10 << 20);
    let err = scene.fails(&["run", "p"]);
    println!("low space at start: {}", err.trim());
    assert!(err.contains(&data_dir_text(&scene)), "{err}");
    assert!(err.contains("MiB free, below the 64 MiB"), "{err}");
    // Reading the history opens the store, which sled may write to: refused alike.
    let err = scene.fails(&["executions", "list"]);
    assert!(err.contains("below the 64 MiB"), "{err}");

    scene.unfill();
    let list = scene.executions();
    assert_eq!(list.len(), 1, "the refused run left no trace: {list:?}");
    assert_eq!(list[0]["status"], "Completed");
    assert_eq!(list[0]["inserted"], 50);
    assert!(scene.ok(&["run", "p"]).contains("status:   Completed"));
    assert_eq!(scene.executions().len(), 2);
}

#[test]
fn a_read_only_data_directory_is_refused_by_name_and_nothing_stored_is_lost() {
    if !inside_namespace("a_read_only_data_directory_is_refused_by_name_and_nothing_stored_is_lost")
    {
        return;
    }
    let scene = Scene::new("128m", 20, 0);
    assert!(scene.ok(&["run", "p"]).contains("status:   Completed"));
    let data = data_dir_text(&scene);
    sh("mount", &["-o", "remount,ro", &data]);
    for args in [&["run", "p"][..], &["executions", "list"][..]] {
        let err = scene.fails(args);
        println!("read-only, weir {args:?}: {}", err.trim());
        assert!(err.contains(&data), "{err}");
        assert!(err.contains("not writable"), "{err}");
        assert!(err.contains("read-only"), "{err}");
    }
    sh("mount", &["-o", "remount,rw", &data]);
    let list = scene.executions();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["status"], "Completed");
    assert!(scene.ok(&["run", "p"]).contains("status:   Completed"));
}

#[test]
fn a_disk_filling_up_mid_run_stops_the_execution_at_a_checkpoint_and_the_next_run_resumes() {
    if !inside_namespace(
        "a_disk_filling_up_mid_run_stops_the_execution_at_a_checkpoint_and_the_next_run_resumes",
    ) {
        return;
    }
    const COUNT: usize = 20_000;
    let scene = Scene::new("128m", COUNT as u64, 30_000_000);
    let mut child = scene
        .command(&["run", "p", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while scene.ids_written().0 < 2_000 {
        assert!(child.try_wait().unwrap().is_none(), "finished too soon");
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
    }
    let filled_at = Instant::now();
    scene.fill_leaving(10 << 20);
    let out = child.wait_with_output().unwrap();
    let stopped_after = filled_at.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run should fail: {stderr}");
    let written_when_stopped = scene.ids_written().0;
    assert!(
        written_when_stopped < COUNT,
        "stopped mid-run ({written_when_stopped})"
    );

    scene.unfill();
    let list = scene.executions();
    let first = &list[0];
    println!(
        "stopped {stopped_after:?} after the disk filled, {written_when_stopped} records at the destination: {first}"
    );
    assert_eq!(first["status"], "Error", "{first}");
    let error = first["error"].as_str().unwrap();
    assert!(error.contains("below the 64 MiB"), "{first}");
    assert!(
        error.starts_with("interrupted:") && error.contains("resumes from the last checkpoint"),
        "{first}"
    );
    let committed = first["inserted"].as_u64().unwrap();
    assert!(committed >= 1_000, "{first}");

    let resumed = scene.ok(&["run", "p", "--json"]);
    let resumed: serde_json::Value = serde_json::from_str(&resumed).unwrap();
    assert_eq!(resumed["report"]["status"], "Completed", "{resumed}");
    let read_again = resumed["report"]["tasks"][0]["counts"]["read"]
        .as_u64()
        .unwrap();
    assert!(
        read_again < COUNT as u64,
        "resumed from the committed cursor, not from the start ({read_again} read)"
    );
    let (lines, distinct) = scene.ids_written();
    assert_eq!(distinct, COUNT, "every record arrived");
    assert_eq!(lines, COUNT, "none twice");
}

#[test]
fn a_snapshot_cut_short_by_a_full_disk_does_not_cost_the_history() {
    if !inside_namespace("a_snapshot_cut_short_by_a_full_disk_does_not_cost_the_history") {
        return;
    }
    // The free-space guard off, so sled itself meets the full disk.
    let scene = Scene::with_min_free("8m", 20, 0, Some("0"));
    assert!(scene.ok(&["run", "p"]).contains("status:   Completed"));
    scene.fill_leaving(0);
    for _ in 0..3 {
        let out = scene.weir(&["run", "p"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(!err.contains("panicked"), "{err}");
        println!("disk full, guard off: {}", err.lines().last().unwrap_or(""));
    }
    scene.unfill();
    let list = scene.executions();
    let completed: Vec<_> = list.iter().filter(|e| e["status"] == "Completed").collect();
    assert_eq!(completed.len(), 1, "the first run is still there: {list:?}");
    assert!(scene.ok(&["run", "p"]).contains("status:   Completed"));
}
