//! JSON bodies ↔ weir values: finding records in a response, inferring a
//! schema from a sample, converting each way.

use serde_json::{Map, Number, Value as Json};
use weir_sdk::{Error, FieldType, Value};

/// The value at a dotted path (segments); the root for an empty path.
pub fn at_path<'a>(json: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(json, |v, seg| match v {
        Json::Object(m) => m.get(seg),
        Json::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// The records array of a list response.
pub fn records_of<'a>(body: &'a Json, path: &[String]) -> Result<&'a [Json], Error> {
    match at_path(body, path) {
        Some(Json::Array(items)) => Ok(items),
        // An API that answers an empty list as null or leaves the field out.
        Some(Json::Null) | None if !path.is_empty() => Ok(&[]),
        _ => Err(Error::connection(format!(
            "the response has no array at {} (option `records`)",
            if path.is_empty() {
                "its root".to_owned()
            } else {
                format!("`{}`", path.join("."))
            }
        ))),
    }
}

/// Parses a response body as JSON; the error quotes its start.
pub fn parse_body(body: &[u8]) -> Result<Json, Error> {
    serde_json::from_slice(body).map_err(|e| {
        let text = String::from_utf8_lossy(&body[..body.len().min(120)]);
        Error::connection(format!("the response is not JSON ({e}): {}", text.trim()))
    })
}

/// Field types from sample records: the union of their keys, in order of first
/// appearance; booleans, integers, numbers, else text (strings, nested objects
/// and arrays, and fields only ever null).
pub fn infer(records: &[Json]) -> Vec<(String, FieldType)> {
    // None: only nulls seen so far.
    let mut fields: Vec<(String, Option<FieldType>)> = Vec::new();
    for record in records {
        let Json::Object(map) = record else { continue };
        for (name, value) in map {
            let seen = match value {
                Json::Null => None,
                Json::Bool(_) => Some(FieldType::Boolean),
                Json::Number(n) if n.is_i64() || n.is_u64() && n.as_i64().is_some() => {
                    Some(FieldType::Integer)
                }
                Json::Number(_) => Some(FieldType::Float),
                _ => Some(FieldType::Text),
            };
            match fields.iter_mut().find(|(n, _)| n == name) {
                None => fields.push((name.clone(), seen)),
                Some((_, ty)) => *ty = merge(*ty, seen),
            }
        }
    }
    fields
        .into_iter()
        .map(|(n, t)| (n, t.unwrap_or(FieldType::Text)))
        .collect()
}

fn merge(a: Option<FieldType>, b: Option<FieldType>) -> Option<FieldType> {
    use FieldType::*;
    match (a, b) {
        (None, t) | (t, None) => t,
        (Some(x), Some(y)) if x == y => Some(x),
        (Some(Integer | Float), Some(Integer | Float)) => Some(Float),
        _ => Some(Text),
    }
}

/// A JSON value as a value of type `ty`; the error says why (the caller names
/// the field).
pub fn to_value(ty: FieldType, json: Option<&Json>) -> Result<Value, String> {
    let json = match json {
        None | Some(Json::Null) => return Ok(Value::Null),
        Some(j) => j,
    };
    let fail = |what: &str| {
        let mut text = json.to_string();
        if text.len() > 60 {
            let cut = (0..=60)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push('…');
        }
        Err(format!("{text} is not {what}"))
    };
    match (ty, json) {
        (FieldType::Boolean, Json::Bool(b)) => Ok(Value::Boolean(*b)),
        (FieldType::Integer, Json::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Value::Integer(i)),
            None => match n.as_f64() {
                Some(x) if x.fract() == 0.0 && x.abs() < 9.0e18 => Ok(Value::Integer(x as i64)),
                _ => fail("an integer"),
            },
        },
        (FieldType::Float, Json::Number(n)) => n
            .as_f64()
            .map(Value::Float)
            .map_or_else(|| fail("a number"), Ok),
        (FieldType::Decimal, Json::Number(n)) => Ok(Value::Decimal(n.to_string())),
        (FieldType::Decimal, Json::String(s)) if is_decimal(s) => Ok(Value::Decimal(s.clone())),
        (FieldType::Timestamp, Json::String(s)) => match parse_rfc3339(s) {
            Some(micros) => Ok(Value::Timestamp(micros)),
            None => fail("an RFC 3339 timestamp"),
        },
        (FieldType::Text, Json::String(s)) => Ok(Value::Text(s.clone())),
        (FieldType::Text, other) => Ok(Value::Text(other.to_string())),
        (FieldType::Boolean, _) => fail("a boolean"),
        (FieldType::Integer, _) => fail("an integer"),
        (FieldType::Float, _) => fail("a number"),
        (FieldType::Decimal, _) => fail("a decimal"),
        (FieldType::Timestamp, _) => fail("an RFC 3339 timestamp"),
        (FieldType::Bytes, _) => fail("bytes"),
    }
}

fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

