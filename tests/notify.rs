//! Notifications end to end: a real SMTP server (aiosmtpd, see common/smtp.rs) and a small
//! HTTP receiver, both on 127.0.0.1. Each test uses its own servers and project names, so
//! they run in parallel; logs go to one captured buffer that each test filters by project.

#[path = "common/smtp.rs"]
mod smtp;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use weir_host::notify::{
    Channel, Event, EventKind, Notifier, NotifySettings, Recipients, SmtpSettings, TlsMode,
    check_webhook_url, parse_email_list,
};

use smtp::{Mail, SmtpServer};

const BASE_URL: &str = "http://127.0.0.1:8080";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers

fn settings(smtp_port: u16, group_window: Duration) -> NotifySettings {
    NotifySettings {
        smtp: Some(SmtpSettings {
            host: "127.0.0.1".into(),
            port: smtp_port,
            tls: TlsMode::None,
            username: None,
            password: None,
            from: "weir <weir@example.org>".into(),
            timeout: Duration::from_secs(5),
        }),
        base_url: format!("{BASE_URL}/"), // the trailing slash must not double in links
        group_window,
        attempts: 3,
        backoff: Duration::from_millis(100),
        // The receivers are test servers on 127.0.0.1.
        allow_internal_webhooks: true,
    }
}

fn event(kind: EventKind, project: &str, execution_id: u64) -> Event {
    let failing = kind != EventKind::Recovered;
    Event {
        kind,
        project: project.into(),
        execution_id,
        status: match kind {
            EventKind::Recovered => "Completed",
            EventKind::Warning => "Warning",
            _ => "Error",
        }
        .into(),
        trigger: "schedule".into(),
        read: 120,
        inserted: 100,
        updated: 10,
        unchanged: 0,
        failed: if failing { 10 } else { 0 },
        error: failing.then(|| {
            "destination refused the batch: HTTP 503 — Dienst nicht verfügbar".to_string()
        }),
        first_errors: if failing {
            (17..24)
                .map(|k| format!("key {k}: email: invalid"))
                .collect()
        } else {
            Vec::new()
        },
        schema_changes: Vec::new(),
    }
}

fn emails(list: &str) -> Recipients {
    Recipients {
        emails: parse_email_list(list).unwrap(),
        webhooks: Vec::new(),
    }
}

/// Waits for mails without stalling the notifier (tests run on a multi-thread runtime).
fn wait_mails(server: &SmtpServer, count: usize) -> Vec<Mail> {
    tokio::task::block_in_place(|| server.wait_for(count, WAIT))
}

fn subjects(mails: &[Mail]) -> Vec<&str> {
    mails.iter().map(Mail::subject).collect()
}

/// Everything logged through `tracing` by any test, without colours.
fn captured_log() -> &'static Mutex<Vec<u8>> {
    static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let log = LOG.get_or_init(|| Mutex::new(Vec::new()));
    INSTALLED.get_or_init(|| {
        struct Capture;
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                captured_log().lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| Capture)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test binary");
    });
    log
}

