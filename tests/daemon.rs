//! The daemon's scheduler end to end, in process: cron schedules every second or
//! two, real plugins (testkit), the real store, and alerts through a real SMTP server
//! (aiosmtpd) — destination down → Error → a scheduled retry → mail with the link →
//! destination back → Completed → recovery mail. Also: a run due while the previous
//! one is still going is recorded as skipped; too many Errors pause the schedule;
//! shutdown interrupts at a batch boundary and the next run resumes.

mod common;
#[path = "common/smtp.rs"]
mod smtp;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::plugin_path;
use weir_host::daemon::{Alert, AlertKind, Alerter, Daemon, DaemonSettings};
use weir_host::notify::{Notifier, NotifySettings, SmtpSettings, TlsMode};
use weir_host::project::Notify;
use weir_host::service::Service;
use weir_host::store::{ExecStatus, ExecutionFilter, ExecutionSummary, Store, Trigger};

fn project_text(
    name: &str,
    dir: &Path,
    schedule: &str,
    extra_project: &str,
    source_config: &str,
) -> String {
    let testkit = plugin_path("testkit-connector");
    format!(
        r#"
[connections.src]
plugin = "{testkit}"
config = {{ {source_config} }}

[connections.dst]
plugin = "{testkit}"
grants = {{ directory = "{dir}" }}
config = {{ down_if = "down" }}

[connection_sets.s]
source = "src"
destination = "dst"

[project]
name = "{name}"
connection_set = "s"
batch_size = 10
schedule = "{schedule}"
{extra_project}

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
        dir = dir.display(),
    )
}

/// A temporary folder with a destination directory (`dst`, optionally "down") and a
/// store holding one applied project.
struct Fixture {
    tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
}

impl Fixture {
    fn new(down: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dst");
        std::fs::create_dir_all(&dir).unwrap();
        if down {
            std::fs::write(dir.join("down"), "").unwrap();
        }
        Fixture { tmp, dir }
    }

    fn data(&self) -> std::path::PathBuf {
        self.tmp.path().join("data")
    }

    /// A service over the fixture's store with project `name` applied.
    fn service_with(&self, name: &str, schedule: &str, extra: &str, source: &str) -> Service {
        let svc = service(&self.data());
        let text = project_text(name, &self.dir, schedule, extra, source);
        svc.apply_project_text(
            &self.tmp.path().join("p.toml"),
            &text,
            self.tmp.path(),
            &weir_host::project::EnvPolicy::default(),
        )
        .unwrap();
        svc
    }
}

fn service(data: &Path) -> Service {
    Service::new(Store::open(data, None).unwrap(), common::runtime())
}

fn finished(daemon: &Daemon, project: &str) -> Vec<ExecutionSummary> {
    let mut list = daemon
        .service()
        .store
        .executions(&ExecutionFilter {
            project: Some(project.into()),
            ..Default::default()
        })
        .unwrap();
    list.retain(|e| e.status != ExecStatus::Running);
    list.reverse(); // oldest first
    list
}

async fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn settings() -> DaemonSettings {
    DaemonSettings {
        concurrency: 2,
        tick: Duration::from_millis(200),
    }
}

/// Mail through the test SMTP server on `port`, failures grouped over `window`.
fn mail_settings(port: u16, window: Duration) -> NotifySettings {
    NotifySettings {
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            username: None,
            password: None,
            from: "weir@example.com".into(),
            timeout: Duration::from_secs(10),
        }),
        base_url: "http://dash.example:8080".into(),
        group_window: window,
        attempts: 3,
        backoff: Duration::from_millis(200),
        allow_internal_webhooks: false,
    }
}

