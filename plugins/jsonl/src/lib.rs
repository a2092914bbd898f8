//! `jsonl`: a weir connector for JSON Lines files in the connection's granted
//! directory, as a source and as a destination.
//!
//! What it is: every `*.jsonl` file in `/data` is an entity named after the file
//! stem, one JSON object per line. The schema is inferred from the first `sample`
//! non-empty lines (the union of their keys; booleans, integers, floats, else
//! text) and inferred again the same way on every page, so pages agree without
//! any state. Reading goes page by page from a `"<byte offset>:<line>"` cursor;
//! writing upserts by key fields, merging into existing objects, and on `finish`
//! appends new records to a large file or atomically replaces it.
//!
//! What it is not: a database or a JSON schema tool. A writer keeps a key index
//! of bounded size in memory (~25 MiB at most; past ~200,000 keys it spills to
//! dot files beside the entity file), not the records; there is no locking against
//! other writers; keys beyond the sample are not discovered; nested objects and
//! arrays are read as their JSON text. JSON has no timestamp, bytes or exact decimal: the writer stores them as
//! RFC 3339 UTC text, lowercase hex and decimal text.

mod convert;
mod read;
mod schema;
mod write;

use std::path::Path;

use weir_sdk::*;

use weir_sdk::files::DATA_DIR;

struct Jsonl;

impl Connector for Jsonl {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "jsonl",
            env!("CARGO_PKG_VERSION"),
            "JSON Lines files in a granted directory: each `<name>.jsonl` is an entity, read page by page and upserted by key.",
        )
        .option(
            ConfigField::new(
                "sample",
                "How many non-empty lines at the top of a file make its schema.",
            )
            .default_value("100"),
        )
        .capability(Capability::Files)
    }

    fn check(config: &Config) -> Result<(), Error> {
        schema::sample_size(config)?;
        read::check_dir(Path::new(DATA_DIR))
    }

    fn discover(config: &Config, _organization: Option<&str>) -> Result<Vec<EntitySchema>, Error> {
        read::discover(Path::new(DATA_DIR), schema::sample_size(config)?)
    }

    fn read(config: &Config, request: ReadRequest) -> Result<ReadPage, Error> {
        read::read_page(
            Path::new(DATA_DIR),
            schema::sample_size(config)?,
            &request.entity,
            request.cursor.as_deref(),
            request.max_records,
        )
    }

    fn open_writer(_config: &Config, request: WriteRequest) -> Result<Box<dyn Writer>, Error> {
        let writer = write::open(Path::new(DATA_DIR), &request.entity, request.key_fields)?;
        Ok(Box::new(writer))
    }
}

export_connector!(Jsonl);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::TestDir;

    #[test]
    fn discover_lists_jsonl_files_sorted_with_inferred_fields() {
        let dir = TestDir::new();
        dir.write(
            "b.jsonl",
            "{\"id\": 1, \"amount\": 2.5}\n{\"id\": 2, \"amount\": 3}\n",
        );
        dir.write("a.jsonl", "");
        dir.write(".b.jsonl.tmp", "{}\n");
        dir.write("b.json", "{}\n");
        let found = read::discover(dir.path(), 100).unwrap();
        let names: Vec<_> = found.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            found[1].fields,
            vec![
                FieldSchema::new("id", FieldType::Integer),
                FieldSchema::new("amount", FieldType::Float)
            ]
        );
        assert!(found[1].readable && found[1].writable && found[1].key_fields.is_empty());
        assert!(found[0].fields.is_empty());
    }

    #[test]
    fn missing_files_bad_names_and_cursors_are_config_errors() {
        let dir = TestDir::new();
        let err = read::read_page(dir.path(), 100, "x", None, 10).unwrap_err();
        assert_eq!(
            err,
            Error::config(format!(
                "entity `x`: no file {}",
                dir.path().join("x.jsonl").display()
            ))
        );
        let err = read::read_page(dir.path(), 100, "..", None, 10).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("`..`")),
            "{err}"
        );
        dir.write("x.jsonl", "{}\n");
        let err = read::read_page(dir.path(), 100, "x", Some("1"), 10).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("cursor `1`")),
            "{err}"
        );
        read::check_dir(dir.path()).unwrap();
        assert!(read::check_dir(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn info_declares_files() {
        let info = Jsonl::info();
        assert_eq!(info.name, "jsonl");
        assert_eq!(info.capabilities, vec![Capability::Files]);
    }
}
