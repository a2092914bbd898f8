//! An author's sample records for `weir plugin test --input/--expect`: CSV or
//! JSON Lines read into a batch, and a transform's output compared with the
//! expected records value by value.
//!
//! Types: a CSV header cell is `name` (text) or `name:type` (`id:integer`,
//! `at:timestamp`, any weir field type); an empty cell is null. In JSON Lines
//! a field's type is that of its first non-null value (whole numbers are
//! integers, kept exact to 64 bits), unless the key says `name:type`; text
//! values parse into a declared type (`"at:timestamp": "-1"`).

use std::path::{Path, PathBuf};

use weir_types::{Batch, BatchBuilder, FieldType, Transformed, Value};

use crate::conformance_cases::failed_set;
use crate::engine::transform_check::{same_value, shown};

/// Why a sample file could not be read. Names the file and the place in it.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}, line {line}, field `{field}`: {message}", path.display())]
    Value {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
}

/// Reads a CSV (`.csv`) or JSON Lines (any other name: `.jsonl`, `.ndjson`) file.
pub fn read_sample(path: &Path) -> Result<Batch, SampleError> {
    let text = std::fs::read_to_string(path).map_err(|source| SampleError::Io {
        path: path.to_owned(),
        source,
    })?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let rows = if is_csv {
        csv_rows(path, &text)?
    } else {
        json_rows(path, &text)?
    };
    build(path, rows)
}

/// A cell before typing: the file's line, and text or a JSON value.
enum Cell {
    Text(String),
    Json(serde_json::Value),
}

struct Rows {
    /// `(name, declared type)` in file order.
    fields: Vec<(String, Option<FieldType>)>,
    /// `(line, cells by field index)`.
    rows: Vec<(usize, Vec<Option<Cell>>)>,
}

fn header_field(path: &Path, cell: &str) -> Result<(String, Option<FieldType>), SampleError> {
    match cell.rsplit_once(':') {
        Some((name, ty)) => match FieldType::from_name(ty.trim()) {
            Some(t) => Ok((name.trim().to_owned(), Some(t))),
            None => Err(SampleError::Format {
                path: path.to_owned(),
                message: format!(
                    "field `{cell}`: unknown type `{ty}` (boolean, integer, float, decimal, text, timestamp, bytes)"
                ),
            }),
        },
        None => Ok((cell.trim().to_owned(), None)),
    }
}

