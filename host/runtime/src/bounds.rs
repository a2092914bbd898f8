//! Bounds on what a plugin hands the host besides batches: texts are cut where
//! they enter (they are for people), cursors and counts are refused (cutting
//! them would change what they mean). No wasmtime here: `fuzz/` includes this
//! file by path.

/// The longest error text kept from a plugin: a message travels on into reports,
/// the store, logs and API answers, so a hostile plugin must not make it huge.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 8 << 10;

/// The longest record key or source position kept from a plugin's rejected
/// record (1 KiB): they are for people, and each one may be stored.
pub const MAX_KEY_BYTES: usize = 1 << 10;

/// The longest cursor a source may return (4 KiB). A cursor is stored at every
/// checkpoint and handed back verbatim, so it is refused, not cut: a cut cursor
/// would resume from the wrong place.
pub const MAX_CURSOR_BYTES: usize = 4 << 10;

/// Cuts `m` to [`MAX_ERROR_MESSAGE_BYTES`] at a character boundary, saying so.
pub fn bounded(m: String) -> String {
    bounded_to(m, MAX_ERROR_MESSAGE_BYTES)
}

/// Cuts `m` to `max` bytes at a character boundary, saying so.
pub fn bounded_to(mut m: String, max: usize) -> String {
    if m.len() > max {
        let total = m.len();
        let mut end = max;
        while !m.is_char_boundary(end) {
            end -= 1;
        }
        m.truncate(end);
        m.push_str(&format!("… ({} more bytes cut by the host)", total - end));
    }
    m
}

/// Checks what a read returned against what was asked: records plus rejected
/// records at most `max_records` (a rejected record is a record read), and the
/// next cursor at most [`MAX_CURSOR_BYTES`]. `Err` is the contract message.
pub fn check_page(
    records: u64,
    rejected: u64,
    max_records: u32,
    cursor: Option<&str>,
) -> Result<(), String> {
    if records.saturating_add(rejected) > u64::from(max_records) {
        return Err(format!(
            "read returned {records} records and {rejected} rejected records for a page of at most {max_records}"
        ));
    }
    if let Some(c) = cursor
        && c.len() > MAX_CURSOR_BYTES
    {
        return Err(format!(
            "read returned a cursor of {} bytes; a cursor is at most {MAX_CURSOR_BYTES} bytes (4 KiB)",
            c.len()
        ));
    }
    Ok(())
}

/// Checks a transform's failure count against its records: more failures than
/// records can only repeat indices.
pub fn check_failures(failures: usize, records: usize) -> Result<(), String> {
    if failures > records {
        return Err(format!(
            "transform reported {failures} failures for {records} records"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cursors_and_failures_past_their_bounds_are_refused_by_name() {
        assert!(check_page(60, 40, 100, Some(&"7".repeat(MAX_CURSOR_BYTES))).is_ok());
        assert_eq!(
            check_page(100, 600_000, 100, None).unwrap_err(),
            "read returned 100 records and 600000 rejected records for a page of at most 100"
        );
        assert_eq!(
            check_page(1, 0, 100, Some(&"7".repeat(32 << 20))).unwrap_err(),
            "read returned a cursor of 33554432 bytes; a cursor is at most 4096 bytes (4 KiB)"
        );
        assert!(check_failures(10, 10).is_ok());
        assert_eq!(
            check_failures(600_000, 100).unwrap_err(),
            "transform reported 600000 failures for 100 records"
        );
    }

    #[test]
    fn texts_are_cut_at_a_character_boundary_saying_how_much() {
        let cut = bounded_to("é".repeat(1_000), MAX_KEY_BYTES);
        assert!(cut.starts_with(&"é".repeat(512)));
        assert!(cut.ends_with("… (976 more bytes cut by the host)"), "{cut}");
        assert_eq!(bounded_to("short".into(), MAX_KEY_BYTES), "short");
    }
}
