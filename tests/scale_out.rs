//! Scale-out over NATS JetStream, end to end with real processes: a `weir serve`
//! coordinator with a `[cluster]` section, `weir worker`s, and a real `nats-server`
//! (on 127.0.0.1, a free port, a temporary store). Every execution ends Completed,
//! every destination holds each record exactly once (count and keys), and the
//! history names the worker that ran it — also when a worker is SIGKILLed mid-run
//! (redelivered, resumed elsewhere from the committed cursor) and when one is
//! paused past its lease and comes back (its checkpoint refused as stale).

mod common;
#[path = "common/nats.rs"]
mod nats;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nats::NatsServer;
use weir_host::service::Service;
use weir_host::store::Store;

const TOKEN: &str = "a-token-for-the-scale-out-tests";
/// The coordinator's store key (stored connections' secrets are sealed in sled).
const STORE_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn store_key() -> weir_host::store::SecretKey {
    weir_host::store::SecretKey::from_material(STORE_KEY).unwrap()
}
/// The lease (JetStream ack wait) the tests configure: short, so a dead worker's
/// execution moves on quickly.
const LEASE_SECS: u64 = 3;

/// A coordinator, its workers and their directories.
struct Cluster {
    tmp: tempfile::TempDir,
    nats: NatsServer,
    serve: Option<Child>,
    addr: String,
    workers: Vec<(String, Child)>,
    http: reqwest::blocking::Client,
    /// `WEIR_CLUSTER_KEY` for every process (`None`: starts travel unsealed).
    key: Option<String>,
    /// No `[cluster]`: the daemon runs executions itself (the benchmark's baseline).
    in_process: bool,
    /// `coordinator_executes = true`: the daemon pulls executions like a worker.
    coordinator_executes: bool,
}

