//! The admin dashboard in a real headless Chromium against a real `weir serve`:
//! login, summary counts and colours against the API and the store's truth, the
//! chart, the project list, drill-down to an execution's record errors and staged
//! records, a Run that appears without reloading the page, and the Workers card of a
//! scale-out coordinator.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian: `apt-get install -y
//! chromium chromium-driver`), and for the Workers card `nats-server` on PATH.
//! Without them the tests print a note and pass, unless `CI` is set. Screenshots go
//! to `$WEIR_TEST_OUTPUT` (default `target/test-output/`).

#[path = "common/browser.rs"]
mod browser;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/smtp.rs"]
mod smtp;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use browser::Browser;
use serde_json::Value;

const TOKEN: &str = "dashboard-test-token-5d1e";
const KEY: &str = "dashboard test secret key";
const WAIT: Duration = Duration::from_secs(20);

fn weir(data: &Path, dir: &Path, args: &[&str]) -> Output {
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

/// Runs a stored project; returns (exit code, execution id, stdout).
fn run(data: &Path, dir: &Path, name: &str) -> (Option<i32>, u64, String) {
    let out = weir(data, dir, &["run", name]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("execution: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "weir run {name}: no execution id\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (out.status.code(), id, stdout)
}

/// A csv → jsonl project over `src/people.csv`, writing to its own folder, with
/// `extra` mapping rows and `schedule` lines.
fn project(name: &str, extra_mapping: &str, schedule: &str) -> String {
    format!(
        r#"[connections.src]
plugin = "csv"
grants = {{ directory = "src" }}
config = {{ types = "id:integer" }}

[connections.out]
plugin = "jsonl"
grants = {{ directory = "out-{name}" }}

[connection_sets.main]
source = "src"
destination = "out"

[project]
name = "{name}"
connection_set = "main"
{schedule}

[[project.tasks]]
name = "people"
source_entity = "people"
destination_entity = "people"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
  {{ destination = "email", source = "email" }},
  {extra_mapping}
]
"#
    )
}

/// `weir serve` on a free port; killed on drop (its stderr is printed if the test failed).
struct Daemon {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Daemon {
    fn start(data: &Path, dir: &Path) -> Daemon {
        Daemon::start_with(data, dir, &[])
    }

    /// `weir serve` with `extra` arguments (e.g. `--config serve.toml`).
    fn start_with(data: &Path, dir: &Path, extra: &[&str]) -> Daemon {
        let log = dir.join("serve.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .current_dir(dir)
            .env("WEIR_ADMIN_TOKEN", TOKEN)
            .env("WEIR_SECRET_KEY", KEY)
            .env_remove("WEIR_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start weir serve");
        // Read stdout on a thread (and keep draining it so the daemon never blocks).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut daemon = Daemon {
            child,
            base: String::new(),
            log,
        };
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("weir serve printed no first line within 60 s"));
        let url = first
            .strip_prefix("weir serve: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from weir serve: {first:?}"));
        assert!(
            url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
            "{first}"
        );
        daemon.base = url.trim_end_matches('/').to_string();
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- weir serve stderr (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A `weir worker` with its own data directory; killed on drop (its log is printed
/// if the test failed).
struct Worker {
    child: Option<Child>,
    log: PathBuf,
}

impl Worker {
    fn start(dir: &Path, nats: &str, name: &str) -> Worker {
        let log = dir.join(format!("worker-{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .arg("--data-dir")
            .arg(dir.join(format!("worker-{name}")))
            .args(["worker", "--nats", nats, "--name", name])
            .current_dir(dir)
            .env_remove("WEIR_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start weir worker");
        Worker {
            child: Some(child),
            log,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- weir worker stderr (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The API as a client with the administrator token.
struct Api {
    http: reqwest::blocking::Client,
    base: String,
}

impl Api {
    fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let body = response.text().unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

/// Hue (degrees) and saturation of a computed CSS colour `rgb(a)(r, g, b[, a])`.
fn hue(css: &str) -> Option<(f64, f64)> {
    let inner = css.split_once('(')?.1.trim_end_matches(')');
    let parts: Vec<f64> = inner
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()?;
    if parts.len() == 4 && parts[3] == 0.0 {
        return None; // transparent
    }
    let (r, g, b) = (parts[0] / 255.0, parts[1] / 255.0, parts[2] / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    if delta < 1e-9 {
        return Some((0.0, 0.0));
    }
    let h = if max == r {
        60.0 * (((g - b) / delta).rem_euclid(6.0))
    } else if max == g {
        60.0 * ((b - r) / delta + 2.0)
    } else {
        60.0 * ((r - g) / delta + 4.0)
    };
    let l = (max + min) / 2.0;
    let s = delta / (1.0 - (2.0 * l - 1.0).abs());
    Some((h, s))
}

/// Whether a computed colour reads as the status's colour: green, yellow/amber, red.
fn colour_is(status: &str, css: &str) -> bool {
    let Some((h, s)) = hue(css) else { return false };
    if s < 0.3 {
        return false;
    }
    match status {
        "Completed" => (90.0..=170.0).contains(&h),
        "Warning" => (25.0..=65.0).contains(&h),
        "Error" => !(15.0..=340.0).contains(&h),
        _ => true,
    }
}

fn output_dir() -> PathBuf {
    let dir = std::env::var_os("WEIR_TEST_OUTPUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/test-output"
            ))
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The count on a summary tile, read in one script (the live page may replace the
/// tile between two WebDriver calls).
fn tile_count(b: &Browser, status: &str) -> Option<u64> {
    let text = b.execute(
        "const n = document.querySelector(`.tile[data-status=${arguments[0]}] .count`); \
         return n ? n.textContent : null;",
        vec![Value::from(status)],
    );
    text.as_str()?.replace(',', "").trim().parse().ok()
}

/// The (id, status) of each `tr.execution` row, in page order, read in one script.
fn execution_rows(b: &Browser) -> Vec<(u64, String)> {
    let rows = b.execute(
        "return [...document.querySelectorAll('tr.execution')].map(r => [r.dataset.id, r.dataset.status]);",
        vec![],
    );
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().parse().unwrap(),
                r[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Whether the browser tests can run: without Chromium they print a note and pass,
/// unless `CI` is set.
fn browser_or_skip() -> bool {
    if browser::available() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} or {} is missing; install them with `apt-get install -y chromium chromium-driver`",
            browser::CHROMIUM,
            browser::CHROMEDRIVER
        );
    }
    eprintln!(
        "note: skipping the dashboard browser test: {} or {} is missing \
         (apt-get install -y chromium chromium-driver)",
        browser::CHROMIUM,
        browser::CHROMEDRIVER
    );
    false
}

#[test]
fn dashboard_in_headless_chromium() {
    if !browser_or_skip() {
        return;
    }

    // ---- Seed the store with the CLI (sled: one process at a time) ----
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("data");
    std::fs::create_dir(dir.join("src")).unwrap();
    // Row 3 fails `to_int!(.age)`; its name is markup that must show as text.
    std::fs::write(
        dir.join("src/people.csv"),
        "id,name,email,age\n\
         1,Ada,ada@example.com,36\n\
         2,Grace,grace@example.com,45\n\
         3,<b>Linus</b>,linus@example,x\n\
         4,Ken,ken@example.com,70\n",
    )
    .unwrap();
    let projects = [
        (
            "people-ok",
            "",
            // Far away (1 January, 03:00 Paris): a next run to show, never reached in the test.
            "schedule = \"0 3 1 1 *\"\ntimezone = \"Europe/Paris\"",
        ),
        (
            "people-warn",
            "{ destination = \"age\", expr = 'to_int!(.age)' },",
            "",
        ),
        (
            "people-err",
            "{ destination = \"age\", expr = 'to_int!(.name)' },",
            "",
        ),
    ];
    // Two stored connections: one that works, one whose directory is missing (its
    // check fails when it is added, and the dashboard says why).
    std::fs::create_dir_all(dir.join("ok-files")).unwrap();
    let added = weir(
        &data,
        dir,
        &[
            "connection",
            "add",
            "files-ok",
            "--plugin",
            "csv",
            "--directory",
            "ok-files",
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let _ = weir(
        &data,
        dir,
        &[
            "connection",
            "add",
            "files-gone",
            "--plugin",
            "csv",
            "--directory",
            "no-such-dir",
        ],
    );
    for (name, extra, schedule) in projects {
        let file = format!("{name}.toml");
        std::fs::write(dir.join(&file), project(name, extra, schedule)).unwrap();
        let out = weir(&data, dir, &["project", "apply", "-f", &file]);
        assert!(
            out.status.success(),
            "apply {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut truth: BTreeMap<&str, u64> = BTreeMap::new();
    let mut last: BTreeMap<&str, (u64, &str)> = BTreeMap::new();
    for (name, expected, code) in [
        ("people-ok", "Completed", 0),
        ("people-ok", "Completed", 0),
        ("people-warn", "Warning", 1),
        ("people-err", "Error", 3),
    ] {
        let (exit, id, stdout) = run(&data, dir, name);
        assert!(
            stdout.contains(&format!("status:   {expected}")),
            "{name}: expected {expected}\n{stdout}"
        );
        assert_eq!(exit, Some(code), "exit code of a {expected} run\n{stdout}");
        *truth.entry(expected).or_default() += 1;
        last.insert(name, (id, expected));
    }
    let warn_id = last["people-warn"].0;
    let err_id = last["people-err"].0;

    // ---- The daemon ----
    let daemon = Daemon::start(&data, dir);
    let base = daemon.base.clone();
    let api = api_client(&base);
    let health = api.http.get(format!("{base}/health")).send().unwrap();
    assert!(health.status().is_success(), "GET /health without a token");
    let denied = api
        .http
        .get(format!("{base}/api/v1/summary"))
        .send()
        .unwrap();
    assert_eq!(denied.status().as_u16(), 401, "the API without a token");

    let summary = api.get("/api/v1/summary?days=14");
    for status in ["Completed", "Warning", "Error"] {
        assert_eq!(
            summary["totals"][status].as_u64(),
            Some(truth[status]),
            "API total {status} vs executions created: {summary}"
        );
    }
    assert_eq!(summary["totals"]["Running"].as_u64(), Some(0), "{summary}");
    let days = summary["days"].as_array().expect("days");
    assert_eq!(days.len(), 14, "every day present: {summary}");
    let today = days.last().unwrap()["day"].as_str().unwrap().to_string();

    // ---- Login ----
    let b = Browser::start();
    b.goto(&format!("{base}/"));
    b.wait_for("form[action='/login'] input[name=token]", WAIT)
        .type_text("not the token");
    b.click("form[action='/login'] button[type=submit]");
    let error = b.wait_for(".login-error", WAIT);
    assert!(
        !error.text().trim().is_empty(),
        "the login error says something"
    );
    b.find("input[name=token]").type_text(TOKEN);
    b.click("form[action='/login'] button[type=submit]");

    // ---- Summary tiles: page = API = store, coloured by status ----
    b.wait_for(".tile[data-status=Completed]", WAIT);
    for status in ["Completed", "Warning", "Error", "Running"] {
        let expected = summary["totals"][status].as_u64().unwrap();
        b.wait_until(&format!("the {status} tile shows {expected}"), WAIT, |b| {
            (tile_count(b, status) == Some(expected)).then_some(())
        });
    }
    for status in ["Completed", "Warning", "Error"] {
        let tile = b.find(&format!(".tile[data-status={status}]"));
        let (bg, fg) = (tile.css_value("background-color"), tile.css_value("color"));
        assert!(
            colour_is(status, &bg) || colour_is(status, &fg),
            "{status} tile colours: background {bg}, color {fg}"
        );
    }

    // ---- Chart: one group per day, stacked bars by status ----
    b.wait_for("svg.chart rect.bar", WAIT);
    assert_eq!(
        b.find_all("svg.chart g.day[data-day]").len(),
        days.len(),
        "one column per day"
    );
    let mut charted = 0;
    for bar in b.find_all("svg.chart rect.bar") {
        let status = bar.attr("data-status").unwrap();
        assert!(bar.attr("data-day").is_some_and(|d| d.len() == 10));
        charted += bar.attr("data-count").unwrap().parse::<u64>().unwrap();
        let fill = bar.css_value("fill");
        assert!(colour_is(&status, &fill), "{status} bar fill {fill}");
    }
    assert_eq!(
        charted,
        truth.values().sum::<u64>(),
        "bars add up to every execution"
    );
    for status in ["Completed", "Warning", "Error"] {
        // Every run happened just now: on today's bar (or yesterday's, right after midnight UTC).
        assert!(
            b.try_find(&format!("svg.chart rect.bar[data-status={status}]"))
                .is_some(),
            "a {status} bar segment"
        );
    }

    // ---- Project list: last status, next run, Run button ----
    let projects_api = api.get("/api/v1/projects")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(projects_api.len(), 3, "{projects_api:?}");
    for (name, (id, status)) in &last {
        let row = b.wait_for(&format!("tr.project[data-project='{name}']"), WAIT);
        let dot = row.find(".dot[data-status]");
        assert_eq!(dot.attr("data-status").as_deref(), Some(*status), "{name}");
        let title = dot.attr("title").unwrap_or_default();
        assert!(
            title.contains(&format!("#{id}")),
            "{name} status icon title: {title}"
        );
        assert!(
            colour_is(status, &dot.css_value("background-color")),
            "{name} dot colour"
        );
        assert!(
            row.try_find(&format!("button.run[data-project='{name}']"))
                .is_some()
        );
        let text = row.text();
        if *name == "people-ok" {
            assert!(
                !text.contains("not scheduled"),
                "people-ok has a next run: {text}"
            );
            let next = row.find(".next-run");
            let item = projects_api
                .iter()
                .find(|p| p["name"] == *name)
                .unwrap_or_else(|| panic!("{name} in /api/v1/projects"));
            let next_ms = item["next_run"].as_u64().expect("people-ok's next_run");
            assert_eq!(next.attr("data-next-run"), Some(next_ms.to_string()));
            assert!(!next.text().trim().is_empty());
        } else {
            assert!(text.contains("not scheduled"), "{name}: {text}");
        }
    }
    let out = output_dir();
    let overview_png = out.join("dashboard.png");
    b.screenshot_full(&overview_png, 4000);
    println!("screenshot: {}", overview_png.display());

    // ---- Drill down: the Error bar → the history of that day's Error executions ----
    b.click("svg.chart rect.bar[data-status=Error]");
    b.wait_until("the history filtered by Error", WAIT, |b| {
        let url = b.current_url();
        (url.contains("#/executions?") && url.contains("status=Error")).then_some(())
    });
    let row = b.wait_for(&format!("tr.execution[data-id='{err_id}']"), WAIT);
    assert!(row.text().contains("people-err"));
    b.wait_until("only the Error execution listed", WAIT, |b| {
        (execution_rows(b) == [(err_id, "Error".to_string())]).then_some(())
    });
    let filtered = api.get(&format!("/api/v1/executions?status=Error&day={today}"));
    if filtered["total"] == 1 {
        assert_eq!(filtered["items"][0]["id"].as_u64(), Some(err_id));
    }

    // A project → its history; an execution → its detail.
    b.click("a.brand");
    b.click("tr.project[data-project='people-warn'] a.name");
    b.wait_for(&format!("tr.execution[data-id='{warn_id}']"), WAIT);
    // The page re-renders while polling: wait for the list to settle rather than
    // reading it at one instant.
    b.wait_until("people-warn's history: its one execution", WAIT, |b| {
        (b.find_all("tr.execution").len() == 1).then_some(())
    });
    b.click(&format!(
        "tr.execution[data-id='{warn_id}'] td:nth-child(3)"
    ));
    b.wait_until("the execution detail", WAIT, |b| {
        b.current_url()
            .ends_with(&format!("#/executions/{warn_id}"))
            .then_some(())
    });
    let failure = b.wait_for("tr.record-error", WAIT);
    assert_eq!(
        failure.find("td.key").text(),
        "3",
        "the failed record's key"
    );
    assert_eq!(failure.find("td.field").text(), "age");
    let message = failure.find("td.msg").text();
    assert!(message.contains("to_int"), "the reason: {message}");
    // Record values are data, not markup.
    let record = failure.text();
    assert!(
        record.contains("<b>Linus</b>"),
        "the source record as text: {record}"
    );
    assert!(
        failure.try_find("b").is_none(),
        "record values were inserted as HTML"
    );
    let detail = api.get(&format!("/api/v1/executions/{warn_id}"));
    for (count, expected) in [("read", 4), ("inserted", 3), ("failed", 1)] {
        let shown = b.find(&format!("[data-count={count}] b")).text();
        assert_eq!(shown, expected.to_string(), "{count} shown");
        let api_total: u64 = detail["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[count].as_u64().unwrap())
            .sum();
        assert_eq!(api_total, expected, "{count} in the API");
    }
    assert!(
        b.find("tr.task[data-task='people']")
            .text()
            .contains("people"),
        "the task row"
    );
    assert!(!b.find_all("ol.log li").is_empty(), "log lines shown");
    // Each plugin instance's cost, as the API has it (issue 15): csv read, jsonl wrote.
    let api_plugins = api.get(&format!("/api/v1/executions/{warn_id}"))["plugins"].clone();
    let rows = b.find_all("tr.plugin");
    assert_eq!(
        rows.len(),
        api_plugins.as_array().unwrap().len(),
        "{api_plugins}"
    );
    let source = b.find("tr.plugin[data-role=source]").text();
    assert!(
        source.contains("csv") && source.contains("% of limit"),
        "{source}"
    );
    let destination = b.find("tr.plugin[data-role=destination]").text();
    assert!(destination.contains("jsonl"), "{destination}");
    let staged = b.find_all("tr.staged");
    assert_eq!(staged.len(), 3, "three records staged");
    assert!(b.find("#staging").text().contains("ada@example.com"));
    assert!(b.try_find("button.rerun").is_some() && b.try_find("button.rerun-failed").is_some());
    let detail_png = out.join("dashboard-execution.png");
    b.screenshot_full(&detail_png, 4000);
    println!("screenshot: {}", detail_png.display());

    // people-ok's second run found its four records already at the destination: the
    // page says unchanged, as the API and the CLI do (contract 0.2.0).
    let ok_id = last["people-ok"].0;
    b.goto(&format!("{base}/#/executions/{ok_id}"));
    b.wait_until("people-ok's second execution", WAIT, |b| {
        b.try_find("[data-count=unchanged] b")
            .map(|e| e.text())
            .filter(|t| t == "4")
    });
    assert_eq!(b.find("[data-count=updated] b").text(), "0");
    assert_eq!(
        api.get(&format!("/api/v1/executions/{ok_id}"))["tasks"][0]["unchanged"],
        4
    );

    // ---- Live: Run from the overview; the new execution appears without a reload ----
    b.click("a.brand");
    b.wait_for("button.run[data-project='people-ok']", WAIT);
    b.execute("window.__notReloaded = 42; return null;", vec![]);
    let before = api.get("/api/v1/executions?limit=1");
    let newest_before = before["items"][0]["id"].as_u64().unwrap();
    b.click("button.run[data-project='people-ok']");
    let new_id = b.wait_until("a new execution in Recent executions", WAIT, |b| {
        execution_rows(b)
            .first()
            .map(|(id, _)| *id)
            .filter(|id| *id > newest_before)
    });
    b.wait_until(
        "the new execution completes on the page",
        Duration::from_secs(60),
        |b| {
            execution_rows(b)
                .iter()
                .any(|(id, status)| *id == new_id && status == "Completed")
                .then_some(())
        },
    );
    let expected = truth["Completed"] + 1;
    b.wait_until("the Completed tile counts the new run", WAIT, |b| {
        (tile_count(b, "Completed") == Some(expected)).then_some(())
    });
    assert_eq!(
        api.get("/api/v1/summary?days=14")["totals"]["Completed"].as_u64(),
        Some(expected)
    );
    assert_eq!(
        b.execute("return window.__notReloaded === 42;", vec![]),
        Value::Bool(true),
        "the page updated itself without reloading"
    );
    let updated = b.find("#updated").text();
    assert!(updated.starts_with("updated "), "live indicator: {updated}");

    // ---- A dry run (the CLI asks the daemon) is marked as one, with nothing to re-run ----
    let out = weir(&data, dir, &["run", "people-warn", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("dry run:  predicted counts"), "{stdout}");
    let dry_id: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("execution: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no execution id: {stdout}"));
    assert_eq!(
        api.get(&format!("/api/v1/executions/{dry_id}"))["dry_run"],
        true
    );
    b.goto(&format!("{}/#/executions/{dry_id}", daemon.base));
    b.wait_for("#detail-head .badge.dry-run", WAIT);
    assert!(
        b.find("#detail-head button.rerun")
            .attr("disabled")
            .is_some(),
        "a dry run wrote nothing to re-run"
    );

    // ---- Connections: state and the reason in words; Check runs the check again ----
    b.click("a.brand");
    let ok = b.wait_for("tr.connection[data-connection='files-ok']", WAIT);
    assert_eq!(ok.attr("data-state").as_deref(), Some("Connected"));
    let gone = b.wait_for("tr.connection[data-connection='files-gone']", WAIT);
    assert_eq!(gone.attr("data-state").as_deref(), Some("Needs fixing"));
    let reason = b
        .find("tr.connection[data-connection='files-gone'] .reason")
        .text();
    assert!(
        reason.contains("no-such-dir"),
        "the reason names the directory: {reason}"
    );
    std::fs::create_dir_all(dir.join("no-such-dir")).unwrap();
    b.click("tr.connection[data-connection='files-gone'] button.check");
    b.wait_until("files-gone to be Connected after Check", WAIT, |b| {
        b.try_find("tr.connection[data-connection='files-gone'][data-state='Connected']")
            .map(|_| ())
    });

    // ---- Logout returns to the login page ----
    b.click("button.logout");
    b.wait_for("form[action='/login'] input[name=token]", WAIT);
    drop(b);
    drop(daemon);
}

/// A fresh data directory with `src/people.csv` and the given projects applied.
fn seeded(projects: &[(&str, String)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let data = dir.join("data");
    std::fs::create_dir(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("src/people.csv"),
        "id,name,email\n1,Ada,ada@example.com\n2,Grace,grace@example.com\n",
    )
    .unwrap();
    for (name, text) in projects {
        let file = format!("{name}.toml");
        std::fs::write(dir.join(&file), text).unwrap();
        let out = weir(&data, &dir, &["project", "apply", "-f", &file]);
        assert!(
            out.status.success(),
            "apply {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (tmp, data)
}

fn api_client(base: &str) -> Api {
    Api {
        http: reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: base.to_string(),
    }
}

/// Opens `url` (a page behind the login) and logs in on the form it shows.
fn open_and_log_in(b: &Browser, url: &str) {
    b.goto(url);
    b.wait_for("form[action='/login'] input[name=token]", WAIT)
        .type_text(TOKEN);
    b.click("form[action='/login'] button[type=submit]");
}

/// How many requests the page has made whose URL contains `needle`.
fn requests_to(b: &Browser, needle: &str) -> u64 {
    b.execute(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes(arguments[0])).length;",
        vec![Value::from(needle)],
    )
    .as_u64()
    .unwrap()
}

/// An alert mail's link, followed in the browser: the login form, then the execution
/// it names (not the overview). Then the walls of issue 20's item 9: a pruned
/// execution's page says so once and stops asking; a paused project's row stays
/// inside its card at 1,280 px; a cursor reads as words.
#[test]
fn mail_link_survives_login_and_pages_hold_up() {
    if !browser_or_skip() {
        return;
    }
    let Some(smtp) = smtp::SmtpServer::start() else {
        eprintln!("note: skipping the mail link test: no aiosmtpd (WEIR_AIOSMTPD_PYTHON)");
        return;
    };
    let (tmp, data) = seeded(&[
        ("people-mail", project("people-mail", "", "")),
        (
            "people-bad",
            project(
                "people-bad",
                "{ destination = \"age\", expr = 'to_int!(.name)' },",
                "",
            ),
        ),
    ]);
    let dir = tmp.path();
    let (_, bad_id, _) = run(&data, dir, "people-bad");
    let (_, first, _) = run(&data, dir, "people-mail");
    let (_, id, _) = run(&data, dir, "people-mail");
    assert!(id > first);
    let daemon = Daemon::start(&data, dir);
    let api = api_client(&daemon.base);

    // A real alert mail from weir's notifier, through a real SMTP server.
    let settings = weir_host::notify::NotifySettings {
        smtp: Some(weir_host::notify::SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp.port(),
            tls: weir_host::notify::TlsMode::None,
            username: None,
            password: None,
            from: "weir <weir@example.org>".into(),
            timeout: Duration::from_secs(5),
        }),
        base_url: format!("{}/", daemon.base),
        group_window: Duration::from_secs(600),
        attempts: 3,
        backoff: Duration::from_millis(100),
        allow_internal_webhooks: true,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let notifier = weir_host::notify::Notifier::start(settings);
        let to = weir_host::notify::Recipients {
            emails: weir_host::notify::parse_email_list("ops@example.org").unwrap(),
            webhooks: Vec::new(),
        };
        notifier.notify(
            &to,
            weir_host::notify::Event {
                kind: weir_host::notify::EventKind::Error,
                project: "people-mail".into(),
                execution_id: id,
                status: "Error".into(),
                trigger: "schedule".into(),
                read: 2,
                inserted: 0,
                updated: 0,
                unchanged: 0,
                failed: 2,
                error: Some("a test alert".into()),
                first_errors: Vec::new(),
                schema_changes: Vec::new(),
            },
        );
        notifier.flush(WAIT).await;
    });
    let mails = smtp.wait_for(1, WAIT);
    let link = mails
        .iter()
        .flat_map(|m| m.body.lines())
        .find_map(|l| l.strip_prefix("Details: "))
        .unwrap_or_else(|| panic!("no link in the mail: {mails:?}"))
        .trim()
        .to_string();
    assert_eq!(link, format!("{}/#/executions/{id}", daemon.base));

    let b = Browser::start();
    // A wrong token first: the form comes back (at /login, without the fragment) and
    // still carries the page to return to.
    b.goto(&link);
    b.wait_for("form[action='/login'] input[name=token]", WAIT)
        .type_text("not the token");
    b.click("form[action='/login'] button[type=submit]");
    b.wait_for(".login-error", WAIT);
    assert_eq!(
        b.find("input[name=next]").attr("value"),
        Some(format!("#/executions/{id}")),
        "the page to return to, after a wrong token"
    );
    b.find("input[name=token]").type_text(TOKEN);
    b.click("form[action='/login'] button[type=submit]");
    b.wait_until("the mailed execution after login", WAIT, |b| {
        b.current_url()
            .ends_with(&format!("/#/executions/{id}"))
            .then_some(())
    });
    let head = b.wait_for("#detail-head h1", WAIT);
    assert_eq!(head.text(), format!("Execution #{id}"));
    b.wait_for("tr.task[data-task='people']", WAIT);
    assert!(
        b.try_find(".tile").is_none(),
        "the overview was shown instead of the execution"
    );

    // ---- A pruned execution: said once, no more requests ----
    b.goto(&format!("{}/#/executions/9999", daemon.base));
    let missing = b.wait_for(".missing", WAIT);
    assert_eq!(
        missing.text(),
        "execution 9999 does not exist (pruned or never ran)"
    );
    assert_eq!(
        b.find_all(".card").len(),
        1,
        "one card, not four empty ones"
    );
    let asked = requests_to(&b, "/api/v1/executions/9999");
    assert!(asked >= 1, "the page asked the API");
    std::thread::sleep(Duration::from_millis(4500)); // two polling periods
    assert_eq!(
        requests_to(&b, "/api/v1/executions/9999"),
        asked,
        "the page kept polling a missing execution"
    );

    // ---- A paused project's row stays inside its card at 1,280 px ----
    let paused = api
        .http
        .post(format!("{}/api/v1/projects/people-mail/pause", daemon.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"reason": format!(
            "paused automatically after 3 consecutive executions ended in Error (last: {id}); fix the cause, then resume"
        )}))
        .send()
        .unwrap();
    assert!(paused.status().is_success());
    b.goto(&format!("{}/#/", daemon.base));
    b.wait_for(
        "tr.project[data-project='people-mail'] button.pause[aria-pressed='true']",
        WAIT,
    );
    b.wait_for("#recent tr.execution", WAIT);
    let width = b
        .execute("return window.innerWidth;", vec![])
        .as_f64()
        .unwrap();
    assert!((1200.0..=1280.0).contains(&width), "window width {width}");
    let overflow = b.execute(
        "const out = [];\
         for (const card of document.querySelectorAll('.card')) {\
           const c = card.getBoundingClientRect();\
           for (const t of card.querySelectorAll('table, button')) {\
             const r = t.getBoundingClientRect();\
             if (r.width && (r.right > c.right + 0.5 || r.left < c.left - 0.5)) out.push(`${t.tagName}.${t.className} ${r.left}-${r.right} outside ${c.left}-${c.right}`);\
           }\
         }\
         return out;",
        vec![],
    );
    assert_eq!(
        overflow,
        Value::Array(vec![]),
        "tables and buttons outside their cards"
    );

    // ---- A cursor in words (a file connector's `<byte>:<line>`) ----
    let detail = api.get(&format!("/api/v1/executions/{id}"));
    let cursor = detail["tasks"][0]["cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("a csv task's committed cursor: {detail}"));
    let (byte, line) = cursor.split_once(':').expect("`<byte>:<line>`");
    b.goto(&format!("{}/#/executions/{id}", daemon.base));
    let cell = b.wait_for("tr.task td.cursor", WAIT);
    assert_eq!(
        cell.text(),
        format!("next read starts at line {line} (byte {byte})"),
        "the cursor {cursor} in words"
    );
    assert_eq!(cell.attr("title"), Some(format!("cursor {cursor}")));

    // ---- A re-run says what it re-ran (recorded by the store, not guessed) ----
    let rerun = |of: u64, failed_only: bool| -> u64 {
        let response = api
            .http
            .post(format!("{}/api/v1/executions/{of}/rerun", daemon.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({ "failed_only": failed_only }))
            .send()
            .unwrap();
        let status = response.status();
        let body: Value = response.json().unwrap();
        assert!(status.is_success(), "rerun {of}: {status} {body}");
        body["execution"].as_u64().unwrap()
    };
    let failed_rerun = rerun(bad_id, true);
    let full_rerun = rerun(id, false);
    for (x, kind) in [(failed_rerun, "failed_only"), (full_rerun, "all_records")] {
        let shown = api.get(&format!("/api/v1/executions/{x}"));
        assert_eq!(shown["trigger"], "rerun", "{shown}");
        assert_eq!(shown["rerun"], kind, "{shown}");
    }
    b.goto(&format!("{}/#/executions/{failed_rerun}", daemon.base));
    b.wait_until("the failed-only re-run says so", WAIT, |b| {
        let a = b.try_find("#detail a.rerun-of")?;
        (a.text() == format!("re-run of #{bad_id} (failed records only)")).then_some(())
    });
    b.goto(&format!("{}/#/executions?project=people-mail", daemon.base));
    b.wait_until("the full re-run says so in the list", WAIT, |b| {
        let note = b.try_find(&format!("tr.execution[data-id='{full_rerun}'] .rerun-of"))?;
        (note.text() == format!("re-run of #{id} (all records)")).then_some(())
    });
    drop(b);
    drop(daemon);
}

/// The project page: a duplicate destination field shown on its two rows under the
/// orange banner, one row fixed in place, validated, saved as a new version, and
/// the difference shown.
#[test]
fn project_page_fixes_a_mapping_in_place() {
    if !browser_or_skip() {
        return;
    }
    // The destination is a stored connection with a credential: the page never gets it.
    const SECRET: &str = "S3cr3t-page-token-7731";
    let (tmp, data) = seeded(&[]);
    let dir = tmp.path();
    std::fs::create_dir(dir.join("out-vault")).unwrap();
    let added = weir(
        &data,
        dir,
        &[
            "connection",
            "add",
            "vault-out",
            "--plugin",
            "jsonl",
            "--directory",
            "out-vault",
            "--config",
            "auth.kind=bearer",
            "--secret",
            &format!("auth.token={SECRET}"),
        ],
    );
    assert!(added.status.success(), "{added:?}");
    let text = project(
        "people-dup",
        "{ destination = \"name\", source = \"email\" }, # the second `name`",
        "",
    )
    .replace("destination = \"out\"\n", "destination = \"vault-out\"\n");
    std::fs::write(dir.join("people-dup.toml"), &text).unwrap();
    let applied = weir(&data, dir, &["project", "apply", "-f", "people-dup.toml"]);
    assert!(applied.status.success(), "{applied:?}");
    let daemon = Daemon::start(&data, dir);
    let api = api_client(&daemon.base);

    let page = api.get("/api/v1/projects/people-dup/mappings");
    assert_eq!(page["version"], 1);
    assert_eq!(page["connection_set"]["source"]["plugin"], "csv");
    assert_eq!(
        page["connection_set"]["destination"]["connection"],
        "vault-out"
    );
    let raw = page.to_string();
    assert!(
        !raw.contains(SECRET) && !raw.contains("out-vault") && !raw.contains("grants"),
        "the page gets no credential, option or grant: {raw}"
    );

    let b = Browser::start();
    open_and_log_in(&b, &format!("{}/#/projects/people-dup", daemon.base));
    let banner = b.wait_for(".issues", Duration::from_secs(60));
    assert!(
        banner.text().contains("The mapping has issues"),
        "{}",
        banner.text()
    );
    let flagged: Vec<(String, String)> = b
        .find_all("tr.mapping-row.has-problem")
        .iter()
        .map(|r| {
            (
                r.attr("data-row").unwrap(),
                r.attr("data-destination").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flagged,
        [
            ("2".to_string(), "name".to_string()),
            ("4".to_string(), "name".to_string())
        ],
        "the duplicate shown on its two rows"
    );
    assert!(
        b.find("tr.mapping-row[data-row='1'] .key-mark").text() == "key",
        "the key field is marked"
    );
    assert_eq!(
        b.find("#connection-set tr[data-side='destination'] td.mono")
            .text(),
        "jsonl"
    );

    // Edit row 4 in place: validate, then save.
    b.click("tr.mapping-row[data-row='4'] button.edit-row");
    let to = b.wait_for("tr.mapping-edit input.edit-destination", WAIT);
    to.clear();
    to.type_text("contact_email");
    assert!(
        b.find("button.save-row").attr("disabled").is_some(),
        "save before validating"
    );
    b.click("button.validate-row");
    b.wait_for(".edit-result [data-valid='true']", Duration::from_secs(60));
    let planned = b.find(".edit-result tr.change[data-row='4']").text();
    assert!(
        planned.contains("email → name") && planned.contains("email → contact_email"),
        "{planned}"
    );
    // Nothing stored by validating.
    assert_eq!(api.get("/api/v1/projects/people-dup")["version"], 1);
    b.click("button.save-row");
    b.wait_for("#project-version[data-version='2']", WAIT);
    b.wait_for(".valid-note", Duration::from_secs(60));
    assert!(b.find_all("tr.mapping-row.has-problem").is_empty());
    let diff = b.wait_for("#changes tr.change[data-row='4']", WAIT).text();
    assert!(diff.contains("email → contact_email"), "{diff}");

    let stored = api.get("/api/v1/projects/people-dup");
    assert_eq!(stored["version"], 2);
    let text = stored["text"].as_str().unwrap();
    assert!(
        text.contains("{ destination = \"contact_email\", source = \"email\" }"),
        "{text}"
    );
    assert!(
        text.contains("# the second `name`")
            && text.contains("{ destination = \"id\", source = \"id\" }"),
        "the rest of the file is kept: {text}"
    );

    // An edit that does not validate is refused and stores nothing.
    let refused = api
        .http
        .put(format!("{}/api/v1/projects/people-dup/mappings", daemon.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"version": 2, "task": 0, "row": 4, "destination": "id", "source": "email"}))
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let body: Value = refused.json().unwrap();
    assert!(
        body["details"]["problems"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{body}"
    );
    assert_eq!(api.get("/api/v1/projects/people-dup")["version"], 2);
    // Nothing the page received or shows carries the credential.
    let checked = api
        .http
        .post(format!("{}/api/v1/projects/people-dup/mappings/check", daemon.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"version": 2, "task": 0, "row": 4, "destination": "x", "source": "email"}))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(checked.contains("\"valid\""), "{checked}");
    let html = b.execute("return document.documentElement.outerHTML;", vec![]);
    for (what, text) in [
        ("the check", checked),
        ("the refused save", body.to_string()),
        ("the page", html.to_string()),
        (
            "the page data",
            api.get("/api/v1/projects/people-dup/mappings").to_string(),
        ),
    ] {
        assert!(
            !text.contains(SECRET),
            "{what} carries the credential: {text}"
        );
    }
    drop(b);
    drop(daemon);
}

/// The rows of the Workers card, read in one script (the live page re-renders the
/// card at each heartbeat): name, `data-alive`, the dot's label, the executions in
/// hand and the last heartbeat (ms) as shown.
fn worker_rows(b: &Browser) -> Vec<Value> {
    b.execute(
        "return [...document.querySelectorAll('#workers tr.worker')].map(r => ({ \
           row: r.dataset.worker, \
           name: r.querySelector('.name')?.textContent, \
           alive: r.dataset.alive, \
           dot: r.querySelector('.dot')?.getAttribute('aria-label'), \
           in_hand: r.children[2]?.textContent, \
           heartbeat: Number(r.querySelector('.rel')?.dataset.rel), \
           heartbeat_text: r.querySelector('.rel')?.textContent }));",
        vec![],
    )
    .as_array()
    .unwrap()
    .clone()
}

/// The Workers card of a scale-out coordinator, in Chromium: a real `nats-server`, a
/// `weir serve` with a `[cluster]` section (lease 3 s) and one `weir worker` that
/// runs a csv → jsonl project to Completed. The card lists the worker by name,
/// alive, with nothing in hand; the execution's page names the worker that ran it;
/// and once the worker is killed the card shows it silent.
#[test]
fn workers_card_shows_the_worker_and_the_execution_names_it() {
    const NAME: &str = "dash-worker-1";
    if !browser_or_skip() {
        return;
    }
    let Some(nats) = nats::NatsServer::start() else {
        return;
    };
    let (tmp, data) = seeded(&[("people-w", project("people-w", "", ""))]);
    let dir = tmp.path();
    std::fs::write(
        dir.join("serve.toml"),
        format!("[cluster]\nnats = \"{}\"\nlease_secs = 3\n", nats.url()),
    )
    .unwrap();
    let daemon = Daemon::start_with(&data, dir, &["--config", "serve.toml"]);
    let mut worker = Worker::start(dir, &nats.url(), NAME);
    let api = api_client(&daemon.base);

    // ---- One execution, run by the worker to Completed ----
    let started = api
        .http
        .post(format!("{}/api/v1/projects/people-w/run", daemon.base))
        .bearer_auth(TOKEN)
        .send()
        .unwrap();
    assert!(started.status().is_success(), "{}", started.status());
    let id = started.json::<Value>().unwrap()["execution"]
        .as_u64()
        .expect("an execution id");
    let deadline = Instant::now() + WAIT;
    let e = loop {
        let e = api.get(&format!("/api/v1/executions/{id}"));
        if e["status"] != "Running" {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} still running after {WAIT:?}: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["worker"], NAME, "{e}");
    assert_eq!(e["tasks"][0]["inserted"], 2, "{e}");
    let out = std::fs::read_to_string(dir.join("out-people-w/people.jsonl")).unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");

    // ---- The Workers card: the worker by name, alive, nothing in hand ----
    let b = Browser::start();
    open_and_log_in(&b, &format!("{}/#/", daemon.base));
    b.wait_for("#workers tr.worker", WAIT);
    let rows = worker_rows(&b);
    assert_eq!(rows.len(), 1, "one worker row: {rows:?}");
    let row = &rows[0];
    assert_eq!(row["row"], NAME, "{row}");
    assert_eq!(row["name"], NAME, "{row}");
    assert_eq!(row["alive"], "true", "{row}");
    assert_eq!(row["dot"], "alive", "{row}");
    assert_eq!(row["in_hand"], "none", "{row}");
    let shown = row["heartbeat"].as_f64().unwrap_or(0.0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    assert!(
        (now_ms - 30_000.0..=now_ms + 5_000.0).contains(&shown),
        "last heartbeat {shown} is not recent (now {now_ms}): {row}"
    );
    assert!(
        !row["heartbeat_text"]
            .as_str()
            .unwrap_or("")
            .trim()
            .is_empty(),
        "{row}"
    );
    b.screenshot(&output_dir().join("dashboard-workers.png"));

    // ---- The execution's page names the worker that ran it ----
    b.goto(&format!("{}/#/executions/{id}", daemon.base));
    let script = "const f = [...document.querySelectorAll('#detail dl.facts > div')] \
                  .find(d => d.querySelector('dt')?.textContent === 'Worker'); \
                  return f ? f.querySelector('dd').textContent : null;";
    let named = b.wait_until("the Worker fact on the execution's page", WAIT, |b| {
        b.execute(script, vec![]).as_str().map(str::to_string)
    });
    assert_eq!(named, NAME, "the execution's page names its worker");
    assert_eq!(b.find("#detail .worker").text(), NAME);

    // ---- A killed worker goes silent on the card (alive is not a constant) ----
    worker.kill();
    b.goto(&format!("{}/#/", daemon.base));
    let row = b.wait_until("the killed worker shown silent", WAIT, |b| {
        worker_rows(b)
            .into_iter()
            .find(|r| r["row"] == NAME && r["alive"] == "false")
    });
    assert_eq!(row["name"], NAME, "{row}");
    assert_eq!(row["dot"], "silent", "{row}");
    drop(b);
    drop(daemon);
}
