//! Glue between the generated bindings and the SDK's traits and types.
//!
//! Batches convert by moving their vectors, never by copying values.

use std::cell::RefCell;
use std::marker::PhantomData;

use weir_types::{Batch, Column, ColumnData, FieldType, VarData};

use crate::bindings::connector::exports::weir::plugin::connector as wc;
use crate::bindings::connector::weir::plugin::types as wt;
use crate::bindings::transform::exports::weir::plugin::transform as wtr;
use crate::{
    Capability, Config, Error, FieldSchema, PluginInfo, ReadRequest, RecordError, UpsertOutcome,
    WriteRequest,
};
use crate::{Connector, Transform, Writer};

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

fn var_from_wit(v: wt::VarColumn) -> VarData {
    VarData {
        data: v.data,
        offsets: v.offsets,
    }
}

fn var_to_wit(v: VarData) -> wt::VarColumn {
    let mut offsets = v.offsets;
    // A column built without values has no leading 0; the contract wants len + 1.
    if offsets.is_empty() {
        offsets.push(0);
    }
    wt::VarColumn {
        data: v.data,
        offsets,
    }
}

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

fn type_to_wit(t: FieldType) -> wt::FieldType {
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

fn type_from_wit(t: wt::FieldType) -> FieldType {
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

fn field_to_wit(f: FieldSchema) -> wt::FieldSchema {
    wt::FieldSchema {
        name: f.name,
        type_: type_to_wit(f.field_type),
        required: f.required,
        description: f.description,
    }
}

fn field_from_wit(f: wt::FieldSchema) -> FieldSchema {
    FieldSchema {
        name: f.name,
        field_type: type_from_wit(f.type_),
        required: f.required,
        description: f.description,
    }
}

fn error_to_wit(e: Error) -> wt::Error {
    match e {
        Error::InvalidConfig(m) => wt::Error::InvalidConfig(m),
        Error::Connection {
            message,
            transient,
            retry_after_ms,
        } => wt::Error::Connection(wt::ConnectionFailure {
            message,
            transient,
            retry_after_ms,
        }),
        Error::Internal(m) => wt::Error::Internal(m),
    }
}

fn record_error_to_wit(e: RecordError) -> wt::RecordError {
    wt::RecordError {
        message: e.message,
        field: e.field,
    }
}

fn info_to_wit(i: PluginInfo) -> wt::PluginInfo {
    wt::PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        config: i
            .config
            .into_iter()
            .map(|c| wt::ConfigField {
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
                Capability::Files => wt::Capability::Files,
                Capability::Http => wt::Capability::Http,
            })
            .collect(),
    }
}

/// The connector export, generic over the author's [`Connector`].
pub struct ConnectorExport<T>(PhantomData<T>);

/// A guest-owned writer resource.
pub struct WriterBox(RefCell<Box<dyn Writer>>);

impl wc::GuestWriter for WriterBox {
    fn upsert(&self, records: wt::RecordBatch) -> Result<Vec<wc::UpsertOutcome>, wt::Error> {
        let outcomes = self
            .0
            .borrow_mut()
            .upsert(batch_from_wit(records))
            .map_err(error_to_wit)?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                UpsertOutcome::Inserted => wc::UpsertOutcome::Inserted,
                UpsertOutcome::Updated => wc::UpsertOutcome::Updated,
                UpsertOutcome::Unchanged => wc::UpsertOutcome::Unchanged,
                UpsertOutcome::Failed(e) => wc::UpsertOutcome::Failed(record_error_to_wit(e)),
            })
            .collect())
    }

    fn finish(&self) -> Result<(), wt::Error> {
        self.0.borrow_mut().finish().map_err(error_to_wit)
    }
}

impl<T: Connector + 'static> wc::Guest for ConnectorExport<T> {
    type Writer = WriterBox;

    fn describe() -> wt::PluginInfo {
        // Keeps the contract stamp linked into every plugin.
        std::hint::black_box(&crate::__WEIR_CONTRACT);
        info_to_wit(T::info())
    }

    fn check(config: wt::Config) -> Result<(), wt::Error> {
        T::check(&Config::new(config)).map_err(error_to_wit)
    }

    fn list_organizations(config: wt::Config) -> Result<Vec<wt::Organization>, wt::Error> {
        let orgs = T::organizations(&Config::new(config)).map_err(error_to_wit)?;
        Ok(orgs
            .into_iter()
            .map(|o| wt::Organization {
                id: o.id,
                name: o.name,
                kind: o.kind,
            })
            .collect())
    }

    fn discover(
        config: wt::Config,
        organization: Option<String>,
    ) -> Result<Vec<wt::EntitySchema>, wt::Error> {
        let entities =
            T::discover(&Config::new(config), organization.as_deref()).map_err(error_to_wit)?;
        Ok(entities
            .into_iter()
            .map(|e| wt::EntitySchema {
                name: e.name,
                fields: e.fields.into_iter().map(field_to_wit).collect(),
                key_fields: e.key_fields,
                readable: e.readable,
                writable: e.writable,
            })
            .collect())
    }

    fn read(config: wt::Config, request: wc::ReadRequest) -> Result<wc::ReadPage, wt::Error> {
        let page = T::read(
            &Config::new(config),
            ReadRequest {
                entity: request.entity,
                organization: request.organization,
                cursor: request.cursor,
                max_records: request.max_records,
            },
        )
        .map_err(error_to_wit)?;
        Ok(wc::ReadPage {
            records: batch_to_wit(page.records),
            rejected: page
                .rejected
                .into_iter()
                .map(|r| wc::RejectedRecord {
                    position: r.position,
                    key: r.key,
                    error: record_error_to_wit(r.error),
                })
                .collect(),
            next_cursor: page.next_cursor,
            done: page.done,
        })
    }

    fn open_writer(config: wt::Config, request: wc::WriteRequest) -> Result<wc::Writer, wt::Error> {
        let writer = T::open_writer(
            &Config::new(config),
            WriteRequest {
                entity: request.entity,
                organization: request.organization,
                key_fields: request.key_fields,
            },
        )
        .map_err(error_to_wit)?;
        Ok(wc::Writer::new(WriterBox(RefCell::new(writer))))
    }
}

/// The transform export, generic over the author's [`Transform`].
pub struct TransformExport<T>(PhantomData<T>);

impl<T: Transform + 'static> wtr::Guest for TransformExport<T> {
    fn describe() -> wt::PluginInfo {
        // Keeps the contract stamp linked into every plugin.
        std::hint::black_box(&crate::__WEIR_CONTRACT);
        info_to_wit(T::info())
    }

    fn output_schema(
        config: wt::Config,
        input: Vec<wt::FieldSchema>,
    ) -> Result<Vec<wt::FieldSchema>, wt::Error> {
        let out = T::output_schema(
            &Config::new(config),
            input.into_iter().map(field_from_wit).collect(),
        )
        .map_err(error_to_wit)?;
        Ok(out.into_iter().map(field_to_wit).collect())
    }

    fn transform(
        config: wt::Config,
        records: wt::RecordBatch,
    ) -> Result<wtr::Transformed, wt::Error> {
        let out =
            T::transform(&Config::new(config), batch_from_wit(records)).map_err(error_to_wit)?;
        Ok(wtr::Transformed {
            records: batch_to_wit(out.records),
            failures: out
                .failures
                .into_iter()
                .map(|(index, error)| wtr::Failure {
                    index,
                    error: record_error_to_wit(error),
                })
                .collect(),
        })
    }
}