/// The captured log lines that mention `needle`.
fn log_lines(needle: &str) -> Vec<String> {
    let log = captured_log().lock().unwrap();
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// One HTTP request as the receiver saw it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A tiny HTTP/1.1 receiver on 127.0.0.1 (std only): records each request and answers
/// with the next scripted status, then 200s. Stops when dropped.
struct Receiver {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(script: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut statuses: VecDeque<u16> = script.iter().copied().collect();
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let status = statuses.pop_front().unwrap_or(200);
                            serve(stream, status, &requests);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10))
                        }
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            })
        };
        Receiver {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/weir", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request, records it, then replies. Recorded *before* the reply: the
/// notifier counts a webhook delivered when the reply arrives, so a test that flushes
/// and then looks must already find it (CI once looked in between).
fn serve(mut stream: TcpStream, status: u16, requests: &Mutex<Vec<Request>>) -> Option<()> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    requests.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body,
    });
    let reply =
        format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno");
    let _ = stream.write_all(reply.as_bytes());
    Some(())
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_event_reaches_mail_and_webhook() {
    let Some(server) = SmtpServer::start() else {
        return;
    };
    let receiver = Receiver::start(&[]);
    let notifier = Notifier::start(settings(server.port(), Duration::from_secs(600)));
    let to = Recipients {
        emails: parse_email_list("ops@example.org, dev@example.org").unwrap(),
        webhooks: vec![receiver.url()],
    };

    notifier.notify(&to, event(EventKind::Error, "contacts-sync", 42));
    notifier.flush(WAIT).await;

    let mails = wait_mails(&server, 1);
    assert_eq!(
        mails.len(),
        1,
        "one mail for both addresses: {:?}",
        subjects(&mails)
    );
    let mail = &mails[0];
    assert_eq!(mail.subject(), "[weir] contacts-sync: Error (execution 42)");
    assert_eq!(mail.envelope_to(), ["ops@example.org", "dev@example.org"]);
    let to_header = mail.header("To").unwrap();
    assert!(
        to_header.contains("ops@example.org") && to_header.contains("dev@example.org"),
        "{to_header}"
    );
    assert!(mail.header("From").unwrap().contains("weir@example.org"));
    let body = &mail.body;
    for expected in [
        "Project:   contacts-sync",
        "Status:    Error",
        "Trigger:   schedule",
        "Records:   read 120, inserted 100, updated 10, unchanged 0, failed 10",
        "Error:     destination refused the batch: HTTP 503 — Dienst nicht verfügbar",
        "First record errors (5 of 10):",
        "  key 17: email: invalid",
        "  key 21: email: invalid",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in:\n{body}");
    }
    assert!(
        !body.contains("key 22:"),
        "at most 5 record errors:\n{body}"
    );
    assert!(
        body.lines()
            .any(|l| l == "Details: http://127.0.0.1:8080/#/executions/42"),
        "exact link line missing:\n{body}"
    );

    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/hooks/weir")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    let json = request.json();
    assert_eq!(json["link"], "http://127.0.0.1:8080/#/executions/42");
    assert_eq!(json["kind"], "error");
    assert_eq!(json["project"], "contacts-sync");
    assert_eq!(json["execution_id"], 42);
    assert_eq!(json["status"], "Error");
    assert_eq!(
        (json["read"].as_u64(), json["failed"].as_u64()),
        (Some(120), Some(10))
    );
    assert_eq!(
        json["error"],
        "destination refused the batch: HTTP 503 — Dienst nicht verfügbar"
    );
    assert_eq!(json["first_errors"][0], "key 17: email: invalid");
    assert_eq!(json["text"], "[weir] contacts-sync: Error (execution 42)");

    let delivered = notifier.delivered();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    assert!(
        delivered
            .iter()
            .all(|d| d.ok && d.attempts == 1 && d.execution_id == 42),
        "{delivered:?}"
    );
    let mail_delivery = delivered
        .iter()
        .find(|d| d.channel == Channel::Email)
        .unwrap();
    assert_eq!(mail_delivery.recipient, "ops@example.org, dev@example.org");
    assert_eq!(
        mail_delivery.subject,
        "[weir] contacts-sync: Error (execution 42)"
    );
    assert_eq!(notifier.pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_become_one_digest_at_the_end_of_the_window() {
    let Some(server) = SmtpServer::start() else {
        return;
    };
    let window = Duration::from_secs(3);
    let notifier = Notifier::start(settings(server.port(), window));
    let to = emails("ops@example.org");

    let started = Instant::now();
    for id in [42, 43, 44] {
        notifier.notify(&to, event(EventKind::Error, "grouped-sync", id));
    }
    let mails = wait_mails(&server, 1);
    assert_eq!(
        subjects(&mails),
        ["[weir] grouped-sync: Error (execution 42)"]
    );

    // The other two are held for the rest of the window...
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        started.elapsed() < window,
        "the machine is too slow for this window"
    );
    assert_eq!(
        server.messages().len(),
        1,
        "43 and 44 must be held, not sent one by one"
    );

    // ...and come as one digest when it ends, naming both and linking the newest.
    let mails = wait_mails(&server, 2);
    assert!(
        started.elapsed() >= window,
        "digest sent before the window ended"
    );
    let digest = &mails[1];
    assert_eq!(
        digest.subject(),
        "[weir] grouped-sync: 2 more failed executions (newest: execution 44)"
    );
    assert!(
        digest
            .body
            .starts_with("2 more failed executions of grouped-sync: 43 Error, 44 Error\n"),
        "{}",
        digest.body
    );
    assert!(
        digest
            .body
            .lines()
            .any(|l| l == "Details: http://127.0.0.1:8080/#/executions/44"),
        "{}",
        digest.body
    );

    // A recovery goes out at once, after the digest.
    notifier.notify(&to, event(EventKind::Recovered, "grouped-sync", 45));
    notifier.flush(WAIT).await;
    let mails = wait_mails(&server, 3);
    assert_eq!(mails.len(), 3, "{:?}", subjects(&mails));
    assert_eq!(
        mails[2].subject(),
        "[weir] grouped-sync: Recovered (execution 45)"
    );
    assert!(
        mails[2]
            .body
            .contains("grouped-sync is working again: execution 45 ended Completed.")
    );
    let digest_delivery = notifier
        .delivered()
        .into_iter()
        .find(|d| !d.digest_of.is_empty())
        .unwrap();
    assert_eq!(digest_delivery.digest_of, [43, 44]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_sends_the_held_digest_first_and_ends_the_group() {
    let Some(server) = SmtpServer::start() else {
        return;
    };
    let receiver = Receiver::start(&[]);
    // A window far longer than the test: only the recovery can release the digest.
    let notifier = Notifier::start(settings(server.port(), Duration::from_secs(3600)));
    let to = Recipients {
        emails: vec!["ops@example.org".into()],
        webhooks: vec![receiver.url()],
    };

    for id in [42, 43, 44] {
        notifier.notify(&to, event(EventKind::Error, "orders-sync", id));
    }
    notifier.notify(&to, event(EventKind::Recovered, "orders-sync", 45));
    // After a recovery the group is over: the next failure is news again.
    notifier.notify(&to, event(EventKind::Warning, "orders-sync", 46));
    notifier.flush(WAIT).await;

    let mails = wait_mails(&server, 4);
    assert_eq!(
        subjects(&mails),
        [
            "[weir] orders-sync: Error (execution 42)",
            "[weir] orders-sync: 2 more failed executions (newest: execution 44)",
            "[weir] orders-sync: Recovered (execution 45)",
            "[weir] orders-sync: Warning (execution 46)",
        ]
    );
    let kinds: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["error", "digest", "recovered", "warning"]);
    let digest = receiver.requests()[1].json();
    assert_eq!(digest["link"], "http://127.0.0.1:8080/#/executions/44");
    let grouped: Vec<u64> = digest["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_u64().unwrap())
        .collect();
    assert_eq!(grouped, [43, 44]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_down_is_logged_and_retried_until_it_is_up() {
    if smtp::python().is_none() {
        return;
    }
    captured_log();
    let port = smtp::free_port();
    let mut settings = settings(port, Duration::from_secs(600));
    // Tries at 0, 0.3, 0.9, 2.1, 4.5 and 9.3 s: time enough to start the server.
    settings.attempts = 6;
    settings.backoff = Duration::from_millis(300);
    let notifier = Notifier::start(settings);

    let before = Instant::now();
    notifier.notify(
        &emails("ops@example.org"),
        event(EventKind::Error, "flaky-smtp", 7),
    );
    let took = before.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "notify must not wait for delivery: {took:?}"
    );

    // Nothing listens yet: the first try fails and says so, with the structured fields.
    let started = Instant::now();
    let failure = loop {
        if let Some(line) = log_lines("flaky-smtp")
            .into_iter()
            .find(|l| l.contains("delivery failed"))
        {
            break line;
        }
        assert!(started.elapsed() < WAIT, "no failure logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(failure.contains("WARN"), "{failure}");
    for field in [
        "project=flaky-smtp",
        "execution=7",
        "recipient=ops@example.org",
        "attempt=1",
        "error=",
    ] {
        assert!(failure.contains(field), "missing {field} in {failure}");
    }
    assert!(notifier.delivered().is_empty(), "not given up yet");

    let Some(server) = tokio::task::block_in_place(|| SmtpServer::start_on(port)) else {
        return;
    };
    notifier.flush(WAIT).await;
    let mails = wait_mails(&server, 1);
    assert_eq!(subjects(&mails), ["[weir] flaky-smtp: Error (execution 7)"]);
    let delivered = notifier.delivered();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].ok, "{delivered:?}");
    assert!(delivered[0].attempts >= 2, "{delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_retried_or_given_up_and_never_show_the_password() {
    captured_log();
    // A webhook that fails twice with 503 then accepts; one that answers 404 (permanent).
    let flaky = Receiver::start(&[503, 503]);
    let gone = Receiver::start(&[404]);
    // An SMTP server that refuses the credentials (535, permanent).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || refusing_smtp(listener));

    let mut settings = settings(port, Duration::from_secs(600));
    let smtp = settings.smtp.as_mut().unwrap();
    smtp.username = Some("weir".into());
    smtp.password = Some("hunter2-very-secret".into());
    settings.attempts = 4;
    let notifier = Notifier::start(settings);
    let to = Recipients {
        emails: vec!["ops@example.org".into()],
        webhooks: vec![flaky.url(), gone.url()],
    };
    notifier.notify(&to, event(EventKind::AutoPaused, "refused-sync", 9));
    notifier.flush(WAIT).await;

    let delivered = notifier.delivered();
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    let find = |recipient: &str| delivered.iter().find(|d| d.recipient == recipient).unwrap();
    let (mail, ok, refused) = (
        find("ops@example.org"),
        find(&flaky.url()),
        find(&gone.url()),
    );
    assert!(ok.ok && ok.attempts == 3, "{ok:?}");
    assert_eq!(flaky.requests().len(), 3);
    assert!(
        !refused.ok && refused.attempts == 1,
        "4xx is not retried: {refused:?}"
    );
    assert!(
        refused.error.as_deref().unwrap().contains("404"),
        "{refused:?}"
    );
    assert!(
        !mail.ok && mail.attempts == 1,
        "a 535 is not retried: {mail:?}"
    );
    assert!(mail.error.as_deref().unwrap().contains("535"), "{mail:?}");
    assert_eq!(
        mail.subject,
        "[weir] refused-sync: Paused after repeated failures (execution 9)"
    );

    let log = log_lines("refused-sync").join("\n");
    assert!(log.contains("given up"), "{log}");
    assert!(
        !log.contains("hunter2"),
        "the password leaked into the log:\n{log}"
    );
    assert!(!format!("{delivered:?}").contains("hunter2"));
}

/// Advertises AUTH on a plain connection and refuses any credentials, like a relay with a
/// wrong password configured. Serves connections until the test binary ends.
fn refusing_smtp(listener: TcpListener) {
    for stream in listener.incoming().take(10) {
        let Ok(mut stream) = stream else { return };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.write_all(b"220 refusing.test ESMTP\r\n");
        let mut buf = [0u8; 1024];
        let mut pending = String::new();
        'session: loop {
            let n = match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.push_str(&String::from_utf8_lossy(&buf[..n]));
            while let Some(end) = pending.find("\r\n") {
                let line: String = pending.drain(..end + 2).collect();
                let verb = line
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" => b"250-refusing.test\r\n250 AUTH PLAIN LOGIN\r\n",
                    "AUTH" => b"535 5.7.8 Authentication credentials invalid\r\n",
                    "QUIT" => {
                        let _ = stream.write_all(b"221 bye\r\n");
                        break 'session;
                    }
                    _ => b"503 5.5.1 authenticate first\r\n",
                };
                if stream.write_all(reply).is_err() {
                    break 'session;
                }
            }
        }
    }
}

#[test]
fn email_lists_and_webhook_addresses_are_checked() {
    assert_eq!(
        parse_email_list("a@x.org, b@y.com").unwrap(),
        ["a@x.org", "b@y.com"]
    );
    assert_eq!(parse_email_list("  ").unwrap(), Vec::<String>::new());

    let empty = parse_email_list("a@x.org,,b").unwrap_err();
    assert!(
        empty.contains("address 2") && empty.contains("empty"),
        "{empty}"
    );

    let bad = parse_email_list("not-an-address").unwrap_err();
    assert!(
        bad.contains("\"not-an-address\"") && bad.contains("address 1"),
        "{bad}"
    );

    let second = parse_email_list("a@x.org, b@@y.com").unwrap_err();
    assert!(
        second.contains("\"b@@y.com\"") && second.contains("address 2"),
        "{second}"
    );

    assert!(check_webhook_url("https://hooks.example.org/weir").is_ok());
    let ftp = check_webhook_url("ftp://example.org/x").unwrap_err();
    assert!(ftp.contains("http"), "{ftp}");
    assert!(check_webhook_url("not a url").is_err());
}

/// Projects name their webhooks, so a project's author could make the daemon post
/// to the machine's or the network's inside; webhooks follow plugin HTTP's address
/// rules: loopback (by literal or by name), private and link-local are refused,
/// nothing is sent, unless the administrator allows internal webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_internal_addresses_are_refused_unless_allowed() {
    let receiver = Receiver::start(&[]);
    let by_name = format!("http://localhost:{}/hooks/weir", receiver.port);
    let mut refusing = settings(9, Duration::ZERO);
    refusing.smtp = None;
    refusing.allow_internal_webhooks = false;
    let notifier = Notifier::start(refusing.clone());
    let to = Recipients {
        emails: Vec::new(),
        webhooks: vec![
            receiver.url(),
            by_name.clone(),
            "http://169.254.169.254/latest/meta-data".to_owned(),
        ],
    };
    notifier.notify(&to, event(EventKind::Error, "inside-sync", 7));
    notifier.flush(WAIT).await;
    assert!(
        receiver.requests().is_empty(),
        "a refused webhook sent something"
    );
    let delivered = notifier.delivered();
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    for d in &delivered {
        assert!(!d.ok, "{d:?}");
        let error = d.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("webhook refused") && error.contains("allow_internal_webhooks"),
            "{error}"
        );
    }
    let errors: Vec<&str> = delivered
        .iter()
        .filter_map(|d| d.error.as_deref())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("127.0.0.1 is an internal (loopback)")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`localhost` resolves to") && e.contains("loopback")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("cloud metadata")),
        "{errors:?}"
    );

    // The administrator allows them: the same webhook is delivered.
    let mut allowing = refusing;
    allowing.allow_internal_webhooks = true;
    let notifier = Notifier::start(allowing);
    let to = Recipients {
        emails: Vec::new(),
        webhooks: vec![receiver.url()],
    };
    notifier.notify(&to, event(EventKind::Error, "inside-sync", 8));
    notifier.flush(WAIT).await;
    assert_eq!(receiver.requests().len(), 1);
    assert!(notifier.delivered().iter().all(|d| d.ok));
}

