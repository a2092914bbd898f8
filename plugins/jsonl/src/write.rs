//! The destination side: upsert into a JSON Lines file through the SDK's
//! [`KeyedFileWriter`], which keeps only a key index of bounded size in memory,
//! appends, and appends to or atomically replaces the file on finish. This module is the JSON Lines format.
//! Objects keep their field order (`serde_json`'s `preserve_order`), so an update
//! changes only what it touches.

use std::io::BufRead;
use std::path::Path;

use serde_json::{Map, Value as Json};
use weir_sdk::files::{KeyedFileWriter, RecordFormat, StoredRecord};
use weir_sdk::{Batch, Error, RecordError};

use crate::convert::{key_part, push_key_part, to_json, write_json};
use crate::schema::is_blank;

type Object = Map<String, Json>;

/// A write session on one JSON Lines file.
pub type JsonlWriter = KeyedFileWriter<JsonlFormat>;

/// Opens a write session on `<dir>/<entity>.jsonl`.
pub fn open(dir: &Path, entity: &str, key_fields: Vec<String>) -> Result<JsonlWriter, Error> {
    let format = JsonlFormat {
        entity: entity.to_owned(),
        key_fields: key_fields.clone(),
        key_cols: Vec::new(),
        prefixes: Vec::new(),
        prefix_ends: Vec::new(),
    };
    KeyedFileWriter::open(dir, entity, "jsonl", &key_fields, format)
}

/// One JSON object per line.
pub struct JsonlFormat {
    entity: String,
    key_fields: Vec<String>,
    /// The batch column of each key field (current batch).
    key_cols: Vec<usize>,
    /// What comes before each column's value in a line of the current batch
    /// (`"name":`, after a comma but for the first), escaped once per batch;
    /// column `c`'s ends at `prefix_ends[c]`.
    prefixes: Vec<u8>,
    prefix_ends: Vec<usize>,
}

fn not_an_object(entity: &str, number: u64) -> Error {
    Error::config(format!(
        "entity `{entity}`: line {number} is not a JSON object; not rewriting the file"
    ))
}

impl RecordFormat for JsonlFormat {
    type Stored = Object;

