//! `weir plugin new`: a ready-to-build plugin crate using `weir-sdk`.
//!
//! The generated crate is its own workspace (so it builds wherever it is put),
//! targets wasm32-wasip2 through `.cargo/config.toml`, and has a native unit test
//! that calls the plugin's trait methods directly.

use std::path::{Path, PathBuf};

/// What to scaffold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Source,
    Destination,
    Connector,
    Transform,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "source" => Kind::Source,
            "destination" => Kind::Destination,
            "connector" => Kind::Connector,
            "transform" => Kind::Transform,
            _ => return None,
        })
    }
}

/// Where the SDK is: the copy beside this weir's sources when it still exists.
pub fn default_sdk_path() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// Writes a new plugin crate named `name` into `dir` (which must not exist).
pub fn create(dir: &Path, name: &str, kind: Kind, sdk: &Path) -> Result<Vec<PathBuf>, String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
    {
        return Err(format!(
            "plugin name `{name}`: use lowercase letters, digits and `-`"
        ));
    }
    if dir.exists() {
        return Err(format!(
            "{} already exists; choose a new directory",
            dir.display()
        ));
    }
    let crate_name = format!("weir-plugin-{name}");
    let ident: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let files: Vec<(&str, String)> = vec![
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"

# A workspace of its own, so the plugin builds wherever it is put.
[workspace]

[lib]
crate-type = ["cdylib"]

[dependencies]
weir-sdk = {{ path = "{sdk}" }}

[profile.release]
opt-level = 3
lto = true
strip = true
panic = "abort"
"#,
                sdk = sdk.display().to_string().replace('\\', "/")
            ),
        ),
        (
            ".cargo/config.toml",
            "[build]\ntarget = \"wasm32-wasip2\"\n".to_owned(),
        ),
        (".gitignore", "/target\n".to_owned()),
        (
            "README.md",
            format!(
                "# {crate_name}\n\nA weir {kind} plugin.\n\n```sh\ncargo build --release                                   # → target/wasm32-wasip2/release/{file}.wasm\ncargo test --target x86_64-unknown-linux-gnu            # the unit tests, natively\nweir plugin test target/wasm32-wasip2/release/{file}.wasm   # the conformance suite\n```\n",
                kind = format!("{kind:?}").to_lowercase(),
                file = crate_name.replace('-', "_")
            ),
        ),
        ("src/lib.rs", source(kind, name, &ident)),
    ];
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn source(kind: Kind, name: &str, ident: &str) -> String {
    match kind {
        Kind::Transform => format!(
            r#"//! `{name}`: a weir transform. It upper-cases the field named by the option
//! `field` (default `name`); every other field passes through.

use weir_sdk::*;

pub struct {ident};

impl Transform for {ident} {{
    fn info() -> PluginInfo {{
        PluginInfo::new("{name}", env!("CARGO_PKG_VERSION"), "Upper-cases one text field.")
            .option(ConfigField::new("field", "The field to upper-case.").default_value("name"))
    }}

    fn transform(config: &Config, records: Batch) -> Result<Transformed, Error> {{
        let field = config.get_or("field", "name");
        let mut out = records;
        if let Some(col) = out.columns.iter_mut().find(|c| c.name == field) {{
            if let ColumnData::Text(values) = &col.data {{
                let mut upper = VarData::with_capacity(values.len(), values.data.len());
                for i in 0..values.len() {{
                    upper.push(values.get_str(i).unwrap_or("").to_uppercase().as_bytes());
                }}
                col.data = ColumnData::Text(upper);
            }}
        }}
        Ok(Transformed::ok(out))
    }}
}}

export_transform!({ident});

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn upper_cases_the_field() {{
        let mut b = BatchBuilder::new(&[("name", FieldType::Text)]);
        b.push_row(&[Value::Text("ada".into())]).unwrap();
        let out = {ident}::transform(&Config::default(), b.finish()).unwrap();
        assert_eq!(out.records.row(0).text("name"), Some("ADA"));
    }}
}}
"#
        ),
        _ => {
            let source = matches!(kind, Kind::Source | Kind::Connector);
            let destination = matches!(kind, Kind::Destination | Kind::Connector);
            let read = if source {
                r#"
    fn read(config: &Config, request: ReadRequest) -> Result<ReadPage, Error> {
        let count: i64 = config.parse_or("count", 10)?;
        let start: i64 = match &request.cursor {
            None => 1,
            Some(c) => c.parse().map_err(|_| Error::config(format!("bad cursor `{c}`")))?,
        };
        let end = (start + request.max_records as i64).min(count + 1);
        let mut b = BatchBuilder::with_capacity(&[("id", FieldType::Integer), ("name", FieldType::Text)], (end - start).max(0) as usize);
        for id in start..end {
            b.push_row(&[Value::Integer(id), Value::Text(format!("Item {id}"))])
                .map_err(|e| Error::internal(e.to_string()))?;
        }
        Ok(ReadPage { records: b.finish(), rejected: Vec::new(), next_cursor: Some(end.to_string()), done: end > count })
    }
"#
            } else {
                ""
            };
            let write = if destination {
                r#"
    fn open_writer(_config: &Config, request: WriteRequest) -> Result<Box<dyn Writer>, Error> {
        if request.key_fields.is_empty() {
            return Err(Error::config("upsert needs key fields"));
        }
        // Replace this in-memory set with calls to your system.
        Ok(Box::new(KeyedWriter { keys: request.key_fields, seen: HashSet::new() }))
    }
"#
            } else {
                ""
            };
            let writer = if destination {
                r#"
struct KeyedWriter {
    keys: Vec<String>,
    seen: HashSet<String>,
}

impl Writer for KeyedWriter {
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
        Ok(records
            .rows()
            .map(|row| {
                if self.seen.insert(row.key(&self.keys)) { UpsertOutcome::Inserted } else { UpsertOutcome::Updated }
            })
            .collect())
    }
}
"#
            } else {
                ""
            };
            let test = if source {
                format!(
                    r#"
    #[test]
    fn reads_in_pages_to_the_end() {{
        let config = Config::new(vec![("count".into(), "5".into())]);
        let request = |cursor| ReadRequest {{ entity: "items".into(), organization: None, cursor, max_records: 2 }};
        let first = {ident}::read(&config, request(None)).unwrap();
        assert_eq!(first.records.len(), 2);
        let last = {ident}::read(&config, request(Some("5".into()))).unwrap();
        assert!(last.done);
    }}
"#
                )
            } else {
                format!(
                    r#"
    #[test]
    fn upserts_by_key() {{
        let request = WriteRequest {{ entity: "items".into(), organization: None, key_fields: vec!["id".into()] }};
        let mut w = {ident}::open_writer(&Config::default(), request).unwrap();
        let mut b = BatchBuilder::new(&[("id", FieldType::Integer)]);
        b.push_row(&[Value::Integer(1)]).unwrap();
        let batch = b.finish();
        assert_eq!(w.upsert(batch.clone()).unwrap(), [UpsertOutcome::Inserted]);
        assert_eq!(w.upsert(batch).unwrap(), [UpsertOutcome::Updated]);
    }}
"#
                )
            };
            format!(
                r#"//! `{name}`: a weir connector. Replace the generated `items` with your system.
{uses}
use weir_sdk::*;

pub struct {ident};

fn items() -> EntitySchema {{
    EntitySchema {{
        name: "items".into(),
        fields: vec![FieldSchema::new("id", FieldType::Integer).required(), FieldSchema::new("name", FieldType::Text)],
        key_fields: vec!["id".into()],
        readable: {source},
        writable: {destination},
    }}
}}

impl Connector for {ident} {{
    fn info() -> PluginInfo {{
        PluginInfo::new("{name}", env!("CARGO_PKG_VERSION"), "A weir connector.")
            .option(ConfigField::new("count", "How many items the example source has.").default_value("10"))
    }}

    fn discover(_config: &Config, _organization: Option<&str>) -> Result<Vec<EntitySchema>, Error> {{
        Ok(vec![items()])
    }}
{read}{write}}}
{writer}
export_connector!({ident});

#[cfg(test)]
mod tests {{
    use super::*;
{test}}}
"#,
                uses = if destination {
                    "\nuse std::collections::HashSet;\n"
                } else {
                    ""
                },
            )
        }
    }
}
