//! The one way secret values are kept out of text that leaves weir: execution
//! errors, record errors, logs (stored and traced), alerts, webhook bodies, API
//! responses.
//!
//! A [`Redactor`] holds the secret values one execution (or one check) knows:
//! stored connection secrets, values read from the environment, options the
//! plugin declares `secret`. The engine builds one per execution, check or
//! preview and scrubs with it everything it hands back (errors, validation
//! reports, execution reports, record errors, checkpoints);
//! [`Redactor::remember`] also adds the values to a process-wide set, with
//! which the library's own log lines are scrubbed where they are made (a
//! plugin's log line, a trap, a retry warning, the daemon's "execution
//! failed"). So an embedder with any `tracing` subscriber never sees a known
//! secret; [`ScrubbingWriter`], which the `weir` binary installs, scrubs every
//! written line once more (defence in depth).
//!
//! What it is not: a guarantee for secrets shorter than [`MIN_LEN`] characters
//! (replacing them would shred unrelated text and protect nothing), nor for a
//! secret transformed by the remote side (base64 of `user:password` is scrubbed
//! because the redactor adds that form too).

use std::io::Write;
use std::sync::{Arc, OnceLock, RwLock};

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

    /// [`Redactor::scrub`] of an owned text, which is handed back as is (no
    /// copy) when it holds no secret.
    pub fn scrub_owned(&self, text: String) -> String {
        if self.values.iter().any(|v| text.contains(v.as_str())) {
            self.scrub(&text)
        } else {
            text
        }
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

    /// Adds these values to the process-wide set that the library's own log
    /// lines and the log sink scrub with. Cheap when they are known already (the
    /// common case: a scheduled project runs again).
    pub fn remember(&self) {
        if self.values.is_empty() {
            return;
        }
        let lock = known();
        {
            let known = lock.read().unwrap_or_else(|e| e.into_inner());
            if self.values.iter().all(|v| known.values.contains(v)) {
                return;
            }
        }
        let mut known = lock.write().unwrap_or_else(|e| e.into_inner());
        let mut grown = Redactor::clone(&known);
        grown.merge(self);
        *known = Arc::new(grown);
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

/// The process-wide set: a snapshot replaced whole when it grows, so scrubbing
/// holds no lock.
fn known() -> &'static RwLock<Arc<Redactor>> {
    static KNOWN: OnceLock<RwLock<Arc<Redactor>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

fn known_now() -> Arc<Redactor> {
    known().read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `text` scrubbed of every secret value this process has seen.
pub fn scrub_known(text: &str) -> String {
    known_now().scrub(text)
}

/// [`scrub_known`] of an owned text, handed back as is when it holds none.
pub fn scrub_known_owned(text: String) -> String {
    known_now().scrub_owned(text)
}

/// A `tracing_subscriber` writer that scrubs every line of the secret values the
/// process has seen before writing it to stderr. The formatter writes one event
/// with one `write_all`, so a value never straddles two writes.
#[derive(Clone, Copy, Default)]
pub struct ScrubbingWriter;

impl Write for ScrubbingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let known = known_now();
        let text = String::from_utf8_lossy(buf);
        if known.values.iter().any(|v| text.contains(v.as_str())) {
            std::io::stderr().write_all(known.scrub(&text).as_bytes())?;
        } else {
            std::io::stderr().write_all(buf)?;
        }
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
