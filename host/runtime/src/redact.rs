//! The one way secret values are kept out of text that leaves weir: execution
//! errors, record errors, logs (stored and traced), alerts, webhook bodies, API
//! responses.
//!
//! A [`Redactor`] holds the secret values one execution (or one check) knows:
//! stored connection secrets, values read from the environment, options the
//! plugin declares `secret`. [`Redactor::remember`] also adds them to a
//! process-wide set, which [`ScrubbingWriter`] applies to every traced line —
//! a plugin's error can surface in a log line far from the code that knew the
//! secret (a retry warning, a trap, the daemon's "execution failed"), so the
//! log sink scrubs rather than each call site.
//!
//! What it is not: a guarantee for secrets shorter than [`MIN_LEN`] characters
//! (replacing them would shred unrelated text and protect nothing), nor for a
//! secret transformed by the remote side (base64 of `user:password` is scrubbed
//! because the redactor adds that form too).

use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// What a secret value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not scrubbed.
pub const MIN_LEN: usize = 4;

/// The secret values known for one piece of work.
#[derive(Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// A redactor that knows no secret yet.
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret value (empty and too-short values are ignored).
    pub fn add(&mut self, value: &str) {
        if value.len() >= MIN_LEN && !self.values.iter().any(|v| v == value) {
            self.values.push(value.to_owned());
            // Longest first: a secret containing another is replaced whole.
            self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        }
    }

    /// Adds every value.
    pub fn extend<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) {
        for v in values {
            self.add(v);
        }
    }

    /// Adds the values of another redactor.
    pub fn merge(&mut self, other: &Redactor) {
        self.extend(other.values.iter().map(String::as_str));
    }

    /// Knows no secret value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every known secret value replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        scrub(text, self.values.iter().map(String::as_str))
    }

    /// A JSON value with every string in it scrubbed (for API responses).
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        if self.values.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                if self.values.iter().any(|v| s.contains(v.as_str())) {
                    *s = self.scrub(s);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }

    /// Adds these values to the process-wide set the log sink scrubs with.
    pub fn remember(&self) {
        let mut known = known().lock().unwrap_or_else(|e| e.into_inner());
        known.merge(self);
    }
}

/// Replaces each value (of at least [`MIN_LEN`] characters) in `text`.
pub fn scrub<'a>(text: &str, values: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = text.to_owned();
    for s in values.into_iter().filter(|s| s.len() >= MIN_LEN) {
        if out.contains(s) {
            out = out.replace(s, REDACTED);
        }
    }
    out
}

fn known() -> &'static Mutex<Redactor> {
    static KNOWN: OnceLock<Mutex<Redactor>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// `text` scrubbed of every secret value this process has seen.
pub fn scrub_known(text: &str) -> String {
    known()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .scrub(text)
}

/// A `tracing_subscriber` writer that scrubs every line of the secret values the
/// process has seen before writing it to stderr. The formatter writes one event
/// with one `write_all`, so a value never straddles two writes.
#[derive(Clone, Copy, Default)]
pub struct ScrubbingWriter;

impl Write for ScrubbingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(scrub_known(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubbingWriter {
    type Writer = ScrubbingWriter;
    fn make_writer(&'a self) -> ScrubbingWriter {
        ScrubbingWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_secret_first_and_short_ones_left() {
        let mut r = Redactor::new();
        r.extend(["abcd", "abcdefgh", "xy", ""]);
        assert_eq!(
            r.scrub("t=abcdefgh u=abcd xy"),
            "t=[redacted] u=[redacted] xy"
        );
        let mut v = serde_json::json!({"a": ["has abcd in it", 3], "b": "clean"});
        r.scrub_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a": ["has [redacted] in it", 3], "b": "clean"})
        );
    }

    #[test]
    fn remembered_values_are_scrubbed_from_log_lines() {
        let mut r = Redactor::new();
        r.add("remembered-secret-1234");
        assert!(scrub_known("x remembered-secret-1234 y").contains("remembered-secret-1234"));
        r.remember();
        assert_eq!(scrub_known("x remembered-secret-1234 y"), "x [redacted] y");
    }
}