    /// A line that is not a JSON object is an error: better to refuse the
    /// session than to rewrite someone's file without it. Blank lines are
    /// skipped (and dropped when the file is rewritten).
    fn scan(
        &self,
        input: &mut dyn BufRead,
        at: u64,
        keys: bool,
        visit: &mut dyn FnMut(u64, Option<&str>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut line = Vec::new();
        let mut number = 0u64;
        let mut pos = at;
        let mut key = String::new();
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io(&format!("entity `{}`", self.entity), e))?;
            if n == 0 {
                return Ok(());
            }
            number += 1;
            let start = pos;
            pos += n as u64;
            if is_blank(&line) {
                continue;
            }
            if !keys {
                visit(start, None)?;
                continue;
            }
            let object = match serde_json::from_slice::<Json>(&line) {
                Ok(Json::Object(object)) => object,
                _ => return Err(not_an_object(&self.entity, number)),
            };
            // A record whose key is incomplete cannot be matched; it is kept as is.
            let complete = self.stored_key(&object, &mut key);
            visit(start, complete.then_some(key.as_str()))?;
        }
    }

    fn read_stored(&self, input: &mut dyn BufRead) -> Result<Object, Error> {
        let mut line = Vec::new();
        input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(&format!("entity `{}`", self.entity), e))?;
        match serde_json::from_slice::<Json>(&line) {
            Ok(Json::Object(object)) => Ok(object),
            _ => Err(Error::internal(format!(
                "entity `{}`: a record read back is not a JSON object",
                self.entity
            ))),
        }
    }

    /// A line weir wrote from the same mapping is byte for byte what
    /// `encode_new` makes of an unchanged record: compared before any JSON is
    /// parsed (parsing into a map was most of a re-sync's cost).
    fn read_stored_for(
        &self,
        input: &mut dyn BufRead,
        records: &Batch,
        i: usize,
    ) -> Result<StoredRecord<Object>, Error> {
        let mut line = Vec::new();
        input
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(&format!("entity `{}`", self.entity), e))?;
        let mut encoded = Vec::with_capacity(line.len());
        self.encode(records, i, &mut encoded);
        if encoded == line {
            return Ok(StoredRecord::SameAsNew);
        }
        self.read_stored(&mut line.as_slice()).map(StoredRecord::Decoded)
    }

    fn stored_key(&self, object: &Object, key: &mut String) -> bool {
        key.clear();
        for (n, k) in self.key_fields.iter().enumerate() {
            let Some(part) = key_part(object.get(k)) else {
                return false;
            };
            if n > 0 {
                key.push('|');
            }
            key.push_str(&part);
        }
        true
    }

    fn begin_batch(&mut self, records: &Batch) -> Result<(), Error> {
        self.key_cols = key_columns(&self.entity, records, &self.key_fields)?;
        self.prefixes.clear();
        self.prefix_ends.clear();
        for (n, col) in records.columns.iter().enumerate() {
            if n > 0 {
                self.prefixes.push(b',');
            }
            let _ = serde_json::to_writer(&mut self.prefixes, &col.name);
            self.prefixes.push(b':');
            self.prefix_ends.push(self.prefixes.len());
        }
        Ok(())
    }

    /// The key is taken from the values as they will be stored, so a batch
    /// matches the file whatever the types (a timestamp key is compared as the
    /// RFC 3339 text the file holds).
    fn batch_key(
        &mut self,
        records: &Batch,
        i: usize,
        key: &mut String,
    ) -> Result<(), RecordError> {
        for (n, &c) in self.key_cols.iter().enumerate() {
            let col = &records.columns[c];
            if n > 0 {
                key.push('|');
            }
            if !push_key_part(col, i, key) {
                let name = &col.name;
                return Err(RecordError::field(
                    name,
                    format!("key field `{name}` is empty"),
                ));
            }
        }
        Ok(())
    }

    fn encode_new(&mut self, records: &Batch, i: usize, out: &mut Vec<u8>) {
        self.encode(records, i, out);
    }

    /// Values, not bytes: a file written by another program (other key order,
    /// spacing, escapes) is still recognised as holding what the batch says.
    fn unchanged(&self, object: &Object, records: &Batch, i: usize) -> bool {
        records
            .columns
            .iter()
            .all(|col| object.get(&col.name) == Some(&to_json(col, i)))
    }

    fn encode_update(&mut self, mut object: Object, records: &Batch, i: usize, out: &mut Vec<u8>) {
        // Batch fields overwrite (a null too); the record's other fields stay, in
        // their place.
        for col in &records.columns {
            object.insert(col.name.clone(), to_json(col, i));
        }
        let _ = serde_json::to_writer(&mut *out, &object);
        out.push(b'\n');
    }
}

