//! Plugins built against the frozen contract `weir:plugin@0.1.0` keep working.
//!
//! `plugins/testkit-v0-1-0` is a connector as a partner built it: wit-bindgen over
//! `wit/since_v0.1.0`, no weir SDK (so no `weir-contract` stamp; the host knows the
//! version from the exported interface's name). It is loaded through the runtime API
//! and called on every entry point, then run end to end by the `weir` binary into the
//! bundled jsonl plugin.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};

use common::{plugin_path, runtime};
use weir_host::runtime::{ConnectorInstance, ContractVersion, Grants, Limits, PluginKind};
use weir_types::{
    Batch, BatchBuilder, Config, FieldType, ReadRequest, UpsertOutcome, Value, WriteRequest,
};

const PLUGIN: &str = "testkit-v0-1-0";

fn connector() -> ConnectorInstance {
    let plugin = runtime().load_file(&plugin_path(PLUGIN)).unwrap();
    assert_eq!(plugin.kind(), PluginKind::Connector);
    plugin.connector(Grants::none(), Limits::default()).unwrap()
}

fn count(n: u32) -> Config {
    let mut config = Config::default();
    config.set("count", &n.to_string());
    config
}

fn items(ids: &[i64]) -> Batch {
    let mut b = BatchBuilder::new(&[("id", FieldType::Integer), ("name", FieldType::Text)]);
    for &id in ids {
        b.push_row(&[Value::Integer(id), Value::Text(format!("item-{id}"))])
            .unwrap();
    }
    b.finish()
}

#[test]
fn the_fixture_is_built_without_the_sdk() {
    let bytes = std::fs::read(plugin_path(PLUGIN)).unwrap();
    // No SDK, no stamp: the host must recognise the contract from the exports alone.
    assert_eq!(weir_host::runtime::contract_stamp(&bytes), None);
    // A plugin built with the SDK carries one (the check above can fail).
    let sdk_built = std::fs::read(plugin_path("testkit-connector")).unwrap();
    assert_eq!(
        weir_host::runtime::contract_stamp(&sdk_built).as_deref(),
        Some("0.2.0")
    );
    // The version the host dispatches on comes from the exported interface.
    let old = runtime()
        .load_file(&plugin_path(PLUGIN))
        .expect("a 0.1.0 plugin loads");
    assert_eq!(old.contract(), ContractVersion::V0_1_0);
    let new = runtime()
        .load_file(&plugin_path("testkit-connector"))
        .unwrap();
    assert_eq!(new.contract(), ContractVersion::V0_2_0);
}

#[test]
fn describe_check_and_discover() {
    let mut c = connector();
    let info = c.describe().unwrap();
    assert_eq!(info.name, "testkit-v0-1-0");
    assert_eq!(info.version, "0.1.0");
    assert!(info.config.is_empty(), "{:?}", info.config);
    assert!(info.capabilities.is_empty(), "{:?}", info.capabilities);

    c.check(&Config::default()).unwrap();
    assert!(c.organizations(&Config::default()).unwrap().is_empty());

    let entities = c.discover(&Config::default(), None).unwrap();
    assert_eq!(entities.len(), 1, "{entities:?}");
    let items = &entities[0];
    assert_eq!(items.name, "items");
    let fields: Vec<(&str, FieldType)> = items
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.field_type))
        .collect();
    assert_eq!(
        fields,
        [("id", FieldType::Integer), ("name", FieldType::Text)]
    );
    assert_eq!(items.key_fields, ["id"]);
    assert!(items.readable && items.writable);
}

