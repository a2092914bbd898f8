//! Issue 20: project files use what the store holds (installed plugins by
//! version requirement, stored connections by name), validation writes nothing,
//! and validation answers with every problem at once, without cascades.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_host::engine::{Engine, ValidationReport};
use weir_host::project::Mapping;

fn weir(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("WEIR_DATA_DIR")
        .env_remove("WEIR_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run weir")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A root with `in/contacts.csv` and a data directory `data` holding the csv
/// plugin installed and a stored connection `crm-in` on `in`.
fn store_root() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("in")).unwrap();
    std::fs::write(
        root.path().join("in/contacts.csv"),
        "id,email\n1,Ada@Example.COM\n2,\n3,bob@example.com\n",
    )
    .unwrap();
    let data = root.path().join("data");
    let d = data.to_str().unwrap();
    let csv = common::plugin_path("csv");
    let o = weir(
        root.path(),
        &["--data-dir", d, "plugin", "install", csv.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let dir = root.path().join("in");
    let o = weir(
        root.path(),
        &[
            "--data-dir",
            d,
            "connection",
            "add",
            "crm-in",
            "--plugin",
            "csv",
            "--directory",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    (root, data)
}

fn project_file(
    dir: &Path,
    name: &str,
    source: &str,
    plugin: &str,
    out: &str,
    email: &str,
) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"[connections.src]
{source}

[connections.dst]
plugin = "{plugin}"
[connections.dst.grants]
directory = "{out}"

[connection_sets.main]
source = "src"
destination = "dst"

[project]
name = "stored-parts"
connection_set = "main"

[[project.tasks]]
source_entity = "contacts"
destination_entity = "people"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "email", expr = '{email}' }},
]
"#
        ),
    )
    .unwrap();
    path
}

/// Writes `name` (see [`project_file`], destination folder `out`) and validates
/// it with the store in `data`: whether it passed, and what weir printed.
fn validate_file(
    root: &Path,
    data: &str,
    name: &str,
    source: &str,
    plugin: &str,
    email: &str,
) -> (bool, String) {
    let file = project_file(root, name, source, plugin, "out", email);
    let o = weir(
        root,
        &["--data-dir", data, "validate", file.to_str().unwrap()],
        &[],
    );
    (o.status.success(), text(&o))
}