impl JsonlFormat {
    /// Record `i` as a new line: value by value from the columns, after their
    /// prefixes (`encode_new`, and the comparison of `read_stored_for`).
    fn encode(&self, records: &Batch, i: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut start = 0;
        for (col, &end) in records.columns.iter().zip(&self.prefix_ends) {
            out.extend_from_slice(&self.prefixes[start..end]);
            start = end;
            write_json(col, i, out);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// The batch's key columns, in key order. A batch without a key column is a
/// mapping mistake, not a bad record: it fails the call, naming what is there.
fn key_columns(entity: &str, records: &Batch, key_fields: &[String]) -> Result<Vec<usize>, Error> {
    key_fields
        .iter()
        .map(|k| {
            records
                .columns
                .iter()
                .position(|c| c.name == *k)
                .ok_or_else(|| {
                    let fields: Vec<&str> =
                        records.columns.iter().map(|c| c.name.as_str()).collect();
                    Error::config(format!(
                        "entity `{entity}`: the records have no key field `{k}` (they have: {})",
                        fields.join(", ")
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::TestDir;
    use weir_sdk::{BatchBuilder, FieldType, Value};
    use weir_sdk::{UpsertOutcome, Writer};

    fn open(dir: &TestDir, keys: &[&str]) -> Result<JsonlWriter, Error> {
        super::open(
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

    /// Obeyed/violated pair: values equal to the file's (in another key order
    /// and spacing than weir writes) leave the file as it was, not even
    /// rewritten; a changed value rewrites it.
    #[test]
    fn unchanged_values_leave_the_file_untouched() {
        use std::os::unix::fs::MetadataExt;
        let dir = TestDir::new();
        let text = "{\"name\": \"Ada\", \"id\": 1, \"score\": 1.5, \"extra\": [1]}\n{\"id\":2,\"name\":\"Bo\",\"score\":null}\n";
        dir.write("people.jsonl", text);
        let before = std::fs::metadata(dir.path().join("people.jsonl")).unwrap();
        let fields = [
            ("id", FieldType::Integer),
            ("name", FieldType::Text),
            ("score", FieldType::Float),
        ];
        let rows = |bo: &str| {
            vec![
                vec![Value::Integer(1), Value::Text("Ada".into()), Value::Float(1.5)],
                vec![Value::Integer(2), Value::Text(bo.into()), Value::Null],
            ]
        };
        let mut w = open(&dir, &["id"]).unwrap();
        let out = w.upsert(batch(&fields, rows("Bo"))).unwrap();
        assert_eq!(out, vec![UpsertOutcome::Unchanged, UpsertOutcome::Unchanged]);
        w.finish().unwrap();
        assert_eq!(dir.read("people.jsonl"), text);
        let after = std::fs::metadata(dir.path().join("people.jsonl")).unwrap();
        assert_eq!((before.ino(), before.mtime_nsec()), (after.ino(), after.mtime_nsec()));

        let mut w = open(&dir, &["id"]).unwrap();
        let out = w.upsert(batch(&fields, rows("Bob"))).unwrap();
        assert_eq!(out, vec![UpsertOutcome::Unchanged, UpsertOutcome::Updated]);
        w.finish().unwrap();
        assert!(dir.read("people.jsonl").contains("\"Bob\""));
        let rewritten = std::fs::metadata(dir.path().join("people.jsonl")).unwrap();
        assert_ne!(before.ino(), rewritten.ino());

        // Again: the line weir wrote matches byte for byte, the other by value.
        let text = dir.read("people.jsonl");
        let mut w = open(&dir, &["id"]).unwrap();
        let out = w.upsert(batch(&fields, rows("Bob"))).unwrap();
        assert_eq!(out, vec![UpsertOutcome::Unchanged, UpsertOutcome::Unchanged]);
        assert_eq!(w.unchanged(), 2);
        w.finish().unwrap();
        assert_eq!(dir.read("people.jsonl"), text);
        let again = std::fs::metadata(dir.path().join("people.jsonl")).unwrap();
        assert_eq!(again.ino(), rewritten.ino());
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
            super::open(dir.path(), "a\\b", vec!["id".into()]),
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

    #[test]
    fn file_from_an_older_version_and_two_sessions() {
        let dir = TestDir::new();
        // As earlier versions (or people) wrote it: spaces, a blank line, no
        // final line break.
        dir.write(
            "people.jsonl",
            "{\"id\": 1, \"name\": \"Ada\"}\n\n{\"id\": 2}",
        );
        let fields = [("id", FieldType::Integer), ("name", FieldType::Text)];
        let mut w = open(&dir, &["id"]).unwrap();
        let out = w
            .upsert(batch(
                &fields,
                vec![vec![Value::Integer(3), Value::Text("Cy".into())]],
            ))
            .unwrap();
        assert_eq!(out, vec![UpsertOutcome::Inserted]);
        w.finish().unwrap();
        assert_eq!(
            dir.read("people.jsonl"),
            "{\"id\": 1, \"name\": \"Ada\"}\n\n{\"id\": 2}\n{\"id\":3,\"name\":\"Cy\"}\n"
        );
        let mut w = open(&dir, &["id"]).unwrap();
        let out = w
            .upsert(batch(
                &fields,
                vec![
                    vec![Value::Integer(2), Value::Text("Bo".into())],
                    vec![Value::Integer(3), Value::Text("Cy2".into())],
                    vec![Value::Integer(4), Value::Null],
                ],
            ))
            .unwrap();
        assert_eq!(
            out,
            vec![
                UpsertOutcome::Updated,
                UpsertOutcome::Updated,
                UpsertOutcome::Inserted
            ]
        );
        w.finish().unwrap();
        assert_eq!(
            dir.read("people.jsonl"),
            concat!(
                "{\"id\": 1, \"name\": \"Ada\"}\n",
                "{\"id\":2,\"name\":\"Bo\"}\n",
                "{\"id\":3,\"name\":\"Cy2\"}\n",
                "{\"id\":4,\"name\":null}\n"
            )
        );
    }
}

