//! The source side: discovering files and reading pages.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value as Json;
use weir_sdk::{
    Batch, Column, ColumnData, EntitySchema, Error, FieldSchema, ReadPage, RecordError, Rejected,
};

use crate::convert::{cell, push};
use crate::schema::{infer, is_blank};
use weir_sdk::files::{
    Cursor, DATA_DIR, entity_files, entity_path, io_error, open_listed, unterminated_line,
};

/// One entity per `*.jsonl` file of `dir`, sorted by name.
pub fn discover(dir: &Path, sample: usize) -> Result<Vec<EntitySchema>, Error> {
    let entries = entity_files(dir, "jsonl").map_err(|e| dir_error(dir, e))?;
    let mut out = Vec::new();
    for (entity, path) in entries {
        let entity = entity.as_str();
        let Some(file) = open_listed(entity, &path)? else {
            continue; // removed since it was listed
        };
        let schema = infer(BufReader::new(file), sample).map_err(|e| io_error(entity, &path, e))?;
        out.push(EntitySchema {
            name: entity.to_owned(),
            fields: schema
                .iter()
                .map(|(n, t)| FieldSchema::new(n, *t))
                .collect(),
            key_fields: Vec::new(),
            readable: true,
            writable: true,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Checks that `dir` is a directory we can list.
pub fn check_dir(dir: &Path) -> Result<(), Error> {
    std::fs::read_dir(dir)
        .map(drop)
        .map_err(|e| dir_error(dir, e))
}

fn dir_error(dir: &Path, err: std::io::Error) -> Error {
    let hint = if dir == Path::new(DATA_DIR) {
        " (was a directory granted to this connection?)"
    } else {
        ""
    };
    Error::config(format!(
        "cannot read the directory {}: {err}{hint}",
        dir.display()
    ))
}

/// Reads the page of `entity` that starts at `cursor` (the top if none).
pub fn read_page(
    dir: &Path,
    sample: usize,
    entity: &str,
    cursor: Option<&str>,
    max_records: u32,
) -> Result<ReadPage, Error> {
    let path = entity_path(dir, entity, "jsonl")?;
    let cursor = cursor.map(|c| Cursor::parse(entity, c)).transpose()?;
    let file = File::open(&path).map_err(|e| io_error(entity, &path, e))?;
    read_page_from(file, sample, cursor, max_records).map_err(|e| io_error(entity, &path, e))
}

/// [`read_page`] on any seekable input: the whole reading logic, testable on
/// bytes in memory.
pub fn read_page_from<R: Read + Seek>(
    input: R,
    sample: usize,
    cursor: Option<Cursor>,
    max_records: u32,
) -> std::io::Result<ReadPage> {
    let mut input = BufReader::new(input);
    // Inferred again on every page, from the same first lines: the schema cannot
    // drift between pages, and no state has to survive between calls.
    let schema = infer(&mut input, sample)?;
    let cursor = cursor.unwrap_or(Cursor { byte: 0, line: 1 });
    input.seek(SeekFrom::Start(cursor.byte))?;

    let max = max_records as usize;
    let mut columns: Vec<Column> = schema
        .iter()
        .map(|(name, ty)| Column {
            name: name.clone(),
            data: ColumnData::new(*ty, max.min(4096)),
            nulls: Vec::new(),
        })
        .collect();
    let mut len = 0;
    let mut rejected = Vec::new();
    let mut at = cursor;
    let mut line = Vec::new();
    let mut taken = 0;
    let done = loop {
        if taken == max {
            // Look ahead so the last page says `done` instead of leaving the host
            // to ask for an empty one. The cursor stays where it is.
            break !more_records(&mut input, &mut line)?;
        }
        line.clear();
        let n = input.read_until(b'\n', &mut line)?;
        if n == 0 {
            break true;
        }
        let number = at.line;
        if line.last() != Some(&b'\n') {
            // The end of the file, in the middle of a line: not a record yet (see
            // `unterminated_line`). The cursor stays before it.
            if !is_blank(&line) {
                rejected.push(unterminated_line(number));
            }
            break true;
        }
        at.byte += n as u64;
        at.line += 1;
        if is_blank(&line) {
            continue;
        }
        // Rejected lines count towards the page too: a page then never parses
        // more than `max_records` lines, however bad the file.
        taken += 1;
        let object = match parse_object(&line) {
            Ok(object) => object,
            Err(message) => {
                rejected.push(Rejected {
                    position: format!("line {number}"),
                    key: None,
                    error: RecordError::new(message),
                });
                continue;
            }
        };
        // Per line, as the parsed object is: the cells borrow from it.
        let mut cells = Vec::with_capacity(schema.len());
        let checked = schema.iter().try_for_each(|(name, ty)| {
            let c = cell(*ty, object.get(name))
                .map_err(|why| RecordError::field(name, format!("field `{name}`: {why}")))?;
            cells.push(c);
            Ok(())
        });
        match checked {
            Ok(()) => {
                for (col, c) in columns.iter_mut().zip(cells) {
                    push(col, c);
                }
                len += 1;
            }
            Err(error) => rejected.push(Rejected {
                position: format!("line {number}"),
                key: None,
                error,
            }),
        }
    };
    for col in &mut columns {
        // The contract's cheaper form: no null vector when nothing is null.
        if !col.nulls.contains(&true) {
            col.nulls = Vec::new();
        }
    }
    Ok(ReadPage {
        records: Batch { len, columns },
        rejected,
        // At the end too: a file that grows by appended lines continues from here.
        next_cursor: Some(at.to_text()),
        done,
    })
}

/// Whether a non-blank line follows (reading ahead; the caller's cursor is kept).
fn more_records<R: BufRead>(input: &mut R, line: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        line.clear();
        if input.read_until(b'\n', line)? == 0 {
            return Ok(false);
        }
        if !is_blank(line) {
            return Ok(true);
        }
    }
}

/// Parses a line that must hold one JSON object; the error is for people.
fn parse_object(line: &[u8]) -> Result<serde_json::Map<String, Json>, String> {
    match serde_json::from_slice::<Json>(line) {
        Ok(Json::Object(object)) => Ok(object),
        Ok(other) => Err(format!("not a JSON object but {}", kind(&other))),
        Err(e) => {
            // serde's message ends with "at line 1 column N": within this one line,
            // so only the column helps.
            let mut message = e.to_string();
            if let Some(at) = message.rfind(" at line ") {
                message.truncate(at);
            }
            Err(format!("not valid JSON: {message} (column {})", e.column()))
        }
    }
}

fn kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor as Bytes;
    use weir_sdk::{FieldType, Value};

    fn page(data: &str, cursor: Option<&str>, max: u32) -> ReadPage {
        let cursor = cursor.map(|c| Cursor::parse("t", c).unwrap());
        // A sample of two: the first two objects of `DATA` make its schema.
        let p = read_page_from(Bytes::new(data.as_bytes()), 2, cursor, max).unwrap();
        p.records.validate().unwrap();
        p
    }

    fn field_types(batch: &Batch) -> Vec<(&str, FieldType)> {
        batch.fields().collect()
    }

    fn values(batch: &Batch, field: &str) -> Vec<Value> {
        batch.rows().map(|r| r.get(field).unwrap()).collect()
    }

    const DATA: &str = r#"{"id": 1, "name": "Ada", "score": 1.5, "ok": true, "tags": ["a", 1]}

{"id": 2, "name": null, "score": 2, "unknown_later": 1}
{"id": "three", "name": "x"}
[1]
{"id": 4, "name": "Lin", "ok": false, "ignored_key": {"a": 1}
{"id": 5.0, "name": "Bo", "ok": false, "never_in_schema": 1}
"#;

    #[test]
    fn reads_typed_fields_and_rejects_with_line_numbers() {
        let p = page(DATA, None, 100);
        assert!(p.done);
        assert_eq!(
            field_types(&p.records),
            vec![
                ("id", FieldType::Integer),
                ("name", FieldType::Text),
                ("score", FieldType::Float),
                ("ok", FieldType::Boolean),
                ("tags", FieldType::Text),
                ("unknown_later", FieldType::Integer),
            ]
        );
        assert_eq!(
            values(&p.records, "id"),
            [1, 2, 5].map(Value::Integer).to_vec()
        );
        assert_eq!(
            values(&p.records, "score"),
            vec![Value::Float(1.5), Value::Float(2.0), Value::Null]
        );
        assert_eq!(
            values(&p.records, "tags")[0],
            Value::Text(r#"["a",1]"#.into())
        );
        assert_eq!(values(&p.records, "name")[1], Value::Null);
        let r: Vec<_> = p
            .rejected
            .iter()
            .map(|r| {
                (
                    r.position.as_str(),
                    r.error.field.as_deref(),
                    r.error.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            r[0],
            (
                "line 4",
                Some("id"),
                "field `id`: `\"three\"` is not an integer"
            )
        );
        assert_eq!(r[1], ("line 5", None, "not a JSON object but an array"));
        assert_eq!(r[2].0, "line 6");
        assert!(
            r[2].2
                .starts_with("not valid JSON: EOF while parsing an object (column "),
            "{}",
            r[2].2
        );
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn pages_resume_at_the_cursor() {
        let mut cursor: Option<String> = None;
        let mut ids = Vec::new();
        let mut lines = Vec::new();
        let mut pages = 0;
        loop {
            let p = page(DATA, cursor.as_deref(), 2);
            pages += 1;
            assert!(p.records.len() + p.rejected.len() <= 2);
            ids.extend(values(&p.records, "id"));
            lines.extend(p.rejected.iter().map(|r| r.position.clone()));
            cursor = p.next_cursor;
            if p.done {
                break;
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(ids, [1, 2, 5].map(Value::Integer).to_vec());
        assert_eq!(lines, ["line 4", "line 5", "line 6"]);
        assert_eq!(cursor.unwrap(), format!("{}:8", DATA.len()));
    }

    #[test]
    fn trailing_blank_lines_and_crlf() {
        let data = "{\"a\": 1}\r\n{\"a\": 2}\r\n\r\n\n";
        let p = page(data, None, 2);
        assert!(p.done);
        assert_eq!(values(&p.records, "a"), [1, 2].map(Value::Integer).to_vec());
        let p = page(data, None, 1);
        assert!(!p.done);
        let p = page(data, p.next_cursor.as_deref(), 1);
        assert!(p.done);
    }

    #[test]
    fn a_last_line_without_its_line_end_is_not_read_and_the_cursor_stays_before_it() {
        // Another program is still writing line 2: `{"a": 2, "name": "Car` of `...Carol"}`.
        let partial = "{\"a\": 1}\n{\"a\": 2, \"name\": \"Car";
        let p = page(partial, None, 10);
        assert!(p.done);
        assert_eq!(values(&p.records, "a"), vec![Value::Integer(1)]);
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].position, "line 2");
        assert!(p.rejected[0].error.message.contains("no line end yet"));
        assert_eq!(p.next_cursor.as_deref(), Some("9:2"), "before the partial line");
        // Once the writer finished the line, the next read from that cursor takes it whole.
        let whole = "{\"a\": 1}\n{\"a\": 2, \"name\": \"Carol\"}\n";
        let p = page(whole, Some("9:2"), 10);
        assert!(p.done && p.rejected.is_empty());
        assert_eq!(p.records.row(0).text("name"), Some("Carol"));
        // Blanks after the last line end are not a record, finished or not.
        let p = page("{\"a\": 1}\n  ", None, 10);
        assert!(p.done && p.rejected.is_empty());
        assert_eq!(p.next_cursor.as_deref(), Some("9:2"));
    }

    #[test]
    fn empty_file() {
        let p = page("", None, 10);
        assert!(p.done && p.records.is_empty() && p.records.columns.is_empty());
        assert_eq!(p.next_cursor.as_deref(), Some("0:1"));
    }
}
