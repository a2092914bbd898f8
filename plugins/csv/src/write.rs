//! The destination side: upsert into a CSV file through the SDK's
//! [`KeyedFileWriter`], which keeps only a key index of bounded size in memory,
//! appends, and appends to or atomically replaces the file on finish. This module is the CSV format.

use std::io::BufRead;
use std::path::Path;

use weir_sdk::files::{KeyedFileWriter, RecordFormat};
use weir_sdk::{Batch, Column, ColumnData, Error, RecordError};

use crate::options::Options;
use crate::read::{Tracked, csv_error, read_header};

/// A write session on one CSV file.
pub type CsvWriter = KeyedFileWriter<CsvFormat>;

/// Opens a write session on `<dir>/<entity>.csv`.
pub fn open(
    dir: &Path,
    options: &Options,
    entity: &str,
    key_fields: Vec<String>,
) -> Result<CsvWriter, Error> {
    let format = CsvFormat {
        entity: entity.to_owned(),
        delimiter: options.delimiter,
        key_fields: key_fields.clone(),
        header: Vec::new(),
        data_line: 1,
        written: None,
        key_pos: Vec::new(),
        key_cols: Vec::new(),
        by_pos: Vec::new(),
    };
    KeyedFileWriter::open(dir, entity, "csv", &key_fields, format)
}

/// CSV rows under a header that grows when batches bring new columns (rows
/// written before are padded with empty cells when the file is rewritten).
pub struct CsvFormat {
    entity: String,
    delimiter: u8,
    key_fields: Vec<String>,
    header: Vec<String>,
    /// The line where the file's records start (for line numbers in errors).
    data_line: u64,
    /// The width of the header in the file or first written, if any.
    written: Option<usize>,
    /// The header position of each key field, if it has one.
    key_pos: Vec<Option<usize>>,
    /// The batch column of each key field (current batch).
    key_cols: Vec<usize>,
    /// The batch column at each header position (current batch).
    by_pos: Vec<Option<usize>>,
}

impl CsvFormat {
    fn update_key_pos(&mut self) {
        self.key_pos = self
            .key_fields
            .iter()
            .map(|k| self.header.iter().position(|h| h == k))
            .collect();
    }

    fn csv_reader<R: std::io::Read>(&self, input: R) -> csv::Reader<R> {
        csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(4096)
            .from_reader(input)
    }

    /// Appends one row of cells, quoted where needed, ending in `\n`.
    fn write_row<'a>(&self, cells: impl Iterator<Item = &'a str>, out: &mut Vec<u8>) {
        let mut n = 0;
        let start = out.len();
        for cell in cells {
            if n > 0 {
                out.push(self.delimiter);
            }
            n += 1;
            let needs_quotes = cell
                .bytes()
                .any(|b| b == self.delimiter || b == b'"' || b == b'\n' || b == b'\r');
            if needs_quotes {
                out.push(b'"');
                for b in cell.bytes() {
                    if b == b'"' {
                        out.push(b'"');
                    }
                    out.push(b);
                }
                out.push(b'"');
            } else {
                out.extend_from_slice(cell.as_bytes());
            }
        }
        // A lone empty cell would be a blank line, which readers skip.
        if n == 1 && out.len() == start {
            out.extend_from_slice(b"\"\"");
        }
        out.push(b'\n');
    }
}

impl RecordFormat for CsvFormat {
    type Stored = Vec<String>;

    fn read_preamble(&mut self, input: &mut dyn BufRead) -> Result<u64, Error> {
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(true)
            .flexible(true)
            .from_reader(Tracked::new(input));
        self.header = read_header(&self.entity, &mut rdr)?;
        self.written = Some(self.header.len());
        self.update_key_pos();
        // Where the header ended (the rest of a `\r\n` may follow: the copy of
        // the preamble and of records drops line breaks at their ends).
        let end = rdr.position().byte();
        self.data_line = rdr.get_mut().line_at(end);
        Ok(end)
    }

    fn write_preamble(&mut self, out: &mut Vec<u8>) {
        self.written.get_or_insert(self.header.len());
        let header = std::mem::take(&mut self.header);
        self.write_row(header.iter().map(String::as_str), out);
        self.header = header;
    }

    /// The delimiter decides where records and keys are: an index made with
    /// another is not reused.
    fn index_tag(&self) -> Vec<u8> {
        vec![self.delimiter]
    }

    fn preamble_changed(&self) -> bool {
        self.written.is_some_and(|w| w != self.header.len())
    }

