//! The destination side: upsert into a CSV file, replaced atomically on finish.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use weir_sdk::{Batch, Column, ColumnData, Error, RecordError, UpsertOutcome, Writer};

use crate::options::Options;
use crate::read::{Tracked, csv_error, read_header, reader};
use weir_sdk::files::{entity_path, io_error, temp_path};

/// A write session on one CSV file. A CSV file cannot be updated in place, so the
/// whole file lives in memory (files here are exports of thousands of rows, not
/// gigabytes) and `finish` writes it anew.
pub struct CsvWriter {
    entity: String,
    dir: PathBuf,
    path: PathBuf,
    delimiter: u8,
    key_fields: Vec<String>,
    /// Whether the file existed at open: if it did not and no record was
    /// written, `finish` creates no file.
    existed: bool,
    header: Vec<String>,
    /// Rows in first-seen order. A row may be shorter than the header when columns
    /// were added after it; the missing cells are empty.
    rows: Vec<Vec<String>>,
    /// Key text → index in `rows`.
    index: HashMap<String, usize>,
}

impl CsvWriter {
    pub fn open(
        dir: &Path,
        options: &Options,
        entity: &str,
        key_fields: Vec<String>,
    ) -> Result<CsvWriter, Error> {
        let path = entity_path(dir, entity, "csv")?;
        if key_fields.is_empty() {
            return Err(Error::config(format!(
                "entity `{entity}`: upsert needs key fields"
            )));
        }
        let mut w = CsvWriter {
            entity: entity.to_owned(),
            dir: dir.to_owned(),
            path,
            delimiter: options.delimiter,
            key_fields,
            existed: false,
            header: Vec::new(),
            rows: Vec::new(),
            index: HashMap::new(),
        };
        match File::open(&w.path) {
            Ok(file) => {
                w.existed = true;
                w.load(options, file)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(entity, &w.path, e)),
        }
        Ok(w)
    }

    /// Loads an existing file. Anything we could not write back faithfully (rows
    /// of the wrong length, bytes that are not UTF-8) is an error: better to refuse
    /// the session than to rewrite someone's file with data lost.
    fn load(&mut self, options: &Options, file: File) -> Result<(), Error> {
        let entity = self.entity.clone();
        let mut rdr = reader(options, Tracked::new(file));
        self.header = read_header(&entity, &mut rdr)?;
        let key_pos: Vec<Option<usize>> = self
            .key_fields
            .iter()
            .map(|k| self.header.iter().position(|h| h == k))
            .collect();
        let mut record = csv::ByteRecord::new();
        while rdr
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(&entity, e))?
        {
            let line = rdr.get_mut().line_of(&record);
            if record.len() != self.header.len() {
                return Err(Error::config(format!(
                    "entity `{entity}`: line {line} has {} cells, the header has {} columns; not rewriting the file",
                    record.len(),
                    self.header.len()
                )));
            }
            let row = record
                .iter()
                .map(|cell| std::str::from_utf8(cell).map(str::to_owned))
                .collect::<Result<Vec<String>, _>>()
                .map_err(|_| {
                    Error::config(format!(
                        "entity `{entity}`: line {line} is not UTF-8 text; not rewriting the file"
                    ))
                })?;
            // A row whose key is incomplete cannot be matched; it is kept as is.
            if let Some(key) = key_of_row(&row, &key_pos) {
                // A key repeated in the file: the first row is the one updated.
                self.index.entry(key).or_insert(self.rows.len());
            }
            self.rows.push(row);
        }
        Ok(())
    }

    /// The header position of `name`, appended if new.
    fn position(&mut self, name: &str) -> usize {
        match self.header.iter().position(|h| h == name) {
            Some(p) => p,
            None => {
                self.header.push(name.to_owned());
                self.header.len() - 1
            }
        }
    }

    /// Writes the file to a temporary sibling and renames it over the original, so
    /// a reader (or a crash) sees the old file or the new one, never half of one.
    fn write_file(&self) -> Result<(), Error> {
        let tmp = temp_path(&self.dir, &self.entity, "csv");
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
        let file = File::create(tmp).map_err(err)?;
        let mut out = csv::WriterBuilder::new()
            .delimiter(self.delimiter)
            .from_writer(BufWriter::new(file));
        let csv_err = |e| csv_error(&self.entity, e);
        out.write_record(&self.header).map_err(csv_err)?;
        let width = self.header.len();
        for row in &self.rows {
            let pad = width.saturating_sub(row.len());
            out.write_record(
                row.iter()
                    .map(String::as_str)
                    .chain(std::iter::repeat_n("", pad)),
            )
            .map_err(csv_err)?;
        }
        let file = out
            .into_inner()
            .map_err(|e| err(io::Error::other(e.to_string())))?
            .into_inner()
            .map_err(|e| err(e.into_error()))?;
        // Durable before the rename makes it visible. A host without fsync support
        // still gets the atomic replace.
        match file.sync_all() {
            Err(e) if e.kind() != io::ErrorKind::Unsupported => Err(err(e)),
            _ => Ok(()),
        }
    }
}

