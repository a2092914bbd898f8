//! Values between JSON and batch columns, and the text forms JSON needs for the
//! types it lacks (timestamps, bytes, exact decimals).

use std::fmt::Write as _;

use serde_json::{Number, Value as Json};
use weir_sdk::{Column, ColumnData, FieldType};

use weir_sdk::files::quoted;

/// A JSON value checked against a column type, ready to push.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    Null,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Str(&'a str),
    /// A non-string value in a text column, pushed as its JSON text.
    Json(&'a Json),
}

/// Checks `value` against a column of type `ty` (one of the inferred types). The
/// error says why, naming the value; the caller adds the field.
pub fn cell(ty: FieldType, value: Option<&Json>) -> Result<Cell<'_>, String> {
    let value = match value {
        None | Some(Json::Null) => return Ok(Cell::Null),
        Some(v) => v,
    };
    let fail = |what: &str| {
        let text = serde_json::to_string(value).unwrap_or_default();
        Err(format!("{} is not {what}", quoted(&text)))
    };
    match (ty, value) {
        (FieldType::Boolean, Json::Bool(b)) => Ok(Cell::Boolean(*b)),
        (FieldType::Boolean, _) => fail("a boolean"),
        (FieldType::Integer, Json::Number(n)) => match integer(n) {
            Some(i) => Ok(Cell::Integer(i)),
            None => fail("an integer"),
        },
        (FieldType::Integer, _) => fail("an integer"),
        (FieldType::Float, Json::Number(n)) => match n.as_f64() {
            Some(x) => Ok(Cell::Float(x)),
            None => fail("a number"),
        },
        (FieldType::Float, _) => fail("a number"),
        (_, Json::String(s)) => Ok(Cell::Str(s)),
        (_, other) => Ok(Cell::Json(other)),
    }
}

/// A JSON number as i64: an integer in range, or a float with no fraction that
/// fits exactly (`3.0` in an integer column is the integer 3).
fn integer(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let x = n.as_f64()?;
    // -2^63 is exact in f64; 2^63 is not an i64.
    if x.fract() == 0.0 && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x)
    {
        Some(x as i64)
    } else {
        None
    }
}

/// Appends a checked cell to its column (and its null flag).
pub fn push(col: &mut Column, cell: Cell<'_>) {
    col.nulls.push(cell == Cell::Null);
    match (&mut col.data, cell) {
        (ColumnData::Boolean(v), c) => v.push(c == Cell::Boolean(true)),
        (ColumnData::Integer(v) | ColumnData::Timestamp(v), c) => {
            v.push(if let Cell::Integer(i) = c { i } else { 0 })
        }
        (ColumnData::Float(v), c) => v.push(match c {
            Cell::Float(x) => x,
            Cell::Integer(i) => i as f64,
            _ => 0.0,
        }),
        (ColumnData::Text(v) | ColumnData::Decimal(v) | ColumnData::Bytes(v), c) => {
            if v.offsets.is_empty() {
                v.offsets.push(0);
            }
            match c {
                Cell::Str(s) => v.data.extend_from_slice(s.as_bytes()),
                // Straight into the column's buffer; cannot fail on a Vec.
                Cell::Json(j) => {
                    let _ = serde_json::to_writer(&mut v.data, j);
                }
                _ => {}
            }
            v.offsets.push(v.data.len() as u32);
        }
    }
}

/// Value `i` of a batch column as the JSON the writer stores.
pub fn to_json(col: &Column, i: usize) -> Json {
    if col.is_null(i) {
        return Json::Null;
    }
    match &col.data {
        ColumnData::Boolean(v) => Json::Bool(v[i]),
        ColumnData::Integer(v) => Json::Number(v[i].into()),
        // JSON has no NaN or infinity.
        ColumnData::Float(v) => Number::from_f64(v[i]).map_or(Json::Null, Json::Number),
        // Decimals stay strings: a JSON number would be read back as a float by
        // most consumers, losing the exactness the type promises.
        ColumnData::Text(v) | ColumnData::Decimal(v) => {
            Json::String(v.get_str(i).unwrap_or_default().to_owned())
        }
        ColumnData::Timestamp(v) => Json::String(format_timestamp(v[i])),
        ColumnData::Bytes(v) => Json::String(hex::encode(v.get(i))),
    }
}

