//! Schema inference from the first lines of a file.

use std::io::BufRead;

use serde_json::{Map, Value as Json};
use weir_sdk::{Config, Error, FieldType};

/// How many non-empty lines inference looks at, from the `sample` option.
pub fn sample_size(config: &Config) -> Result<usize, Error> {
    match config.get("sample") {
        None => Ok(100),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Error::config(format!(
                "option `sample`: `{text}` is not a positive whole number"
            ))),
        },
    }
}

/// What the values of one key looked like so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Only nulls.
    Nothing,
    Boolean,
    Integer,
    Float,
    /// Strings, or values of several kinds, or objects and arrays: text.
    Text,
}

impl Seen {
    fn of(value: &Json) -> Seen {
        match value {
            Json::Null => Seen::Nothing,
            Json::Bool(_) => Seen::Boolean,
            Json::Number(n) if n.is_i64() => Seen::Integer,
            // An integer beyond i64 would lose digits as a float: keep its text.
            Json::Number(n) if n.is_u64() => Seen::Text,
            Json::Number(_) => Seen::Float,
            Json::String(_) | Json::Array(_) | Json::Object(_) => Seen::Text,
        }
    }

    fn merge(self, other: Seen) -> Seen {
        use Seen::*;
        match (self, other) {
            (Nothing, x) | (x, Nothing) => x,
            (a, b) if a == b => a,
            (Integer, Float) | (Float, Integer) => Float,
            _ => Text,
        }
    }

    fn field_type(self) -> FieldType {
        match self {
            Seen::Boolean => FieldType::Boolean,
            Seen::Integer => FieldType::Integer,
            Seen::Float => FieldType::Float,
            Seen::Nothing | Seen::Text => FieldType::Text,
        }
    }
}

/// Accumulates the union of keys, in first-seen order, and their types.
#[derive(Default)]
pub struct Inference {
    fields: Vec<(String, Seen)>,
}

impl Inference {
    pub fn add(&mut self, object: &Map<String, Json>) {
        for (key, value) in object {
            let seen = Seen::of(value);
            match self.fields.iter_mut().find(|(k, _)| k == key) {
                Some((_, s)) => *s = s.merge(seen),
                None => self.fields.push((key.clone(), seen)),
            }
        }
    }

    pub fn finish(self) -> Vec<(String, FieldType)> {
        self.fields
            .into_iter()
            .map(|(k, s)| (k, s.field_type()))
            .collect()
    }
}

/// True for a line with nothing but whitespace: skipped everywhere.
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Infers the schema from the first `sample` non-empty lines of `input`. Lines
/// that are not JSON objects count towards the sample but add nothing; reading
/// rejects them later with their line number.
pub fn infer<R: BufRead>(mut input: R, sample: usize) -> std::io::Result<Vec<(String, FieldType)>> {
    let mut inference = Inference::default();
    let mut line = Vec::new();
    let mut seen = 0;
    while seen < sample {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if is_blank(&line) {
            continue;
        }
        seen += 1;
        if let Ok(Json::Object(object)) = serde_json::from_slice::<Json>(&line) {
            inference.add(&object);
        }
    }
    Ok(inference.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer_str(text: &str, sample: usize) -> Vec<(String, FieldType)> {
        infer(text.as_bytes(), sample).unwrap()
    }

    fn fields(list: &[(&str, FieldType)]) -> Vec<(String, FieldType)> {
        list.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect()
    }

    #[test]
    fn union_of_keys_in_first_seen_order_with_types() {
        let text = r#"{"id": 1, "name": "Ada", "score": 1, "ok": true, "tags": ["a"]}

{"id": 2, "name": null, "score": 2.5, "extra": null, "ok": false, "mixed": 1}
not json
[1, 2]
{"id": 3, "mixed": "x", "nested": {"a": 1}, "big": 18446744073709551615}
"#;
        use FieldType::*;
        assert_eq!(
            infer_str(text, 100),
            fields(&[
                ("id", Integer),
                ("name", Text),
                ("score", Float),
                ("ok", Boolean),
                ("tags", Text),
                ("extra", Text),
                ("mixed", Text),
                ("nested", Text),
                ("big", Text),
            ])
        );
    }

    #[test]
    fn only_the_sample_counts_and_blank_lines_do_not() {
        let text = "\n{\"a\": 1}\n  \n{\"b\": 1}\n{\"a\": \"x\", \"c\": 1}\n";
        assert_eq!(
            infer_str(text, 2),
            fields(&[("a", FieldType::Integer), ("b", FieldType::Integer)])
        );
        assert_eq!(infer_str("", 10), vec![]);
    }

    #[test]
    fn sample_option() {
        let cfg = |v: &str| Config::new(vec![("sample".into(), v.into())]);
        assert_eq!(sample_size(&Config::default()).unwrap(), 100);
        assert_eq!(sample_size(&cfg("5")).unwrap(), 5);
        for bad in ["0", "-1", "x", ""] {
            assert!(
                matches!(sample_size(&cfg(bad)), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
    }
}