fn csv_rows(path: &Path, text: &str) -> Result<Rows, SampleError> {
    let format = |message: String| SampleError::Format {
        path: path.to_owned(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| format(e.to_string()))?.clone();
    let fields = header
        .iter()
        .map(|c| header_field(path, c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let cells = record
            .iter()
            .map(|c| (!c.is_empty()).then(|| Cell::Text(c.to_owned())))
            .collect();
        rows.push((line, cells));
    }
    Ok(Rows { fields, rows })
}

fn json_rows(path: &Path, text: &str) -> Result<Rows, SampleError> {
    let mut fields: Vec<(String, Option<FieldType>)> = Vec::new();
    let mut keyed: Vec<(usize, Vec<(usize, serde_json::Value)>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .map_err(|e| SampleError::Format {
                path: path.to_owned(),
                message: format!("line {}: not a JSON object: {e}", n + 1),
            })?;
        let mut cells = Vec::new();
        for (key, value) in object {
            let (name, ty) = header_field(path, &key)?;
            let i = match fields.iter().position(|(f, _)| *f == name) {
                Some(i) => i,
                None => {
                    fields.push((name, ty));
                    fields.len() - 1
                }
            };
            cells.push((i, value));
        }
        keyed.push((n + 1, cells));
    }
    let rows = keyed
        .into_iter()
        .map(|(line, cells)| {
            let mut row: Vec<Option<Cell>> = (0..fields.len()).map(|_| None).collect();
            for (i, v) in cells {
                if !v.is_null() {
                    row[i] = Some(Cell::Json(v));
                }
            }
            (line, row)
        })
        .collect();
    Ok(Rows { fields, rows })
}

/// The type of a field without a declared one: from its first non-null cell.
fn inferred(rows: &Rows, i: usize) -> FieldType {
    for (_, cells) in &rows.rows {
        match &cells[i] {
            Some(Cell::Json(serde_json::Value::Bool(_))) => return FieldType::Boolean,
            Some(Cell::Json(serde_json::Value::Number(n))) => {
                return if n.is_i64() || n.is_u64() {
                    FieldType::Integer
                } else {
                    FieldType::Float
                };
            }
            Some(_) => return FieldType::Text,
            None => {}
        }
    }
    FieldType::Text
}

fn build(path: &Path, rows: Rows) -> Result<Batch, SampleError> {
    let types: Vec<FieldType> = (0..rows.fields.len())
        .map(|i| rows.fields[i].1.unwrap_or_else(|| inferred(&rows, i)))
        .collect();
    let names: Vec<(&str, FieldType)> = rows
        .fields
        .iter()
        .zip(&types)
        .map(|((n, _), t)| (n.as_str(), *t))
        .collect();
    let mut b = BatchBuilder::with_capacity(&names, rows.rows.len());
    for (line, cells) in &rows.rows {
        let mut values = Vec::with_capacity(names.len());
        for (i, (name, ty)) in names.iter().enumerate() {
            let cell = cells.get(i).and_then(Option::as_ref);
            let v = typed(cell, *ty).map_err(|message| SampleError::Value {
                path: path.to_owned(),
                line: *line,
                field: (*name).to_owned(),
                message,
            })?;
            values.push(v);
        }
        b.push_row(&values).map_err(|e| SampleError::Format {
            path: path.to_owned(),
            message: format!("line {line}: {e}"),
        })?;
    }
    Ok(b.finish())
}

fn typed(cell: Option<&Cell>, ty: FieldType) -> Result<Value, String> {
    use serde_json::Value as J;
    let text = match cell {
        None => return Ok(Value::Null),
        Some(Cell::Text(t)) => t.clone(),
        Some(Cell::Json(J::String(t))) => t.clone(),
        Some(Cell::Json(J::Bool(b))) if ty == FieldType::Boolean => return Ok(Value::Boolean(*b)),
        Some(Cell::Json(J::Number(n))) => match ty {
            FieldType::Integer | FieldType::Timestamp => {
                let i = n
                    .as_i64()
                    .ok_or_else(|| format!("`{n}` is not a 64-bit integer"))?;
                return Ok(if ty == FieldType::Integer {
                    Value::Integer(i)
                } else {
                    Value::Timestamp(i)
                });
            }
            FieldType::Float => return Ok(Value::Float(n.as_f64().unwrap_or(f64::NAN))),
            _ => n.to_string(),
        },
        Some(Cell::Json(other)) => return Err(format!("`{other}` is not a valid {ty} value")),
    };
    let bad = || format!("`{text}` is not a valid {ty} value");
    Ok(match ty {
        FieldType::Boolean => Value::Boolean(text.parse().map_err(|_| bad())?),
        FieldType::Integer => Value::Integer(text.trim().parse().map_err(|_| bad())?),
        FieldType::Timestamp => Value::Timestamp(text.trim().parse().map_err(|_| bad())?),
        FieldType::Float => Value::Float(text.trim().parse().map_err(|_| bad())?),
        FieldType::Decimal => Value::Decimal(text),
        FieldType::Text => Value::Text(text),
        FieldType::Bytes => Value::Bytes(
            (0..text.len())
                .step_by(2)
                .map(|i| {
                    text.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| format!("`{text}` is not lowercase hex bytes"))?,
        ),
    })
}

/// Compares a transform's output with the expected records: the same number of
/// records, and for each expected column the same value in every record the
/// transform did not fail. Values of different types compare as text (a CSV
/// sample says `1` for an integer).
pub fn compare_expected(
    expected: &Batch,
    out: &Transformed,
    key: &[String],
) -> Result<String, String> {
    let got = &out.records;
    if expected.len() != got.len() {
        return Err(format!(
            "expected {} records, the transform returned {}",
            expected.len(),
            got.len()
        ));
    }
    let failed = failed_set(&out.failures, got.len());
    let mut mismatches = Vec::new();
    for i in 0..expected.len() {
        let at = || {
            let k = expected.row(i).key(key);
            if k.is_empty() {
                format!("record {i}")
            } else {
                format!("record {i} (key `{k}`)")
            }
        };
        if failed[i] {
            let why = out
                .failures
                .iter()
                .find(|(j, _)| *j as usize == i)
                .map(|(_, e)| e.message.clone())
                .unwrap_or_default();
            mismatches.push(format!("{}: failed: {why}", at()));
            continue;
        }
        for (name, _) in expected.fields() {
            let want = expected.row(i).get(name).unwrap_or(Value::Null);
            let Some(column) = got.column(name) else {
                mismatches.push(format!("{}: no output column `{name}`", at()));
                break;
            };
            let have = column.value(i);
            let equal =
                if want.field_type() == have.field_type() || want.is_null() || have.is_null() {
                    same_value(&want, &have)
                } else {
                    want.to_text() == have.to_text()
                };
            if !equal {
                mismatches.push(format!(
                    "{}, column `{name}`: expected `{}`, got `{}`",
                    at(),
                    shown(&want),
                    shown(&have)
                ));
            }
        }
    }
    match mismatches.len() {
        0 => Ok(format!(
            "{} records, {} columns: every value as expected",
            expected.len(),
            expected.fields().count()
        )),
        n => Err(format!(
            "{n} differences; {}{}",
            mismatches[..n.min(5)].join("; "),
            if n > 5 { "; …" } else { "" }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn csv_with_typed_header_keeps_64_bit_integers_exact() {
        let (_d, p) = file(
            "s.csv",
            "id:integer,name,at:timestamp\n9007199254740993,Zoë,-1\n2,,0\n",
        );
        let b = read_sample(&p).unwrap();
        assert_eq!(
            b.row(0).get("id"),
            Some(Value::Integer(9_007_199_254_740_993))
        );
        assert_eq!(b.row(0).get("at"), Some(Value::Timestamp(-1)));
        assert_eq!(b.row(1).get("name"), Some(Value::Null));
    }

    #[test]
    fn json_lines_infer_types_and_name_the_bad_line() {
        let (_d, p) = file(
            "s.jsonl",
            "{\"id\": 9223372036854775807, \"x\": 1.5}\n{\"id\": 2, \"x\": null}\n",
        );
        let b = read_sample(&p).unwrap();
        assert_eq!(b.row(0).get("id"), Some(Value::Integer(i64::MAX)));
        assert_eq!(b.row(0).get("x"), Some(Value::Float(1.5)));
        let (_d, p) = file("s.jsonl", "{\"id\": 1}\n{\"id\": \"two\"}\n");
        let e = read_sample(&p).unwrap_err().to_string();
        assert!(
            e.contains("line 2, field `id`") && e.contains("`two`"),
            "{e}"
        );
    }

    #[test]
    fn a_changed_value_is_named_by_record_key_and_column() {
        let (_d, p) = file("e.csv", "id:integer,name\n1,Ada\n2,Alan\n");
        let expected = read_sample(&p).unwrap();
        let (_d2, p2) = file("g.csv", "id:integer,name\n1,Ada\n2,alan\n");
        let out = Transformed::ok(read_sample(&p2).unwrap());
        let e = compare_expected(&expected, &out, &["id".to_owned()]).unwrap_err();
        assert!(
            e.contains("record 1 (key `2`), column `name`: expected `Alan`, got `alan`"),
            "{e}"
        );
        assert!(compare_expected(&expected, &Transformed::ok(expected.clone()), &[]).is_ok());
    }
}
