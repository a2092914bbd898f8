//! The destination side: upsert into a JSON Lines file, replaced atomically on
//! finish.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};
use weir_sdk::{Batch, Column, Error, RecordError, UpsertOutcome, Writer};

use crate::convert::{key_part, to_json};
use crate::schema::is_blank;
use weir_sdk::files::{entity_path, io_error, temp_path};

type Object = Map<String, Json>;

/// A write session on one JSON Lines file. Lines cannot be updated in place, so
/// the whole file lives in memory (files here hold thousands of records, not
/// gigabytes) and `finish` writes it anew. Objects keep their field order
/// (`serde_json`'s `preserve_order`), so an update changes only what it touches.
pub struct JsonlWriter {
    entity: String,
    dir: PathBuf,
    path: PathBuf,
    key_fields: Vec<String>,
    /// Whether the file existed at open: if it did not and nothing was written,
    /// `finish` creates no file.
    existed: bool,
    /// Records in first-seen order.
    rows: Vec<Object>,
    /// Key text → index in `rows`.
    index: HashMap<String, usize>,
}

impl JsonlWriter {
    pub fn open(dir: &Path, entity: &str, key_fields: Vec<String>) -> Result<JsonlWriter, Error> {
        let path = entity_path(dir, entity, "jsonl")?;
        if key_fields.is_empty() {
            return Err(Error::config(format!(
                "entity `{entity}`: upsert needs key fields"
            )));
        }
        let mut w = JsonlWriter {
            entity: entity.to_owned(),
            dir: dir.to_owned(),
            path,
            key_fields,
            existed: false,
            rows: Vec::new(),
            index: HashMap::new(),
        };
        match File::open(&w.path) {
            Ok(file) => {
                w.existed = true;
                w.load(BufReader::new(file))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(entity, &w.path, e)),
        }
        Ok(w)
    }

