//! Retrying plugin calls that failed with a *transient* connection error (the
//! plugin said `connection { transient: true }`: a refused connection, a 503, a
//! timeout). Data errors and traps are never retried here: the same input gives the
//! same answer, and a trapped instance is gone.
//!
//! The calls that go through this are safe to repeat: `check`, `read` (the same
//! cursor), `open-writer`, and `upsert` — an upsert is by key, so sending the batch
//! again gives the same destination state, and a plugin that answers `transient`
//! says its writer can take the batch again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::project::RetryPolicy;
use crate::runtime::CallError;

/// Calls `f` until it succeeds, fails with an error that is not transient, or the
/// policy's attempts are used up. Each retry is announced through `note` (the
/// execution log) after waiting the policy's backoff; a `stop` request ends the
/// waiting early with the last error.
pub(crate) fn with_retry<T>(
    policy: &RetryPolicy,
    stop: Option<&AtomicBool>,
    what: &str,
    mut note: impl FnMut(String),
    mut f: impl FnMut() -> Result<T, CallError>,
) -> Result<T, CallError> {
    let mut attempt = 1;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && attempt < policy.attempts => {
                let delay = policy.delay(attempt);
                // The error can quote a server that echoed a credential.
                let error = crate::runtime::redact::scrub_known_owned(e.to_string());
                tracing::warn!(call = what, attempt, delay_ms = delay.as_millis() as u64, %error, "transient failure; retrying");
                note(format!(
                    "warn {what}: transient failure (attempt {attempt} of {}), retrying in {:.1}s: {e}",
                    policy.attempts,
                    delay.as_secs_f64()
                ));
                if !sleep_unless_stopped(delay, stop) {
                    return Err(e);
                }
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sleeps `d` in short steps; false when a stop was requested meanwhile.
fn sleep_unless_stopped(d: Duration, stop: Option<&AtomicBool>) -> bool {
    let end = Instant::now() + d;
    loop {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_types::PluginError;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            pause_after_errors: 0,
        }
    }

    fn err(transient: bool) -> CallError {
        CallError::Plugin {
            plugin: "p".into(),
            error: if transient {
                PluginError::transient("down")
            } else {
                PluginError::connection("login refused")
            },
        }
    }

    #[test]
    fn transient_errors_are_retried_up_to_the_attempts() {
        let mut calls = 0;
        let mut notes = Vec::new();
        let r: Result<(), _> = with_retry(
            &policy(),
            None,
            "read",
            |n| notes.push(n),
            || {
                calls += 1;
                Err(err(true))
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 3);
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("attempt 1 of 3"), "{}", notes[0]);

        let mut calls = 0;
        let r = with_retry(
            &policy(),
            None,
            "read",
            |_| {},
            || {
                calls += 1;
                if calls < 3 { Err(err(true)) } else { Ok(calls) }
            },
        );
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), _> = with_retry(
            &policy(),
            None,
            "check",
            |_| {},
            || {
                calls += 1;
                Err(err(false))
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn a_stop_request_ends_the_wait() {
        let stop = AtomicBool::new(true);
        let slow = RetryPolicy {
            backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(60),
            ..policy()
        };
        let started = Instant::now();
        let mut calls = 0;
        let r: Result<(), _> = with_retry(
            &slow,
            Some(&stop),
            "read",
            |_| {},
            || {
                calls += 1;
                Err(err(true))
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
