//! `GET /metrics` of `weir serve` (issue 15, item 4): scraped after a few runs, parsed as
//! Prometheus parses it (`prometheus-parse`), and every counter checked against the
//! execution history the API reports for the same runs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

const TOKEN: &str = "metrics-test-admin-token-0123456789";
const KEY: &str = "metrics-test-secret-key-0123456789ab";

fn weir(data: &Path, dir: &Path, args: &[&str]) -> std::process::Output {
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

/// A testkit → testkit project: `count` people; `destination` configures the
/// destination (e.g. rejecting records, or panicking in upsert).
fn project(name: &str, count: usize, destination: &str) -> String {
    common::testkit_project_file(name, &format!(r#"count = "{count}""#), destination, 100)
}

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path, dir: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("WEIR_ADMIN_TOKEN", TOKEN)
        .env("WEIR_SECRET_KEY", KEY)
        .env_remove("WEIR_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weir serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("weir serve started");
    let base = first
        .strip_prefix("weir serve: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .trim_end_matches('/')
        .to_owned();
    Serve { child, base }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn get(base: &str, path: &str) -> reqwest::blocking::Response {
    http()
        .get(format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
}

fn get_json(base: &str, path: &str) -> Value {
    let r = get(base, path);
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().unwrap()
}

/// Runs a project through the API and waits until its execution has finished.
fn run(base: &str, name: &str) {
    let r = http()
        .post(format!("{base}/api/v1/projects/{name}/run"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "run {name}: {}", r.status());
    let body: Value = r.json().unwrap();
    let id = body["execution"]
        .as_u64()
        .unwrap_or_else(|| panic!("no execution id in {body}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let e = get_json(base, &format!("/api/v1/executions/{id}"));
        if e["status"] != "running" && e["finished_at"].is_number() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} still running: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scrape's samples by metric name and sorted label pairs.
fn scrape(base: &str) -> HashMap<(String, Vec<(String, String)>), f64> {
    let r = get(base, "/metrics");
    assert!(r.status().is_success(), "GET /metrics: {}", r.status());
    let text = r.text().unwrap();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"));
    let mut out = HashMap::new();
    for s in parsed.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        out.insert((s.metric, labels), value);
    }
    out
}

fn sample(
    m: &HashMap<(String, Vec<(String, String)>), f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let mut key: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    key.sort();
    *m.get(&(name.to_owned(), key)).unwrap_or(&0.0)
}

#[test]
fn metrics_after_a_few_runs_match_the_history() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, data) = (tmp.path(), tmp.path().join("data"));
    let files = [
        ("good", project("good", 250, r#"mode = "ok""#)),
        // Every record whose email holds "1" is refused: a Warning.
        ("picky", project("picky", 100, r#"reject_contains = "1""#)),
        // The destination panics in upsert: a trap, an Error.
        (
            "crashy",
            project("crashy", 50, r#"mode = "panic", mode_calls = "upsert""#),
        ),
    ];
    for (name, text) in &files {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = weir(
            &data,
            dir,
            &["project", "apply", "-f", file.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let daemon = serve(&data, dir);
    let base = daemon.base.clone();

    // Without the token: refused, like the rest of the API.
    let anonymous = http().get(format!("{base}/metrics")).send().unwrap();
    assert_eq!(anonymous.status(), 401);

    for name in ["good", "good", "picky", "crashy"] {
        run(&base, name);
    }
    let m = scrape(&base);

    // Each counter against the history of the same runs.
    let history = get_json(&base, "/api/v1/executions?limit=100");
    let items = history["items"].as_array().expect("items");
    assert_eq!(items.len(), 4, "{history}");
    let mut by_status: HashMap<(String, String), f64> = HashMap::new();
    let mut sums: HashMap<(String, &str), f64> = HashMap::new();
    for e in items {
        let project = e["project"].as_str().unwrap().to_owned();
        *by_status
            .entry((
                project.clone(),
                e["status"].as_str().unwrap().to_lowercase(),
            ))
            .or_default() += 1.0;
        for field in ["read", "inserted", "updated", "failed"] {
            *sums.entry((project.clone(), field)).or_default() += e[field].as_f64().unwrap();
        }
    }
    for ((project, status), n) in &by_status {
        assert_eq!(
            sample(
                &m,
                "weir_executions_total",
                &[("project", project), ("status", status)]
            ),
            *n,
            "executions of {project} with status {status}"
        );
    }
    assert_eq!(
        by_status.get(&("good".into(), "completed".into())),
        Some(&2.0)
    );
    assert_eq!(
        by_status.get(&("picky".into(), "warning".into())),
        Some(&1.0)
    );
    assert_eq!(
        by_status.get(&("crashy".into(), "error".into())),
        Some(&1.0)
    );
    for ((project, field), n) in &sums {
        assert_eq!(
            sample(
                &m,
                &format!("weir_records_{field}_total"),
                &[("project", project)]
            ),
            *n,
            "records {field} of {project}"
        );
    }
    assert_eq!(sums[&("good".to_owned(), "read")], 500.0);
    assert!(sums[&("picky".to_owned(), "failed")] > 0.0);
    for (project, n) in [("good", 2.0), ("picky", 1.0), ("crashy", 1.0)] {
        assert_eq!(
            sample(
                &m,
                "weir_execution_duration_seconds_count",
                &[("project", project)]
            ),
            n
        );
    }

    // The crashing destination's trap, by kind; the plugins' calls and time.
    let plugin = common::plugin_path("testkit-connector");
    let plugin = plugin.file_name().unwrap().to_str().unwrap();
    let traps = sample(
        &m,
        "weir_plugin_traps_total",
        &[("plugin", plugin), ("kind", "panic")],
    );
    assert!(traps >= 1.0, "panic traps: {traps}");
    let calls = sample(
        &m,
        "weir_plugin_calls_total",
        &[("plugin", plugin), ("role", "destination")],
    );
    assert!(calls >= 4.0, "destination calls: {calls}");
    let seconds = sample(
        &m,
        "weir_plugin_call_seconds_total",
        &[("plugin", plugin), ("role", "source")],
    );
    assert!(seconds > 0.0, "source call time: {seconds}");
    // Checkpoints were written and timed; nothing runs now.
    assert!(sample(&m, "weir_store_write_seconds_count", &[]) >= 4.0);
    assert_eq!(sample(&m, "weir_executions_running", &[]), 0.0);
}