#[test]
fn a_file_names_an_installed_plugin_by_version_and_a_stored_connection_and_runs_completed() {
    let (root, data) = store_root();
    let d = data.to_str().unwrap();
    std::fs::create_dir(root.path().join("out")).unwrap();
    let file = project_file(
        root.path(),
        "p.toml",
        r#"connection = "crm-in""#,
        "csv@0.1",
        "out",
        r#"downcase(string(.email) ?? "")"#,
    );
    let o = weir(
        root.path(),
        &["--data-dir", d, "run", file.to_str().unwrap()],
        &[],
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Completed"), "{out}");
    let written = std::fs::read_to_string(root.path().join("out/people.csv")).unwrap();
    assert!(written.contains("ada@example.com"), "{written}");

    // The other forms of a requirement resolve too; one nothing matches is an
    // error at the plugin's line listing what is installed.
    for (plugin, ok) in [("csv@^0.1", true), ("csv", true), ("csv@9.1", false)] {
        let (passed, out) = validate_file(
            root.path(),
            d,
            "q.toml",
            r#"connection = "crm-in""#,
            plugin,
            ".email",
        );
        assert_eq!(passed, ok, "{plugin}: {out}");
        if !ok {
            assert!(out.contains("q.toml:5:"), "{plugin}: {out}");
            assert!(out.contains("installed versions of `csv`: 0.1.0"), "{out}");
        }
    }

    // An unknown stored connection lists the stored ones, at its line.
    let (passed, out) = validate_file(
        root.path(),
        d,
        "r.toml",
        r#"connection = "crm-nope""#,
        "csv",
        ".email",
    );
    assert!(!passed, "{out}");
    assert!(
        out.contains("r.toml:2:") && out.contains("stored: crm-in"),
        "{out}"
    );
}

/// Every file under `dir` (and every directory) with a digest of its content.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    for entry in walk(dir) {
        let digest = if entry.is_dir() {
            "dir".to_owned()
        } else {
            hex::encode(sha2::Sha256::digest(std::fs::read(&entry).unwrap()))
        };
        out.insert(entry, digest);
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn validate_leaves_the_working_and_data_directories_byte_for_byte_unchanged() {
    let (root, data) = store_root();
    let d = data.to_str().unwrap();
    // sled writes its snapshot at the first open after a writing command; any
    // reading command settles it (this is sled's, not validation's).
    let o = weir(root.path(), &["--data-dir", d, "connection", "list"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    // The destination folder does not exist: a run would create it.
    let file = project_file(
        root.path(),
        "p.toml",
        r#"connection = "crm-in""#,
        "csv@0.1",
        "out-not-yet",
        r#"downcase(string(.email) ?? "")"#,
    );
    let before = snapshot(root.path());
    let o = weir(
        root.path(),
        &["--data-dir", d, "validate", file.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("directory-missing"), "{}", text(&o));
    assert_eq!(before, snapshot(root.path()));

    // Without a data directory of its own: no ./weir-data, no cache, no folders.
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("in")).unwrap();
    std::fs::write(work.path().join("in/contacts.csv"), "id,email\n1,a@b.c\n").unwrap();
    let inline = project_file(
        work.path(),
        "inline.toml",
        "plugin = \"csv\"\n[connections.src.grants]\ndirectory = \"in\"",
        "csv",
        "out-not-yet",
        ".email",
    );
    let before = snapshot(work.path());
    let o = weir(work.path(), &["validate", inline.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!work.path().join("weir-data").exists(), "{}", text(&o));
    assert!(!work.path().join("out-not-yet").exists());
    assert_eq!(before, snapshot(work.path()));
}

#[test]
fn downcase_of_a_csv_column_shows_the_one_line_fix_and_the_fix_validates() {
    let (root, data) = store_root();
    let d = data.to_str().unwrap();
    std::fs::create_dir(root.path().join("out")).unwrap();
    let (passed, out) = validate_file(
        root.path(),
        d,
        "bad.toml",
        r#"connection = "crm-in""#,
        "csv",
        "downcase(.email)",
    );
    assert!(!passed, "{out}");
    assert!(out.contains("downcase(string!(.email))"), "{out}");
    assert!(out.contains(r#"downcase(string(.email) ?? "")"#), "{out}");
    assert!(out.contains("bad.toml:23:"), "{out}");
    for (name, fix) in [
        ("strict.toml", "downcase(string!(.email))"),
        ("lenient.toml", r#"downcase(string(.email) ?? "")"#),
    ] {
        let (passed, out) =
            validate_file(root.path(), d, name, r#"connection = "crm-in""#, "csv", fix);
        assert!(passed, "{fix}: {out}");
    }
}

#[test]
fn an_unreachable_source_is_reported_once_and_its_expressions_are_skipped_not_blamed() {
    let mut project = common::testkit_project(3);
    project
        .source
        .config
        .set("refuse_check", "401 token rejected");
    project.tasks[0].mappings[2] = Mapping::expr("email", "downcase(.email)");
    let report: ValidationReport = Engine::new(common::runtime()).validate(&project).unwrap();
    let codes = report.codes();
    assert_eq!(codes, ["connection-not-connected"], "{report}");
    assert!(report.problems[0].message.contains("401 token rejected"));
    let skipped = report.to_string();
    assert!(
        skipped.contains("skipped task `people`: the types of mapping rows 3")
            && skipped.contains("because of connection-not-connected"),
        "{skipped}"
    );
}

#[test]
fn every_problem_of_every_task_at_once_with_places_and_a_missing_table_with_its_ddl() {
    let Some(db) = pg::database("issue20") else {
        return;
    };
    db.exec(
        "CREATE TABLE people (id bigint PRIMARY KEY, email text NOT NULL, age integer, note text);",
    );
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("in")).unwrap();
    std::fs::write(
        root.path().join("in/contacts.csv"),
        "id,email,age,note\n1,a@b.c,42,x\n",
    )
    .unwrap();
    let file = root.path().join("p.toml");
    std::fs::write(
        &file,
        format!(
            r#"[connections.src]
plugin = "csv"
config = {{ types = "id:integer" }}
[connections.src.grants]
directory = "in"

[connections.db]
plugin = "postgres"
[connections.db.grants.postgres]
host = "{host}"
port = {port}
dbname = "{dbname}"
user = "{user}"
password_env = "WEIR_ENV_PG_PASSWORD"

[connection_sets.main]
source = "src"
destination = "db"

[project]
name = "four"
connection_set = "main"

[[project.tasks]]
name = "people"
source_entity = "contacts"
destination_entity = "people"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "note", source = "notte" }},
  {{ destination = "age", source = "age" }},
]

[[project.tasks]]
name = "invoices"
source_entity = "contacts"
destination_entity = "invoices"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "email", source = "email" }},
]
"#,
            host = db.server.host,
            port = db.server.port,
            dbname = db.name,
            user = db.server.user,
        ),
    )
    .unwrap();
    let o = weir(
        root.path(),
        &["validate", "--json", file.to_str().unwrap()],
        &[("WEIR_ENV_PG_PASSWORD", &db.server.password)],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let problems = report["problems"].as_array().unwrap();
    let find = |code: &str, task: &str| {
        problems
            .iter()
            .find(|p| p["code"] == code && p["task"] == task)
            .unwrap_or_else(|| panic!("no {code} in task {task}: {out}"))
    };
    for (code, task, line) in [
        ("source-field-unknown", "people", 31),
        ("type-mismatch", "people", 32),
        ("mandatory-field-unmapped", "people", 30),
        ("entity-unknown", "invoices", 41),
    ] {
        let p = find(code, task);
        assert_eq!(p["severity"], "error", "{code}: {p}");
        let place = p["place"]
            .as_str()
            .unwrap_or_else(|| panic!("{code} has no place: {p}"));
        assert!(
            place.contains(&format!("p.toml:{line}:")),
            "{code}: {place}"
        );
    }
    assert_eq!(find("mandatory-field-unmapped", "people")["field"], "email");
    let ddl = find("entity-unknown", "invoices")["hint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        ddl.contains("CREATE TABLE invoices (id bigint NOT NULL, email text, PRIMARY KEY (id));"),
        "{ddl}"
    );
    // The DDL it gives works: with the table created, the task validates.
    db.exec(ddl.rsplit(": ").next().unwrap());
    let o = weir(
        root.path(),
        &["validate", "--json", file.to_str().unwrap()],
        &[("WEIR_ENV_PG_PASSWORD", &db.server.password)],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!out.contains("\"task\": \"invoices\""), "{out}");
}

#[test]
fn an_unknown_organization_hides_no_other_check_and_says_what_it_skipped() {
    let mut project = common::testkit_project(3);
    project.source.config.set("organizations", "usmf,demf");
    project.organization = Some(weir_host::project::OrganizationPair {
        source: "usfm".into(),
        destination: "main".into(),
    });
    // A second task with a duplicate destination field and an unmapped key.
    let mut second = project.tasks[0].clone();
    second.name = "again".into();
    second.mappings.push(Mapping::new("name", "email"));
    second.key = vec!["ident".into()];
    project.tasks.push(second);
    let report = Engine::new(common::runtime()).validate(&project).unwrap();
    let codes = report.codes();
    for code in ["organization-unknown", "mapping-duplicate", "key-unmapped"] {
        assert!(codes.contains(&code), "{code} missing: {report}");
    }
    let skipped: Vec<_> = report
        .skipped
        .iter()
        .filter(|s| s.because == "organization-unknown")
        .map(|s| s.task.clone().unwrap_or_default())
        .collect();
    assert_eq!(skipped, ["people", "again"], "{report}");
}
