//! The source side: discovering files, parsing cells, reading pages.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use weir_sdk::{
    Batch, Column, ColumnData, EntitySchema, Error, FieldSchema, FieldType, ReadPage, RecordError,
    Rejected, VarData,
};

use crate::options::Options;
use weir_sdk::files::{
    Cursor, DATA_DIR, entity_files, entity_path, io_error, open_listed, quoted, unterminated_line,
};

/// A CSV reader configured the one way every call reads: our delimiter, no
/// trimming, and `flexible` so a short or long row is ours to reject with a line
/// number instead of an error that stops the whole page.
pub fn reader<R: Read>(options: &Options, input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(options.delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(input)
}

/// The most columns a header may have: Excel's own limit (16,384), far past any
/// export a person reads; a wider header is refused, not carried into every page.
pub const MAX_COLUMNS: usize = 16_384;

/// Reads and checks the header row. An empty file has no columns.
///
/// The duplicate check is a hash set, not a scan of the names so far: the header
/// is read on every page, and a scan made 100,000 columns cost 24 s.
pub fn read_header<R: Read>(entity: &str, rdr: &mut csv::Reader<R>) -> Result<Vec<String>, Error> {
    let raw = rdr
        .byte_headers()
        .map_err(|e| csv_error(entity, e))?
        .clone();
    let mut header: Vec<String> = Vec::with_capacity(raw.len());
    let mut seen: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(raw.len());
    for (n, cell) in raw.iter().enumerate() {
        let mut name = std::str::from_utf8(cell).map_err(|_| {
            Error::config(format!(
                "entity `{entity}`: header column {} is not UTF-8",
                n + 1
            ))
        })?;
        // Spreadsheet programs often start a UTF-8 file with a byte order mark;
        // it would otherwise become part of the first column's name.
        if n == 0 {
            name = name.strip_prefix('\u{feff}').unwrap_or(name);
        }
        if name.is_empty() {
            return Err(Error::config(format!(
                "entity `{entity}`: header column {} has no name",
                n + 1
            )));
        }
        if let Some(first) = seen.insert(name, n + 1) {
            return Err(Error::config(format!(
                "entity `{entity}`: column `{name}` appears twice in the header (columns {first} and {})",
                n + 1
            )));
        }
        header.push(name.to_owned());
    }
    // Duplicates first: a wide header with a duplicate is named by its duplicate.
    if raw.len() > MAX_COLUMNS {
        return Err(Error::config(format!(
            "entity `{entity}`: the header has {} columns; at most {MAX_COLUMNS} are read",
            raw.len()
        )));
    }
    Ok(header)
}

pub fn csv_error(entity: &str, err: csv::Error) -> Error {
    match err.into_kind() {
        csv::ErrorKind::Io(e) => Error::io(&format!("entity `{entity}`"), e),
        other => Error::internal(format!("entity `{entity}`: {other:?}")),
    }
}

/// One entity per `*.csv` file of `dir`, sorted by name.
pub fn discover(dir: &Path, options: &Options) -> Result<Vec<EntitySchema>, Error> {
    let entries = entity_files(dir, "csv").map_err(|e| dir_error(dir, e))?;
    let mut out = Vec::new();
    for (entity, path) in entries {
        let entity = entity.as_str();
        let Some(file) = open_listed(entity, &path)? else {
            continue; // removed since it was listed
        };
        let header = read_header(entity, &mut reader(options, file))?;
        out.push(EntitySchema {
            name: entity.to_owned(),
            fields: header
                .iter()
                .map(|h| FieldSchema::new(h, options.type_of(h)))
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

/// Reads the page of `entity` that starts at `cursor` (after the header if none).
pub fn read_page(
    dir: &Path,
    options: &Options,
    entity: &str,
    cursor: Option<&str>,
    max_records: u32,
) -> Result<ReadPage, Error> {
    let path = entity_path(dir, entity, "csv")?;
    let cursor = cursor.map(|c| Cursor::parse(entity, c)).transpose()?;
    let file = File::open(&path).map_err(|e| io_error(entity, &path, e))?;
    read_page_from(entity, options, file, cursor, max_records)
}

/// [`read_page`] on any seekable input: the whole reading logic, testable on
/// bytes in memory.
pub fn read_page_from<R: Read + Seek>(
    entity: &str,
    options: &Options,
    input: R,
    cursor: Option<Cursor>,
    max_records: u32,
) -> Result<ReadPage, Error> {
    // Where the file ends, and whether on a line end: a last record that reaches the
    // end without one is still being written (see `unterminated_line`).
    let mut input = input;
    let io = |e| Error::io(&format!("entity `{entity}`"), e);
    let end = input.seek(SeekFrom::End(0)).map_err(io)?;
    let ends_a_line = end == 0 || {
        let mut last = [0u8];
        input
            .seek(SeekFrom::Start(end - 1))
            .and_then(|_| input.read_exact(&mut last))
            .map_err(io)?;
        matches!(last[0], b'\n' | b'\r')
    };
    input.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut rdr = reader(options, Tracked::new(input));
    // The header is read on every page: it names the columns, and reading one row
    // is cheaper than carrying the names in the cursor.
    let header = read_header(entity, &mut rdr)?;
    let types: Vec<FieldType> = header.iter().map(|h| options.type_of(h)).collect();
    if let Some(c) = cursor {
        let mut pos = csv::Position::new();
        pos.set_byte(c.byte).set_line(c.line);
        rdr.seek(pos).map_err(|e| csv_error(entity, e))?;
        rdr.get_mut().set_line(c.byte, c.line);
    }

    let max = max_records as usize;
    let mut columns = Columns::new(&header, &types, max.min(4096));
    let mut rejected = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut cells: Vec<Cell> = Vec::with_capacity(header.len());
    let mut scratch = Vec::new();
    let mut taken = 0;
    let mut done = false;
    // Where a last line without its line end starts, when this page met one.
    let mut partial_at = None;
    // Rejected rows count towards the page too: a page then never parses more
    // than `max_records` rows, however bad the file.
    while taken < max {
        if !rdr
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(entity, e))?
        {
            done = true;
            break;
        }
        taken += 1;
        let line = rdr.get_mut().line_of(&record);
        if !ends_a_line && rdr.position().byte() >= end {
            // Not a record yet: refused, and the cursor stays before it.
            rejected.push(unterminated_line(line));
            partial_at = record.position().map(|p| p.byte());
            done = true;
            break;
        }
        match parse_row(&header, &types, &record, &mut cells, &mut scratch) {
            Ok(()) => columns.push(&record, &cells),
            Err(error) => rejected.push(Rejected {
                position: format!("line {line}"),
                key: None,
                error,
            }),
        }
    }
    let next_byte = partial_at.unwrap_or_else(|| rdr.position().byte());
    // Look one record ahead so the last page says `done` instead of leaving the
    // host to ask for an empty one. The cursor stays before that record.
    if !done {
        done = !rdr
            .read_byte_record(&mut record)
            .map_err(|e| csv_error(entity, e))?;
    }
    // Numbered after the look-ahead, which has read past a `\r` that may end
    // the page, to see whether a `\n` follows.
    let next = Cursor {
        byte: next_byte,
        line: rdr.get_mut().line_at(next_byte),
    };
    Ok(ReadPage {
        records: columns.finish(),
        rejected,
        // At the end too: a file that grows by appended rows continues from here.
        next_cursor: Some(next.to_text()),
        done,
    })
}

/// An input that remembers the bytes the CSV reader pulled through it, to number
/// lines.
///
/// Why: the csv crate's line numbers count `\n` only (a file with old Mac `\r`
/// line ends is all "line 1"), and a record's position is where the *previous*
/// record ended, before the rest of a `\r\n` and any blank lines, so it lags
/// behind the record. Counting line breaks ourselves needs the raw bytes, which
/// only the input sees. The window is trimmed as records go by, so memory stays
/// bounded by about a page.
pub struct Tracked<R> {
    inner: R,
    /// Bytes read from offset `start` on.
    window: Vec<u8>,
    start: u64,
    /// Line breaks are counted up to this offset...
    counted: u64,
    /// ...which is on this line.
    line: u64,
}

impl<R> Tracked<R> {
    pub fn new(inner: R) -> Tracked<R> {
        Tracked {
            inner,
            window: Vec::new(),
            start: 0,
            counted: 0,
            line: 1,
        }
    }

    /// Declares that offset `byte` is on line `line` (after seeking to a cursor).
    pub fn set_line(&mut self, byte: u64, line: u64) {
        self.counted = byte;
        self.line = line;
    }

    /// Whether the byte at window index `i` ends a line: `\n`, or a `\r` not
    /// followed by `\n` (that pair counts once, at its `\n`). A `\r` whose next
    /// byte is not read yet counts: callers only ask after the reader has looked
    /// past it, or at the end of the input.
    fn is_break(&self, i: usize) -> bool {
        match self.window[i] {
            b'\n' => true,
            b'\r' => self.window.get(i + 1) != Some(&b'\n'),
            _ => false,
        }
    }

    /// The line of offset `byte`, which must not be before the last one asked.
    pub fn line_at(&mut self, byte: u64) -> u64 {
        let from = self.counted.saturating_sub(self.start) as usize;
        let to = (byte.saturating_sub(self.start) as usize).min(self.window.len());
        for i in from..to {
            self.line += self.is_break(i) as u64;
        }
        self.counted = byte.max(self.counted);
        self.line
    }

    /// The line of the record's first cell: the line breaks up to its position,
    /// plus the blank lines the CSV reader skipped before it.
    pub fn line_of(&mut self, record: &csv::ByteRecord) -> u64 {
        let Some(pos) = record.position() else {
            return 0;
        };
        let mut line = self.line_at(pos.byte());
        let off = pos.byte().saturating_sub(self.start) as usize;
        let mut i = off;
        while i < self.window.len() && matches!(self.window[i], b'\r' | b'\n') {
            line += self.is_break(i) as u64;
            i += 1;
        }
        // Forget what no later record can start in; in large steps, so the copy
        // is amortised.
        if off > 64 * 1024 {
            self.window.drain(..off);
            self.start += off as u64;
        }
        line
    }
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.window.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl<R: Seek> Seek for Tracked<R> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(to)?;
        self.window.clear();
        self.start = at;
        Ok(at)
    }
}

/// A checked cell, ready to push into its column. Text stays in the record; only
/// scalars are held here, so checking a row allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    Null,
    Text,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Decimal,
}

/// Checks every cell of a row against its column's type. Nothing is pushed until
/// the whole row passes, so a rejected row leaves no partial record.
fn parse_row(
    header: &[String],
    types: &[FieldType],
    record: &csv::ByteRecord,
    cells: &mut Vec<Cell>,
    scratch: &mut Vec<u8>,
) -> Result<(), RecordError> {
    if record.len() != header.len() {
        return Err(RecordError::new(format!(
            "the row has {} cells, the header has {} columns",
            record.len(),
            header.len()
        )));
    }
    cells.clear();
    for ((raw, name), ty) in record.iter().zip(header).zip(types) {
        let text = std::str::from_utf8(raw).map_err(|_| {
            RecordError::field(
                name,
                format!("column `{name}`: the value is not UTF-8 text"),
            )
        })?;
        let cell = parse_cell(*ty, text, scratch)
            .map_err(|why| RecordError::field(name, format!("column `{name}`: {why}")))?;
        cells.push(cell);
    }
    Ok(())
}

/// Parses one cell as `ty`. Empty is null; typed cells may be padded with spaces
/// (`1, 2, 3` is common in hand-written files), text is kept exactly.
pub fn parse_cell(ty: FieldType, text: &str, scratch: &mut Vec<u8>) -> Result<Cell, String> {
    if text.is_empty() {
        return Ok(Cell::Null);
    }
    if ty == FieldType::Text {
        return Ok(Cell::Text);
    }
    let t = text.trim_matches(|c: char| c == ' ' || c == '\t');
    if t.is_empty() {
        return Ok(Cell::Null);
    }
    let fail = |what: &str| Err(format!("{} is not {what}", quoted(text)));
    match ty {
        FieldType::Integer => t.parse().map(Cell::Integer).or_else(|_| fail("an integer")),
        FieldType::Float => match t.parse::<f64>() {
            // `inf` and `NaN` parse, but no destination can hold them faithfully.
            Ok(x) if x.is_finite() => Ok(Cell::Float(x)),
            _ => fail("a finite number"),
        },
        FieldType::Boolean => match parse_bool(t) {
            Some(b) => Ok(Cell::Boolean(b)),
            None => fail("a boolean (true or false)"),
        },
        FieldType::Decimal => {
            scratch.clear();
            if canonical_decimal(t, scratch) {
                Ok(Cell::Decimal)
            } else {
                fail("a decimal number")
            }
        }
        // Only the types `Options` accepts reach here.
        _ => Ok(Cell::Text),
    }
}

pub fn parse_bool(t: &str) -> Option<bool> {
    if t.eq_ignore_ascii_case("true") || t == "1" {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") || t == "0" {
        Some(false)
    } else {
        None
    }
}

/// Writes the canonical text of a decimal (`-12.50`, `0.5`) to `out`, or returns
/// false. Canonical: no `+`, no leading zeros, a `0` before a bare point, no minus
/// on zero; the digits after the point are kept, since they carry the scale.
/// No exponents: a decimal column is for exact amounts, not scientific notation.
pub fn canonical_decimal(t: &str, out: &mut Vec<u8>) -> bool {
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return false;
    }
    let int = int.trim_start_matches('0');
    let zero = int.is_empty() && frac.bytes().all(|b| b == b'0');
    if negative && !zero {
        out.push(b'-');
    }
    out.extend_from_slice(if int.is_empty() { b"0" } else { int.as_bytes() });
    if !frac.is_empty() {
        out.push(b'.');
        out.extend_from_slice(frac.as_bytes());
    }
    true
}

/// Column buffers filled straight from checked rows: one push per cell into typed
/// vectors, no `Value` per cell.
struct Columns {
    columns: Vec<Column>,
    len: usize,
}

impl Columns {
    fn new(header: &[String], types: &[FieldType], capacity: usize) -> Columns {
        Columns {
            columns: header
                .iter()
                .zip(types)
                .map(|(name, ty)| Column {
                    name: name.clone(),
                    data: ColumnData::new(*ty, capacity),
                    nulls: Vec::with_capacity(capacity),
                })
                .collect(),
            len: 0,
        }
    }

    fn push(&mut self, record: &csv::ByteRecord, cells: &[Cell]) {
        for ((col, cell), raw) in self.columns.iter_mut().zip(cells).zip(record.iter()) {
            col.nulls.push(*cell == Cell::Null);
            match (&mut col.data, *cell) {
                (ColumnData::Boolean(v), c) => v.push(c == Cell::Boolean(true)),
                (ColumnData::Integer(v), c) => v.push(if let Cell::Integer(x) = c { x } else { 0 }),
                (ColumnData::Float(v), c) => v.push(if let Cell::Float(x) = c { x } else { 0.0 }),
                (ColumnData::Text(v), Cell::Text) => v.push(raw),
                (ColumnData::Decimal(v), Cell::Decimal) => push_decimal(v, raw),
                (ColumnData::Text(v) | ColumnData::Decimal(v) | ColumnData::Bytes(v), _) => {
                    v.push(b"")
                }
                (ColumnData::Timestamp(v), _) => v.push(0),
            }
        }
        self.len += 1;
    }

    fn finish(mut self) -> Batch {
        for col in &mut self.columns {
            // The contract's cheaper form: no null vector when nothing is null.
            if !col.nulls.contains(&true) {
                col.nulls = Vec::new();
            }
        }
        Batch {
            len: self.len,
            columns: self.columns,
        }
    }
}

fn push_decimal(v: &mut VarData, raw: &[u8]) {
    if v.offsets.is_empty() {
        v.offsets.push(0);
    }
    // Checked by `parse_cell`, so this is UTF-8 and a decimal.
    let t = std::str::from_utf8(raw).unwrap_or_default();
    canonical_decimal(t.trim_matches(|c: char| c == ' ' || c == '\t'), &mut v.data);
    v.offsets.push(v.data.len() as u32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor as Bytes;
    use weir_sdk::Value;

    fn opts(types: &str) -> Options {
        Options::parse(None, Some(types)).unwrap()
    }

    fn page(data: &str, types: &str, cursor: Option<&str>, max: u32) -> ReadPage {
        let cursor = cursor.map(|c| Cursor::parse("t", c).unwrap());
        let p =
            read_page_from("t", &opts(types), Bytes::new(data.as_bytes()), cursor, max).unwrap();
        p.records.validate().unwrap();
        p
    }

    fn values(batch: &Batch, field: &str) -> Vec<Value> {
        batch.rows().map(|r| r.get(field).unwrap()).collect()
    }

    #[test]
    fn typed_cells() {
        let mut s = Vec::new();
        assert_eq!(
            parse_cell(FieldType::Integer, " 42 ", &mut s),
            Ok(Cell::Integer(42))
        );
        assert_eq!(parse_cell(FieldType::Integer, "", &mut s), Ok(Cell::Null));
        assert_eq!(parse_cell(FieldType::Integer, "  ", &mut s), Ok(Cell::Null));
        assert_eq!(
            parse_cell(FieldType::Integer, "abc", &mut s),
            Err("`abc` is not an integer".to_owned())
        );
        assert!(parse_cell(FieldType::Integer, "1.5", &mut s).is_err());
        assert!(parse_cell(FieldType::Integer, "99999999999999999999", &mut s).is_err());
        assert_eq!(
            parse_cell(FieldType::Float, "1e3", &mut s),
            Ok(Cell::Float(1000.0))
        );
        assert!(parse_cell(FieldType::Float, "NaN", &mut s).is_err());
        assert!(parse_cell(FieldType::Float, "1,5", &mut s).is_err());
        assert_eq!(
            parse_cell(FieldType::Boolean, "TRUE", &mut s),
            Ok(Cell::Boolean(true))
        );
        assert_eq!(
            parse_cell(FieldType::Boolean, "0", &mut s),
            Ok(Cell::Boolean(false))
        );
        assert!(parse_cell(FieldType::Boolean, "yes", &mut s).is_err());
        assert_eq!(parse_cell(FieldType::Text, " ", &mut s), Ok(Cell::Text));
        assert_eq!(
            parse_cell(FieldType::Decimal, "1.50", &mut s),
            Ok(Cell::Decimal)
        );
        assert!(parse_cell(FieldType::Decimal, "1e5", &mut s).is_err());
    }

    #[test]
    fn a_header_of_100k_columns_is_checked_in_linear_time() {
        let mut names: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
        names.push("c5".to_owned());
        let data = names.join(",") + "\n";
        let started = std::time::Instant::now();
        let e = read_header("wide", &mut reader(&opts(""), data.as_bytes())).unwrap_err();
        let took = started.elapsed();
        assert!(
            e.to_string()
                .contains("column `c5` appears twice in the header (columns 6 and 100001)"),
            "{e}"
        );
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
        // Without a duplicate, the width bound refuses it.
        names.pop();
        let data = names.join(",") + "\n";
        let e = read_header("wide", &mut reader(&opts(""), data.as_bytes())).unwrap_err();
        assert!(
            e.to_string()
                .contains("the header has 100000 columns; at most 16384 are read"),
            "{e}"
        );
    }

    #[test]
    fn decimals_are_canonical() {
        let canon = |t: &str| {
            let mut out = Vec::new();
            canonical_decimal(t, &mut out).then(|| String::from_utf8(out).unwrap())
        };
        assert_eq!(canon("-12.50").as_deref(), Some("-12.50"));
        assert_eq!(canon("+007.5").as_deref(), Some("7.5"));
        assert_eq!(canon(".5").as_deref(), Some("0.5"));
        assert_eq!(canon("5.").as_deref(), Some("5"));
        assert_eq!(canon("-0.00").as_deref(), Some("0.00"));
        assert_eq!(canon("000").as_deref(), Some("0"));
        for bad in ["", "-", ".", "1.2.3", "1e5", "1 000", "12a", "--1"] {
            assert_eq!(canon(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_typed_columns_and_nulls() {
        let data = "id,amount,active,score,name\n1,12.50,true,1.5,Ada\n2,,false,,\n";
        let p = page(
            data,
            "id:integer,amount:decimal,active:boolean,score:float",
            None,
            10,
        );
        assert!(p.done && p.rejected.is_empty());
        let b = &p.records;
        assert_eq!(
            b.fields().collect::<Vec<_>>(),
            vec![
                ("id", FieldType::Integer),
                ("amount", FieldType::Decimal),
                ("active", FieldType::Boolean),
                ("score", FieldType::Float),
                ("name", FieldType::Text)
            ]
        );
        assert_eq!(values(b, "id"), vec![Value::Integer(1), Value::Integer(2)]);
        assert_eq!(
            values(b, "amount"),
            vec![Value::Decimal("12.50".into()), Value::Null]
        );
        assert_eq!(
            values(b, "active"),
            vec![Value::Boolean(true), Value::Boolean(false)]
        );
        assert_eq!(values(b, "score"), vec![Value::Float(1.5), Value::Null]);
        assert_eq!(
            values(b, "name"),
            vec![Value::Text("Ada".into()), Value::Null]
        );
        // No nulls in a column: no null vector.
        assert!(b.column("id").unwrap().nulls.is_empty());
    }

    #[test]
    fn bad_rows_are_rejected_with_line_and_column() {
        let data = "id,name\n1,a\nabc,b\n3\n4,d,extra\n5,e\n";
        let p = page(data, "id:integer", None, 100);
        assert_eq!(
            values(&p.records, "id"),
            vec![Value::Integer(1), Value::Integer(5)]
        );
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
            r,
            vec![
                ("line 3", Some("id"), "column `id`: `abc` is not an integer"),
                (
                    "line 4",
                    None,
                    "the row has 1 cells, the header has 2 columns"
                ),
                (
                    "line 5",
                    None,
                    "the row has 3 cells, the header has 2 columns"
                ),
            ]
        );
        assert!(p.done);
    }

    #[test]
    fn quoted_fields_and_pages_resume_at_the_cursor() {
        let data = "id,note\n1,\"multi\nline, with comma\"\n2,plain\n3,\"say \"\"hi\"\"\"\nx,bad\n4,last\n";
        let mut cursor: Option<String> = None;
        let mut ids = Vec::new();
        let mut notes = Vec::new();
        let mut rejected = Vec::new();
        let mut pages = 0;
        loop {
            let p = page(data, "id:integer", cursor.as_deref(), 2);
            pages += 1;
            assert!(p.records.len() + p.rejected.len() <= 2);
            ids.extend(values(&p.records, "id"));
            notes.extend(values(&p.records, "note"));
            rejected.extend(p.rejected.iter().map(|r| r.position.clone()));
            cursor = p.next_cursor;
            if p.done {
                break;
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(ids, [1, 2, 3, 4].map(Value::Integer).to_vec());
        assert_eq!(notes[0], Value::Text("multi\nline, with comma".into()));
        assert_eq!(notes[2], Value::Text("say \"hi\"".into()));
        // The quoted newline counts: `x,bad` is on line 6 of the file.
        assert_eq!(rejected, vec!["line 6"]);
        // The final cursor is the end of the file; reading again gives nothing.
        let again = page(data, "id:integer", cursor.as_deref(), 2);
        assert!(again.done && again.records.is_empty());
        assert_eq!(cursor.unwrap(), format!("{}:8", data.len()));
    }

    #[test]
    fn line_numbers_stay_right_across_big_pages() {
        // Enough data to move the tracking window on several times.
        let mut data = String::from("id,pad\r\n");
        for i in 1..=5000 {
            if i % 1000 == 0 {
                data.push_str("\r\nbad,x\r\n");
            } else {
                data.push_str(&format!("{i},{}\r\n", "p".repeat(i % 50)));
            }
        }
        let mut cursor = None;
        let mut lines = Vec::new();
        loop {
            let p = page(&data, "id:integer", cursor.as_deref(), 700);
            lines.extend(p.rejected.iter().map(|r| r.position.clone()));
            cursor = p.next_cursor;
            if p.done {
                break;
            }
        }
        // Record i sits on line i + 1, plus one blank line per earlier bad row.
        let expected: Vec<String> = (1..=5)
            .map(|k| format!("line {}", k * 1000 + 1 + k))
            .collect();
        assert_eq!(lines, expected);
    }

    #[test]
    fn crlf_split_across_reads_keeps_lines_right() {
        // The csv reader pulls 8 KiB at a time: put a row's `\r` on the last byte
        // of the first read and its `\n` on the first of the next.
        let mut data = String::from("id,pad\r\n1,");
        data.push_str(&"p".repeat(8191 - data.len()));
        data.push_str("\r\nx,b\r\n2,c\r\n");
        assert_eq!(data.as_bytes()[8191], b'\r');
        let p1 = page(&data, "id:integer", None, 1);
        assert_eq!(p1.records.len(), 1);
        let p2 = page(&data, "id:integer", p1.next_cursor.as_deref(), 1);
        assert_eq!(p2.rejected[0].position, "line 3");
        let p3 = page(&data, "id:integer", p2.next_cursor.as_deref(), 5);
        assert!(p3.done);
        assert_eq!(p3.next_cursor.unwrap(), format!("{}:5", data.len()));
    }

    #[test]
    fn exact_page_boundary_is_done_without_an_empty_page() {
        let data = "id\n1\n2\n";
        let p = page(data, "", None, 2);
        assert_eq!(p.records.len(), 2);
        assert!(p.done);
        let p = page(data, "", None, 1);
        assert!(!p.done);
        let p = page(data, "", p.next_cursor.as_deref(), 1);
        assert!(p.done);
        assert_eq!(values(&p.records, "id"), vec![Value::Text("2".into())]);
    }

    #[test]
    fn crlf_bom_and_blank_lines() {
        let data = "\u{feff}id,name\r\n1,a\r\n\r\nzz,b\r\n3,c\r\n";
        let p = page(data, "id:integer", None, 10);
        assert_eq!(p.records.columns[0].name, "id");
        assert_eq!(
            values(&p.records, "id"),
            vec![Value::Integer(1), Value::Integer(3)]
        );
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].position, "line 4");
        // Resume at every record boundary and check line numbers stay right.
        let p1 = page(data, "id:integer", None, 1);
        let p2 = page(data, "id:integer", p1.next_cursor.as_deref(), 1);
        assert_eq!(p2.rejected[0].position, "line 4");
        let p3 = page(data, "id:integer", p2.next_cursor.as_deref(), 1);
        assert_eq!(values(&p3.records, "id"), vec![Value::Integer(3)]);
        assert!(p3.done);
        // Old-Mac line ends and quoted CRLF inside a cell.
        let p = page("id\r1\r\rx\r", "id:integer", None, 10);
        assert_eq!(p.rejected[0].position, "line 4");
        let p = page("id,n\r\n1,\"a\r\nb\"\r\nx,c\r\n", "id:integer", None, 10);
        assert_eq!(p.records.row(0).text("n"), Some("a\r\nb"));
        assert_eq!(p.rejected[0].position, "line 4");
    }

    #[test]
    fn a_last_line_without_its_line_end_is_not_read_and_the_cursor_stays_before_it() {
        // Another program is still writing the last line: `3,Car` of `3,Carol`.
        let partial = "id,name\n1,Ada\n2,Bo\n3,Car";
        let p = page(partial, "id:integer", None, 10);
        assert!(p.done);
        assert_eq!(values(&p.records, "id"), [1, 2].map(Value::Integer).to_vec());
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].position, "line 4");
        assert!(p.rejected[0].error.message.contains("no line end yet"));
        let cursor = p.next_cursor.unwrap();
        assert_eq!(cursor, "19:4", "the cursor stays before the partial line");
        // Met by the look-ahead of a full page: that page stops before it too.
        let p = page(partial, "id:integer", None, 2);
        assert!(!p.done && p.rejected.is_empty());
        assert_eq!(p.next_cursor.as_deref(), Some("19:4"));
        // Once the writer finished the line, the next read takes it whole.
        let whole = "id,name\n1,Ada\n2,Bo\n3,Carol\n";
        let p = page(whole, "id:integer", Some(&cursor), 10);
        assert!(p.done && p.rejected.is_empty());
        assert_eq!(p.records.row(0).text("name"), Some("Carol"));
        // A quoted cell cut short at the end of the file is not a record either.
        let p = page("id,note\n1,\"two\nli", "id:integer", None, 10);
        assert!(p.records.is_empty() && p.rejected.len() == 1);
    }

    #[test]
    fn empty_file_and_header_only() {
        let p = page("", "", None, 10);
        assert!(p.done && p.records.is_empty() && p.records.columns.is_empty());
        let p = page("a,b\n", "", None, 10);
        assert!(p.done && p.records.is_empty());
        assert_eq!(p.records.columns.len(), 2);
        p.records.validate().unwrap();
    }

    #[test]
    fn bad_headers_are_config_errors() {
        for (data, needle) in [
            ("a,a\n", "`a` appears twice"),
            ("a,,b\n", "column 2 has no name"),
        ] {
            let err =
                read_page_from("t", &opts(""), Bytes::new(data.as_bytes()), None, 1).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.contains(needle)),
                "{err}"
            );
        }
    }

    #[test]
    fn other_delimiters() {
        let o = Options::parse(Some(";"), Some("n:integer")).unwrap();
        let p = read_page_from("t", &o, Bytes::new(&b"n;s\n1;a,b\n"[..]), None, 5).unwrap();
        assert_eq!(values(&p.records, "s"), vec![Value::Text("a,b".into())]);
    }
}