/// A value as the JSON sent to the API. Decimals stay strings (a JSON number
/// would be read back as a float by most servers); timestamps are RFC 3339 UTC;
/// bytes lowercase hex.
pub fn to_json(value: Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::Integer(i) => Json::Number(i.into()),
        Value::Float(x) => Number::from_f64(x).map_or(Json::Null, Json::Number),
        Value::Decimal(s) | Value::Text(s) => Json::String(s),
        Value::Timestamp(micros) => Json::String(format_rfc3339(micros)),
        Value::Bytes(b) => Json::String(hex::encode(b)),
    }
}

/// A record as a JSON object.
pub fn object<'a>(values: impl Iterator<Item = (&'a str, Value)>) -> Json {
    let mut map = Map::new();
    for (name, value) in values {
        map.insert(name.to_owned(), to_json(value));
    }
    Json::Object(map)
}

/// A JSON value as key text: strings as they are, other scalars as their JSON
/// text; `None` for missing, null or empty.
pub fn key_text(json: Option<&Json>) -> Option<String> {
    match json? {
        Json::Null => None,
        Json::String(s) if s.is_empty() => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `YYYY-MM-DD[Tt ]HH:MM:SS[.fraction](Z|±HH:MM)` as microseconds since the
/// epoch (a date alone is midnight UTC).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(days * 86_400_000_000);
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &text[start..i.min(start + 6)];
        micros = digits.parse::<i64>().ok()? * 10i64.pow(6 - digits.len() as u32);
    }
    let offset = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = oh * 3600 + om * 60;
            if *sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + s - offset;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// Microseconds since the epoch as RFC 3339 UTC (`.ffffff` only when not zero).
pub fn format_rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Walk from days to (y, m, d) via eras of 400 years (146 097 days).
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac != 0 {
        out.push_str(&format!(".{frac:06}"));
    }
    out.push('Z');
    out
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_at_a_path_or_the_root() {
        let body = json!({"data": {"items": [{"id": 1}]}, "meta": {"next": "abc"}});
        let path = vec!["data".to_owned(), "items".to_owned()];
        assert_eq!(records_of(&body, &path).unwrap().len(), 1);
        assert!(records_of(&body, &[]).is_err());
        assert_eq!(records_of(&json!([1, 2]), &[]).unwrap().len(), 2);
        assert_eq!(
            records_of(&json!({"data": null}), &["data".to_owned()])
                .unwrap()
                .len(),
            0
        );
        assert_eq!(
            at_path(&body, &["meta".to_owned(), "next".to_owned()]),
            Some(&json!("abc"))
        );
    }

    #[test]
    fn inference_widens_and_keeps_first_seen_order() {
        let sample = [
            json!({"id": 1, "score": 2, "ok": true, "tags": ["a"], "gone": null}),
            json!({"id": 2, "score": 2.5, "ok": "yes", "extra": "x"}),
        ];
        assert_eq!(
            infer(&sample),
            vec![
                ("id".into(), FieldType::Integer),
                ("score".into(), FieldType::Float),
                ("ok".into(), FieldType::Text),
                ("tags".into(), FieldType::Text),
                ("gone".into(), FieldType::Text),
                ("extra".into(), FieldType::Text),
            ]
        );
    }

    #[test]
    fn conversions_each_way() {
        assert_eq!(
            to_value(FieldType::Integer, Some(&json!(3.0))),
            Ok(Value::Integer(3))
        );
        assert!(
            to_value(FieldType::Integer, Some(&json!("3")))
                .unwrap_err()
                .contains("\"3\" is not an integer")
        );
        assert_eq!(
            to_value(FieldType::Text, Some(&json!({"a": 1}))),
            Ok(Value::Text("{\"a\":1}".into()))
        );
        assert_eq!(
            to_value(FieldType::Decimal, Some(&json!("12.50"))),
            Ok(Value::Decimal("12.50".into()))
        );
        assert_eq!(to_value(FieldType::Float, None), Ok(Value::Null));
        let t = to_value(
            FieldType::Timestamp,
            Some(&json!("2024-03-01T13:00:00.5+01:00")),
        )
        .unwrap();
        assert_eq!(t, Value::Timestamp(1_709_294_400_500_000));
        assert_eq!(to_json(t), json!("2024-03-01T12:00:00.500000Z"));
        assert_eq!(to_json(Value::Float(f64::NAN)), Json::Null);
        assert_eq!(key_text(Some(&json!(7))), Some("7".into()));
        assert_eq!(key_text(Some(&json!(""))), None);
    }

    #[test]
    fn rfc3339_round_trips_across_centuries() {
        for micros in [
            0,
            -1,
            951_782_400_000_000,
            1_709_251_199_500_000,
            -2_203_891_200_000_000,
        ] {
            assert_eq!(
                parse_rfc3339(&format_rfc3339(micros)),
                Some(micros),
                "{micros}"
            );
        }
        assert_eq!(parse_rfc3339("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01"), Some(1_704_067_200_000_000));
        assert_eq!(
            parse_rfc3339("2024-01-01T00:00:00"),
            None,
            "an offset is required"
        );
    }
}