    /// Loads an existing file. Anything we could not write back faithfully (rows
    /// of the wrong length, bytes that are not UTF-8) is an error: better to refuse
    /// the session than to rewrite someone's file with data lost.
    fn scan(
        &self,
        input: &mut dyn BufRead,
        at: u64,
        keys: bool,
        visit: &mut dyn FnMut(u64, Option<&str>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let entity = &self.entity;
        let mut tracked = Tracked::new(input);
        tracked.set_line(0, self.data_line);
        let mut rdr = self.csv_reader(tracked);
        let mut record = csv::ByteRecord::new();
        let mut key = String::new();
        while rdr
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(entity, e))?
        {
            let pos = record.position().expect("a record read has a position");
            if !keys {
                visit(at + pos.byte(), None)?;
                continue;
            }
            let line = rdr.get_mut().line_of(&record);
            if record.len() != self.header.len() {
                return Err(Error::config(format!(
                    "entity `{entity}`: line {line} has {} cells, the header has {} columns; not rewriting the file",
                    record.len(),
                    self.header.len()
                )));
            }
            if std::str::from_utf8(record.as_slice()).is_err() {
                return Err(Error::config(format!(
                    "entity `{entity}`: line {line} is not UTF-8 text; not rewriting the file"
                )));
            }
            // A row whose key is incomplete cannot be matched; it is kept as is.
            let complete = key_of(
                |p| std::str::from_utf8(record.get(p)?).ok(),
                &self.key_pos,
                &mut key,
            );
            visit(at + pos.byte(), complete.then_some(key.as_str()))?;
        }
        Ok(())
    }

    fn read_stored(&self, input: &mut dyn BufRead) -> Result<Vec<String>, Error> {
        let mut rdr = self.csv_reader(input);
        let mut record = csv::StringRecord::new();
        rdr.read_record(&mut record)
            .map_err(|e| csv_error(&self.entity, e))?;
        Ok(record.iter().map(str::to_owned).collect())
    }

    fn stored_key(&self, stored: &Vec<String>, key: &mut String) -> bool {
        key_of(|p| stored.get(p).map(String::as_str), &self.key_pos, key)
    }

    fn begin_batch(&mut self, records: &Batch) -> Result<(), Error> {
        self.key_cols = key_columns(&self.entity, records, &self.key_fields)?;
        let mut grew = false;
        self.by_pos = vec![None; self.header.len()];
        for (c, col) in records.columns.iter().enumerate() {
            match self.header.iter().position(|h| *h == col.name) {
                Some(p) => self.by_pos[p] = Some(c),
                None => {
                    self.header.push(col.name.clone());
                    self.by_pos.push(Some(c));
                    grew = true;
                }
            }
        }
        if grew {
            self.update_key_pos();
        }
        Ok(())
    }

    fn batch_key(
        &mut self,
        records: &Batch,
        i: usize,
        key: &mut String,
    ) -> Result<(), RecordError> {
        for (n, &c) in self.key_cols.iter().enumerate() {
            let col = &records.columns[c];
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
        Ok(())
    }

    fn encode_new(&mut self, records: &Batch, i: usize, out: &mut Vec<u8>) {
        let cells: Vec<Option<String>> = self
            .by_pos
            .iter()
            .map(|c| c.map(|c| cell_text(&records.columns[c], i)))
            .collect();
        self.write_row(cells.iter().map(|c| c.as_deref().unwrap_or("")), out);
    }

    /// The cells the batch would write already hold its values (as text: the
    /// file's only type; a null and an empty cell are the same).
    fn unchanged(&self, row: &Vec<String>, records: &Batch, i: usize) -> bool {
        self.by_pos.iter().enumerate().all(|(p, c)| match c {
            Some(c) => {
                row.get(p).map_or("", String::as_str) == cell_text(&records.columns[*c], i)
            }
            None => true,
        })
    }

    fn encode_update(
        &mut self,
        mut row: Vec<String>,
        records: &Batch,
        i: usize,
        out: &mut Vec<u8>,
    ) {
        if row.len() < self.header.len() {
            row.resize(self.header.len(), String::new());
        }
        // Only the batch's columns change; the row's other cells stay.
        for (p, c) in self.by_pos.iter().enumerate() {
            if let Some(c) = c {
                row[p] = cell_text(&records.columns[*c], i);
            }
        }
        self.write_row(row.iter().map(String::as_str), out);
    }

    /// A record's bytes run from the end of the one before (the csv crate's
    /// positions), so line breaks are dropped at both ends and one `\n` put back.
    fn copy_record(&self, raw: &[u8], out: &mut Vec<u8>) {
        let is_break = |b: &u8| *b == b'\n' || *b == b'\r';
        let start = raw.iter().position(|b| !is_break(b)).unwrap_or(raw.len());
        let end = raw.iter().rposition(|b| !is_break(b)).map_or(0, |p| p + 1);
        if end <= start {
            return;
        }
        let raw = &raw[..end];
        out.extend_from_slice(&raw[start..]);
        if self.preamble_changed() {
            // A row written under a narrower header gets empty cells.
            let mut record = csv::ByteRecord::new();
            let width = match self.csv_reader(raw).read_byte_record(&mut record) {
                Ok(true) => record.len(),
                _ => self.header.len(),
            };
            for _ in width..self.header.len() {
                out.push(self.delimiter);
            }
        }
        out.push(b'\n');
    }
}

/// The key of a stored row from its cells by header position (`|`-joined), into
/// `key`; `false` if a part is missing or empty.
fn key_of<'a>(
    cell: impl Fn(usize) -> Option<&'a str>,
    key_pos: &[Option<usize>],
    key: &mut String,
) -> bool {
    key.clear();
    for (n, p) in key_pos.iter().enumerate() {
        match p.and_then(&cell) {
            Some(c) if !c.is_empty() => {
                if n > 0 {
                    key.push('|');
                }
                key.push_str(c);
            }
            _ => return false,
        }
    }
    true
}