impl Writer for CsvWriter {
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
        let key_cols = key_columns(&self.entity, &records, &self.key_fields)?;
        let positions: Vec<usize> = records
            .columns
            .iter()
            .map(|c| self.position(&c.name))
            .collect();
        let width = self.header.len();
        let mut outcomes = Vec::with_capacity(records.len());
        for i in 0..records.len() {
            let key = match key_text(&key_cols, i) {
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
                    self.rows.push(Vec::with_capacity(width));
                    (self.rows.len() - 1, UpsertOutcome::Inserted)
                }
            };
            let row = &mut self.rows[row];
            if row.len() < width {
                row.resize(width, String::new());
            }
            // Only the batch's columns change; the row's other cells stay.
            for (col, &pos) in records.columns.iter().zip(&positions) {
                row[pos] = cell_text(col, i);
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    fn finish(&mut self) -> Result<(), Error> {
        // Nothing written to a file that did not exist: create none (not even a
        // header from a batch whose every record failed).
        if !self.existed && self.rows.is_empty() {
            return Ok(());
        }
        self.write_file()
    }
}

/// The batch's key columns, in key order. A batch without a key column is a
/// mapping mistake, not a bad record: it fails the call, naming what is there.
pub fn key_columns<'a>(
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

/// The key of record `i`: its key fields as text, joined by `|`. A null or empty
/// part fails the record, since it would match nothing or everything.
pub fn key_text(key_cols: &[&Column], i: usize) -> Result<String, RecordError> {
    let mut key = String::new();
    for (n, col) in key_cols.iter().enumerate() {
        let text = cell_text(col, i);
        if text.is_empty() {
            let name = &col.name;
            return Err(RecordError::field(
                name,
                format!("key field `{name}` is empty"),
            ));
        }
        if n > 0 {
            key.push('|');
        }
        key.push_str(&text);
    }
    Ok(key)
}

/// The key of a loaded row, if every part is there and non-empty.
fn key_of_row(row: &[String], key_pos: &[Option<usize>]) -> Option<String> {
    let mut parts = Vec::with_capacity(key_pos.len());
    for p in key_pos {
        let cell = row.get((*p)?)?;
        if cell.is_empty() {
            return None;
        }
        parts.push(cell.as_str());
    }
    Some(parts.join("|"))
}

/// A cell as CSV text: [`weir_sdk::Value::to_text`], null as empty, without
/// building a `Value` for the common text case.
pub fn cell_text(col: &Column, i: usize) -> String {
    if col.is_null(i) {
        return String::new();
    }
    match &col.data {
        ColumnData::Text(v) | ColumnData::Decimal(v) => v.get_str(i).unwrap_or_default().to_owned(),
        _ => col.value(i).to_text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::TestDir;
    use weir_sdk::{BatchBuilder, FieldType, Value};

    fn people(rows: &[(i64, Option<&str>)]) -> Batch {
        let mut b = BatchBuilder::new(&[("id", FieldType::Integer), ("name", FieldType::Text)]);
        for (id, name) in rows {
            b.push_row(&[
                Value::Integer(*id),
                name.map_or(Value::Null, |n| Value::Text(n.into())),
            ])
            .unwrap();
        }
        b.finish()
    }

    fn open(dir: &TestDir, keys: &[&str]) -> Result<CsvWriter, Error> {
        CsvWriter::open(
            dir.path(),
            &Options::parse(None, None).unwrap(),
            "people",
            keys.iter().map(|k| (*k).to_owned()).collect(),
        )
    }

    #[test]
    fn new_file_header_in_first_batch_order_and_repeated_key_updates() {
        let dir = TestDir::new();
        let mut w = open(&dir, &["id"]).unwrap();
        let out = w
            .upsert(people(&[(1, Some("Ada")), (2, None), (1, Some("Ada L."))]))
            .unwrap();
        assert_eq!(
            out,
            vec![
                UpsertOutcome::Inserted,
                UpsertOutcome::Inserted,
                UpsertOutcome::Updated
            ]
        );
        // Nothing on disk before finish.
        assert!(!dir.path().join("people.csv").exists());
        w.finish().unwrap();
        assert_eq!(dir.read("people.csv"), "id,name\n1,Ada L.\n2,\n");
        assert!(!dir.path().join(".people.csv.tmp").exists());
    }

    #[test]
    fn updates_keep_other_columns_and_new_columns_extend_the_header() {
        let dir = TestDir::new();
        dir.write(
            "people.csv",
            "id,name,city\n1,Ada,London\n2,\"Lin, Bo\",\"multi\nline\"\n",
        );
        let mut w = open(&dir, &["id"]).unwrap();
        let mut b = BatchBuilder::new(&[
            ("id", FieldType::Text),
            ("email", FieldType::Text),
            ("score", FieldType::Float),
        ]);
        b.push_row(&[
            Value::Text("2".into()),
            Value::Text("lin@x.org".into()),
            Value::Float(1.5),
        ])
        .unwrap();
        b.push_row(&[Value::Text("3".into()), Value::Null, Value::Null])
            .unwrap();
        let out = w.upsert(b.finish()).unwrap();
        assert_eq!(out, vec![UpsertOutcome::Updated, UpsertOutcome::Inserted]);
        w.finish().unwrap();
        assert_eq!(
            dir.read("people.csv"),
            "id,name,city,email,score\n1,Ada,London,,\n2,\"Lin, Bo\",\"multi\nline\",lin@x.org,1.5\n3,,,,\n"
        );
    }

    #[test]
    fn empty_keys_fail_per_record_and_composite_keys_join() {
        let dir = TestDir::new();
        dir.write("people.csv", "id,name\n1,Ada\n");
        let mut w = open(&dir, &["id", "name"]).unwrap();
        let out = w
            .upsert(people(&[(1, Some("Ada")), (1, None), (1, Some(""))]))
            .unwrap();
        assert_eq!(out[0], UpsertOutcome::Updated);
        for o in &out[1..] {
            assert_eq!(
                *o,
                UpsertOutcome::Failed(RecordError::field("name", "key field `name` is empty"))
            );
        }
    }

    #[test]
    fn open_errors() {
        let dir = TestDir::new();
        let err = open(&dir, &[]).err().unwrap();
        assert_eq!(
            err,
            Error::config("entity `people`: upsert needs key fields")
        );
        let bad = CsvWriter::open(
            dir.path(),
            &Options::parse(None, None).unwrap(),
            "../x",
            vec!["id".into()],
        );
        assert!(matches!(bad, Err(Error::InvalidConfig(m)) if m.contains("`../x`")));
        dir.write("people.csv", "id,name\r\n1,Ada\r\n\r\n2,Bo,extra\r\n");
        let err = open(&dir, &["id"]).err().unwrap();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("line 4 has 3 cells")),
            "{err}"
        );
        std::fs::write(dir.path().join("people.csv"), b"id,name\n1,\xff\n").unwrap();
        let err = open(&dir, &["id"]).err().unwrap();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("line 2 is not UTF-8")),
            "{err}"
        );
    }

    #[test]
    fn missing_key_column_fails_the_call() {
        let dir = TestDir::new();
        let mut w = open(&dir, &["email"]).unwrap();
        let err = w.upsert(people(&[(1, None)])).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("no key field `email`") && m.contains("id, name")),
            "{err}"
        );
    }

    #[test]
    fn finish_without_records_leaves_no_file_but_rewrites_existing() {
        let dir = TestDir::new();
        open(&dir, &["id"]).unwrap().finish().unwrap();
        assert!(!dir.path().join("people.csv").exists());
        let mut w = open(&dir, &["name"]).unwrap();
        let out = w.upsert(people(&[(1, None)])).unwrap();
        assert!(matches!(out[0], UpsertOutcome::Failed(_)));
        w.finish().unwrap();
        assert!(!dir.path().join("people.csv").exists());
        dir.write("people.csv", "id;name\n1;Ada\n");
        let o = Options::parse(Some(";"), None).unwrap();
        let mut w = CsvWriter::open(dir.path(), &o, "people", vec!["id".into()]).unwrap();
        w.upsert(people(&[(2, Some("Bo;Li"))])).unwrap();
        w.finish().unwrap();
        assert_eq!(dir.read("people.csv"), "id;name\n1;Ada\n2;\"Bo;Li\"\n");
    }

    #[test]
    fn written_file_reads_back() {
        let dir = TestDir::new();
        let mut w = open(&dir, &["id"]).unwrap();
        w.upsert(people(&[(1, Some("quote \" and\nnewline")), (2, Some(""))]))
            .unwrap();
        w.finish().unwrap();
        let o = Options::parse(None, Some("id:integer")).unwrap();
        let p = crate::read::read_page(dir.path(), &o, "people", None, 10).unwrap();
        assert!(p.rejected.is_empty());
        assert_eq!(p.records.row(0).text("name"), Some("quote \" and\nnewline"));
        // An empty text is written as an empty cell, which reads back as null.
        assert_eq!(p.records.row(1).get("name"), Some(Value::Null));
    }
}
