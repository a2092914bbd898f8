//! `testkit-v0-1-0`: a connector as a partner built it against the 0.1.0
//! contract (`weir:plugin@0.1.0`, the frozen `wit/since_v0.1.0`), with
//! wit-bindgen directly and not the weir SDK. It is kept, unchanged, so the
//! host's support for plugins built against an old contract version is tested
//! (tests/contract_v0_1_0.rs). Not a useful plugin.
//!
//! Source: entity `items` (`id` integer key, `name` text), `count` records
//! (option `count`, default 10) named `item-<id>`, in pages of at most
//! `max-records` with the number of records already read as the cursor.
//! Destination: an in-memory writer that answers `inserted` for a key it has not
//! seen in this writer and `updated` for one it has; it stores nothing.

use std::cell::RefCell;
use std::collections::HashSet;

wit_bindgen::generate!({ path: "../../wit/since_v0.1.0", world: "connector-plugin" });

use exports::weir::plugin::connector::{
    Guest, GuestWriter, ReadPage, ReadRequest, UpsertOutcome, WriteRequest, Writer,
};
use weir::plugin::types::{
    Column, ColumnValues, Config, EntitySchema, Error, FieldSchema, FieldType, Organization,
    PluginInfo, RecordBatch, VarColumn,
};

const ENTITY: &str = "items";

struct Plugin;

fn option<'a>(config: &'a Config, name: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn entity(name: &str) -> Result<(), Error> {
    if name == ENTITY {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "unknown entity `{name}` (only `{ENTITY}`)"
        )))
    }
}

fn field(name: &str, ty: FieldType, required: bool) -> FieldSchema {
    FieldSchema {
        name: name.into(),
        type_: ty,
        required,
        description: String::new(),
    }
}

/// Records `first..=last`, built column by column as types.wit describes.
fn items(first: u64, last: u64) -> RecordBatch {
    let ids: Vec<i64> = (first..=last).map(|id| id as i64).collect();
    let mut names = VarColumn {
        data: Vec::new(),
        offsets: vec![0],
    };
    for id in &ids {
        names
            .data
            .extend_from_slice(format!("item-{id}").as_bytes());
        names.offsets.push(names.data.len() as u32);
    }
    RecordBatch {
        len: ids.len() as u32,
        columns: vec![
            Column {
                name: "id".into(),
                values: ColumnValues::Integer(ids),
                nulls: vec![],
            },
            Column {
                name: "name".into(),
                values: ColumnValues::Text(names),
                nulls: vec![],
            },
        ],
    }
}

/// The value of record `i` in `column`, as text (the writer's key).
fn key_at(column: &Column, i: usize) -> String {
    if column.nulls.get(i).copied().unwrap_or(false) {
        return String::new();
    }
    let var = |v: &VarColumn| {
        let (a, b) = (v.offsets[i] as usize, v.offsets[i + 1] as usize);
        String::from_utf8_lossy(&v.data[a..b]).into_owned()
    };
    match &column.values {
        ColumnValues::Boolean(v) => v[i].to_string(),
        ColumnValues::Integer(v) | ColumnValues::Timestamp(v) => v[i].to_string(),
        ColumnValues::Float(v) => v[i].to_string(),
        ColumnValues::Decimal(v) | ColumnValues::Text(v) | ColumnValues::Bytes(v) => var(v),
    }
}

impl Guest for Plugin {
    type Writer = ItemsWriter;

    fn describe() -> PluginInfo {
        PluginInfo {
            name: "testkit-v0-1-0".into(),
            version: "0.1.0".into(),
            description: "A connector built against weir:plugin@0.1.0, for the host's tests."
                .into(),
            config: vec![],
            capabilities: vec![],
        }
    }

    fn check(_config: Config) -> Result<(), Error> {
        Ok(())
    }

    fn list_organizations(_config: Config) -> Result<Vec<Organization>, Error> {
        Ok(vec![])
    }

    fn discover(
        _config: Config,
        _organization: Option<String>,
    ) -> Result<Vec<EntitySchema>, Error> {
        Ok(vec![EntitySchema {
            name: ENTITY.into(),
            fields: vec![
                field("id", FieldType::Integer, true),
                field("name", FieldType::Text, false),
            ],
            key_fields: vec!["id".into()],
            readable: true,
            writable: true,
        }])
    }

    fn read(config: Config, request: ReadRequest) -> Result<ReadPage, Error> {
        entity(&request.entity)?;
        let count: u64 = match option(&config, "count") {
            None => 10,
            Some(v) => v
                .parse()
                .map_err(|_| Error::InvalidConfig(format!("count: `{v}` is not a number")))?,
        };
        let start: u64 = match request.cursor.as_deref() {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| Error::InvalidConfig(format!("bad cursor `{c}`")))?,
        };
        let end = count
            .min(start.saturating_add(u64::from(request.max_records)))
            .max(start);
        Ok(ReadPage {
            records: items(start + 1, end),
            rejected: vec![],
            next_cursor: Some(end.to_string()),
            done: end >= count,
        })
    }

    fn open_writer(_config: Config, request: WriteRequest) -> Result<Writer, Error> {
        entity(&request.entity)?;
        let key = request.key_fields.first().cloned();
        let key = key.ok_or_else(|| Error::InvalidConfig("the writer needs a key field".into()))?;
        Ok(Writer::new(ItemsWriter {
            key,
            seen: RefCell::new(HashSet::new()),
        }))
    }
}

struct ItemsWriter {
    key: String,
    seen: RefCell<HashSet<String>>,
}

impl GuestWriter for ItemsWriter {
    fn upsert(&self, records: RecordBatch) -> Result<Vec<UpsertOutcome>, Error> {
        let column = records.columns.iter().find(|c| c.name == self.key);
        let column =
            column.ok_or_else(|| Error::InvalidConfig(format!("no key field `{}`", self.key)))?;
        let mut seen = self.seen.borrow_mut();
        Ok((0..records.len as usize)
            .map(|i| match seen.insert(key_at(column, i)) {
                true => UpsertOutcome::Inserted,
                false => UpsertOutcome::Updated,
            })
            .collect())
    }

    fn finish(&self) -> Result<(), Error> {
        Ok(())
    }
}

export!(Plugin);