/// Issue 20: the mails promise "at most one message every <window>", but a project
/// failing on a 20-second schedule got a digest and a pause mail within seconds of
/// each other. Events come as a 20-second schedule makes them: an Error at 0 s, 20 s
/// and 40 s, the third followed at once by the automatic pause (the daemon pauses
/// right after the third consecutive Error). The window is 25 s (the administrator's
/// `notify.group_window_secs`), so the test takes about 50 s: the first mail at
/// once, the digest of 20 s at 25 s, and one mail at 50 s with the pause and the
/// failure at 40 s — never two closer than the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_20_second_schedule_never_gets_two_mails_closer_than_the_interval() {
    let Some(server) = SmtpServer::start() else {
        return;
    };
    let window = Duration::from_secs(25);
    let notifier = Notifier::start(settings(server.port(), window));
    let to = emails("ops@example.org");
    let project = "every-20s";

    let started = tokio::time::Instant::now();
    for (at, id) in [(0, 1), (20, 2), (40, 3)] {
        tokio::time::sleep_until(started + Duration::from_secs(at)).await;
        notifier.notify(&to, event(EventKind::Error, project, id));
        if id == 3 {
            notifier.notify(&to, event(EventKind::AutoPaused, project, id));
        }
    }
    // The pause is held to the end of the window, not sent at 40 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        subjects(&server.messages()),
        [
            "[weir] every-20s: Error (execution 1)",
            "[weir] every-20s: 1 more failed execution (newest: execution 2)"
        ],
        "the pause and the failure at 40 s must wait for the window's end"
    );

    let mails = wait_mails(&server, 3);
    assert_eq!(
        subjects(&mails)[2],
        "[weir] every-20s: Paused after repeated failures (execution 3)"
    );
    assert!(
        mails[2]
            .body
            .contains("Failed since the last message: 3 Error."),
        "{}",
        mails[2].body
    );
    assert!(
        mails[2].body.contains("every 25s, a pause notice included"),
        "the mail says what it promises: {}",
        mails[2].body
    );
    notifier.flush(WAIT).await;
    assert_eq!(server.messages().len(), 3, "nothing else was sent");

    // Handed to SMTP no closer than the window (delivery itself adds a few ms).
    let at: Vec<_> = notifier.delivered().iter().map(|d| d.at).collect();
    assert_eq!(at.len(), 3);
    smtp::assert_spaced(&at, window);
}
