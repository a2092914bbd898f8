//! A real SMTP server for tests: Python's aiosmtpd, run as a separate process on
//! 127.0.0.1 with its `Mailbox` handler, which stores every message it accepts in a
//! maildir. Messages are read back through Python's own `email` package (so headers are
//! unfolded and decoded, and a quoted-printable or base64 body is decoded exactly as a mail
//! client would), ordered as the server received them.
//!
//! The Python comes from `WEIR_AIOSMTPD_PYTHON` (any python with aiosmtpd installed), else
//! `/root/.cache/weir/smtpenv/bin/python` (the venv `.ci/run` creates). Without one, a test
//! is skipped with a note, except under CI (`CI` set), where that is an error.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `.ci/run` puts the venv.
pub const DEFAULT_PYTHON: &str = "/root/.cache/weir/smtpenv/bin/python";

/// How long the server may take to start listening (Python's start-up on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Decoded header values, in order; aiosmtpd adds `X-Peer`, `X-MailFrom` and `X-RcptTo`
    /// (the envelope).
    pub headers: Vec<(String, String)>,
    /// The decoded text of the (first) text/plain part.
    pub body: String,
}

impl Mail {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("Subject").unwrap_or("")
    }

    /// The envelope recipients (`RCPT TO`), as the server saw them.
    pub fn envelope_to(&self) -> Vec<String> {
        self.header("X-RcptTo")
            .unwrap_or("")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// The python to run aiosmtpd with, or `None` (after printing why) when the test should be
/// skipped. Panics under CI instead of skipping.
pub fn python() -> Option<PathBuf> {
    let mut tried = Vec::new();
    let candidates = std::env::var_os("WEIR_AIOSMTPD_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::iter::once(PathBuf::from(DEFAULT_PYTHON)));
    for candidate in candidates {
        let works = Command::new(&candidate)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if works {
            return Some(candidate);
        }
        tried.push(candidate.display().to_string());
    }
    let message = format!(
        "no python with aiosmtpd (tried {}); set WEIR_AIOSMTPD_PYTHON or run: \
         python3 -m venv /root/.cache/weir/smtpenv && /root/.cache/weir/smtpenv/bin/pip install aiosmtpd",
        tried.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    None
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// A running aiosmtpd; killed when dropped.
pub struct SmtpServer {
    child: Child,
    port: u16,
    python: PathBuf,
    maildir: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// On a free port; `None` when skipped (see [`python`]).
    pub fn start() -> Option<SmtpServer> {
        SmtpServer::start_on(free_port())
    }

    /// On `port`, waiting until it accepts connections.
    pub fn start_on(port: u16) -> Option<SmtpServer> {
        let python = python()?;
        let dir = tempfile::tempdir().expect("temporary folder");
        let maildir = dir.path().join("maildir");
        let log = dir.path().join("aiosmtpd.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} -m aiosmtpd: {e}", python.display()));
        let mut server = SmtpServer {
            child,
            port,
            python,
            maildir,
            log,
            _dir: dir,
        };
        server.wait_listening();
        Some(server)
    }

    fn wait_listening(&mut self) {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "aiosmtpd exited ({status}) before listening:\n{}",
                    self.server_log()
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "aiosmtpd not listening on {address} after {START_TIMEOUT:?}:\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the server printed (for failure messages).
    pub fn server_log(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// Every message received so far, in the order received.
    pub fn messages(&self) -> Vec<Mail> {
        read_maildir(&self.python, &self.maildir)
    }

    /// Waits until at least `count` messages have arrived and returns them all; panics
    /// after `timeout` saying what did arrive.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Mail> {
        let started = Instant::now();
        loop {
            let mails = self.messages();
            if mails.len() >= count {
                return mails;
            }
            if started.elapsed() > timeout {
                let subjects: Vec<&str> = mails.iter().map(Mail::subject).collect();
                panic!(
                    "expected {count} mails within {timeout:?}, got {}: {subjects:?}\nserver log:\n{}",
                    mails.len(),
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a maildir with Python's `mailbox` and `email` packages and prints JSON. Python's
/// Maildir names files `<secs>.M<usecs>P<pid>Q<counter>.<host>`; the counter orders the
/// messages of one server process exactly.
const READ_MAILDIR: &str = r#"
import email, email.policy, json, mailbox, os, re, sys
out = []
if os.path.isdir(sys.argv[1]):
    box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
    for key in box.keys():
        with box.get_file(key) as f:
            raw = f.read()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",))
        q = re.search(r"Q(\d+)", key)
        out.append({
            "order": [int(q.group(1)) if q else 0, key],
            "headers": [[k, str(v)] for k, v in msg.items()],
            "body": part.get_content() if part is not None else "",
        })
out.sort(key=lambda m: m["order"])
json.dump(out, sys.stdout)
"#;

fn read_maildir(python: &Path, maildir: &Path) -> Vec<Mail> {
    let output = Command::new(python)
        .arg("-c")
        .arg(READ_MAILDIR)
        .arg(maildir)
        .stdin(Stdio::null())
        .output()
        .expect("running python to read the maildir");
    assert!(
        output.status.success(),
        "reading the maildir failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the maildir reader prints JSON");
    parsed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Mail {
            headers: m["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap().to_string(),
                        h[1].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            body: m["body"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// Asserts that messages handed to SMTP at `at` (oldest first) are no two closer than
/// `window`, the interval the mails promise; delivery itself adds a few ms, so 500 ms
/// of slack.
pub fn assert_spaced(at: &[chrono::DateTime<chrono::Utc>], window: Duration) {
    for pair in at.windows(2) {
        let gap = (pair[1] - pair[0]).to_std().unwrap_or_default();
        assert!(
            gap + Duration::from_millis(500) >= window,
            "two mails {gap:?} apart, promised at most one every {window:?}: {at:?}"
        );
    }
}
