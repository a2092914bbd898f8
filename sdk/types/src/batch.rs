//! The columnar record batch (WIT `record-batch`) with a builder and a row view.

use std::fmt;

/// The type of a field or column (WIT `field-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum FieldType {
    Boolean,
    Integer,
    Float,
    /// Exact decimal, carried as canonical text.
    Decimal,
    Text,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
    Bytes,
}

impl FieldType {
    /// The lowercase name used in WIT, project files and messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Boolean => "boolean",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Decimal => "decimal",
            FieldType::Text => "text",
            FieldType::Timestamp => "timestamp",
            FieldType::Bytes => "bytes",
        }
    }

    /// Parses a name as written by [`FieldType::name`].
    pub fn from_name(name: &str) -> Option<FieldType> {
        Some(match name {
            "boolean" => FieldType::Boolean,
            "integer" => FieldType::Integer,
            "float" => FieldType::Float,
            "decimal" => FieldType::Decimal,
            "text" => FieldType::Text,
            "timestamp" => FieldType::Timestamp,
            "bytes" => FieldType::Bytes,
            _ => return None,
        })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One owned value.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum Value {
    Null,
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Decimal(String),
    Text(String),
    Timestamp(i64),
    Bytes(Vec<u8>),
}

impl Value {
    /// The value's type; `None` for null.
    pub fn field_type(&self) -> Option<FieldType> {
        Some(match self {
            Value::Null => return None,
            Value::Boolean(_) => FieldType::Boolean,
            Value::Integer(_) => FieldType::Integer,
            Value::Float(_) => FieldType::Float,
            Value::Decimal(_) => FieldType::Decimal,
            Value::Text(_) => FieldType::Text,
            Value::Timestamp(_) => FieldType::Timestamp,
            Value::Bytes(_) => FieldType::Bytes,
        })
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as text for keys, CSV cells and messages: null is empty,
    /// bytes are lowercase hex, timestamps are microseconds.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Boolean(b) => b.to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Decimal(s) | Value::Text(s) => s.clone(),
            Value::Timestamp(t) => t.to_string(),
            Value::Bytes(b) => hex::encode(b),
        }
    }
}

/// Variable-width values: value `i` is `data[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct VarData {
    pub data: Vec<u8>,
    pub offsets: Vec<u32>,
}

impl VarData {
    pub fn with_capacity(values: usize, bytes: usize) -> VarData {
        let mut offsets = Vec::with_capacity(values + 1);
        offsets.push(0);
        VarData {
            data: Vec::with_capacity(bytes),
            offsets,
        }
    }

    pub fn push(&mut self, value: &[u8]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.data.extend_from_slice(value);
        self.offsets.push(self.data.len() as u32);
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of value `i`.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The text of value `i`, or `None` if it is not UTF-8.
    pub fn get_str(&self, i: usize) -> Option<&str> {
        std::str::from_utf8(self.get(i)).ok()
    }
}

/// The values of one column.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnData {
    Boolean(Vec<bool>),
    Integer(Vec<i64>),
    Float(Vec<f64>),
    Decimal(VarData),
    Text(VarData),
    Timestamp(Vec<i64>),
    Bytes(VarData),
}

impl ColumnData {
    /// An empty column of type `ty` with room for `capacity` values.
    pub fn new(ty: FieldType, capacity: usize) -> ColumnData {
        match ty {
            FieldType::Boolean => ColumnData::Boolean(Vec::with_capacity(capacity)),
            FieldType::Integer => ColumnData::Integer(Vec::with_capacity(capacity)),
            FieldType::Float => ColumnData::Float(Vec::with_capacity(capacity)),
            FieldType::Decimal => ColumnData::Decimal(VarData::with_capacity(capacity, 0)),
            FieldType::Text => ColumnData::Text(VarData::with_capacity(capacity, capacity * 16)),
            FieldType::Timestamp => ColumnData::Timestamp(Vec::with_capacity(capacity)),
            FieldType::Bytes => ColumnData::Bytes(VarData::with_capacity(capacity, 0)),
        }
    }