/// Appends value `i` of a batch column as the JSON text of [`to_json`]'s value,
/// straight from the column: no `Json`, no `String` per value. Text without bytes
/// that need escaping (the usual case) is copied as it is.
pub fn write_json(col: &Column, i: usize, out: &mut Vec<u8>) {
    if col.is_null(i) {
        out.extend_from_slice(b"null");
        return;
    }
    match &col.data {
        ColumnData::Boolean(v) => out.extend_from_slice(if v[i] { b"true" } else { b"false" }),
        ColumnData::Integer(v) => push_int(out, v[i]),
        // JSON has no NaN or infinity; serde_json writes a finite f64 as the
        // `Number` would be written.
        ColumnData::Float(v) if v[i].is_finite() => {
            let _ = serde_json::to_writer(&mut *out, &v[i]);
        }
        ColumnData::Float(_) => out.extend_from_slice(b"null"),
        ColumnData::Text(v) | ColumnData::Decimal(v) => write_str(v.get(i), out),
        ColumnData::Timestamp(v) => {
            out.push(b'"');
            let _ = write_timestamp(&mut ByteWriter(out), v[i]);
            out.push(b'"');
        }
        ColumnData::Bytes(v) => {
            out.push(b'"');
            for b in v.get(i) {
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            out.push(b'"');
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as a JSON string. Text that is not UTF-8 is written as `""`,
/// as [`to_json`] reads it.
pub fn write_str(bytes: &[u8], out: &mut Vec<u8>) {
    if plain(bytes) {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    match std::str::from_utf8(bytes) {
        // serde_json's escaping, so the output is the same either way.
        Ok(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Err(_) => out.extend_from_slice(b"\"\""),
    }
}

/// Whether `bytes` is ASCII with nothing JSON escapes (`"`, `\\`, control
/// characters): 8 bytes at a time.
fn plain(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes that are zero (after an xor), or below 0x20, set their high bit here;
    // exact as a whole-word answer.
    let flags = |w: u64| {
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        (w | (w.wrapping_sub(ONES * 0x20) & !w)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH
    };
    let mut chunks = bytes.chunks_exact(8);
    let mut seen = 0;
    for c in &mut chunks {
        seen |= flags(u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padded with spaces, which are plain.
        let mut tail = [b' '; 8];
        tail[..rest.len()].copy_from_slice(rest);
        seen |= flags(u64::from_le_bytes(tail));
    }
    seen == 0
}

/// Appends an integer's decimal digits.
pub fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(digits(v, &mut buf));
}

/// An integer's decimal digits (and sign), in `buf`.
fn digits(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// Appends value `i` as key text, what [`key_part`] makes of [`to_json`]'s
/// value, without building it for integers and text; `false` (and nothing
/// appended) for a null or empty value, which cannot be a key.
pub fn push_key_part(col: &Column, i: usize, key: &mut String) -> bool {
    if col.is_null(i) {
        return false;
    }
    match &col.data {
        ColumnData::Integer(v) => {
            let mut buf = [0u8; 20];
            key.push_str(std::str::from_utf8(digits(v[i], &mut buf)).expect("ASCII digits"));
            true
        }
        ColumnData::Text(v) | ColumnData::Decimal(v) => match v.get_str(i) {
            Some(s) if !s.is_empty() => {
                key.push_str(s);
                true
            }
            _ => false,
        },
        _ => match key_part(Some(&to_json(col, i))) {
            Some(part) => {
                key.push_str(&part);
                true
            }
            None => false,
        },
    }
}

/// `fmt::Write` into a byte buffer.
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A JSON value as key text: strings as they are, other scalars as their JSON
/// text; `None` for a missing, null or empty value, which cannot be a key.
pub fn key_part(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::Null => None,
        Json::String(s) if s.is_empty() => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Microseconds since the epoch as RFC 3339 UTC: `2024-03-01T12:00:00Z`, with
/// `.ffffff` only when the microseconds are not zero. Years outside 0000–9999,
/// which RFC 3339 cannot write, get a sign and as many digits as they need (the
/// ISO 8601 expanded form).
pub fn format_timestamp(micros: i64) -> String {
    let mut out = String::with_capacity(32);
    let _ = write_timestamp(&mut out, micros);
    out
}

/// [`format_timestamp`] into any writer.
fn write_timestamp(out: &mut impl std::fmt::Write, micros: i64) -> std::fmt::Result {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    match y {
        0..=9999 => write!(out, "{y:04}"),
        y if y < 0 => write!(out, "-{:04}", -y),
        y => write!(out, "+{y}"),
    }?;
    write!(
        out,
        "-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )?;
    if frac != 0 {
        write!(out, ".{frac:06}")?;
    }
    out.write_char('Z')
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`): eras of 400 years, each 146 097 days, make it exact
/// without tables or loops.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_sdk::{BatchBuilder, Value, VarData};

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_timestamp(1_709_294_400_000_000),
            "2024-03-01T12:00:00Z"
        );
        assert_eq!(
            format_timestamp(1_709_294_400_000_123),
            "2024-03-01T12:00:00.000123Z"
        );
        assert_eq!(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_timestamp(951_782_400_000_000),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            format_timestamp(1_709_251_199_500_000),
            "2024-02-29T23:59:59.500000Z"
        );
        assert_eq!(
            format_timestamp(-2_203_891_200_000_000),
            "1900-03-01T00:00:00Z"
        );
        assert_eq!(
            format_timestamp(253_402_300_799_000_000),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            format_timestamp(253_402_300_800_000_000),
            "+10000-01-01T00:00:00Z"
        );
        assert_eq!(
            format_timestamp(-62_167_219_200_000_000),
            "0000-01-01T00:00:00Z"
        );
        assert_eq!(
            format_timestamp(-62_167_219_200_000_001),
            "-0001-12-31T23:59:59.999999Z"
        );
        // The extremes do not overflow.
        assert!(format_timestamp(i64::MIN).ends_with('Z'));
        assert!(format_timestamp(i64::MAX).starts_with("+294247-01-10T04:00:54.775807Z"));
    }

    #[test]
    fn civil_dates_agree_with_a_day_by_day_walk() {
        // Walk forward from 1600-01-01 (day -135140) across leap centuries.
        let (mut y, mut m, mut d) = (1600i64, 1u32, 1u32);
        for days in -135_140..-135_140 + 400 * 366 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > len[m as usize - 1] {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn cells_check_types() {
        use FieldType::*;
        assert_eq!(cell(Integer, Some(&json!(5))), Ok(Cell::Integer(5)));
        assert_eq!(cell(Integer, Some(&json!(5.0))), Ok(Cell::Integer(5)));
        assert_eq!(cell(Integer, None), Ok(Cell::Null));
        assert_eq!(cell(Integer, Some(&json!(null))), Ok(Cell::Null));
        assert_eq!(
            cell(Integer, Some(&json!("abc"))),
            Err("`\"abc\"` is not an integer".into())
        );
        assert!(cell(Integer, Some(&json!(5.5))).is_err());
        assert!(cell(Integer, Some(&json!(18446744073709551615u64))).is_err());
        assert!(cell(Integer, Some(&json!(9.3e18))).is_err());
        assert_eq!(cell(Float, Some(&json!(2))), Ok(Cell::Float(2.0)));
        assert!(cell(Float, Some(&json!(true))).is_err());
        assert_eq!(cell(Boolean, Some(&json!(false))), Ok(Cell::Boolean(false)));
        assert!(cell(Boolean, Some(&json!(0))).is_err());
        assert_eq!(cell(Text, Some(&json!("x"))), Ok(Cell::Str("x")));
        let arr = json!([1, {"a": 2}]);
        assert_eq!(cell(Text, Some(&arr)), Ok(Cell::Json(&arr)));
    }

    #[test]
    fn values_to_json() {
        let mut b = BatchBuilder::new(&[
            ("i", FieldType::Integer),
            ("f", FieldType::Float),
            ("d", FieldType::Decimal),
            ("t", FieldType::Timestamp),
            ("b", FieldType::Bytes),
            ("s", FieldType::Text),
            ("o", FieldType::Boolean),
        ]);
        b.push_row(&[
            Value::Integer(-3),
            Value::Float(f64::NAN),
            Value::Decimal("12.50".into()),
            Value::Timestamp(1_709_294_400_000_000),
            Value::Bytes(vec![0, 0xab, 0xff]),
            Value::Text("é".into()),
            Value::Boolean(true),
        ])
        .unwrap();
        b.push_row(&[
            Value::Null,
            Value::Float(0.1),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ])
        .unwrap();
        let batch = b.finish();
        let row = |i| -> Vec<Json> { batch.columns.iter().map(|c| to_json(c, i)).collect() };
        assert_eq!(
            row(0),
            vec![
                json!(-3),
                Json::Null,
                json!("12.50"),
                json!("2024-03-01T12:00:00Z"),
                json!("00abff"),
                json!("é"),
                json!(true)
            ]
        );
        assert_eq!(row(1)[0], Json::Null);
        assert_eq!(row(1)[1], json!(0.1));
    }

    #[test]
    fn key_parts() {
        assert_eq!(key_part(Some(&json!("a|b"))).as_deref(), Some("a|b"));
        assert_eq!(key_part(Some(&json!(12))).as_deref(), Some("12"));
        assert_eq!(key_part(Some(&json!(true))).as_deref(), Some("true"));
        assert_eq!(key_part(Some(&json!(""))), None);
        assert_eq!(key_part(Some(&json!(null))), None);
        assert_eq!(key_part(None), None);
    }

    /// `write_json` and `push_key_part` agree with the `Json` path they replace.
    #[test]
    fn direct_writing_matches_the_json_values() {
        let mut texts: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for t in [
            "",
            "plain",
            "exactly8",
            "sixteen bytes ok",
            "q\"uote",
            "back\\slash",
            "tab\tnew\nline\r",
            "\u{7f}del",
            "\u{1}\u{1f}",
            "é and ü",
            "€uro sign",
            "a long plain text that goes on for more than sixteen bytes",
            "ends in a quote\"",
        ] {
            texts.push(t.as_bytes().to_vec());
        }
        texts.push(vec![b'a', 0xff, b'b']);
        texts.push(vec![0xc3]);
        let mut b = BatchBuilder::new(&[
            ("s", FieldType::Text),
            ("d", FieldType::Decimal),
            ("i", FieldType::Integer),
            ("f", FieldType::Float),
            ("t", FieldType::Timestamp),
            ("b", FieldType::Bytes),
            ("o", FieldType::Boolean),
        ]);
        let ints = [0, 7, -1, 10, -10, 1234567890, i64::MAX, i64::MIN];
        let floats = [0.0, -0.0, 0.1, 1.0, 1e300, -2.5e-8, f64::NAN, f64::INFINITY];
        for (n, t) in texts.iter().enumerate() {
            let text = String::from_utf8_lossy(t).into_owned();
            b.push_row(&[
                Value::Text(text.clone()),
                if n % 3 == 0 {
                    Value::Null
                } else {
                    Value::Decimal(text)
                },
                Value::Integer(ints[n % ints.len()]),
                Value::Float(floats[n % floats.len()]),
                Value::Timestamp(ints[n % ints.len()] / 3),
                Value::Bytes(t.clone()),
                if n % 3 == 1 {
                    Value::Null
                } else {
                    Value::Boolean(n % 2 == 0)
                },
            ])
            .unwrap();
        }
        let mut batch = b.finish();
        // Text as it may arrive: the raw bytes, UTF-8 or not.
        if let ColumnData::Text(v) = &mut batch.columns[0].data {
            let mut raw = VarData::default();
            for t in &texts {
                raw.push(t);
            }
            *v = raw;
        }
        for col in &batch.columns {
            for i in 0..batch.len() {
                let mut out = Vec::new();
                write_json(col, i, &mut out);
                let want = serde_json::to_vec(&to_json(col, i)).unwrap();
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&want),
                    "column {} row {i}",
                    col.name
                );
                let mut key = String::from("x|");
                let pushed = push_key_part(col, i, &mut key);
                match key_part(Some(&to_json(col, i))) {
                    Some(part) => assert!(pushed && key == format!("x|{part}")),
                    None => assert!(!pushed && key == "x|"),
                }
            }
        }
    }
}