    /// Loads an existing file. A line that is not a JSON object is an error:
    /// better to refuse the session than to rewrite someone's file without it.
    /// Blank lines are dropped.
    fn load<R: BufRead>(&mut self, mut input: R) -> Result<(), Error> {
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .map_err(|e| io_error(&self.entity, &self.path, e))?;
            if n == 0 {
                return Ok(());
            }
            number += 1;
            if is_blank(&line) {
                continue;
            }
            let object = match serde_json::from_slice::<Json>(&line) {
                Ok(Json::Object(object)) => object,
                _ => {
                    return Err(Error::config(format!(
                        "entity `{}`: line {number} is not a JSON object; not rewriting the file",
                        self.entity
                    )));
                }
            };
            // A record whose key is incomplete cannot be matched; it is kept as is.
            if let Some(key) = key_of_object(&object, &self.key_fields) {
                // A key repeated in the file: the first record is the one updated.
                self.index.entry(key).or_insert(self.rows.len());
            }
            self.rows.push(object);
        }
    }

    /// Writes the file to a temporary sibling and renames it over the original, so
    /// a reader (or a crash) sees the old file or the new one, never half of one.
    fn write_file(&self) -> Result<(), Error> {
        let tmp = temp_path(&self.dir, &self.entity, "jsonl");
        let result = self.write_to(&tmp).and_then(|()| {
            std::fs::rename(&tmp, &self.path).map_err(|e| io_error(&self.entity, &self.path, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn write_to(&self, tmp: &Path) -> Result<(), Error> {
        let err = |e: io::Error| io_error(&self.entity, tmp, e);
        let mut out = BufWriter::new(File::create(tmp).map_err(err)?);
        for row in &self.rows {
            serde_json::to_writer(&mut out, row).map_err(|e| err(e.into()))?;
            out.write_all(b"\n").map_err(err)?;
        }
        let file = out.into_inner().map_err(|e| err(e.into_error()))?;
        // Durable before the rename makes it visible. A host without fsync support
        // still gets the atomic replace.
        match file.sync_all() {
            Err(e) if e.kind() != io::ErrorKind::Unsupported => Err(err(e)),
            _ => Ok(()),
        }
    }
}

impl Writer for JsonlWriter {
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
        let key_cols = key_columns(&self.entity, &records, &self.key_fields)?;
        let mut outcomes = Vec::with_capacity(records.len());
        let mut key_values = Vec::with_capacity(key_cols.len());
        for i in 0..records.len() {
            // The key is taken from the values as they will be stored, so a batch
            // matches the file whatever the types (a timestamp key is compared as
            // the RFC 3339 text the file holds).
            key_values.clear();
            key_values.extend(key_cols.iter().map(|c| to_json(c, i)));
            let key = match key_text(&key_cols, &key_values) {
                Ok(key) => key,
                Err(failure) => {
                    outcomes.push(UpsertOutcome::Failed(failure));
                    continue;
                }
            };
            let (row, outcome) = match self.index.get(&key) {
                Some(&r) => (r, UpsertOutcome::Updated),
                None => {
                    self.index.insert(key, self.rows.len());
                    self.rows.push(Object::with_capacity(records.columns.len()));
                    (self.rows.len() - 1, UpsertOutcome::Inserted)
                }
            };
            // Batch fields overwrite (a null too); the record's other fields stay,
            // in their place.
            let row = &mut self.rows[row];
            for col in &records.columns {
                row.insert(col.name.clone(), to_json(col, i));
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    fn finish(&mut self) -> Result<(), Error> {
        if !self.existed && self.rows.is_empty() {
            return Ok(());
        }
        self.write_file()
    }
}

/// The batch's key columns, in key order. A batch without a key column is a
/// mapping mistake, not a bad record: it fails the call, naming what is there.
fn key_columns<'a>(
    entity: &str,
    records: &'a Batch,
    key_fields: &[String],
) -> Result<Vec<&'a Column>, Error> {
    key_fields
        .iter()
        .map(|k| {
            records.column(k).ok_or_else(|| {
                let fields: Vec<&str> = records.columns.iter().map(|c| c.name.as_str()).collect();
                Error::config(format!(
                    "entity `{entity}`: the records have no key field `{k}` (they have: {})",
                    fields.join(", ")
                ))
            })
        })
        .collect()
}

/// The key of one record from its key values: each as text, joined by `|`. A null
/// or empty part fails the record, since it would match nothing or everything.
fn key_text(key_cols: &[&Column], values: &[Json]) -> Result<String, RecordError> {
    let mut key = String::new();
    for (n, (col, value)) in key_cols.iter().zip(values).enumerate() {
        let name = &col.name;
        let part = key_part(Some(value))
            .ok_or_else(|| RecordError::field(name, format!("key field `{name}` is empty")))?;
        if n > 0 {
            key.push('|');
        }
        key.push_str(&part);
    }
    Ok(key)
}

/// The key of a loaded object, if every part is there and non-empty.
fn key_of_object(object: &Object, key_fields: &[String]) -> Option<String> {
    let parts = key_fields
        .iter()
        .map(|k| key_part(object.get(k)))
        .collect::<Option<Vec<String>>>()?;
    Some(parts.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::TestDir;
    use weir_sdk::{BatchBuilder, FieldType, Value};

    fn open(dir: &TestDir, keys: &[&str]) -> Result<JsonlWriter, Error> {
        JsonlWriter::open(
            dir.path(),
            "people",
            keys.iter().map(|k| (*k).to_owned()).collect(),
        )
    }

    fn batch(fields: &[(&str, FieldType)], rows: Vec<Vec<Value>>) -> Batch {
        let mut b = BatchBuilder::new(fields);
        for r in rows {
            b.push_row(&r).unwrap();
        }
        b.finish()
    }

    #[test]
    fn merges_fields_keeps_order_and_other_fields() {
        let dir = TestDir::new();
        dir.write(
            "people.jsonl",
            "{\"id\":1,\"name\":\"Ada\",\"nested\":{\"z\":1,\"a\":2}}\n\n{\"id\":2,\"name\":\"Bo\"}\n{\"name\":\"no key\"}\n",
        );
        let mut w = open(&dir, &["id"]).unwrap();
        let out = w
            .upsert(batch(
                &[
                    ("id", FieldType::Integer),
                    ("email", FieldType::Text),
                    ("name", FieldType::Text),
                ],
                vec![
                    vec![
                        Value::Integer(2),
                        Value::Text("bo@x.org".into()),
                        Value::Null,
                    ],
                    vec![
                        Value::Integer(3),
                        Value::Text("c@x.org".into()),
                        Value::Text("Cy".into()),
                    ],
                    vec![Value::Integer(3), Value::Null, Value::Text("Cy2".into())],
                    vec![Value::Null, Value::Null, Value::Text("nobody".into())],
                ],
            ))
            .unwrap();
        assert_eq!(
            out,
            vec![
                UpsertOutcome::Updated,
                UpsertOutcome::Inserted,
                UpsertOutcome::Updated,
                UpsertOutcome::Failed(RecordError::field("id", "key field `id` is empty")),
            ]
        );
        assert!(!dir.path().join(".people.jsonl.tmp").exists());
        w.finish().unwrap();
        assert_eq!(
            dir.read("people.jsonl"),
            concat!(
                "{\"id\":1,\"name\":\"Ada\",\"nested\":{\"z\":1,\"a\":2}}\n",
                "{\"id\":2,\"name\":null,\"email\":\"bo@x.org\"}\n",
                "{\"name\":\"no key\"}\n",
                "{\"id\":3,\"email\":null,\"name\":\"Cy2\"}\n",
            )
        );
        assert!(!dir.path().join(".people.jsonl.tmp").exists());
    }

    #[test]
    fn keys_match_across_types_as_stored() {
        let dir = TestDir::new();
        dir.write(
            "people.jsonl",
            "{\"at\":\"2024-03-01T12:00:00Z\",\"code\":\"7\",\"v\":1}\n",
        );
        let mut w = open(&dir, &["at", "code"]).unwrap();
        let out = w
            .upsert(batch(
                &[
                    ("at", FieldType::Timestamp),
                    ("code", FieldType::Integer),
                    ("v", FieldType::Integer),
                ],
                vec![vec![
                    Value::Timestamp(1_709_294_400_000_000),
                    Value::Integer(7),
                    Value::Integer(2),
                ]],
            ))
            .unwrap();
        assert_eq!(out, vec![UpsertOutcome::Updated]);
        w.finish().unwrap();
        assert_eq!(
            dir.read("people.jsonl"),
            "{\"at\":\"2024-03-01T12:00:00Z\",\"code\":7,\"v\":2}\n"
        );
    }

    #[test]
    fn open_errors_and_empty_sessions() {
        let dir = TestDir::new();
        assert_eq!(
            open(&dir, &[]).err().unwrap(),
            Error::config("entity `people`: upsert needs key fields")
        );
        assert!(matches!(
            JsonlWriter::open(dir.path(), "a\\b", vec!["id".into()]),
            Err(Error::InvalidConfig(m)) if m.contains("`a\\b`")
        ));
        open(&dir, &["id"]).unwrap().finish().unwrap();
        assert!(!dir.path().join("people.jsonl").exists());
        dir.write("people.jsonl", "{\"id\":1}\n[2]\n");
        let err = open(&dir, &["id"]).err().unwrap();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("line 2 is not a JSON object")),
            "{err}"
        );
    }

    #[test]
    fn missing_key_column_fails_the_call() {
        let dir = TestDir::new();
        let mut w = open(&dir, &["id"]).unwrap();
        let err = w
            .upsert(batch(
                &[("name", FieldType::Text)],
                vec![vec![Value::Text("x".into())]],
            ))
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("no key field `id`")),
            "{err}"
        );
    }

    #[test]
    fn written_file_reads_back() {
        let dir = TestDir::new();
        let mut w = open(&dir, &["id"]).unwrap();
        w.upsert(batch(
            &[
                ("id", FieldType::Integer),
                ("score", FieldType::Float),
                ("note", FieldType::Text),
            ],
            vec![
                vec![
                    Value::Integer(1),
                    Value::Float(0.1),
                    Value::Text("line\nbreak \"q\"".into()),
                ],
                vec![Value::Integer(2), Value::Float(f64::INFINITY), Value::Null],
            ],
        ))
        .unwrap();
        w.finish().unwrap();
        let p = crate::read::read_page(dir.path(), 100, "people", None, 10).unwrap();
        assert!(p.rejected.is_empty());
        assert_eq!(p.records.row(0).get("score"), Some(Value::Float(0.1)));
        assert_eq!(p.records.row(1).get("score"), Some(Value::Null));
        assert_eq!(p.records.row(0).text("note"), Some("line\nbreak \"q\""));
    }
}
