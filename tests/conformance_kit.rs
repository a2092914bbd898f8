//! The deeper `weir plugin test` (issue 22): values, not only shapes. Built-in
//! edge cases for every column type, the author's sample and expected output,
//! keys that must come back unchanged, and NOT TRIED for checks whose step failed.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::plugin_path;

fn weir(args: &[&str]) -> (bool, String) {
    static DATA: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let data = DATA.get_or_init(|| tempfile::tempdir().unwrap());
    let o: Output = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_DATA_DIR", data.path())
        .output()
        .expect("run weir");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn plugin(name: &str) -> String {
    plugin_path(name).to_str().unwrap().to_owned()
}

/// The line of check `name` in a report.
fn line<'a>(report: &'a str, name: &str) -> &'a str {
    report
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == name))
        .unwrap_or_else(|| panic!("no check `{name}` in\n{report}"))
}

#[test]
fn a_pass_through_transform_passes_every_edge_case() {
    let (ok, out) = weir(&["plugin", "test", &plugin("testkit-transform")]);
    assert!(ok, "{out}");
    for check in [
        "transform-keeps-keys",
        "edge-nulls",
        "edge-text",
        "edge-integers",
        "edge-timestamps",
        "edge-empty-batch",
        "edge-large-batch",
    ] {
        assert!(line(&out, check).starts_with("PASS"), "{check}:\n{out}");
    }
    assert!(
        line(&out, "edge-large-batch").contains("10000 records → 10000 records"),
        "{out}"
    );
}

#[test]
fn a_transform_that_rounds_s64_is_caught_naming_the_column() {
    let (ok, out) = weir(&[
        "plugin",
        "test",
        &plugin("testkit-transform"),
        "--config",
        "malform=round-integers",
    ]);
    assert!(!ok, "{out}");
    let integers = line(&out, "edge-integers");
    assert!(
        integers.starts_with("FAIL")
            && integers.contains("column `id`")
            && integers.contains("9007199254740993"),
        "{out}"
    );
    let timestamps = line(&out, "edge-timestamps");
    assert!(
        timestamps.starts_with("FAIL") && timestamps.contains("column `edge_timestamp`"),
        "{out}"
    );
    // Small values survive a float: the fixed batch cannot see the problem.
    assert!(
        line(&out, "transform-keeps-keys").starts_with("PASS"),
        "{out}"
    );
}

#[test]
fn a_connector_whose_discover_fails_reports_the_read_checks_as_not_tried() {
    let (ok, out) = weir(&[
        "plugin",
        "test",
        &plugin("testkit-connector"),
        "--config",
        "extra_fields=age:no-such-type",
    ]);
    assert!(!ok, "{out}");
    assert!(line(&out, "discover").starts_with("FAIL"), "{out}");
    for check in [
        "read-to-end",
        "read-resume",
        "upsert-outcomes",
        "upsert-idempotent",
    ] {
        let l = line(&out, check);
        assert!(
            l.starts_with("NOT TRIED") && l.contains("(`discover` failed)"),
            "{check}:\n{out}"
        );
    }
    assert!(out.contains("not tried: read-to-end, read-resume"), "{out}");
    let (_, json) = weir(&[
        "plugin",
        "test",
        &plugin("testkit-connector"),
        "--config",
        "extra_fields=age:no-such-type",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let read = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "read-to-end")
        .unwrap();
    assert_eq!(read["state"], "not-tried", "{json}");
    assert_eq!(read["depends_on"], "discover", "{json}");
}

#[test]
fn a_transform_without_output_schema_leaves_the_edge_cases_not_tried() {
    let (ok, out) = weir(&[
        "plugin",
        "test",
        &plugin("testkit-transform"),
        "--config",
        "fail_field=nope",
        "--config",
        "fail_contains=x",
    ]);
    assert!(!ok, "{out}");
    assert!(line(&out, "output-schema").starts_with("FAIL"), "{out}");
    assert!(
        line(&out, "edge-integers").starts_with("NOT TRIED"),
        "{out}"
    );
    assert!(
        line(&out, "transform-honours-schema").starts_with("NOT TRIED"),
        "{out}"
    );
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn input_and_expect_compare_the_authors_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = write(d, "in.csv", "id:integer,name\n9007199254740993,Zoë\n2,\n");
    let good = write(
        d,
        "good.jsonl",
        "{\"id\": 9007199254740993, \"name\": \"Zoë\", \"tag\": \"x\"}\n{\"id\": 2, \"name\": null, \"tag\": \"x\"}\n",
    );
    let bad = write(
        d,
        "bad.csv",
        "id:integer,name,tag\n9007199254740993,Zoë,x\n2,,y\n",
    );
    let tk = plugin("testkit-transform");
    let base = [
        "plugin",
        "test",
        tk.as_str(),
        "--config",
        "add_field=tag",
        "--input",
        input.as_str(),
    ];

    let (ok, out) = weir(&[&base[..], &["--expect", good.as_str()]].concat());
    assert!(ok, "{out}");
    assert!(line(&out, "sample").starts_with("PASS"), "{out}");
    assert!(line(&out, "expected-output").starts_with("PASS"), "{out}");

    let (ok, out) = weir(&[&base[..], &["--expect", bad.as_str()]].concat());
    assert!(!ok, "{out}");
    let l = line(&out, "expected-output");
    assert!(
        l.starts_with("FAIL")
            && l.contains("record 1 (key `2`), column `tag`: expected `y`, got `x`"),
        "{out}"
    );

    // The sample itself catches the rounding; what depends on it is not tried.
    let (ok, out) = weir(&[
        "plugin",
        "test",
        tk.as_str(),
        "--config",
        "malform=round-integers",
        "--input",
        input.as_str(),
        "--expect",
        good.as_str(),
    ]);
    assert!(!ok, "{out}");
    assert!(
        line(&out, "sample").starts_with("FAIL") && line(&out, "sample").contains("`id`"),
        "{out}"
    );
    assert!(
        line(&out, "expected-output").starts_with("NOT TRIED"),
        "{out}"
    );
}

#[test]
fn a_sample_that_cannot_be_read_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", "id:integer,name\n1,a\nzwei,b\n");
    let (ok, out) = weir(&[
        "plugin",
        "test",
        &plugin("testkit-transform"),
        "--input",
        &input,
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("in.csv, line 3, field `id`: `zwei` is not a valid integer value"),
        "{out}"
    );
}
