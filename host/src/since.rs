//! The one reading of a "since" filter, shared by `weir executions list --since` and
//! `GET /api/v1/executions?since=`: a date (`2026-11-01`, midnight UTC), an RFC 3339
//! time (`2026-11-01T08:00:00Z`), or an age (`30m`, `12h`, `7d`) counted back from now.

/// The accepted forms, in words, for error messages.
pub const SINCE_FORMS: &str =
    "a date (2026-11-01), an RFC 3339 time (2026-11-01T08:00:00Z), or an age (30m, 12h, 7d)";

/// Milliseconds since the Unix epoch that `text` names, ages counted back from
/// `now_millis`; `None` when it is none of [`SINCE_FORMS`].
pub fn parse_since(text: &str, now_millis: i64) -> Option<i64> {
    let t = text.trim();
    if let Some((i, unit)) = t.char_indices().last() {
        let ms = match unit {
            'm' => Some(60_000),
            'h' => Some(3_600_000),
            'd' => Some(86_400_000),
            _ => None,
        };
        if let (Ok(n), Some(ms)) = (t[..i].parse::<u32>(), ms) {
            return Some(now_millis - i64::from(n) * ms);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_and_no_other() {
        let now = 10 * 86_400_000;
        assert_eq!(parse_since("30m", now), Some(now - 30 * 60_000));
        assert_eq!(parse_since("7d", now), Some(3 * 86_400_000));
        assert_eq!(parse_since("1970-01-02", now), Some(86_400_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z", now), Some(1000));
        for bad in ["banana", "", "-5d", "5", "d", "5w", "2026-13-01"] {
            assert_eq!(parse_since(bad, now), None, "{bad}");
        }
    }
}