#[test]
fn reads_25_records_in_pages_of_10() {
    let mut c = connector();
    let config = count(25);
    let mut cursor = None;
    let mut pages = Vec::new();
    loop {
        let page = c
            .read(
                &config,
                &ReadRequest {
                    entity: "items".into(),
                    organization: None,
                    cursor: cursor.clone(),
                    max_records: 10,
                },
            )
            .unwrap();
        page.records.validate().unwrap();
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        let ids: Vec<i64> = page
            .records
            .rows()
            .map(|r| match r.get("id") {
                Some(Value::Integer(id)) => id,
                other => panic!("id: {other:?}"),
            })
            .collect();
        for row in page.records.rows() {
            let Some(Value::Integer(id)) = row.get("id") else {
                unreachable!()
            };
            assert_eq!(row.text("name"), Some(format!("item-{id}").as_str()));
        }
        assert_ne!(page.next_cursor, cursor, "the cursor must advance");
        pages.push((ids, page.next_cursor.clone(), page.done));
        cursor = page.next_cursor;
        if page.done {
            break;
        }
        assert!(pages.len() < 10, "never done: {pages:?}");
    }
    let range = |a: i64, b: i64| (a..=b).collect::<Vec<_>>();
    assert_eq!(
        pages,
        [
            (range(1, 10), Some("10".to_owned()), false),
            (range(11, 20), Some("20".to_owned()), false),
            (range(21, 25), Some("25".to_owned()), true),
        ]
    );
}

#[test]
fn the_writer_inserts_new_keys_and_updates_known_ones() {
    let mut c = connector();
    let writer = c
        .open_writer(
            &Config::default(),
            &WriteRequest {
                entity: "items".into(),
                organization: None,
                key_fields: vec!["id".into()],
            },
        )
        .unwrap();
    use UpsertOutcome::{Inserted, Updated};
    assert_eq!(
        c.upsert(&writer, items(&[1, 2, 3])).unwrap(),
        [Inserted, Inserted, Inserted]
    );
    assert_eq!(
        c.upsert(&writer, items(&[1, 2, 3])).unwrap(),
        [Updated, Updated, Updated]
    );
    assert_eq!(
        c.upsert(&writer, items(&[3, 4])).unwrap(),
        [Updated, Inserted]
    );
    c.finish(writer).unwrap();
}

fn weir(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(cwd)
        .env_remove("WEIR_DATA_DIR")
        .output()
        .expect("run weir")
}

#[test]
fn a_project_runs_end_to_end_from_the_old_plugin_into_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = plugin_path(PLUGIN);
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            r#"[connections.src]
plugin = "{plugin}"
config = {{ count = 500 }}

[connections.dst]
plugin = "jsonl"
grants = {{ directory = "out" }}

[connection_sets.s]
source = "src"
destination = "dst"

[project]
name = "legacy"
connection_set = "s"
batch_size = 64

[[project.tasks]]
source_entity = "items"
destination_entity = "items"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
]
"#,
            plugin = plugin.display()
        ),
    )
    .unwrap();
    let out = weir(dir.path(), &["run", "p.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("status:   Completed"), "{stdout}");
    assert!(
        stdout.contains("read 500, inserted 500, updated 0, unchanged 0, failed 0"),
        "{stdout}"
    );

    let written = std::fs::read_to_string(dir.path().join("out/items.jsonl")).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 500);
    let mut ids = HashSet::new();
    for line in lines {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = record["id"].as_i64().unwrap_or_else(|| panic!("{line}"));
        assert_eq!(record["name"], format!("item-{id}"), "{line}");
        assert!(ids.insert(id), "id {id} written twice");
    }
    assert_eq!(ids, (1..=500).collect::<HashSet<i64>>());
}

/// `weir plugin inspect` names the version the plugin was built against, not the
/// newest the host speaks.
#[test]
fn inspect_names_the_contract_the_plugin_was_built_against() {
    let dir = tempfile::tempdir().unwrap();
    let old = plugin_path(PLUGIN);
    let out = weir(dir.path(), &["plugin", "inspect", old.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("contract:     weir:plugin@0.1.0 (from its exports; no weir-sdk stamp)"),
        "{text}"
    );
    let out = weir(dir.path(), &["plugin", "inspect", "jsonl"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("contract:     weir:plugin@0.2.0 (stamped 0.2.0 by weir-sdk)"),
        "{text}"
    );
}