/// Collects alerts (for the tests that do not need mail).
#[derive(Default)]
struct Collected(Mutex<Vec<Alert>>);
impl Alerter for Collected {
    fn alert(&self, _: &Notify, a: Alert) {
        self.0.lock().unwrap().push(a);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_down_then_back_retries_and_mails_error_and_recovery() {
    let Some(smtp) = smtp::SmtpServer::start() else {
        return;
    };
    let fx = Fixture::new(true);
    let dir = fx.dir.clone();
    let svc = fx.service_with(
        "nightly",
        "*/2 * * * * *",
        r#"notify = { emails = "ops@example.com" }
retry = { attempts = 2, backoff_secs = 0.1, pause_after_errors = 0 }"#,
        "count = 20",
    );
    let notifier = Notifier::start(mail_settings(smtp.port(), Duration::from_secs(3600)));
    let daemon = Daemon::new(svc, settings(), Some(Arc::new(notifier.clone()))).unwrap();
    let scheduler = daemon.start();

    // Down: Error, then the next scheduled run is a retry of it.
    let errors = wait_until("two Error executions", Duration::from_secs(20), || {
        let f = finished(&daemon, "nightly");
        (f.len() >= 2).then_some(f)
    })
    .await;
    let (first, second) = (&errors[0], &errors[1]);
    assert_eq!(first.status, ExecStatus::Error, "{first:?}");
    assert_eq!(first.trigger, Trigger::Scheduled);
    assert!(
        first
            .error
            .as_deref()
            .unwrap_or("")
            .contains("connection refused"),
        "{first:?}"
    );
    assert_eq!(second.status, ExecStatus::Error);
    assert_eq!(
        second.trigger,
        Trigger::Retry,
        "the run after an Error is a retry"
    );
    assert_eq!(second.parent, Some(first.id), "linked to the failed one");
    let log = daemon
        .service()
        .store
        .execution(first.id)
        .unwrap()
        .unwrap()
        .log;
    assert!(
        log.iter()
            .any(|l| l.contains("transient failure (attempt 1 of 2)")),
        "the transient failure was retried within the run: {log:#?}"
    );

    let mails = smtp.wait_for(1, Duration::from_secs(15));
    let link = format!("http://dash.example:8080/#/executions/{}", first.id);
    assert!(
        mails[0].subject().contains("Error"),
        "{}",
        mails[0].subject()
    );
    assert!(mails[0].body.contains(&link), "{}", mails[0].body);
    assert_eq!(mails[0].envelope_to(), ["ops@example.com"]);

    // Back up: the next run completes (still a retry of the last Error) → recovery mail.
    std::fs::remove_file(dir.join("down")).unwrap();
    let done = wait_until("a Completed execution", Duration::from_secs(20), || {
        finished(&daemon, "nightly")
            .into_iter()
            .find(|e| e.status == ExecStatus::Completed)
    })
    .await;
    assert_eq!(done.trigger, Trigger::Retry);
    assert_eq!(done.inserted + done.updated, 20);
    let recovered_link = format!("http://dash.example:8080/#/executions/{}", done.id);
    let mails = wait_until("the recovery mail", Duration::from_secs(15), || {
        let m = smtp.messages();
        m.iter()
            .any(|m| m.body.contains(&recovered_link))
            .then_some(m)
    })
    .await;
    let recovery = mails
        .iter()
        .find(|m| m.body.contains(&recovered_link))
        .unwrap();
    assert!(
        recovery.subject().to_lowercase().contains("recover"),
        "{}",
        recovery.subject()
    );
    // The failures after the first were grouped, not one mail per run, and the
    // digest came before the recovery.
    let errors_before = finished(&daemon, "nightly")
        .iter()
        .filter(|e| e.status == ExecStatus::Error && e.id < done.id)
        .count();
    assert!(errors_before >= 2);
    assert!(
        mails.len() <= 3,
        "{} errors became at most one mail, one digest and the recovery: {:#?}",
        errors_before,
        mails
            .iter()
            .map(|m| m.subject().to_owned())
            .collect::<Vec<_>>()
    );
    scheduler.abort();
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_due_while_the_last_is_running_is_recorded_as_skipped() {
    let fx = Fixture::new(false);
    let svc = fx.service_with(
        "slow",
        "* * * * * *",
        "",
        "count = 200, read_spin = 300000000",
    );
    let daemon = Daemon::new(svc, settings(), None).unwrap();
    let scheduler = daemon.start();
    let skipped = wait_until("a skipped execution", Duration::from_secs(30), || {
        finished(&daemon, "slow")
            .into_iter()
            .find(|e| e.status == ExecStatus::Skipped)
    })
    .await;
    let reason = skipped.error.clone().unwrap_or_default();
    assert!(reason.contains("still running"), "{reason}");
    let running = skipped
        .parent
        .expect("the skip names the running execution");
    let r = daemon.service().store.execution(running).unwrap().unwrap();
    assert_eq!(r.project, "slow");
    assert!(daemon.stats().skipped >= 1);
    scheduler.abort();
    daemon.shutdown(Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_errors_pause_the_schedule_and_say_so() {
    let fx = Fixture::new(true);
    let dir = fx.dir.clone();
    let svc = fx.service_with(
        "flaky",
        "* * * * * *",
        "retry = { attempts = 1, pause_after_errors = 2 }",
        "count = 20",
    );
    let alerts = Arc::new(Collected::default());
    let daemon = Daemon::new(svc, settings(), Some(alerts.clone())).unwrap();
    let scheduler = daemon.start();
    let view = wait_until("the project to be paused", Duration::from_secs(20), || {
        daemon.project("flaky").unwrap().filter(|p| p.paused)
    })
    .await;
    assert!(
        view.paused_reason
            .as_deref()
            .unwrap_or("")
            .contains("2 consecutive executions ended in Error"),
        "{view:?}"
    );
    assert_eq!(view.next_run, None);
    let kinds: Vec<AlertKind> = alerts.0.lock().unwrap().iter().map(|a| a.kind).collect();
    assert!(kinds.contains(&AlertKind::AutoPaused), "{kinds:?}");
    // Paused means no more runs, and the pause is durable.
    let count = finished(&daemon, "flaky").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(finished(&daemon, "flaky").len(), count);
    assert!(
        daemon
            .service()
            .store
            .project_state("flaky")
            .unwrap()
            .paused
    );
    // Resuming schedules it again.
    std::fs::remove_file(dir.join("down")).unwrap();
    daemon.set_paused("flaky", false, None).unwrap();
    wait_until(
        "a Completed run after resume",
        Duration::from_secs(10),
        || {
            finished(&daemon, "flaky")
                .into_iter()
                .find(|e| e.status == ExecStatus::Completed)
        },
    )
    .await;
    // The alert follows the recorded execution (the daemon reads the history to decide
    // it), so it can arrive a moment after the Completed run is visible.
    wait_until(
        "a recovery alert: a Completed run after Errors",
        Duration::from_secs(10),
        || {
            alerts
                .0
                .lock()
                .unwrap()
                .iter()
                .any(|a| a.kind == AlertKind::Recovered)
                .then_some(())
        },
    )
    .await;
    scheduler.abort();
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_at_a_batch_and_a_restart_resumes_and_reschedules() {
    let fx = Fixture::new(false);
    let svc = fx.service_with(
        "long",
        "0 * * * *",
        "",
        "count = 200, read_spin = 300000000",
    );
    let daemon = Daemon::new(svc, settings(), None).unwrap();
    let scheduler = daemon.start();
    let id = daemon.run_now("long").await.unwrap();
    wait_until("some records written", Duration::from_secs(20), || {
        let e = daemon.service().store.execution(id).unwrap().unwrap();
        (e.tasks.iter().map(|t| t.read).sum::<u64>() > 0).then_some(())
    })
    .await;
    let left = daemon.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        left, 0,
        "the run stopped at a batch boundary within the grace"
    );
    assert!(matches!(
        daemon.run_now("long").await,
        Err(weir_host::daemon::DaemonError::ShuttingDown)
    ));
    let e = daemon.service().store.execution(id).unwrap().unwrap();
    assert_eq!(e.status, ExecStatus::Error);
    assert!(
        e.error.as_deref().unwrap_or("").starts_with("interrupted"),
        "{e:?}"
    );
    let read_before: u64 = e.tasks.iter().map(|t| t.read).sum();
    assert!(read_before < 200, "stopped early: read {read_before}");
    scheduler.abort();
    drop(daemon);

    // A new daemon over the same store: the schedule is back, and the next run
    // resumes from the interrupted one's cursor.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let daemon = Daemon::new(service(&fx.data()), settings(), None).unwrap();
    let view = daemon.project("long").unwrap().unwrap();
    assert!(view.next_run.is_some(), "{view:?}");
    let again = daemon.run_now("long").await.unwrap();
    let done = wait_until("the resumed run to finish", Duration::from_secs(60), || {
        let e = daemon.service().store.execution(again).unwrap().unwrap();
        (e.status != ExecStatus::Running).then_some(e)
    })
    .await;
    assert_eq!(done.status, ExecStatus::Completed, "{done:?}");
    assert_eq!(done.parent, Some(id));
    assert!(
        done.log.iter().any(|l| l.contains("resuming from cursor")),
        "{:#?}",
        done.log
    );
    let read_after: u64 = done.tasks.iter().map(|t| t.read).sum();
    assert_eq!(
        read_before + read_after,
        200,
        "nothing read twice, nothing lost"
    );
    daemon.shutdown(Duration::from_secs(5)).await;
}

/// The binary: `weir serve` answers on loopback, and SIGTERM stops it cleanly
/// (exit 0), after which the store opens again with nothing left running.
/// Starts `weir serve` on a free loopback port over `data`; returns the child and
/// its address.
fn start_serve(data: &Path, token: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["--data-dir"])
        .arg(data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("WEIR_ADMIN_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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

/// The issue's fault case with the daemon itself: `weir serve` is SIGKILLed while an
/// execution runs; after a restart the history is intact, the execution is Error
/// "interrupted" with what it had committed, and the next run resumes from the
/// committed cursor — every record at the destination exactly once.
#[test]
fn sigkill_of_weir_serve_mid_execution_keeps_history_and_the_next_run_resumes() {
    const COUNT: usize = 20_000;
    const TOKEN: &str = "a-token-for-the-sigkill-test";
    let fx = Fixture::new(false);
    let out = fx.dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let testkit = plugin_path("testkit-connector");
    let text = |name: &str, count: usize, spin: u64| {
        format!(
            r#"
[connections.src]
plugin = "{testkit}"
config = {{ count = "{count}", read_spin = "{spin}" }}

[connections.dst]
plugin = "jsonl"
grants = {{ directory = "{out}" }}

[connection_sets.s]
source = "src"
destination = "dst"

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
            out = out.display(),
        )
    };
    {
        let svc = service(&fx.data().join("store"));
        for (name, count, spin) in [("small", 5, 0), ("big", COUNT, 30_000_000)] {
            svc.apply_project_text(
                &fx.dir.join("p.toml"),
                &text(name, count, spin),
                &fx.dir,
                &weir_host::project::EnvPolicy::default(),
            )
            .unwrap();
        }
        svc.store.flush().unwrap();
    }
    let http = reqwest::blocking::Client::new();
    let api = |addr: &str, method: reqwest::Method, path: &str| -> serde_json::Value {
        let resp = http
            .request(method, format!("http://{addr}/api/v1/{path}"))
            .bearer_auth(TOKEN)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().unwrap()
    };
    let wait_finished = |addr: &str, id: u64| -> serde_json::Value {
        let started = Instant::now();
        loop {
            let e = api(addr, reqwest::Method::GET, &format!("executions/{id}"));
            if e["status"] != "Running" {
                return e;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "{e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let lines = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join(format!("{name}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    let (mut daemon, addr) = start_serve(&fx.data(), TOKEN);
    let small = api(&addr, reqwest::Method::POST, "projects/small/run")["execution"]
        .as_u64()
        .unwrap();
    assert_eq!(wait_finished(&addr, small)["status"], "Completed");
    let big = api(&addr, reqwest::Method::POST, "projects/big/run")["execution"]
        .as_u64()
        .unwrap();
    let started = Instant::now();
    while lines("big").len() < 2_000 {
        assert!(daemon.try_wait().unwrap().is_none());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no checkpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    let at_kill = lines("big").len();
    assert!(at_kill < COUNT, "killed mid-run ({at_kill} written)");

    let (mut daemon, addr) = start_serve(&fx.data(), TOKEN);
    let killed = api(&addr, reqwest::Method::GET, &format!("executions/{big}"));
    assert_eq!(killed["status"], "Error", "{killed}");
    assert!(
        killed["error"].as_str().unwrap().starts_with("interrupted"),
        "{killed}"
    );
    let committed = killed["tasks"][0]["inserted"].as_u64().unwrap();
    assert!(committed >= 1_000, "{killed}");
    let earlier = api(&addr, reqwest::Method::GET, &format!("executions/{small}"));
    assert_eq!(
        (
            earlier["status"].as_str(),
            earlier["tasks"][0]["inserted"].as_u64()
        ),
        (Some("Completed"), Some(5)),
        "history intact: {earlier}"
    );

    let resumed = api(&addr, reqwest::Method::POST, "projects/big/run")["execution"]
        .as_u64()
        .unwrap();
    let resumed = wait_finished(&addr, resumed);
    assert_eq!(resumed["status"], "Completed", "{resumed}");
    let read = resumed["tasks"][0]["read"].as_u64().unwrap() as usize;
    assert!(read < COUNT, "resumed, not restarted (read {read})");
    assert_eq!(resumed["parent"].as_u64(), Some(big), "{resumed}");
    let records = lines("big");
    let ids: std::collections::HashSet<String> =
        records.iter().map(|r| r["id"].to_string()).collect();
    assert_eq!(ids.len(), COUNT, "every record arrived");
    assert_eq!(records.len(), COUNT, "none twice");
    println!(
        "killed with {at_kill} records written, {committed} committed; the next run read {read} and completed"
    );
    unsafe {
        libc::kill(daemon.id() as i32, libc::SIGTERM);
    }
    assert!(daemon.wait().unwrap().success());
}

#[test]
fn weir_serve_stops_cleanly_on_sigterm() {
    let fx = Fixture::new(false);
    // The CLI keeps its store in <data-dir>/store.
    let svc = Service::new(
        Store::open(&fx.data().join("store"), None).unwrap(),
        common::runtime(),
    );
    let text = project_text("nightly", &fx.dir, "0 3 * * *", "", "count = 20");
    svc.apply_project_text(
        &fx.dir.join("p.toml"),
        &text,
        &fx.dir,
        &weir_host::project::EnvPolicy::default(),
    )
    .unwrap();
    svc.store.flush().unwrap();
    drop(svc);
    let (child, addr) = start_serve(&fx.data(), "a-token-for-the-sigterm-test");
    let health = reqwest::blocking::get(format!("http://{addr}/health")).unwrap();
    assert!(health.status().is_success());
    let projects = reqwest::blocking::Client::new()
        .get(format!("http://{addr}/api/v1/projects"))
        .bearer_auth("a-token-for-the-sigterm-test")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(projects.contains("\"nightly\""), "{projects}");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("weir serve: stopped"), "{stderr}");
    let store = Store::open(&fx.data().join("store"), None).unwrap();
    assert!(store.interrupted_on_open().is_empty());
}

/// An incremental task starts each recorded run at the cursor the last one ended
/// at: a second run reads nothing new, a grown source only its new records — also
/// after an Error run in between (which recorded no cursor).
#[test]
fn incremental_tasks_read_only_what_is_new() {
    use weir_host::engine::Quiet;
    let fx = Fixture::new(false);
    let svc = service(&fx.data());
    let apply = |count: u32| {
        let text = project_text("inc", &fx.dir, "0 3 * * *", "", &format!("count = {count}"))
            .replace("key = [\"id\"]", "key = [\"id\"]\nincremental = true");
        svc.apply_project_text(
            &fx.dir.join("p.toml"),
            &text,
            &fx.dir,
            &weir_host::project::EnvPolicy::default(),
        )
        .unwrap();
    };
    let read = |id| -> u64 {
        let e = svc.store.execution(id).unwrap().unwrap();
        e.tasks.iter().map(|t| t.read).sum()
    };
    apply(20);
    let (first, _) = svc.run("inc", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(read(first), 20);
    let (second, _) = svc.run("inc", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(read(second), 0, "nothing new since the last cursor");
    // An Error in between (destination down) records no cursor; the next run still
    // starts from the last one recorded.
    std::fs::write(fx.dir.join("down"), "").unwrap();
    let down = svc.run("inc", Trigger::Manual, &mut Quiet);
    assert!(down.is_err());
    std::fs::remove_file(fx.dir.join("down")).unwrap();
    apply(30);
    let (third, report) = svc.run("inc", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(read(third), 10, "only the 10 new records: {report}");
    assert_eq!(report.totals().inserted + report.totals().updated, 10);
}

/// Issue 20: "at most one message every <window>" holds end to end — the daemon's
/// scheduler on a 20-second schedule, a project whose destination is down (every run
/// an Error), auto-pause after 3, real mail through aiosmtpd. The window is 25 s
/// (`notify.group_window_secs`), so the three mails (the first Error; the digest; the
/// pause with the last failure) are each at least 25 s apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_project_on_a_20_second_schedule_gets_mail_no_closer_than_the_interval() {
    let Some(smtp) = smtp::SmtpServer::start() else {
        return;
    };
    let fx = Fixture::new(true);
    let svc = fx.service_with(
        "every-20s",
        "*/20 * * * * *",
        r#"notify = { emails = "ops@example.com" }
retry = { attempts = 1, pause_after_errors = 3 }"#,
        "count = 5",
    );
    let window = Duration::from_secs(25);
    let notifier = Notifier::start(mail_settings(smtp.port(), window));
    let daemon = Daemon::new(svc, settings(), Some(Arc::new(notifier.clone()))).unwrap();
    let scheduler = daemon.start();

    wait_until("the project to be paused", Duration::from_secs(80), || {
        daemon.project("every-20s").unwrap().filter(|p| p.paused)
    })
    .await;
    let mails = tokio::task::block_in_place(|| smtp.wait_for(3, Duration::from_secs(40)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let subjects: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m.subject().to_owned())
        .collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert!(
        subjects[0].ends_with(": Error (execution 1)"),
        "{subjects:?}"
    );
    assert!(
        subjects[1].contains("1 more failed execution"),
        "{subjects:?}"
    );
    assert!(
        subjects[2].contains("Paused after repeated failures (execution 3)"),
        "{subjects:?}"
    );
    // The pause mail names the failure held with it, on a line of its own.
    let held_line = mails[2]
        .body
        .lines()
        .find(|l| l.starts_with("Failed since the last message"));
    assert_eq!(held_line, Some("Failed since the last message: 3 Error."));
    let at: Vec<_> = notifier.delivered().iter().map(|d| d.at).collect();
    smtp::assert_spaced(&at, window);
    scheduler.abort();
    daemon.shutdown(Duration::from_secs(10)).await;
}
