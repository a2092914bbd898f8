//! json-server (typicode, npm, pinned to 0.17.4 by `.ci/run`) on 127.0.0.1: a
//! real REST server nobody here wrote, started on a free port over a temporary
//! `db.json` and killed on drop. It logs one line per request (`GET
//! /contacts?_page=2&_limit=5 200 ...`), which the tests count.
//!
//! Found through `WEIR_JSON_SERVER` (the path of its bin), else
//! `~/.cache/weir/node/node_modules/.bin/json-server`. When it is missing,
//! [`JsonServer::start`] panics if `CI` is set and otherwise returns `None`
//! after a note, so the test can skip.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub struct JsonServer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    client: reqwest::blocking::Client,
}

fn binary() -> Option<PathBuf> {
    let path = match std::env::var_os("WEIR_JSON_SERVER") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/weir/node/node_modules/.bin/json-server"),
    };
    path.exists().then_some(path)
}

impl JsonServer {
    /// Starts json-server over `db` (a JSON object of collections), with an
    /// optional middleware file's text (`--middlewares`).
    pub fn start(db: &Json, middleware: Option<&str>) -> Option<JsonServer> {
        let Some(bin) = binary() else {
            let note = "json-server not found (set WEIR_JSON_SERVER, or: npm install --prefix ~/.cache/weir/node json-server@0.17.4)";
            if std::env::var_os("CI").is_some() {
                panic!("{note}");
            }
            eprintln!("note: skipping: {note}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db.json"), db.to_string()).unwrap();
        // A free port: bind, note it, close. json-server binds it right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if let Some(text) = middleware {
            std::fs::write(dir.path().join("middleware.js"), text).unwrap();
        }
        let child = spawn(&bin, dir.path(), port, middleware.is_some());
        let server = JsonServer {
            port,
            child,
            dir,
            client: reqwest::blocking::Client::new(),
        };
        server.wait_listening();
        Some(server)
    }

    fn wait_listening(&self) {
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "json-server did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:port`, as a grant names it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything json-server printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log.txt")).unwrap_or_default()
    }

    /// The requests it logged (`GET /contacts?_page=1&_limit=5 200 ...`), colour
    /// codes removed; the tests' own requests included. json-server logs a
    /// request once its response has gone out, so a client may be done before
    /// the line is written: this waits until the log has been still for 150 ms.
    pub fn requests(&self) -> Vec<String> {
        let mut log = self.log();
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let now = self.log();
            if now == log {
                break;
            }
            log = now;
        }
        log.lines()
            .map(strip_ansi)
            .filter(|l| {
                ["GET ", "POST ", "PUT ", "PATCH ", "DELETE ", "HEAD "]
                    .iter()
                    .any(|m| l.starts_with(m))
            })
            .collect()
    }

    /// GET `path` as JSON (the test looking at the server's data).
    pub fn get(&self, path: &str) -> Json {
        self.client
            .get(self.url(path))
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap()
    }

    /// PATCH `path` with `body` (the test changing the server's data).
    pub fn patch(&self, path: &str, body: &Json) {
        self.client
            .patch(self.url(path))
            .json(body)
            .send()
            .unwrap()
            .error_for_status()
            .unwrap();
    }
}

fn spawn(bin: &Path, dir: &Path, port: u16, middleware: bool) -> Child {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("log.txt"))
        .unwrap();
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("db.json")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .env("NO_COLOR", "1");
    if middleware {
        cmd.args(["--middlewares", "middleware.js"]);
    }
    cmd.spawn().expect("start json-server")
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