impl Cluster {
    fn new(nats: NatsServer) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["in", "out", "locks", "logs"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        Cluster {
            tmp,
            nats,
            serve: None,
            addr: String::new(),
            workers: Vec::new(),
            http: reqwest::blocking::Client::new(),
            key: None,
            in_process: false,
            coordinator_executes: false,
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    /// Stores project `text` in the coordinator's store (before it starts).
    fn apply(&self, text: &str) {
        let svc = Service::new(
            Store::open(&self.path("data/store"), Some(store_key())).unwrap(),
            common::runtime(),
        );
        svc.apply_project_text(
            &self.path("p.toml"),
            text,
            self.tmp.path(),
            &weir_host::project::EnvPolicy::default(),
        )
        .unwrap();
        svc.store.flush().unwrap();
    }

    /// Stores a testkit source connection `name` with a declared secret.
    fn put_secret_source(&self, name: &str, count: usize, spin: u64, secret: &str) {
        use weir_host::store::{ConnectionState, StoredConnection};
        let svc = Service::new(
            Store::open(&self.path("data/store"), Some(store_key())).unwrap(),
            common::runtime(),
        );
        svc.put_connection(&StoredConnection {
            name: name.into(),
            plugin: common::plugin_path("testkit-connector")
                .display()
                .to_string(),
            config: vec![
                ("count".into(), count.to_string()),
                ("read_spin".into(), spin.to_string()),
            ],
            secrets: vec![("api_secret".into(), secret.into())],
            directory: None,
            http_hosts: Vec::new(),
            http_internal: false,
            state: ConnectionState::Unchecked,
            updated_at: 0,
        })
        .unwrap();
        svc.store.flush().unwrap();
    }

    /// Whether `needle` is in any file under `dir`.
    fn found_under(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return found;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(Cluster::found_under(&path, needle));
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
        found
    }

    fn start_serve(&mut self) {
        let config = self.path("serve.toml");
        let text = if self.in_process {
            "concurrency = 6\n".to_owned()
        } else {
            format!(
                "concurrency = 64\n[cluster]\nnats = \"{}\"\nlease_secs = {LEASE_SECS}\ncoordinator_executes = {}\n",
                self.nats.url(),
                self.coordinator_executes
            )
        };
        std::fs::write(&config, text).unwrap();
        let log = std::fs::File::create(self.path("logs/serve.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        if let Some(key) = &self.key {
            command.env("WEIR_CLUSTER_KEY", key);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(self.path("data"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("WEIR_ADMIN_TOKEN", TOKEN)
            .env("WEIR_SECRET_KEY", STORE_KEY)
            .env("WEIR_LOCK_DIR", self.path("locks"))
            .env("WEIR_LOG", "weir_host=info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        self.addr = first
            .trim()
            .strip_prefix("weir serve: listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {first:?}; its log:\n{}",
                    self.log("serve")
                )
            })
            .to_owned();
        self.serve = Some(child);
    }

    /// SIGKILL of the coordinator.
    fn kill_serve(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn start_worker(&mut self, name: &str) {
        let log = std::fs::File::create(self.path(&format!("logs/{name}.log"))).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        if let Some(key) = &self.key {
            command.env("WEIR_CLUSTER_KEY", key);
        }
        let child = command
            .arg("--data-dir")
            .arg(self.path(&format!("worker-{name}")))
            .args(["worker", "--nats", &self.nats.url(), "--name", name])
            .args(["--concurrency", "2"])
            // One machine: the workers share the destination locks, as the
            // processes of one host do.
            .env("WEIR_LOCK_DIR", self.path("locks"))
            .env("WEIR_LOG", "weir_host=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.workers.push((name.to_owned(), child));
    }

    fn worker_pid(&self, name: &str) -> i32 {
        self.workers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id() as i32)
            .unwrap()
    }

    /// A process's log, without the terminal colours tracing adds.
    fn log(&self, name: &str) -> String {
        let text =
            std::fs::read_to_string(self.path(&format!("logs/{name}.log"))).unwrap_or_default();
        let mut plain = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // An SGR sequence: ESC [ ... m
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }

    fn api(&self, method: reqwest::Method, path: &str) -> serde_json::Value {
        let resp = self
            .http
            .request(method, format!("http://{}/api/v1/{path}", self.addr))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().unwrap()
    }

    fn run(&self, project: &str) -> u64 {
        self.api(reqwest::Method::POST, &format!("projects/{project}/run"))["execution"]
            .as_u64()
            .unwrap()
    }

    fn execution(&self, id: u64) -> serde_json::Value {
        self.api(reqwest::Method::GET, &format!("executions/{id}"))
    }

    fn wait_finished(&self, id: u64, within: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let e = self.execution(id);
            if e["status"] != "Running" {
                return e;
            }
            assert!(
                started.elapsed() < within,
                "execution {id} still running: {e}\n--- serve log:\n{}",
                tail(&self.log("serve"))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The destination's records, parsed.
    fn lines(&self, entity: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path(&format!("out/{entity}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Each of `expected` keys exactly once at the destination, nothing else.
    fn assert_each_once(&self, entity: &str, expected: usize) {
        let records = self.lines(entity);
        // CSV keys are text, testkit's numbers: compared as their digits.
        let ids: HashSet<String> = records
            .iter()
            .map(|r| match &r["id"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        assert_eq!(records.len(), expected, "{entity}: none twice, none lost");
        assert_eq!(ids.len(), expected, "{entity}: every key once");
        let want: HashSet<String> = (1..=expected).map(|i| i.to_string()).collect();
        let strays: Vec<&String> = ids.difference(&want).take(5).collect();
        assert!(
            strays.is_empty(),
            "{entity}: keys not in the source: {strays:?}"
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.workers {
            // SAFETY: signals to children this test started.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(c) = &mut self.serve {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A CSV → JSON Lines project over `in/<name>.csv` and `out/<name>.jsonl`.
fn csv_project(name: &str, batch_size: u32) -> String {
    format!(
        r#"[connections.src-{name}]
plugin = "csv"
grants = {{ directory = "in" }}

[connections.dst-{name}]
plugin = "jsonl"
grants = {{ directory = "out" }}

[connection_sets.main]
source = "src-{name}"
destination = "dst-{name}"

[project]
name = "{name}"
connection_set = "main"
batch_size = {batch_size}

[[project.tasks]]
source_entity = "{name}"
destination_entity = "{name}"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
  {{ destination = "email", source = "email" }},
]
"#
    )
}

fn write_csv(path: &Path, count: usize) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "id,name,email").unwrap();
    for i in 1..=count {
        writeln!(f, "{i},Person {i},person{i}@example.org").unwrap();
    }
    f.flush().unwrap();
}

/// A slow testkit source → JSON Lines project: long enough to kill a worker
/// mid-run (checkpoints every 10 batches of 100).
fn slow_project(name: &str, count: usize, spin: u64) -> String {
    let testkit = common::plugin_path("testkit-connector");
    format!(
        r#"[connections.src-{name}]
plugin = "{testkit}"
config = {{ count = "{count}", read_spin = "{spin}" }}

[connections.dst-{name}]
plugin = "jsonl"
grants = {{ directory = "out" }}

[connection_sets.s]
source = "src-{name}"
destination = "dst-{name}"

[project]
name = "{name}"
connection_set = "s"
batch_size = 100

[[project.tasks]]
source_entity = "people"
destination_entity = "{name}"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
]
"#,
        testkit = testkit.display(),
    )
}

/// Three workers and a coordinator run 30 executions of 20,000 records each.
#[test]
fn three_workers_run_thirty_executions_each_record_once_and_the_history_names_the_worker() {
    const PROJECTS: usize = 30;
    const RECORDS: usize = 20_000;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut cluster = Cluster::new(nats);
    // Starts travel sealed with the cluster key.
    cluster.key = Some("5a".repeat(32));
    for i in 0..PROJECTS {
        let name = format!("p{i:02}");
        write_csv(&cluster.path(&format!("in/{name}.csv")), RECORDS);
        cluster.apply(&csv_project(&name, 500));
    }
    cluster.start_serve();
    for w in ["w1", "w2", "w3"] {
        cluster.start_worker(w);
    }
    let started = Instant::now();
    let ids: Vec<(String, u64)> = (0..PROJECTS)
        .map(|i| {
            let name = format!("p{i:02}");
            let id = cluster.run(&name);
            (name, id)
        })
        .collect();
    let mut used = HashSet::new();
    for (name, id) in &ids {
        let e = cluster.wait_finished(*id, Duration::from_secs(600));
        assert_eq!(e["status"], "Completed", "{name}: {e}");
        let worker = e["worker"].as_str().unwrap_or_else(|| panic!("{e}"));
        assert!(["w1", "w2", "w3"].contains(&worker), "{e}");
        used.insert(worker.to_owned());
        assert_eq!(e["tasks"][0]["read"], RECORDS as u64, "{e}");
        // Upserted once each. (Inserted, unless a worker that lost its lease under
        // load had already written some that its successor then found unchanged.)
        let t = &e["tasks"][0];
        let upserted = ["inserted", "updated", "unchanged"]
            .iter()
            .map(|k| t[*k].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(upserted, RECORDS as u64, "{e}");
        cluster.assert_each_once(name, RECORDS);
    }
    let took = started.elapsed();
    println!(
        "{PROJECTS} executions of {RECORDS} records on 3 workers in {:.1} s; workers used: {used:?}",
        took.as_secs_f64()
    );
    assert!(
        used.len() >= 2,
        "the executions were spread over the workers: {used:?}"
    );
    // The API shows the workers: alive, heart-beating, nothing in hand now.
    let view = cluster.api(reqwest::Method::GET, "workers");
    assert_eq!(view["cluster"], true, "{view}");
    let workers = view["workers"].as_array().unwrap();
    let names: Vec<&str> = workers
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w1", "w2", "w3"], "{view}");
    for w in workers {
        assert_eq!(w["alive"], true, "{view}");
        assert!(w["last_heartbeat"].as_i64().unwrap() > 0, "{view}");
    }
    // `weir executions show` names the worker too (through the daemon).
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--data-dir")
        .arg(cluster.path("data"))
        .args(["executions", "show", &ids[0].1.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("worker:") && ["w1", "w2", "w3"].iter().any(|w| l.ends_with(w))),
        "{text}"
    );
}

/// Waits until `id` has committed a checkpoint (some records inserted) and a
/// worker is named; returns the worker.
fn running_with_checkpoint(cluster: &Cluster, id: u64) -> String {
    let started = Instant::now();
    loop {
        let e = cluster.execution(id);
        assert_eq!(e["status"], "Running", "finished too early: {e}");
        let inserted = e["tasks"][0]["inserted"].as_u64().unwrap_or(0);
        if let (Some(w), true) = (e["worker"].as_str(), inserted >= 1_000) {
            return w.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint: {e}\n{}",
            tail(&cluster.log("serve"))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL of the worker running an execution: JetStream redelivers it after the
/// lease, another worker resumes it from the committed cursor, and the
/// destination holds each record once.
#[test]
fn a_killed_worker_s_execution_finishes_on_another_from_the_committed_cursor() {
    const RECORDS: usize = 20_000;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut cluster = Cluster::new(nats);
    // The source is a stored connection with a secret; starts travel sealed.
    const SECRET: &str = "kill-test-secret-5f1e0c";
    cluster.key = Some("3c".repeat(32));
    cluster.put_secret_source("kit", RECORDS, 20_000_000, SECRET);
    cluster.apply(&slow_project("slow", RECORDS, 20_000_000).replace(
        "[connection_sets.s]\nsource = \"src-slow\"",
        "[connection_sets.s]\nsource = \"kit\"",
    ));
    cluster.start_serve();
    for w in ["k1", "k2"] {
        cluster.start_worker(w);
    }
    let id = cluster.run("slow");
    let first = running_with_checkpoint(&cluster, id);
    let committed = cluster.execution(id)["tasks"][0]["inserted"]
        .as_u64()
        .unwrap();
    // SAFETY: a signal to a child this test started.
    unsafe {
        libc::kill(cluster.worker_pid(&first), libc::SIGKILL);
    }
    let e = cluster.wait_finished(id, Duration::from_secs(300));
    assert_eq!(e["status"], "Completed", "{e}");
    let second = e["worker"].as_str().unwrap();
    assert_ne!(second, first, "finished elsewhere: {e}");
    // Counted once: what the killed worker committed plus what its successor
    // read from the committed cursor on.
    assert_eq!(e["tasks"][0]["read"], RECORDS as u64, "{e}");
    cluster.assert_each_once("slow", RECORDS);
    let resumed_log = cluster.log(second);
    assert!(
        resumed_log.contains("execution pulled") && resumed_log.contains("epoch=2"),
        "the successor took the second lease:\n{}",
        tail(&resumed_log)
    );
    // The secret reached the workers (the source ran) but no worker's disk, log,
    // nor the NATS server's JetStream store.
    for dir in ["worker-k1", "worker-k2", "logs"] {
        let found = Cluster::found_under(&cluster.path(dir), SECRET.as_bytes());
        assert!(found.is_empty(), "the secret was written: {found:?}");
    }
    let found = Cluster::found_under(&cluster.nats.store_dir(), SECRET.as_bytes());
    assert!(found.is_empty(), "the secret is in JetStream: {found:?}");
    println!("killed {first} after {committed} committed; {second} finished it");
}

/// A worker paused (SIGSTOP) past its lease: another worker resumes the execution
/// under a later epoch; resumed (SIGCONT), the paused one's next checkpoint is
/// refused as stale and it records nothing more.
#[test]
fn a_worker_paused_past_its_lease_is_fenced_when_it_comes_back() {
    const RECORDS: usize = 20_000;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut cluster = Cluster::new(nats);
    cluster.apply(&slow_project("paused", RECORDS, 20_000_000));
    cluster.start_serve();
    for w in ["s1", "s2"] {
        cluster.start_worker(w);
    }
    let id = cluster.run("paused");
    let first = running_with_checkpoint(&cluster, id);
    let pid = cluster.worker_pid(&first);
    // SAFETY: signals to a child this test started.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    // The other worker takes it over once the lease ran out.
    let started = Instant::now();
    let second = loop {
        let e = cluster.execution(id);
        if let Some(w) = e["worker"].as_str()
            && w != first
        {
            break w.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not handed over: {e}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let e = cluster.wait_finished(id, Duration::from_secs(300));
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["worker"], second.as_str(), "{e}");
    cluster.assert_each_once("paused", RECORDS);
    // The paused worker's checkpoint after it came back was refused.
    let started = Instant::now();
    while !cluster.log(&first).contains("checkpoint refused as stale") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{first} never tried to checkpoint:\n{}",
            tail(&cluster.log(&first))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cluster.log("serve").contains("stale checkpoint refused"),
        "{}",
        tail(&cluster.log("serve"))
    );
    // Nothing it did after coming back changed the history or the destination.
    std::thread::sleep(Duration::from_secs(1));
    let again = cluster.execution(id);
    assert_eq!(again["tasks"], e["tasks"], "history unchanged");
    assert_eq!(again["worker"], second.as_str());
    cluster.assert_each_once("paused", RECORDS);
}

/// nats-server stopped and started again (its JetStream store kept): executions
/// asked for while it was away are queued by the coordinator and run afterwards;
/// nothing is lost.
#[test]
fn executions_asked_for_while_nats_is_down_run_once_it_is_back() {
    const RECORDS: usize = 5_000;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut cluster = Cluster::new(nats);
    let names: Vec<String> = (0..4).map(|i| format!("q{i}")).collect();
    for name in &names {
        write_csv(&cluster.path(&format!("in/{name}.csv")), RECORDS);
        cluster.apply(&csv_project(name, 500));
    }
    cluster.start_serve();
    for w in ["r1", "r2"] {
        cluster.start_worker(w);
    }
    let before = cluster.run(&names[0]);
    assert_eq!(
        cluster.wait_finished(before, Duration::from_secs(120))["status"],
        "Completed"
    );
    cluster.nats.stop();
    // The API answers at once: the execution is begun in the store; its
    // publication waits for the server.
    let queued: Vec<u64> = names[1..].iter().map(|n| cluster.run(n)).collect();
    std::thread::sleep(Duration::from_secs(3));
    for id in &queued {
        assert_eq!(cluster.execution(*id)["status"], "Running");
    }
    cluster.nats.restart();
    for (name, id) in names[1..].iter().zip(&queued) {
        let e = cluster.wait_finished(*id, Duration::from_secs(180));
        assert_eq!(e["status"], "Completed", "{name}: {e}");
        assert!(e["worker"].as_str().is_some(), "{name}: {e}");
    }
    for name in &names {
        cluster.assert_each_once(name, RECORDS);
    }
}

/// The coordinator SIGKILLed mid-run and started again: the worker keeps asking
/// to checkpoint until it answers; the restarted coordinator's store has marked
/// the execution interrupted (nothing is left Running), the worker is told so and
/// lets go, and the project's next run resumes from the committed cursor — each
/// record once.
#[test]
fn a_coordinator_restarted_mid_run_leaves_nothing_running_and_the_next_run_resumes() {
    const RECORDS: usize = 20_000;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut cluster = Cluster::new(nats);
    cluster.apply(&slow_project("restarted", RECORDS, 20_000_000));
    cluster.start_serve();
    cluster.start_worker("c1");
    let id = cluster.run("restarted");
    running_with_checkpoint(&cluster, id);
    cluster.kill_serve();
    // The worker's checkpoints find no coordinator: it asks again, and waits.
    let started = Instant::now();
    while !cluster.log("c1").contains("the coordinator did not answer") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            tail(&cluster.log("c1"))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.start_serve();
    let e = cluster.wait_finished(id, Duration::from_secs(10));
    assert_eq!(e["status"], "Error", "{e}");
    assert_eq!(e["interrupted"], true, "{e}");
    let next = cluster.run("restarted");
    let resumed = cluster.wait_finished(next, Duration::from_secs(300));
    assert_eq!(resumed["status"], "Completed", "{resumed}");
    assert_eq!(resumed["parent"].as_u64(), Some(id), "{resumed}");
    let read = resumed["tasks"][0]["read"].as_u64().unwrap();
    assert!(
        read < RECORDS as u64,
        "resumed, not restarted (read {read})"
    );
    cluster.assert_each_once("restarted", RECORDS);
}

/// User and system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: a plain libc query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz.max(1))
}

/// A benchmark, not a timed test: executions/s and records/s for 1, 2 and 3
/// workers beside the in-process daemon, in one run, and what the coordinator
/// spends per checkpoint.
/// `cargo test --release -p weir-host --test scale_out -- --ignored --nocapture`
#[test]
#[ignore = "a benchmark; run it with --ignored --nocapture"]
fn bench_executions_per_second_by_number_of_workers() {
    const EXECUTIONS: usize = 12;
    const RECORDS: usize = 20_000;
    let mut rows = Vec::new();
    for workers in [0usize, 1, 2, 3] {
        let Some(nats) = NatsServer::start() else {
            return;
        };
        let mut cluster = Cluster::new(nats);
        cluster.in_process = workers == 0;
        let names: Vec<String> = (0..EXECUTIONS).map(|i| format!("b{i:02}")).collect();
        for name in &names {
            write_csv(&cluster.path(&format!("in/{name}.csv")), RECORDS);
            cluster.apply(&csv_project(name, 500));
        }
        // Warm every process's compiled-plugin cache first: compiling csv and
        // jsonl is a one-off cost, not throughput.
        let warm = cluster.path("warm");
        std::fs::create_dir_all(warm.join("in")).unwrap();
        write_csv(&warm.join("in/w.csv"), 1);
        std::fs::write(warm.join("w.toml"), csv_project("w", 10)).unwrap();
        let names_of_workers: Vec<String> = (0..workers).map(|w| format!("bw{w}")).collect();
        let mut dirs = vec![cluster.path("data")];
        dirs.extend(
            names_of_workers
                .iter()
                .map(|w| cluster.path(&format!("worker-{w}"))),
        );
        for dir in &dirs {
            let out = Command::new(env!("CARGO_BIN_EXE_weir"))
                .arg("--data-dir")
                .arg(dir.join("warm"))
                .args(["run", "w.toml"])
                .current_dir(&warm)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let cache = dir.join("warm/cache");
            std::fs::create_dir_all(dir).unwrap();
            std::fs::rename(&cache, dir.join("cache")).unwrap();
        }
        cluster.start_serve();
        for w in &names_of_workers {
            cluster.start_worker(w);
        }
        std::thread::sleep(Duration::from_secs(1));
        let serve_pid = cluster.serve.as_ref().unwrap().id();
        let cpu_before = cpu_time(serve_pid);
        let started = Instant::now();
        let ids: Vec<u64> = names.iter().map(|n| cluster.run(n)).collect();
        for id in &ids {
            let e = cluster.wait_finished(*id, Duration::from_secs(600));
            assert_eq!(e["status"], "Completed", "{e}");
        }
        let took = started.elapsed().as_secs_f64();
        let cpu = cpu_time(serve_pid).saturating_sub(cpu_before);
        let metrics = cluster
            .http
            .get(format!("http://{}/metrics", cluster.addr))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .text()
            .unwrap();
        let sample = |name: &str| -> f64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let checkpoints = sample("weir_store_write_seconds_count ");
        let store_secs = sample("weir_store_write_seconds_sum ");
        for name in &names {
            cluster.assert_each_once(name, RECORDS);
        }
        let label = if workers == 0 {
            "in-process daemon".to_owned()
        } else {
            format!("{workers} worker(s)")
        };
        rows.push(format!(
            "| {label} | {:.2} executions/s | {:.0} records/s | {checkpoints:.0} checkpoints | {:.2} ms store write each | {:.2} ms coordinator CPU each |",
            EXECUTIONS as f64 / took,
            (EXECUTIONS * RECORDS) as f64 / took,
            store_secs * 1000.0 / checkpoints.max(1.0),
            cpu.as_secs_f64() * 1000.0 / checkpoints.max(1.0),
        ));
    }
    println!(
        "{EXECUTIONS} executions of {RECORDS} records (CSV → JSON Lines), 2 slots per worker:"
    );
    for row in rows {
        println!("{row}");
    }
}

/// `coordinator_executes = true` and no `weir worker`: the daemon runs the
/// execution through the same work queue, named `coordinator` in the history; the
/// source is an installed plugin (`testkit`, by name), which reaches the worker as
/// the file the coordinator installed it to.
#[test]
fn the_coordinator_executes_when_told_to_and_installed_plugins_reach_the_worker() {
    const RECORDS: usize = 3_000;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut cluster = Cluster::new(nats);
    cluster.coordinator_executes = true;
    {
        let svc = Service::new(
            Store::open(&cluster.path("data/store"), Some(store_key())).unwrap(),
            common::runtime(),
        );
        let installed = svc
            .install_plugin(
                &common::plugin_path("testkit-connector"),
                &cluster.path("data/plugins"),
            )
            .unwrap();
        assert_eq!(installed.name, "testkit");
        svc.store.flush().unwrap();
    }
    let text = slow_project("installed", RECORDS, 0).replace(
        &format!(
            "plugin = \"{}\"",
            common::plugin_path("testkit-connector").display()
        ),
        "plugin = \"testkit\"",
    );
    assert!(text.contains("plugin = \"testkit\""), "{text}");
    cluster.apply(&text);
    cluster.start_serve();
    let id = cluster.run("installed");
    let e = cluster.wait_finished(id, Duration::from_secs(120));
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["worker"], "coordinator", "{e}");
    cluster.assert_each_once("installed", RECORDS);
}

/// A worker shares no filesystem with the coordinator: the plugin file the
/// project names is deleted after the hand-out and before any worker starts, and
/// the execution still runs, on the component the worker fetched by content hash
/// from the object store (cached under its own data directory, fetched once).
#[test]
fn plugins_reach_workers_by_content_hash_through_the_object_store() {
    const RECORDS: usize = 2_000;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let mut cluster = Cluster::new(nats);
    let original = common::plugin_path("testkit-connector");
    let bytes = std::fs::read(&original).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let only_here = cluster.path("coordinator-only");
    std::fs::create_dir_all(&only_here).unwrap();
    let copy = only_here.join("testkit.wasm");
    std::fs::write(&copy, &bytes).unwrap();
    let text = slow_project("fetched", RECORDS, 0)
        .replace(&original.display().to_string(), &copy.display().to_string());
    assert!(text.contains("coordinator-only"), "{text}");
    cluster.apply(&text);
    cluster.start_serve();
    let id = cluster.run("fetched");
    // Handed out (plugins shared first), with no worker to take it yet.
    let started = Instant::now();
    while !cluster
        .log("serve")
        .contains("execution handed to the workers")
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never handed out:\n{}",
            tail(&cluster.log("serve"))
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        cluster
            .log("serve")
            .contains("plugin put in the object store"),
        "{}",
        tail(&cluster.log("serve"))
    );
    std::fs::remove_dir_all(&only_here).unwrap();

    cluster.start_worker("far");
    let e = cluster.wait_finished(id, Duration::from_secs(120));
    assert_eq!(
        e["status"],
        "Completed",
        "{e}\n--- worker log:\n{}",
        tail(&cluster.log("far"))
    );
    assert_eq!(e["worker"], "far", "{e}");
    cluster.assert_each_once("fetched", RECORDS);
    let cached = cluster.path(&format!("worker-far/plugins/by-hash/{digest}.wasm"));
    assert_eq!(
        std::fs::read(&cached).unwrap(),
        bytes,
        "the worker's cached copy is the coordinator's component, named by its digest"
    );

    // The file comes back (an administrator restores it): the next hand-out names
    // the same digest, and the worker runs it from its cache without fetching.
    std::fs::create_dir_all(&only_here).unwrap();
    std::fs::write(&copy, &bytes).unwrap();
    let again = cluster.run("fetched");
    let e = cluster.wait_finished(again, Duration::from_secs(120));
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(
        cluster
            .log("far")
            .matches("plugin fetched from the object store")
            .count(),
        1,
        "fetched once, then cached:\n{}",
        tail(&cluster.log("far"))
    );

    // A plugin that cannot be read on the coordinator fails its execution with
    // a message naming the file; nothing is handed out.
    // (The API may refuse the run up front, or the execution ends in Error.)
    std::fs::remove_file(&copy).unwrap();
    let resp = cluster
        .http
        .post(format!(
            "http://{}/api/v1/projects/fetched/run",
            cluster.addr
        ))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    let status = resp.status();
    let body: serde_json::Value = resp.json().unwrap();
    let message = if status.is_success() {
        let e = cluster.wait_finished(body["execution"].as_u64().unwrap(), Duration::from_secs(60));
        assert_eq!(e["status"], "Error", "{e}");
        e.to_string()
    } else {
        body.to_string()
    };
    assert!(message.contains("testkit.wasm"), "{status}: {message}");
}
