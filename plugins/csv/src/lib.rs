//! `csv`: a weir connector for CSV files in the connection's granted directory,
//! as a source and as a destination.
//!
//! What it is: every `*.csv` file in `/data` is an entity named after the file
//! stem. Reading streams a file page by page from a `"<byte offset>:<line>"`
//! cursor; writing upserts by key fields and atomically replaces the file on
//! `finish`. Columns are text unless the `types` option declares them (no
//! inference, so every page and every run agree on the schema); an empty cell is
//! null.
//!
//! What it is not: a database. A writer keeps a key index of bounded size in
//! memory (~25 MiB at most; past ~200,000 keys it spills to dot files beside the
//! entity file), not the rows; it appends new rows to a file of 1 MiB or more, and
//! copies the file once per session when it is smaller, keys were updated or the
//! header grew; there is
//! no locking against other writers of the same file; timestamps and bytes are
//! written as [`weir_sdk::Value::to_text`] gives them (microseconds, hex) and read
//! back as text.

mod options;
mod read;
mod write;

use std::path::Path;

use weir_sdk::*;

use options::Options;
use weir_sdk::files::DATA_DIR;

struct Csv;

impl Connector for Csv {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "csv",
            env!("CARGO_PKG_VERSION"),
            "CSV files in a granted directory: each `<name>.csv` is an entity, read page by page and upserted by key.",
        )
        .option(
            ConfigField::new(
                "delimiter",
                "The field separator: one ASCII character (`\\t` or `tab` for a tab).",
            )
            .default_value(","),
        )
        .option(ConfigField::new(
            "types",
            "Declared column types, e.g. `id:integer,amount:decimal,active:boolean,score:float`. Every other column is text.",
        ))
        .capability(Capability::Files)
    }

    fn check(config: &Config) -> Result<(), Error> {
        Options::from_config(config)?;
        read::check_dir(Path::new(DATA_DIR))
    }

    fn discover(config: &Config, _organization: Option<&str>) -> Result<Vec<EntitySchema>, Error> {
        read::discover(Path::new(DATA_DIR), &Options::from_config(config)?)
    }

    fn read(config: &Config, request: ReadRequest) -> Result<ReadPage, Error> {
        read::read_page(
            Path::new(DATA_DIR),
            &Options::from_config(config)?,
            &request.entity,
            request.cursor.as_deref(),
            request.max_records,
        )
    }

    fn open_writer(config: &Config, request: WriteRequest) -> Result<Box<dyn Writer>, Error> {
        let writer = write::open(
            Path::new(DATA_DIR),
            &Options::from_config(config)?,
            &request.entity,
            request.key_fields,
        )?;
        Ok(Box::new(writer))
    }
}

export_connector!(Csv);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::testing::TestDir;

    #[test]
    fn discover_lists_csv_files_sorted_with_declared_types() {
        let dir = TestDir::new();
        dir.write("b.csv", "id,amount\n1,2.5\n");
        dir.write("a.csv", "name\n");
        dir.write("empty.csv", "");
        dir.write(".a.csv.tmp", "x\n");
        dir.write(".hidden.csv", "x\n");
        dir.write("notes.txt", "x\n");
        std::fs::create_dir(dir.path().join("dir.csv")).unwrap();
        let o = Options::parse(None, Some("id:integer")).unwrap();
        let found = read::discover(dir.path(), &o).unwrap();
        let names: Vec<_> = found.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "empty"]);
        let b = &found[1];
        assert_eq!(
            b.fields,
            vec![
                FieldSchema::new("id", FieldType::Integer),
                FieldSchema::new("amount", FieldType::Text)
            ]
        );
        assert!(b.readable && b.writable && b.key_fields.is_empty());
        assert!(found[2].fields.is_empty());
    }

    #[test]
    fn missing_files_and_directories_are_config_errors() {
        let dir = TestDir::new();
        let o = Options::parse(None, None).unwrap();
        let err = read::read_page(dir.path(), &o, "x", None, 10).unwrap_err();
        assert_eq!(
            err,
            Error::config(format!(
                "entity `x`: no file {}",
                dir.path().join("x.csv").display()
            ))
        );
        let err = read::read_page(dir.path(), &o, "a/b", None, 10).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("`a/b`")),
            "{err}"
        );
        dir.write("x.csv", "a\n1\n");
        let err = read::read_page(dir.path(), &o, "x", Some("nope"), 10).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("cursor `nope`")),
            "{err}"
        );
        read::check_dir(dir.path()).unwrap();
        let err = read::check_dir(&dir.path().join("missing")).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("cannot read the directory")),
            "{err}"
        );
    }

    #[test]
    fn info_declares_files_and_options() {
        let info = Csv::info();
        assert_eq!(info.name, "csv");
        assert_eq!(info.capabilities, vec![Capability::Files]);
        let names: Vec<_> = info.config.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["delimiter", "types"]);
    }
}