    pub fn field_type(&self) -> FieldType {
        match self {
            ColumnData::Boolean(_) => FieldType::Boolean,
            ColumnData::Integer(_) => FieldType::Integer,
            ColumnData::Float(_) => FieldType::Float,
            ColumnData::Decimal(_) => FieldType::Decimal,
            ColumnData::Text(_) => FieldType::Text,
            ColumnData::Timestamp(_) => FieldType::Timestamp,
            ColumnData::Bytes(_) => FieldType::Bytes,
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::Boolean(v) => v.len(),
            ColumnData::Integer(v) | ColumnData::Timestamp(v) => v.len(),
            ColumnData::Float(v) => v.len(),
            ColumnData::Decimal(v) | ColumnData::Text(v) | ColumnData::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the placeholder entry of a null value.
    fn push_placeholder(&mut self) {
        match self {
            ColumnData::Boolean(v) => v.push(false),
            ColumnData::Integer(v) | ColumnData::Timestamp(v) => v.push(0),
            ColumnData::Float(v) => v.push(0.0),
            ColumnData::Decimal(v) | ColumnData::Text(v) | ColumnData::Bytes(v) => v.push(&[]),
        }
    }
}

/// One named column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
    /// Empty (no nulls) or one entry per value, `true` meaning null.
    pub nulls: Vec<bool>,
}

impl Column {
    pub fn is_null(&self, i: usize) -> bool {
        self.nulls.get(i).copied().unwrap_or(false)
    }

    /// Value `i` (null, or the typed value). Text that is not UTF-8 reads as null;
    /// [`Batch::validate`] rejects such batches at the boundary.
    pub fn value(&self, i: usize) -> Value {
        if self.is_null(i) {
            return Value::Null;
        }
        match &self.data {
            ColumnData::Boolean(v) => Value::Boolean(v[i]),
            ColumnData::Integer(v) => Value::Integer(v[i]),
            ColumnData::Float(v) => Value::Float(v[i]),
            ColumnData::Decimal(v) => v
                .get_str(i)
                .map_or(Value::Null, |s| Value::Decimal(s.to_owned())),
            ColumnData::Text(v) => v
                .get_str(i)
                .map_or(Value::Null, |s| Value::Text(s.to_owned())),
            ColumnData::Timestamp(v) => Value::Timestamp(v[i]),
            ColumnData::Bytes(v) => Value::Bytes(v.get(i).to_vec()),
        }
    }

    /// Value `i` as text without allocating, for text and decimal columns.
    pub fn str_at(&self, i: usize) -> Option<&str> {
        if self.is_null(i) {
            return None;
        }
        match &self.data {
            ColumnData::Text(v) | ColumnData::Decimal(v) => v.get_str(i),
            _ => None,
        }
    }
}

/// Why a batch is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// A column has a different number of entries than the batch has records.
    Length {
        column: String,
        expected: usize,
        found: usize,
    },
    /// Offsets that do not start at 0, decrease, or point past the data.
    Offsets { column: String },
    /// Text or decimal bytes that are not UTF-8.
    Utf8 { column: String, record: usize },
    /// Two columns with one name.
    DuplicateColumn { column: String },
    /// A row given to a builder has the wrong number or types of values.
    Row { column: String, message: String },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Length {
                column,
                expected,
                found,
            } => write!(
                f,
                "column `{column}` has {found} entries, the batch has {expected} records"
            ),
            BatchError::Offsets { column } => {
                write!(f, "column `{column}` has malformed offsets")
            }
            BatchError::Utf8 { column, record } => {
                write!(f, "column `{column}`, record {record}: text is not UTF-8")
            }
            BatchError::DuplicateColumn { column } => {
                write!(f, "column `{column}` appears twice")
            }
            BatchError::Row { column, message } => write!(f, "field `{column}`: {message}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// Records stored by column.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Batch {
    pub len: usize,
    pub columns: Vec<Column>,
}

impl Batch {
    /// An empty batch with the given columns.
    pub fn empty(fields: &[(&str, FieldType)]) -> Batch {
        BatchBuilder::new(fields).finish()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The field names and types, in column order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldType)> {
        self.columns
            .iter()
            .map(|c| (c.name.as_str(), c.data.field_type()))
    }

