//! A VRL `Target` over one record of a columnar batch.
//!
//! Only the fields the mapping expressions read are materialised, into slots
//! reused from record to record; text values are slices of one shared buffer per
//! column, so filling a slot does not allocate. Converting whole records into VRL
//! objects was half the per-record cost in measurements.

use std::collections::BTreeMap;

use vrl::compiler::{SecretTarget, Target};
use vrl::path::{OwnedTargetPath, PathPrefix};
use vrl::prelude::{Bytes, NotNan};
use vrl::value::Value;
use weir_types::{Batch, ColumnData};

/// How one slot reads its column in the current batch.
enum Source {
    Missing,
    Var { data: Bytes, offsets: Vec<u32> },
    Integer(Vec<i64>),
    Float(Vec<f64>),
    Boolean(Vec<bool>),
    Timestamp(Vec<i64>),
}

struct Slot {
    path: OwnedTargetPath,
    source: Source,
    nulls: Vec<bool>,
}

/// The record an expression sees: `.field` reads a slot.
pub struct SlotTarget {
    root: Value,
    slots: Vec<Slot>,
    values: Vec<Value>,
}

impl std::fmt::Debug for SlotTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotTarget")
            .field("values", &self.values)
            .finish()
    }
}

impl SlotTarget {
    /// Slots for the given top-level field names.
    pub fn new(fields: &[String]) -> SlotTarget {
        SlotTarget {
            root: Value::Object(BTreeMap::new()),
            slots: fields
                .iter()
                .map(|f| Slot {
                    path: OwnedTargetPath::event(vrl::path::OwnedValuePath::single_field(f)),
                    source: Source::Missing,
                    nulls: Vec::new(),
                })
                .collect(),
            values: vec![Value::Null; fields.len()],
        }
    }

    /// Points the slots at the columns of `batch` (by name). A field the batch
    /// lacks reads as null.
    pub fn bind(&mut self, batch: &Batch, fields: &[String]) {
        for (slot, name) in self.slots.iter_mut().zip(fields) {
            let Some(col) = batch.column(name) else {
                slot.source = Source::Missing;
                slot.nulls.clear();
                continue;
            };
            slot.nulls = col.nulls.clone();
            slot.source = match &col.data {
                ColumnData::Text(v) | ColumnData::Decimal(v) | ColumnData::Bytes(v) => {
                    Source::Var {
                        data: Bytes::copy_from_slice(&v.data),
                        offsets: v.offsets.clone(),
                    }
                }
                ColumnData::Integer(v) => Source::Integer(v.clone()),
                ColumnData::Float(v) => Source::Float(v.clone()),
                ColumnData::Boolean(v) => Source::Boolean(v.clone()),
                ColumnData::Timestamp(v) => Source::Timestamp(v.clone()),
            };
        }
    }

    /// Loads record `i` into the slots.
    pub fn load(&mut self, i: usize) {
        for (slot, value) in self.slots.iter().zip(self.values.iter_mut()) {
            *value = if slot.nulls.get(i).copied().unwrap_or(false) {
                Value::Null
            } else {
                match &slot.source {
                    Source::Missing => Value::Null,
                    Source::Var { data, offsets } => {
                        Value::Bytes(data.slice(offsets[i] as usize..offsets[i + 1] as usize))
                    }
                    Source::Integer(v) => Value::Integer(v[i]),
                    Source::Float(v) => NotNan::new(v[i]).map_or(Value::Null, Value::Float),
                    Source::Boolean(v) => Value::Boolean(v[i]),
                    Source::Timestamp(v) => chrono::DateTime::from_timestamp_micros(v[i])
                        .map_or(Value::Null, Value::Timestamp),
                }
            };
        }
    }

    /// The loaded values, for error messages.
    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

const READ_ONLY: &str = "mapping expressions cannot modify the source record";

impl Target for SlotTarget {
    fn target_insert(&mut self, _: &OwnedTargetPath, _: Value) -> Result<(), String> {
        Err(READ_ONLY.to_owned())
    }

    fn target_get(&self, path: &OwnedTargetPath) -> Result<Option<&Value>, String> {
        if path.prefix != PathPrefix::Event {
            return Ok(None);
        }
        if path.path.is_root() {
            return Ok(Some(&self.root));
        }
        Ok(self
            .slots
            .iter()
            .position(|s| &s.path == path)
            .map(|i| &self.values[i]))
    }

    fn target_get_mut(&mut self, _: &OwnedTargetPath) -> Result<Option<&mut Value>, String> {
        Err(READ_ONLY.to_owned())
    }

    fn target_remove(&mut self, _: &OwnedTargetPath, _: bool) -> Result<Option<Value>, String> {
        Err(READ_ONLY.to_owned())
    }
}

impl SecretTarget for SlotTarget {
    fn get_secret(&self, _: &str) -> Option<&str> {
        None
    }
    fn insert_secret(&mut self, _: &str, _: &str) {}
    fn remove_secret(&mut self, _: &str) {}
}
