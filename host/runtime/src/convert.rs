//! Conversions between the generated bindings (`bindings.rs`) and `weir-types`.
//!
//! Batches convert by moving their vectors; values are never copied one by one.

use weir_types::{
    Batch, Capability, Column, ColumnData, ConfigField, EntitySchema, FieldSchema, FieldType,
    Organization, PluginError, PluginInfo, RecordError, Rejected, UpsertOutcome, VarData,
};

use super::bindings::{connector_api as wc, transform_api as wtr, types as wt};

pub(crate) fn batch_to_wit(b: Batch) -> wt::RecordBatch {
    wt::RecordBatch {
        len: b.len as u32,
        columns: b
            .columns
            .into_iter()
            .map(|c| wt::Column {
                name: c.name,
                nulls: c.nulls,
                values: match c.data {
                    ColumnData::Boolean(v) => wt::ColumnValues::Boolean(v),
                    ColumnData::Integer(v) => wt::ColumnValues::Integer(v),
                    ColumnData::Float(v) => wt::ColumnValues::Float(v),
                    ColumnData::Decimal(v) => wt::ColumnValues::Decimal(var_to_wit(v)),
                    ColumnData::Text(v) => wt::ColumnValues::Text(var_to_wit(v)),
                    ColumnData::Timestamp(v) => wt::ColumnValues::Timestamp(v),
                    ColumnData::Bytes(v) => wt::ColumnValues::Bytes(var_to_wit(v)),
                },
            })
            .collect(),
    }
}

fn var_to_wit(v: VarData) -> wt::VarColumn {
    let mut offsets = v.offsets;
    if offsets.is_empty() {
        offsets.push(0);
    }
    wt::VarColumn {
        data: v.data,
        offsets,
    }
}

fn var_from_wit(v: wt::VarColumn) -> VarData {
    VarData {
        data: v.data,
        offsets: v.offsets,
    }
}

/// A batch from a plugin. Not yet validated: the caller runs [`Batch::validate`].
pub(crate) fn batch_from_wit(b: wt::RecordBatch) -> Batch {
    Batch {
        len: b.len as usize,
        columns: b
            .columns
            .into_iter()
            .map(|c| Column {
                name: c.name,
                nulls: c.nulls,
                data: match c.values {
                    wt::ColumnValues::Boolean(v) => ColumnData::Boolean(v),
                    wt::ColumnValues::Integer(v) => ColumnData::Integer(v),
                    wt::ColumnValues::Float(v) => ColumnData::Float(v),
                    wt::ColumnValues::Decimal(v) => ColumnData::Decimal(var_from_wit(v)),
                    wt::ColumnValues::Text(v) => ColumnData::Text(var_from_wit(v)),
                    wt::ColumnValues::Timestamp(v) => ColumnData::Timestamp(v),
                    wt::ColumnValues::Bytes(v) => ColumnData::Bytes(var_from_wit(v)),
                },
            })
            .collect(),
    }
}

pub(crate) fn field_type_from_wit(t: wt::FieldType) -> FieldType {
    match t {
        wt::FieldType::Boolean => FieldType::Boolean,
        wt::FieldType::Integer => FieldType::Integer,
        wt::FieldType::Float => FieldType::Float,
        wt::FieldType::Decimal => FieldType::Decimal,
        wt::FieldType::Text => FieldType::Text,
        wt::FieldType::Timestamp => FieldType::Timestamp,
        wt::FieldType::Bytes => FieldType::Bytes,
    }
}

pub(crate) fn field_type_to_wit(t: FieldType) -> wt::FieldType {
    match t {
        FieldType::Boolean => wt::FieldType::Boolean,
        FieldType::Integer => wt::FieldType::Integer,
        FieldType::Float => wt::FieldType::Float,
        FieldType::Decimal => wt::FieldType::Decimal,
        FieldType::Text => wt::FieldType::Text,
        FieldType::Timestamp => wt::FieldType::Timestamp,
        FieldType::Bytes => wt::FieldType::Bytes,
    }
}

pub(crate) fn field_from_wit(f: wt::FieldSchema) -> FieldSchema {
    FieldSchema {
        name: f.name,
        field_type: field_type_from_wit(f.type_),
        required: f.required,
        description: f.description,
    }
}

pub(crate) fn field_to_wit(f: &FieldSchema) -> wt::FieldSchema {
    wt::FieldSchema {
        name: f.name.clone(),
        type_: field_type_to_wit(f.field_type),
        required: f.required,
        description: f.description.clone(),
    }
}

pub(crate) fn entity_from_wit(e: wt::EntitySchema) -> EntitySchema {
    EntitySchema {
        name: e.name,
        fields: e.fields.into_iter().map(field_from_wit).collect(),
        key_fields: e.key_fields,
        readable: e.readable,
        writable: e.writable,
    }
}

pub(crate) fn organization_from_wit(o: wt::Organization) -> Organization {
    Organization {
        id: o.id,
        name: o.name,
        kind: o.kind,
    }
}

use super::bounds::{MAX_KEY_BYTES, bounded, bounded_to};

pub(crate) fn error_from_wit(e: wt::Error) -> PluginError {
    match e {
        wt::Error::InvalidConfig(m) => PluginError::InvalidConfig(bounded(m)),
        wt::Error::Connection(c) => PluginError::Connection {
            message: bounded(c.message),
            transient: c.transient,
            retry_after_ms: c.retry_after_ms,
        },
        wt::Error::Internal(m) => PluginError::Internal(bounded(m)),
    }
}

pub(crate) fn record_error_from_wit(e: wt::RecordError) -> RecordError {
    RecordError {
        message: bounded(e.message),
        field: e.field.map(bounded),
    }
}

pub(crate) fn rejected_from_wit(r: wc::RejectedRecord) -> Rejected {
    Rejected {
        position: bounded_to(r.position, MAX_KEY_BYTES),
        key: r.key.map(|k| bounded_to(k, MAX_KEY_BYTES)),
        error: record_error_from_wit(r.error),
    }
}

pub(crate) fn outcome_from_wit(o: wc::UpsertOutcome) -> UpsertOutcome {
    match o {
        wc::UpsertOutcome::Inserted => UpsertOutcome::Inserted,
        wc::UpsertOutcome::Updated => UpsertOutcome::Updated,
        wc::UpsertOutcome::Unchanged => UpsertOutcome::Unchanged,
        wc::UpsertOutcome::Failed(e) => UpsertOutcome::Failed(record_error_from_wit(e)),
    }
}

pub(crate) fn failure_from_wit(f: wtr::Failure) -> (u32, RecordError) {
    (f.index, record_error_from_wit(f.error))
}

pub(crate) fn info_from_wit(i: wt::PluginInfo) -> PluginInfo {
    PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        config: i
            .config
            .into_iter()
            .map(|c| ConfigField {
                name: c.name,
                description: c.description,
                required: c.required,
                secret: c.secret,
                default_value: c.default_value,
            })
            .collect(),
        capabilities: i
            .capabilities
            .into_iter()
            .map(|c| match c {
                wt::Capability::Files => Capability::Files,
                wt::Capability::Http => Capability::Http,
            })
            .collect(),
    }
}
