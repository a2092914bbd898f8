//! The plugin authors' kit: scaffold → build → conformance test; broken plugins
//! fail the named checks; an unsupported contract version is refused.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::plugin_path;

fn weir(args: &[&str]) -> Output {
    // Commands without --data-dir keep their compiled-component cache in a temporary
    // folder, not in ./weir-data of the source tree (the tests run in host/).
    static DATA: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let data = DATA.get_or_init(|| tempfile::tempdir().unwrap());
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("WEIR_DATA_DIR", data.path())
        .output()
        .expect("run weir")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Builds a scaffolded crate for wasm32-wasip2 the way its README says, with a
/// target directory kept between runs (beside the host's plugin builds).
fn cargo_build(dir: &Path) -> std::path::PathBuf {
    let target = Path::new(weir_host::bundled::PLUGIN_BUILD_DIR)
        .ancestors()
        .nth(4)
        .unwrap()
        .join("scaffold-test");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--release"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target);
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_") && k != "CARGO_HOME" || k == "RUSTFLAGS" {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CARGO_TARGET_DIR", &target);
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "building the scaffold failed:\n{}",
        text(&out)
    );
    target.join("wasm32-wasip2/release")
}

#[test]
fn scaffolded_plugins_build_and_pass_the_conformance_suite() {
    let root = tempfile::tempdir().unwrap();
    for (kind, name, config) in [
        ("connector", "items", vec!["--config", "count=23"]),
        ("transform", "shout", vec![]),
    ] {
        let dir = root.path().join(name);
        let created = weir(&[
            "plugin",
            "new",
            "--kind",
            kind,
            name,
            "--dir",
            dir.to_str().unwrap(),
        ]);
        assert!(created.status.success(), "{}", text(&created));
        let wasm = cargo_build(&dir).join(format!("weir_plugin_{name}.wasm"));
        let mut args = vec!["plugin", "test", wasm.to_str().unwrap()];
        args.extend(config);
        let tested = weir(&args);
        let report = text(&tested);
        assert!(tested.status.success(), "{report}");
        assert!(
            report.contains("checks passed") && !report.contains("FAIL"),
            "{report}"
        );
        if kind == "connector" {
            assert!(
                report.contains("PASS read-resume") && report.contains("PASS upsert-idempotent"),
                "{report}"
            );
        }
        let inspected = text(&weir(&["plugin", "inspect", wasm.to_str().unwrap()]));
        assert!(
            inspected.contains("contract:     weir:plugin@0.2.0")
                && inspected.contains(&format!("name:         {name} 0.1.0")),
            "{inspected}"
        );
        assert!(
            inspected.contains("(stamped 0.2.0 by weir-sdk)"),
            "{inspected}"
        );
        let world = if kind == "transform" {
            "transform-plugin"
        } else {
            "connector-plugin"
        };
        assert!(
            inspected.contains(&format!("world:        weir:plugin/{world}")),
            "{inspected}"
        );
    }
    // Install two versions side by side; projects pick one with name@version.
    let items = root.path().join("items");
    let data = root.path().join("data");
    let data_dir = data.to_str().unwrap();
    let build_dir = cargo_build(&items);
    let v1 = build_dir.join("weir_plugin_items.wasm");
    let installed = text(&weir(&[
        "--data-dir",
        data_dir,
        "plugin",
        "install",
        v1.to_str().unwrap(),
    ]));
    assert!(
        installed.contains("installed items 0.1.0 (connector"),
        "{installed}"
    );
    // Version 0.2.0 has 11 items by default instead of 10.
    let manifest = std::fs::read_to_string(items.join("Cargo.toml"))
        .unwrap()
        .replace("version = \"0.1.0\"", "version = \"0.2.0\"");
    std::fs::write(items.join("Cargo.toml"), manifest).unwrap();
    let lib = std::fs::read_to_string(items.join("src/lib.rs"))
        .unwrap()
        .replace("parse_or(\"count\", 10)", "parse_or(\"count\", 11)");
    std::fs::write(items.join("src/lib.rs"), lib).unwrap();
    let v2 = cargo_build(&items).join("weir_plugin_items.wasm");
    assert!(
        text(&weir(&[
            "--data-dir",
            data_dir,
            "plugin",
            "install",
            v2.to_str().unwrap()
        ]))
        .contains("installed items 0.2.0")
    );
    let list = text(&weir(&["--data-dir", data_dir, "plugin", "list"]));
    assert!(
        list.contains("items            0.1.0") && list.contains("items            0.2.0"),
        "{list}"
    );
    for (plugin, project, read) in [
        ("items@0.1.0", "pinned-v1", 10),
        ("items@0.2.0", "pinned-v2", 11),
        ("items", "latest", 11),
    ] {
        let file = root.path().join(format!("{project}.toml"));
        std::fs::write(
            &file,
            format!(
                "[connections.src]\nplugin = \"{plugin}\"\n[connections.dst]\nplugin = \"{plugin}\"\n[connection_sets.main]\nsource = \"src\"\ndestination = \"dst\"\n[project]\nname = \"{project}\"\nconnection_set = \"main\"\n[[project.tasks]]\nsource_entity = \"items\"\ndestination_entity = \"items\"\nkey = [\"id\"]\nmappings = [{{ destination = \"id\", source = \"id\" }}, {{ destination = \"name\", source = \"name\" }}]\n"
            ),
        )
        .unwrap();
        let applied = weir(&[
            "--data-dir",
            data_dir,
            "project",
            "apply",
            "-f",
            file.to_str().unwrap(),
        ]);
        assert!(applied.status.success(), "{}", text(&applied));
        let run = text(&weir(&["--data-dir", data_dir, "run", project]));
        assert!(
            run.contains(&format!("read {read}, inserted {read}")),
            "{plugin}: {run}"
        );
    }
    let missing = root.path().join("missing.toml");
    std::fs::write(
        &missing,
        std::fs::read_to_string(root.path().join("latest.toml"))
            .unwrap()
            .replace("plugin = \"items\"", "plugin = \"items@0.3.0\"")
            .replace("name = \"latest\"", "name = \"missing\""),
    )
    .unwrap();
    weir(&[
        "--data-dir",
        data_dir,
        "project",
        "apply",
        "-f",
        missing.to_str().unwrap(),
    ]);
    let err = text(&weir(&["--data-dir", data_dir, "run", "missing"]));
    assert!(
        err.contains(
            "plugin `items@0.3.0`: no installed version matches (installed versions of `items`: 0.1.0, 0.2.0;"
        ),
        "{err}"
    );

    // A second scaffold into an existing directory is refused.
    let again = weir(&[
        "plugin",
        "new",
        "--kind",
        "source",
        "items",
        "--dir",
        root.path().join("items").to_str().unwrap(),
    ]);
    assert!(!again.status.success() && text(&again).contains("already exists"));
}

