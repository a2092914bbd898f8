//! A small WebDriver (W3C) client for the browser tests: starts `chromedriver` on a
//! free port, opens one headless Chromium session with a fresh profile, and offers
//! what the tests need (navigate, find, wait, click, type, read, run a script,
//! screenshot). The session and chromedriver end on drop.
//!
//! Include it with `#[path = "common/browser.rs"] mod browser;`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key under which W3C WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether Chromium and chromedriver are installed where the tests expect them.
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// A WebDriver error: the command, and the driver's error code and message.
#[derive(Debug, Clone)]
pub struct WdError {
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

pub struct Browser {
    http: reqwest::blocking::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// One element of the page, valid until the page replaces it (then its commands
/// fail with `stale element reference`).
#[derive(Clone)]
pub struct Element<'a> {
    browser: &'a Browser,
    pub id: String,
}

impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({})", self.id)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (1280×900).
    pub fn start() -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("profile dir");
        // From here on, a panic must not leak chromedriver: keep it in a guard.
        let mut guard = DriverGuard(Some(driver));
        let started = Instant::now();
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            if let Some(status) = guard.0.as_mut().unwrap().try_wait().unwrap() {
                panic!("chromedriver exited at start: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1280,900".into(),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
                }
            }
        });
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("create a WebDriver session: {e}"));
        let Some(id) = response["value"]["sessionId"].as_str() else {
            panic!("create a WebDriver session: {response}");
        };
        Browser {
            http,
            session: format!("{base}/session/{id}"),
            driver: guard.0.take().unwrap(),
            _profile: profile,
        }
    }

    /// One WebDriver command; `body` None = GET, else POST with it.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.session);
        let request = match (method, body) {
            ("DELETE", _) => self.http.delete(&url),
            ("GET", _) => self.http.get(&url),
            (_, body) => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request.send().map_err(|e| WdError {
            error: "transport".into(),
            message: format!("{method} {path}: {e}"),
        })?;
        let value: Value = response.json().map_err(|e| WdError {
            error: "transport".into(),
            message: format!("{method} {path}: {e}"),
        })?;
        let value = value.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err(WdError {
                error: error.to_string(),
                message: value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            });
        }
        Ok(value)
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn element(&self, value: &Value) -> Element<'_> {
        Element {
            browser: self,
            id: value[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("not an element: {value}"))
                .to_string(),
        }
    }

    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn current_url(&self) -> String {
        self.must("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn title(&self) -> String {
        self.must("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<Element<'_>> {
        match self.command(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        ) {
            Ok(v) => Some(self.element(&v)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("find {css:?}: {e}"),
        }
    }

    /// The first element matching `css`; panics if there is none.
    pub fn find(&self, css: &str) -> Element<'_> {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element matches {css:?} on {}", self.current_url()))
    }

    pub fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let v = self.must(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v.as_array()
            .map(|a| a.iter().map(|e| self.element(e)).collect())
            .unwrap_or_default()
    }

    /// Polls until an element matches `css` (every 100 ms); panics after `timeout`.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element<'_> {
        let started = Instant::now();
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            if started.elapsed() > timeout {
                panic!(
                    "no element matches {css:?} within {timeout:?} on {}",
                    self.current_url()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `check` until it returns Some (every 100 ms); panics with `what` after `timeout`.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Browser) -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            if let Some(t) = check(self) {
                return t;
            }
            if started.elapsed() > timeout {
                panic!("{what}: not within {timeout:?} on {}", self.current_url());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Finds and clicks, retrying while the element is being replaced (a live page
    /// re-renders), covered (then scrolled to the middle of the window) or not yet
    /// clickable, for up to 10 s.
    pub fn click(&self, css: &str) {
        let started = Instant::now();
        loop {
            let result = match self.try_find(css) {
                Some(e) => e.try_click().or_else(|err| {
                    if err.error != "element click intercepted" {
                        return Err(err);
                    }
                    // Under a sticky header or a toast: bring it to the middle and retry.
                    let _ = self.command(
                        "POST",
                        "/execute/sync",
                        Some(json!({
                            "script": "arguments[0].scrollIntoView({block: 'center', inline: 'center'});",
                            "args": [e.as_arg()],
                        })),
                    );
                    e.try_click()
                }),
                None => Err(WdError {
                    error: "no such element".into(),
                    message: css.into(),
                }),
            };
            match result {
                Ok(()) => return,
                Err(e) if started.elapsed() > Duration::from_secs(10) => {
                    panic!("click {css:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let data = self.must("GET", "/screenshot", None);
        let png = base64_decode(data.as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Saves a PNG of the whole page: the window grows to the document's height
    /// (at most `max_height`) for the shot, then returns to its size.
    pub fn screenshot_full(&self, path: &Path, max_height: u32) {
        let rect = self.must("GET", "/window/rect", None);
        let height = self
            .execute(
                "return Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight));",
                vec![],
            )
            .as_u64()
            .unwrap_or(900) as u32;
        let inner = self
            .execute("return window.innerHeight;", vec![])
            .as_u64()
            .unwrap_or(900) as u32;
        let chrome = (rect["height"].as_u64().unwrap_or(900) as u32).saturating_sub(inner);
        let _ = self.command(
            "POST",
            "/window/rect",
            Some(json!({ "width": rect["width"], "height": (height + chrome).min(max_height) })),
        );
        std::thread::sleep(Duration::from_millis(300));
        self.screenshot(path);
        let _ = self.command(
            "POST",
            "/window/rect",
            Some(json!({ "width": rect["width"], "height": rect["height"] })),
        );
    }

    /// Ends the session and chromedriver (also done on drop).
    pub fn quit(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.session.is_empty() {
            return;
        }
        let _ = self.http.delete(&self.session).send();
        self.session.clear();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl<'a> Element<'a> {
    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    pub fn try_click(&self) -> Result<(), WdError> {
        self.browser
            .command("POST", &self.path("/click"), Some(json!({})))
            .map(|_| ())
    }

    pub fn click(&self) {
        self.try_click().unwrap_or_else(|e| panic!("click: {e}"));
    }

    /// The rendered text (as the user sees it).
    pub fn text(&self) -> String {
        self.browser
            .must("GET", &self.path("/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An attribute or property (`None` if absent).
    pub fn attr(&self, name: &str) -> Option<String> {
        let v = self
            .browser
            .must("GET", &self.path(&format!("/attribute/{name}")), None);
        match v {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    /// The computed value of a CSS property, e.g. `background-color` → `rgb(22, 163, 74)`.
    pub fn css_value(&self, property: &str) -> String {
        self.browser
            .must("GET", &self.path(&format!("/css/{property}")), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn tag_name(&self) -> String {
        self.browser
            .must("GET", &self.path("/name"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn is_displayed(&self) -> bool {
        self.browser
            .must("GET", &self.path("/displayed"), None)
            .as_bool()
            .unwrap_or(false)
    }

    /// Types `text` into the element (an input), as key presses.
    pub fn type_text(&self, text: &str) {
        self.browser
            .must("POST", &self.path("/value"), Some(json!({ "text": text })));
    }

    pub fn clear(&self) {
        self.browser
            .must("POST", &self.path("/clear"), Some(json!({})));
    }

    /// The first descendant matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<Element<'a>> {
        match self.browser.command(
            "POST",
            &self.path("/element"),
            Some(json!({ "using": "css selector", "value": css })),
        ) {
            Ok(v) => Some(self.browser.element(&v)),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("find {css:?} in element: {e}"),
        }
    }

    pub fn find(&self, css: &str) -> Element<'a> {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no descendant matches {css:?}"))
    }

    pub fn find_all(&self, css: &str) -> Vec<Element<'a>> {
        let v = self.browser.must(
            "POST",
            &self.path("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        );
        v.as_array()
            .map(|a| a.iter().map(|e| self.browser.element(e)).collect())
            .unwrap_or_default()
    }

    /// This element as a script argument for `Browser::execute`.
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }
}

/// Standard base64 (with padding, whitespace ignored), as WebDriver returns screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