/// The batch's key columns, in key order. A batch without a key column is a
/// mapping mistake, not a bad record: it fails the call, naming what is there.
pub fn key_columns(
    entity: &str,
    records: &Batch,
    key_fields: &[String],
) -> Result<Vec<usize>, Error> {
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
    use weir_sdk::{UpsertOutcome, Writer};

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
        super::open(
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

    /// Obeyed/violated pair: the same values (a null as the empty cell the file
    /// has) leave the file untouched; a changed one rewrites it.
    #[test]
    fn unchanged_values_leave_the_file_untouched() {
        use std::os::unix::fs::MetadataExt;
        let dir = TestDir::new();
        dir.write("people.csv", "id,name,city\n1,Ada,Paris\n2,,Rome\n");
        let before = std::fs::metadata(dir.path().join("people.csv")).unwrap();
        let mut w = open(&dir, &["id"]).unwrap();
        let out = w.upsert(people(&[(2, None), (1, Some("Ada"))])).unwrap();
        assert_eq!(out, vec![UpsertOutcome::Unchanged, UpsertOutcome::Unchanged]);
        w.finish().unwrap();
        assert_eq!(dir.read("people.csv"), "id,name,city\n1,Ada,Paris\n2,,Rome\n");
        let after = std::fs::metadata(dir.path().join("people.csv")).unwrap();
        assert_eq!((before.ino(), before.mtime_nsec()), (after.ino(), after.mtime_nsec()));

        let mut w = open(&dir, &["id"]).unwrap();
        let out = w.upsert(people(&[(2, Some("Bo"))])).unwrap();
        assert_eq!(out, vec![UpsertOutcome::Updated]);
        w.finish().unwrap();
        assert_eq!(dir.read("people.csv"), "id,name,city\n1,Ada,Paris\n2,Bo,Rome\n");
        let rewritten = std::fs::metadata(dir.path().join("people.csv")).unwrap();
        assert_ne!(before.ino(), rewritten.ino());
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
        assert_eq!(out[0], UpsertOutcome::Unchanged);
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
        let bad = super::open(
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
        let mut w = super::open(dir.path(), &o, "people", vec!["id".into()]).unwrap();
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

    #[test]
    fn sessions_grow_the_header_and_crlf_files_are_rewritten_cleanly() {
        let dir = TestDir::new();
        dir.write("people.csv", "id,name\r\n1,Ada\r\n\r\n2,Bo\r\n");
        let mut w = open(&dir, &["id"]).unwrap();
        let out = w.upsert(people(&[(3, Some("Cy"))])).unwrap();
        assert_eq!(out, vec![UpsertOutcome::Inserted]);
        w.finish().unwrap();
        // Only appends: the old bytes are kept as they were.
        assert_eq!(
            dir.read("people.csv"),
            "id,name\r\n1,Ada\r\n\r\n2,Bo\r\n3,Cy\n"
        );
        let mut w = open(&dir, &["id"]).unwrap();
        let mut b = BatchBuilder::new(&[("id", FieldType::Integer), ("email", FieldType::Text)]);
        b.push_row(&[Value::Integer(2), Value::Text("bo@x".into())])
            .unwrap();
        b.push_row(&[Value::Integer(4), Value::Text("d@x".into())])
            .unwrap();
        b.push_row(&[Value::Integer(4), Value::Text("d2@x".into())])
            .unwrap();
        let out = w.upsert(b.finish()).unwrap();
        assert_eq!(
            out,
            vec![
                UpsertOutcome::Updated,
                UpsertOutcome::Inserted,
                UpsertOutcome::Updated
            ]
        );
        w.finish().unwrap();
        assert_eq!(
            dir.read("people.csv"),
            "id,name,email\n1,Ada,\n2,Bo,bo@x\n3,Cy,\n4,,d2@x\n"
        );
    }
}
