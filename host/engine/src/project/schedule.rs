//! A project's schedule, retry policy and notification addresses: the validated forms
//! of `[project] schedule`, `timezone`, `[project.retry]` and `[project.notify]`.
//!
//! These are plain data the daemon acts on; nothing here runs anything.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// When a project runs: a cron expression in an explicit time zone (UTC by default).
///
/// Five fields (`minute hour day-of-month month day-of-week`) as in crontab, or six
/// with seconds first (`*/5 * * * * *`: every five seconds) — the cron crate itself
/// wants seconds, so five-field expressions get `0` seconds prepended.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// As written.
    pub expr: String,
    pub timezone: chrono_tz::Tz,
    cron: cron::Schedule,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.expr == other.expr && self.timezone == other.timezone
    }
}

impl Schedule {
    /// Parses `expr` in `timezone` (an IANA name such as `Europe/Paris`; `None` = UTC).
    /// The error says which part is wrong, in words a person can act on.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_string(),
            n => {
                return Err(format!(
                    "schedule {expr:?} has {n} fields; write 5 (minute hour day month weekday, \
                     e.g. \"*/15 * * * *\") or 6 with seconds first (e.g. \"*/10 * * * * *\")"
                ));
            }
        };
        let cron = cron::Schedule::from_str(&full)
            .map_err(|e| format!("schedule {expr:?} is not a valid cron expression: {e}"))?;
        let timezone = match timezone {
            None => chrono_tz::UTC,
            Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                format!("timezone {name:?} is not an IANA time zone name (e.g. \"UTC\", \"Europe/Paris\", \"America/New_York\")")
            })?,
        };
        let s = Schedule {
            expr: expr.to_string(),
            timezone,
            cron,
        };
        if s.next_after(Utc::now()).is_none() {
            return Err(format!("schedule {expr:?} never fires again"));
        }
        Ok(s)
    }

    /// The first firing strictly after `t`, in UTC.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .after(&local)
            .next()
            .map(|n| n.with_timezone(&Utc))
    }
}

/// How a project reacts to failures.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Tries per plugin call that fails with a transient connection error (the plugin's
    /// `connection` error with `transient: true`), the first included. Data errors
    /// (rejected records) are never retried: trying again gives the same answer.
    pub attempts: u32,
    /// Wait before the first retry; doubles each time, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// After this many consecutive executions ended in Error, the daemon pauses the
    /// project's schedule and says so (0 = never).
    pub pause_after_errors: u32,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            pause_after_errors: 5,
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): exponential, capped.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// Who hears about a project's failures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Notify {
    pub emails: Vec<String>,
    pub webhooks: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_expressions_fire_when_expected() {
        let t: DateTime<Utc> = "2026-11-25T10:07:30Z".parse().unwrap();
        let every_15 = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            every_15.next_after(t).unwrap().to_rfc3339(),
            "2026-11-25T10:15:00+00:00"
        );
        let every_5s = Schedule::parse("*/5 * * * * *", None).unwrap();
        assert_eq!(
            every_5s.next_after(t).unwrap().to_rfc3339(),
            "2026-11-25T10:07:35+00:00"
        );
    }

    #[test]
    fn the_time_zone_moves_the_firing() {
        let t: DateTime<Utc> = "2026-11-25T00:00:00Z".parse().unwrap();
        let paris = Schedule::parse("0 9 * * *", Some("Europe/Paris")).unwrap();
        // 09:00 in Paris in November (UTC+1) is 08:00 UTC.
        assert_eq!(
            paris.next_after(t).unwrap().to_rfc3339(),
            "2026-11-25T08:00:00+00:00"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert!(
            Schedule::parse("* * *", None)
                .unwrap_err()
                .contains("has 3 fields")
        );
        assert!(
            Schedule::parse("61 * * * *", None)
                .unwrap_err()
                .contains("not a valid cron expression")
        );
        assert!(
            Schedule::parse("* * * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .contains("not an IANA time zone")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..RetryPolicy::default()
        };
        let d: Vec<u128> = (1..=5).map(|r| p.delay(r).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 500, 500]);
        assert_eq!(p.delay(200), Duration::from_millis(500));
    }
}