    /// A view of record `i`. Panics if `i >= len`.
    pub fn row(&self, i: usize) -> Row<'_> {
        assert!(i < self.len, "record {i} out of a batch of {}", self.len);
        Row { batch: self, i }
    }

    /// Every record, in order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'_>> {
        (0..self.len).map(move |i| Row { batch: self, i })
    }

    /// Checks the invariants a batch from an untrusted side must hold: every column
    /// has `len` entries, offsets are well formed, text is UTF-8, names are unique.
    pub fn validate(&self) -> Result<(), BatchError> {
        for (n, col) in self.columns.iter().enumerate() {
            if self.columns[..n].iter().any(|c| c.name == col.name) {
                return Err(BatchError::DuplicateColumn {
                    column: col.name.clone(),
                });
            }
            let length_err = |found| BatchError::Length {
                column: col.name.clone(),
                expected: self.len,
                found,
            };
            if !col.nulls.is_empty() && col.nulls.len() != self.len {
                return Err(length_err(col.nulls.len()));
            }
            match &col.data {
                ColumnData::Decimal(v) | ColumnData::Text(v) | ColumnData::Bytes(v) => {
                    if v.offsets.len() != self.len + 1 {
                        return Err(length_err(v.offsets.len().saturating_sub(1)));
                    }
                    let well_formed = v.offsets[0] == 0
                        && v.offsets.windows(2).all(|w| w[0] <= w[1])
                        && *v.offsets.last().unwrap() as usize <= v.data.len();
                    if !well_formed {
                        return Err(BatchError::Offsets {
                            column: col.name.clone(),
                        });
                    }
                    if !matches!(col.data, ColumnData::Bytes(_)) {
                        // One pass over the whole buffer, then every offset must fall
                        // on a character boundary; only on failure do we look for the
                        // record to name.
                        let ok = std::str::from_utf8(&v.data).is_ok_and(|s| {
                            v.offsets.iter().all(|&o| s.is_char_boundary(o as usize))
                        });
                        if !ok {
                            let record = (0..self.len).find(|&i| v.get_str(i).is_none());
                            return Err(BatchError::Utf8 {
                                column: col.name.clone(),
                                record: record.unwrap_or(0),
                            });
                        }
                    }
                }
                data => {
                    if data.len() != self.len {
                        return Err(length_err(data.len()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Renames a column; returns `false` if there is no column `from`.
    pub fn rename(&mut self, from: &str, to: &str) -> bool {
        match self.columns.iter_mut().find(|c| c.name == from) {
            Some(c) => {
                c.name = to.to_owned();
                true
            }
            None => false,
        }
    }

    /// Keeps the records whose entry in `keep` is `true`.
    pub fn filter(&self, keep: &[bool]) -> Batch {
        assert_eq!(keep.len(), self.len);
        let len = keep.iter().filter(|k| **k).count();
        if len == self.len {
            return self.clone();
        }
        let columns = self
            .columns
            .iter()
            .map(|col| {
                let pick = |i: usize| keep[i];
                let data = match &col.data {
                    ColumnData::Boolean(v) => ColumnData::Boolean(select(v, keep)),
                    ColumnData::Integer(v) => ColumnData::Integer(select(v, keep)),
                    ColumnData::Float(v) => ColumnData::Float(select(v, keep)),
                    ColumnData::Timestamp(v) => ColumnData::Timestamp(select(v, keep)),
                    ColumnData::Decimal(v) | ColumnData::Text(v) | ColumnData::Bytes(v) => {
                        let mut out = VarData::with_capacity(len, v.data.len());
                        for i in (0..self.len).filter(|&i| pick(i)) {
                            out.push(v.get(i));
                        }
                        match &col.data {
                            ColumnData::Decimal(_) => ColumnData::Decimal(out),
                            ColumnData::Text(_) => ColumnData::Text(out),
                            _ => ColumnData::Bytes(out),
                        }
                    }
                };
                let nulls = if col.nulls.is_empty() {
                    Vec::new()
                } else {
                    select(&col.nulls, keep)
                };
                Column {
                    name: col.name.clone(),
                    data,
                    nulls,
                }
            })
            .collect();
        Batch { len, columns }
    }

    /// An approximate size in bytes of the values, for throughput figures.
    pub fn byte_size(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match &c.data {
                ColumnData::Boolean(v) => v.len(),
                ColumnData::Integer(v) | ColumnData::Timestamp(v) => v.len() * 8,
                ColumnData::Float(v) => v.len() * 8,
                ColumnData::Decimal(v) | ColumnData::Text(v) | ColumnData::Bytes(v) => {
                    v.data.len() + v.offsets.len() * 4
                }
            })
            .sum()
    }
}

fn select<T: Copy>(values: &[T], keep: &[bool]) -> Vec<T> {
    values
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(v, _)| *v)
        .collect()
}

/// A view of one record of a batch.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    batch: &'a Batch,
    i: usize,
}

impl<'a> Row<'a> {
    /// The record's index in its batch.
    pub fn index(&self) -> usize {
        self.i
    }

    /// The value of field `name`; `None` if the batch has no such column.
    pub fn get(&self, name: &str) -> Option<Value> {
        self.batch.column(name).map(|c| c.value(self.i))
    }

    /// The text of field `name` without allocating; `None` if absent, null or not text.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        self.batch.column(name).and_then(|c| c.str_at(self.i))
    }

    /// Every `(field, value)` of the record, in column order.
    pub fn values(&self) -> impl Iterator<Item = (&'a str, Value)> + '_ {
        self.batch
            .columns
            .iter()
            .map(move |c| (c.name.as_str(), c.value(self.i)))
    }

    /// The key of this record: the text of `fields`, joined by `|`.
    pub fn key(&self, fields: &[String]) -> String {
        let mut out = String::new();
        for (n, f) in fields.iter().enumerate() {
            if n > 0 {
                out.push('|');
            }
            if let Some(v) = self.get(f) {
                out.push_str(&v.to_text());
            }
        }
        out
    }
}

/// Builds one column value by value, with nulls — the fast path for code that
/// produces a column without going through [`Value`].
pub struct ColumnBuilder {
    data: ColumnData,
    nulls: Vec<bool>,
    any_null: bool,
}

impl ColumnBuilder {
    pub fn new(ty: FieldType, capacity: usize) -> ColumnBuilder {
        ColumnBuilder {
            data: ColumnData::new(ty, capacity),
            nulls: Vec::with_capacity(capacity),
            any_null: false,
        }
    }

    pub fn field_type(&self) -> FieldType {
        self.data.field_type()
    }

    pub fn len(&self) -> usize {
        self.nulls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nulls.is_empty()
    }

    pub fn push_null(&mut self) {
        self.data.push_placeholder();
        self.nulls.push(true);
        self.any_null = true;
    }

    /// Appends text (or decimal, or bytes) to a variable-width column.
    /// Panics on a fixed-width column.
    pub fn push_bytes(&mut self, value: &[u8]) {
        match &mut self.data {
            ColumnData::Text(v) | ColumnData::Decimal(v) | ColumnData::Bytes(v) => v.push(value),
            other => panic!("push_bytes on a {} column", other.field_type()),
        }
        self.nulls.push(false);
    }

    /// Appends a value of the column's type; `Err` (and nothing appended) if the
    /// value does not fit, as in [`BatchBuilder::push_row`].
    pub fn push(&mut self, value: &Value) -> Result<(), BatchError> {
        if !fits(self.data.field_type(), value) {
            return Err(BatchError::Row {
                column: String::new(),
                message: format!(
                    "a {} value does not fit a {} column",
                    value.field_type().map_or("null", FieldType::name),
                    self.data.field_type()
                ),
            });
        }
        let mut col = Column {
            name: String::new(),
            data: std::mem::replace(&mut self.data, ColumnData::Boolean(Vec::new())),
            nulls: Vec::new(),
        };
        let before = self.nulls.len();
        push_value(&mut col, before, value);
        self.data = col.data;
        let null = value.is_null();
        self.nulls.push(null);
        self.any_null |= null;
        Ok(())
    }

    pub fn finish(self, name: &str) -> Column {
        Column {
            name: name.to_owned(),
            data: self.data,
            nulls: if self.any_null {
                self.nulls
            } else {
                Vec::new()
            },
        }
    }
}

/// Builds a batch one record at a time.
pub struct BatchBuilder {
    len: usize,
    columns: Vec<Column>,
}

impl BatchBuilder {
    /// A builder for the given columns.
    pub fn new(fields: &[(&str, FieldType)]) -> BatchBuilder {
        Self::with_capacity(fields, 0)
    }

    /// A builder expecting about `capacity` records.
    pub fn with_capacity(fields: &[(&str, FieldType)], capacity: usize) -> BatchBuilder {
        BatchBuilder {
            len: 0,
            columns: fields
                .iter()
                .map(|(name, ty)| Column {
                    name: (*name).to_owned(),
                    data: ColumnData::new(*ty, capacity),
                    nulls: Vec::new(),
                })
                .collect(),
        }
    }

    /// The number of records so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a record: one value per column, in column order. A value of another
    /// type than its column is converted where that is lossless (integer into float
    /// or decimal, anything into text), otherwise the row is refused and the
    /// builder is unchanged.
    pub fn push_row(&mut self, values: &[Value]) -> Result<(), BatchError> {
        if values.len() != self.columns.len() {
            return Err(BatchError::Row {
                column: String::new(),
                message: format!("{} values for {} columns", values.len(), self.columns.len()),
            });
        }
        // Check every value first so a refused row leaves no partial record.
        for (col, value) in self.columns.iter().zip(values) {
            if !fits(col.data.field_type(), value) {
                return Err(BatchError::Row {
                    column: col.name.clone(),
                    message: format!(
                        "a {} value does not fit a {} column",
                        value.field_type().map_or("null", FieldType::name),
                        col.data.field_type()
                    ),
                });
            }
        }
        for (col, value) in self.columns.iter_mut().zip(values) {
            push_value(col, self.len, value);
        }
        self.len += 1;
        Ok(())
    }

    /// Appends a record from `(field, value)` pairs; absent fields are null,
    /// unknown fields are an error.
    pub fn push_named(&mut self, values: &[(&str, Value)]) -> Result<(), BatchError> {
        let mut row = vec![Value::Null; self.columns.len()];
        for (name, value) in values {
            let i = self
                .columns
                .iter()
                .position(|c| c.name == *name)
                .ok_or_else(|| BatchError::Row {
                    column: (*name).to_owned(),
                    message: "no such column".to_owned(),
                })?;
            row[i] = value.clone();
        }
        self.push_row(&row)
    }

    pub fn finish(self) -> Batch {
        Batch {
            len: self.len,
            columns: self.columns,
        }
    }
}

fn fits(ty: FieldType, value: &Value) -> bool {
    matches!(
        (ty, value),
        (_, Value::Null)
            | (FieldType::Text, _)
            | (FieldType::Boolean, Value::Boolean(_))
            | (FieldType::Integer, Value::Integer(_))
            | (FieldType::Float, Value::Float(_) | Value::Integer(_))
            | (
                FieldType::Decimal,
                Value::Decimal(_) | Value::Integer(_) | Value::Float(_)
            )
            | (FieldType::Timestamp, Value::Timestamp(_))
            | (FieldType::Bytes, Value::Bytes(_))
    )
}

fn push_value(col: &mut Column, index: usize, value: &Value) {
    if value.is_null() {
        if col.nulls.is_empty() {
            col.nulls.resize(index, false);
        }
        col.nulls.push(true);
        col.data.push_placeholder();
        return;
    }
    if !col.nulls.is_empty() {
        col.nulls.push(false);
    }
    match (&mut col.data, value) {
        (ColumnData::Boolean(v), Value::Boolean(b)) => v.push(*b),
        (ColumnData::Integer(v), Value::Integer(x)) => v.push(*x),
        (ColumnData::Float(v), Value::Float(x)) => v.push(*x),
        (ColumnData::Float(v), Value::Integer(x)) => v.push(*x as f64),
        (ColumnData::Timestamp(v), Value::Timestamp(x)) => v.push(*x),
        (ColumnData::Bytes(v), Value::Bytes(b)) => v.push(b),
        (ColumnData::Text(v), Value::Text(s)) => v.push(s.as_bytes()),
        (ColumnData::Text(v), other) => v.push(other.to_text().as_bytes()),
        (ColumnData::Decimal(v), Value::Decimal(s)) => v.push(s.as_bytes()),
        (ColumnData::Decimal(v), other) => v.push(other.to_text().as_bytes()),
        _ => unreachable!("checked by fits()"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        let mut b = BatchBuilder::new(&[
            ("id", FieldType::Integer),
            ("name", FieldType::Text),
            ("score", FieldType::Float),
        ]);
        b.push_row(&[
            Value::Integer(1),
            Value::Text("Ada".into()),
            Value::Float(1.5),
        ])
        .unwrap();
        b.push_row(&[Value::Integer(2), Value::Null, Value::Integer(3)])
            .unwrap();
        b.push_row(&[Value::Integer(3), Value::Text("Lin".into()), Value::Null])
            .unwrap();
        b.finish()
    }

    #[test]
    fn builder_and_rows_round_trip() {
        let batch = sample();
        batch.validate().unwrap();
        assert_eq!(batch.len(), 3);
        let names: Vec<_> = batch.rows().map(|r| r.text("name")).collect();
        assert_eq!(names, vec![Some("Ada"), None, Some("Lin")]);
        assert_eq!(batch.row(1).get("score"), Some(Value::Float(3.0)));
        assert_eq!(batch.row(2).get("score"), Some(Value::Null));
        assert_eq!(batch.row(0).key(&["id".into(), "name".into()]), "1|Ada");
    }

    #[test]
    fn refused_row_leaves_builder_unchanged() {
        let mut b = BatchBuilder::new(&[("id", FieldType::Integer), ("ok", FieldType::Boolean)]);
        let err = b
            .push_row(&[Value::Integer(1), Value::Text("yes".into())])
            .unwrap_err();
        assert!(err.to_string().contains("`ok`"), "{err}");
        assert_eq!(b.len(), 0);
        assert_eq!(b.finish().columns[0].data.len(), 0);
    }

    #[test]
    fn column_builder_tracks_nulls() {
        let mut b = ColumnBuilder::new(FieldType::Text, 3);
        b.push_bytes(b"a");
        b.push_null();
        b.push(&Value::Integer(7)).unwrap();
        assert!(b.push(&Value::Bytes(vec![1])).is_ok());
        let col = b.finish("t");
        let batch = Batch {
            len: 4,
            columns: vec![col],
        };
        batch.validate().unwrap();
        assert_eq!(batch.row(1).get("t"), Some(Value::Null));
        assert_eq!(batch.row(2).text("t"), Some("7"));
        let mut ints = ColumnBuilder::new(FieldType::Integer, 1);
        assert!(ints.push(&Value::Text("x".into())).is_err());
        assert_eq!(ints.len(), 0);
    }

    #[test]
    fn filter_keeps_selected_records() {
        let batch = sample().filter(&[true, false, true]);
        batch.validate().unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.row(1).text("name"), Some("Lin"));
        assert_eq!(batch.row(1).get("score"), Some(Value::Null));
    }

    #[test]
    fn validate_rejects_malformed_batches() {
        let mut bad = sample();
        if let ColumnData::Text(v) = &mut bad.columns[1].data {
            v.data[0] = 0xff;
        }
        assert_eq!(
            bad.validate(),
            Err(BatchError::Utf8 {
                column: "name".into(),
                record: 0
            })
        );
        let mut short = sample();
        short.columns[0].data = ColumnData::Integer(vec![1]);
        assert!(matches!(short.validate(), Err(BatchError::Length { .. })));
        let mut offsets = sample();
        if let ColumnData::Text(v) = &mut offsets.columns[1].data {
            v.offsets[2] = 1000;
        }
        assert!(matches!(
            offsets.validate(),
            Err(BatchError::Offsets { .. })
        ));
    }
}