#[test]
fn broken_plugins_fail_the_named_checks() {
    let testkit = plugin_path("testkit-connector");
    let testkit = testkit.to_str().unwrap();
    let good = weir(&["plugin", "test", testkit, "--config", "count=20", "--json"]);
    let good: serde_json::Value = serde_json::from_slice(&good.stdout).unwrap();
    assert!(
        good["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["passed"] == true),
        "{good}"
    );

    for (broken, failing) in [
        ("non-idempotent", vec!["upsert-idempotent"]),
        (
            "outcome-count",
            vec!["upsert-outcomes", "upsert-idempotent"],
        ),
    ] {
        let out = weir(&[
            "plugin",
            "test",
            testkit,
            "--config",
            "count=20",
            "--config",
            &format!("broken={broken}"),
            "--json",
        ]);
        assert_eq!(out.status.code(), Some(1));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let failed: Vec<&str> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["passed"] == false)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(failed, failing, "{broken}: {report}");
    }
    let out = text(&weir(&[
        "plugin",
        "test",
        testkit,
        "--config",
        "broken=non-idempotent",
    ]));
    assert!(
        out.contains("FAIL upsert-idempotent") && out.contains("inserted again (duplicates)"),
        "{out}"
    );
}

#[test]
fn a_plugin_for_an_unsupported_contract_is_refused_naming_both_versions() {
    let future = plugin_path("testkit-future");
    for args in [
        vec!["plugin", "inspect", future.to_str().unwrap()],
        vec!["plugin", "test", future.to_str().unwrap()],
    ] {
        let out = weir(&args);
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out);
        assert!(
            err.contains(
                "built against contract weir:plugin@0.3.0; this host accepts weir:plugin@0.2.0, weir:plugin@0.1.0"
            ),
            "{err}"
        );
    }
}

#[test]
fn a_plugin_stamped_with_an_unsupported_contract_is_refused_before_compiling() {
    let mut bytes = std::fs::read(plugin_path("normalize")).unwrap();
    let stamp = weir_host::runtime::contract_stamp(&bytes);
    assert_eq!(stamp.as_deref(), Some("0.2.0"));
    // Rewrite the stamp in place (same length): the component stays valid.
    let at = bytes
        .windows(18)
        .position(|w| w == b"weir-contract0.2.0")
        .expect("stamp section")
        + 13;
    bytes[at..at + 5].copy_from_slice(b"9.9.9");
    let runtime = weir_host::runtime::Runtime::new(Default::default()).unwrap();
    let err = runtime
        .load_bytes("normalize-9", &bytes)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "built against contract weir:plugin@9.9.9; this host accepts weir:plugin@0.2.0, weir:plugin@0.1.0"
        ),
        "{err}"
    );
}
