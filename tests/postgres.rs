//! The PostgreSQL connector against a real server (see `common/pg.rs`): the
//! host's `weir:sql/postgres` capability, discovery from the catalog, keyset
//! reads, upserts with per-record errors, grants, check reasons, and the
//! password kept out of everything shown or stored.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::path::Path;

use weir_host::engine::{Engine, Quiet, Status};
use weir_host::project::{Connection, Mapping, PluginRef, Project};
use weir_host::runtime::{ConnectorInstance, Grants, Limits, PostgresGrant, Secret};
use weir_host::service::Service;
use weir_host::store::{ConnectionState, SecretKey, Store, StoredConnection, Trigger};
use weir_types::{Config, FieldType, ReadRequest, UpsertOutcome};

fn postgres_plugin() -> PluginRef {
    PluginRef::file(common::plugin_path("postgres"))
}

fn instance(grants: Grants) -> ConnectorInstance {
    common::runtime()
        .load_file(&common::plugin_path("postgres"))
        .unwrap()
        .connector(grants, Limits::default())
        .unwrap()
}

fn granted(grant: PostgresGrant) -> Grants {
    Grants {
        postgres: Some(grant),
        ..Grants::none()
    }
}

fn config(pairs: &[(&str, &str)]) -> Config {
    let mut c = Config::default();
    for (k, v) in pairs {
        c.set(k, v);
    }
    c
}

fn read(
    inst: &mut ConnectorInstance,
    cfg: &Config,
    entity: &str,
    cursor: Option<String>,
    max: u32,
) -> weir_types::ReadPage {
    inst.read(
        cfg,
        &ReadRequest {
            entity: entity.into(),
            organization: None,
            cursor,
            max_records: max,
        },
    )
    .unwrap()
}

#[test]
fn discovery_maps_types_required_fields_and_keys() {
    let Some(db) = pg::database("discovery") else {
        return;
    };
    db.exec(
        "CREATE TABLE items (
            id bigint PRIMARY KEY,
            sku varchar(20) NOT NULL,
            qty integer NOT NULL DEFAULT 0,
            price numeric(10,2),
            weight double precision,
            active boolean NOT NULL,
            created timestamptz NOT NULL DEFAULT now(),
            photo bytea,
            tag uuid
        );
        CREATE TABLE lines (order_id int, line int, note text, PRIMARY KEY (order_id, line));",
    );
    let mut inst = instance(granted(db.grant()));
    let entities = inst.discover(&Config::default(), Some("public")).unwrap();
    let names: Vec<&str> = entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["items", "lines"]);
    let items = &entities[0];
    let field = |n: &str| items.fields.iter().find(|f| f.name == n).unwrap();
    for (name, ty, required) in [
        ("id", FieldType::Integer, true),
        ("sku", FieldType::Text, true),
        ("qty", FieldType::Integer, false), // NOT NULL but has a default
        ("price", FieldType::Decimal, false),
        ("weight", FieldType::Float, false),
        ("active", FieldType::Boolean, true),
        ("created", FieldType::Timestamp, false),
        ("photo", FieldType::Bytes, false),
        ("tag", FieldType::Text, false),
    ] {
        let f = field(name);
        assert_eq!((f.field_type, f.required), (ty, required), "{name}");
    }
    assert_eq!(items.key_fields, ["id"]);
    assert!(items.readable && items.writable);
    assert_eq!(entities[1].key_fields, ["order_id", "line"]);
}

#[test]
fn organizations_are_the_schemas() {
    let Some(db) = pg::database("schemas") else {
        return;
    };
    db.exec(
        "CREATE SCHEMA sales; CREATE SCHEMA hr; CREATE TABLE sales.deals (id int PRIMARY KEY);",
    );
    let mut inst = instance(granted(db.grant()));
    let orgs = inst.organizations(&Config::default()).unwrap();
    let ids: Vec<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        ["hr", "public", "sales"],
        "no pg_catalog, information_schema, pg_toast"
    );
    assert!(orgs.iter().all(|o| o.kind == "schema"));
    let deals = inst.discover(&Config::default(), Some("sales")).unwrap();
    assert_eq!(deals[0].name, "deals");
    // The `schema` option is the default organization.
    let by_option = inst
        .discover(&config(&[("schema", "sales")]), None)
        .unwrap();
    assert_eq!(by_option.len(), 1);
}

#[test]
fn reads_in_batches_with_a_cursor_and_resumes_from_it() {
    let Some(db) = pg::database("read") else {
        return;
    };
    db.exec(
        "CREATE TABLE people (id int PRIMARY KEY, name text, score numeric(6,2), seen timestamptz, updated_at timestamptz NOT NULL);
         INSERT INTO people
         SELECT i, 'p' || i, i * 1.5, timestamptz '2024-01-02 03:04:05.678901+00',
                timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute'
         FROM generate_series(1, 25) i;",
    );
    let cfg = Config::default();
    let mut inst = instance(granted(db.grant()));
    let first = read(&mut inst, &cfg, "people", None, 10);
    assert_eq!((first.records.len(), first.done), (10, false));
    let row = first.records.row(0);
    assert_eq!(row.get("id"), Some(weir_types::Value::Integer(1)));
    assert_eq!(
        row.get("score"),
        Some(weir_types::Value::Decimal("1.50".into()))
    );
    assert_eq!(
        row.get("seen"),
        Some(weir_types::Value::Timestamp(1_704_164_645_678_901))
    );
    // Resume in a fresh instance from the first page's cursor (another process,
    // days later): the next ten, then the last five and done.
    let mut other = instance(granted(db.grant()));
    let second = read(&mut other, &cfg, "people", first.next_cursor.clone(), 10);
    assert_eq!(
        second.records.row(0).get("id"),
        Some(weir_types::Value::Integer(11))
    );
    let third = read(&mut other, &cfg, "people", second.next_cursor.clone(), 10);
    assert_eq!((third.records.len(), third.done), (5, true));
    let empty = read(&mut other, &cfg, "people", third.next_cursor.clone(), 10);
    assert_eq!((empty.records.len(), empty.done), (0, true));
    assert_eq!(
        empty.next_cursor, third.next_cursor,
        "an empty page keeps the cursor"
    );

    // With `cursor_column = updated_at`, an updated row comes again after the end.
    let by_update = config(&[("cursor_column", "updated_at")]);
    let all = read(&mut inst, &by_update, "people", None, 100);
    assert_eq!((all.records.len(), all.done), (25, true));
    db.exec("UPDATE people SET name = 'changed', updated_at = now() WHERE id = 3");
    let again = read(
        &mut inst,
        &by_update,
        "people",
        all.next_cursor.clone(),
        100,
    );
    assert_eq!(again.records.len(), 1);
    assert_eq!(
        again.records.row(0).get("name"),
        Some(weir_types::Value::Text("changed".into()))
    );
    // `updated_since` bounds the first read.
    let since = config(&[
        ("cursor_column", "updated_at"),
        ("updated_since", "2024-01-01T00:20:00Z"),
    ]);
    let recent = read(&mut inst, &since, "people", None, 100);
    assert_eq!(
        recent.records.len(),
        7,
        "minutes 20..25 and the updated row"
    );
}

/// A CSV folder source → a PostgreSQL destination table `contacts`.
fn csv_to_postgres(dir: &Path, grant: PostgresGrant) -> Project {
    let source = Connection::new("files", PluginRef::bundled("csv"))
        .with_directory(dir)
        .with_config("types", "id:integer,age:integer");
    let mut destination = Connection::new("warehouse", postgres_plugin());
    destination.grants = granted(grant);
    let mut project = common::testkit_project(0);
    project.name = "csv-to-pg".into();
    project.source = source;
    project.destination = destination;
    project.batch_size = 4;
    let task = &mut project.tasks[0];
    task.name = "contacts".into();
    task.source_entity = "contacts".into();
    task.destination_entity = "contacts".into();
    task.mappings[2] = Mapping::new("age", "age");
    project
}

fn write_csv(dir: &Path, rows: &[(i64, &str, &str)]) {
    let mut text = String::from("id,name,age\n");
    for (id, name, age) in rows {
        text.push_str(&format!("{id},{name},{age}\n"));
    }
    std::fs::write(dir.join("contacts.csv"), text).unwrap();
}

/// `write_csv` of owned rows.
fn write_owned_csv(dir: &Path, rows: &[(i64, String, String)]) {
    let r: Vec<(i64, &str, &str)> = rows
        .iter()
        .map(|(i, n, a)| (*i, n.as_str(), a.as_str()))
        .collect();
    write_csv(dir, &r);
}

#[test]
fn a_project_run_twice_updates_without_duplicates() {
    let Some(db) = pg::database("upsert") else {
        return;
    };
    db.exec("CREATE TABLE contacts (id bigint PRIMARY KEY, name text NOT NULL, age int)");
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(i64, String, String)> = (1..=10)
        .map(|i| (i, format!("person {i}"), (20 + i).to_string()))
        .collect();
    let as_refs = |rows: &[(i64, String, String)]| {
        rows.iter()
            .map(|(i, n, a)| (*i, n.clone(), a.clone()))
            .collect::<Vec<_>>()
    };
    let write = |rows: &[(i64, String, String)]| write_owned_csv(dir.path(), rows);
    write(&rows);
    let project = csv_to_postgres(dir.path(), db.grant());
    let first = common::run(&project);
    assert_eq!(first.status, Status::Completed, "{first}");
    let c = first.tasks[0].counts;
    assert_eq!((c.read, c.inserted, c.updated, c.failed), (10, 10, 0, 0));
    assert_eq!(db.count("contacts"), 10);

    // Second run: the same ten changed, plus two new ones.
    let mut rows = as_refs(&rows);
    for r in &mut rows {
        r.1 = format!("{} (renamed)", r.1);
    }
    rows.push((11, "eleven".into(), "31".into()));
    rows.push((12, "twelve".into(), "32".into()));
    write(&rows);
    let second = common::run(&project);
    assert_eq!(second.status, Status::Completed, "{second}");
    let c = second.tasks[0].counts;
    assert_eq!((c.read, c.inserted, c.updated, c.failed), (12, 2, 10, 0));
    assert_eq!(db.count("contacts"), 12, "no duplicates");
    let name: String = db
        .client()
        .query_one("SELECT name FROM contacts WHERE id = 7", &[])
        .unwrap()
        .get(0);
    assert_eq!(name, "person 7 (renamed)");
}

#[test]
fn a_refused_record_is_a_record_error_and_the_rest_of_the_batch_is_upserted() {
    let Some(db) = pg::database("refused") else {
        return;
    };
    db.exec(
        "CREATE TABLE contacts (id bigint PRIMARY KEY, name text NOT NULL, age int CHECK (age >= 0))",
    );
    let dir = tempfile::tempdir().unwrap();
    write_csv(
        dir.path(),
        &[
            (1, "ann", "30"),
            (2, "bob", "-4"), // CHECK
            (3, "", "40"),    // an empty cell is null: NOT NULL
            (4, "dan", "50"),
            (5, "eve", "60"),
        ],
    );
    let report = common::run(&csv_to_postgres(dir.path(), db.grant()));
    assert_eq!(report.status, Status::Warning, "{report}");
    let c = report.tasks[0].counts;
    assert_eq!((c.inserted, c.updated, c.failed), (3, 0, 2), "{report}");
    assert_eq!(db.count("contacts"), 3);
    let failures = &report.tasks[0].failures;
    let check = failures
        .iter()
        .find(|f| f.key.as_deref() == Some("2"))
        .unwrap();
    assert!(
        check
            .message
            .contains("violates check constraint \"contacts_age_check\""),
        "PostgreSQL's own message: {}",
        check.message
    );
    let null = failures
        .iter()
        .find(|f| f.key.as_deref() == Some("3"))
        .unwrap();
    assert!(
        null.message.contains("null value in column \"name\""),
        "{}",
        null.message
    );
    assert_eq!(null.field.as_deref(), Some("name"));
}

#[test]
fn the_writer_commits_at_finish_and_reports_inserted_and_updated() {
    let Some(db) = pg::database("writer") else {
        return;
    };
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text)");
    let mut inst = instance(granted(db.grant()));
    let request = weir_types::WriteRequest {
        entity: "t".into(),
        organization: None,
        key_fields: vec!["id".into()],
    };
    let batch = |rows: &[(i64, &str)]| {
        let mut b =
            weir_types::BatchBuilder::new(&[("id", FieldType::Integer), ("v", FieldType::Text)]);
        for (i, v) in rows {
            b.push_row(&[
                weir_types::Value::Integer(*i),
                weir_types::Value::Text((*v).into()),
            ])
            .unwrap();
        }
        b.finish()
    };
    let cfg = Config::default();
    let w = inst.open_writer(&cfg, &request).unwrap();
    let out = inst.upsert(&w, batch(&[(1, "a"), (2, "b")])).unwrap();
    assert_eq!(out, [UpsertOutcome::Inserted, UpsertOutcome::Inserted]);
    // The same key twice in one batch: inserted, then updated.
    let out = inst
        .upsert(&w, batch(&[(3, "c"), (3, "c2"), (1, "a2")]))
        .unwrap();
    assert_eq!(
        out,
        [
            UpsertOutcome::Inserted,
            UpsertOutcome::Updated,
            UpsertOutcome::Updated
        ]
    );
    assert_eq!(db.count("t"), 0, "nothing is visible before finish");
    inst.finish(w).unwrap();
    assert_eq!(db.count("t"), 3, "durable when finish returns");
    // An integer out of range for the column is that record's error.
    db.exec("CREATE TABLE small (id int PRIMARY KEY, n smallint)");
    let w = inst
        .open_writer(
            &cfg,
            &weir_types::WriteRequest {
                entity: "small".into(),
                organization: None,
                key_fields: vec!["id".into()],
            },
        )
        .unwrap();
    let mut b =
        weir_types::BatchBuilder::new(&[("id", FieldType::Integer), ("n", FieldType::Integer)]);
    b.push_row(&[
        weir_types::Value::Integer(1),
        weir_types::Value::Integer(1 << 20),
    ])
    .unwrap();
    b.push_row(&[weir_types::Value::Integer(2), weir_types::Value::Integer(7)])
        .unwrap();
    let out = inst.upsert(&w, b.finish()).unwrap();
    assert!(
        matches!(&out[0], UpsertOutcome::Failed(e) if e.field.as_deref() == Some("n") && e.message.contains("out of range")),
        "{out:?}"
    );
    assert_eq!(out[1], UpsertOutcome::Inserted);
    inst.finish(w).unwrap();
    assert_eq!(db.count("small"), 1);
}

/// Obeyed/violated pair: an upsert of the values a row already holds writes no
/// new row version (its `xmin` stays: no dead tuple, no WAL), also for a type
/// without an equality operator (`json`, compared as text); a changed value is
/// written. Both are reported `updated` (contract v0.1.0).
#[test]
fn an_unchanged_row_is_not_written_again() {
    let Some(db) = pg::database("unchanged") else {
        return;
    };
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text, doc json, n numeric)");
    let mut inst = instance(granted(db.grant()));
    let request = weir_types::WriteRequest {
        entity: "t".into(),
        organization: None,
        key_fields: vec!["id".into()],
    };
    let batch = |rows: &[(i64, &str)]| {
        let mut b = weir_types::BatchBuilder::new(&[
            ("id", FieldType::Integer),
            ("v", FieldType::Text),
            ("doc", FieldType::Text),
            ("n", FieldType::Integer),
        ]);
        for (i, v) in rows {
            b.push_row(&[
                weir_types::Value::Integer(*i),
                weir_types::Value::Text((*v).into()),
                weir_types::Value::Text(format!("{{\"k\": {i}}}")),
                weir_types::Value::Integer(*i * 10),
            ])
            .unwrap();
        }
        b.finish()
    };
    let xmins = || -> Vec<(i32, String)> {
        db.client()
            .query("SELECT id, xmin::text FROM t ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let cfg = Config::default();
    let w = inst.open_writer(&cfg, &request).unwrap();
    let out = inst.upsert(&w, batch(&[(1, "a"), (2, "b")])).unwrap();
    assert_eq!(out, [UpsertOutcome::Inserted, UpsertOutcome::Inserted]);
    inst.finish(w).unwrap();
    let before = xmins();

    let w = inst.open_writer(&cfg, &request).unwrap();
    let out = inst.upsert(&w, batch(&[(1, "a"), (2, "b")])).unwrap();
    assert_eq!(out, [UpsertOutcome::Unchanged, UpsertOutcome::Unchanged]);
    inst.finish(w).unwrap();
    assert_eq!(xmins(), before, "unchanged rows keep their row version");

    let w = inst.open_writer(&cfg, &request).unwrap();
    let out = inst.upsert(&w, batch(&[(1, "a"), (2, "b2")])).unwrap();
    assert_eq!(out, [UpsertOutcome::Unchanged, UpsertOutcome::Updated]);
    inst.finish(w).unwrap();
    let after = xmins();
    assert_eq!(after[0], before[0], "row 1 unchanged");
    assert_ne!(after[1], before[1], "row 2 written");
    let v: String = db
        .client()
        .query_one("SELECT v FROM t WHERE id = 2", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, "b2");
}

#[test]
fn a_connection_without_a_postgres_grant_is_denied() {
    let mut inst = instance(Grants::none());
    let err = inst.check(&Config::default()).unwrap_err().to_string();
    assert!(err.contains("denied"), "{err}");
    assert!(err.contains("grants no PostgreSQL database"), "{err}");
    let err = inst
        .discover(&Config::default(), Some("public"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("denied"), "{err}");
}

#[test]
fn check_says_why_in_plain_words() {
    let Some(db) = pg::database("check") else {
        return;
    };
    assert!(
        instance(granted(db.grant()))
            .check(&Config::default())
            .is_ok()
    );

    let wrong_password = PostgresGrant {
        password: Some(Secret::new("not-the-password-42")),
        ..db.grant()
    };
    let err = instance(granted(wrong_password))
        .check(&Config::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("authentication refused"), "{err}");
    assert!(!err.contains("not-the-password-42"), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = PostgresGrant {
        port: closed,
        ..db.grant()
    };
    let err = instance(granted(unreachable))
        .check(&Config::default())
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("host unreachable"), "{err}");

    let missing = PostgresGrant {
        dbname: "no_such_database".into(),
        ..db.grant()
    };
    let err = instance(granted(missing))
        .check(&Config::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("database does not exist"), "{err}");
}

/// Every file of the store, as lossy text.
fn store_text(dir: &Path) -> String {
    let mut text = String::new();
    for entry in walk(dir) {
        if let Ok(bytes) = std::fs::read(&entry) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_password_never_shows_in_reports_logs_errors_or_the_store() {
    let Some(db) = pg::database("secrets") else {
        return;
    };
    db.exec("CREATE TABLE contacts (id bigint PRIMARY KEY, name text NOT NULL, age int CHECK (age >= 0))");
    // A role of its own with a password found nowhere else (the server's may be
    // as short as the user name).
    let password = "pg-S3cret-never-shown-91".to_owned();
    db.exec(&format!(
        "DO $$ BEGIN CREATE ROLE weir_secret_owner LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         ALTER ROLE weir_secret_owner PASSWORD '{password}';
         GRANT CONNECT ON DATABASE {} TO weir_secret_owner;
         ALTER TABLE contacts OWNER TO weir_secret_owner;",
        db.name
    ));
    let files = tempfile::tempdir().unwrap();
    write_csv(files.path(), &[(1, "ann", "30"), (2, "bob", "-1")]);

    let data = tempfile::tempdir().unwrap();
    let key = SecretKey::from_material("a postgres test key that is long enough").unwrap();
    let service = Service::new(
        Store::open(&data.path().join("store"), Some(key)).unwrap(),
        common::runtime(),
    );
    let grant = PostgresGrant {
        user: "weir_secret_owner".into(),
        password: Some(Secret::new(password.clone())),
        ..db.grant()
    };
    let warehouse = StoredConnection {
        name: "warehouse".into(),
        plugin: common::plugin_path("postgres").display().to_string(),
        config: vec![
            ("postgres.host".into(), grant.host.clone()),
            ("postgres.port".into(), grant.port.to_string()),
            ("postgres.dbname".into(), grant.dbname.clone()),
            ("postgres.user".into(), grant.user.clone()),
        ],
        secrets: vec![("postgres.password".into(), password.clone())],
        directory: None,
        http_hosts: vec![],
        http_internal: false,
        state: ConnectionState::Unchecked,
        updated_at: 0,
    };
    let conn = weir_host::service::to_connection(&warehouse);
    assert!(
        conn.config
            .pairs()
            .iter()
            .all(|(k, v)| !k.starts_with("postgres.") && *v != password),
        "the grant never reaches the plugin's configuration"
    );
    assert_eq!(
        conn.grants.postgres.as_ref().map(|g| g.port),
        Some(grant.port)
    );
    service.store.put_connection(&warehouse).unwrap();
    assert_eq!(
        service.check_connection("warehouse").unwrap(),
        ConnectionState::Connected
    );
    let project = format!(
        r#"
[connections.files]
plugin = "csv"
config = {{ types = "id:integer,age:integer" }}
grants = {{ directory = "{}" }}

[connection_sets.set]
source = "files"
destination = "warehouse"

[project]
name = "secrets"
connection_set = "set"

[[project.tasks]]
source_entity = "contacts"
destination_entity = "contacts"
key = ["id"]
mappings = [
  {{ destination = "id", source = "id" }},
  {{ destination = "name", source = "name" }},
  {{ destination = "age", source = "age" }},
]
"#,
        files.path().display()
    );
    service
        .apply_project_text(
            Path::new("secrets.toml"),
            &project,
            files.path(),
            &weir_host::project::EnvPolicy::default(),
        )
        .unwrap();
    let (id, report) = service.run("secrets", Trigger::Manual, &mut Quiet).unwrap();
    assert_eq!(report.status, Status::Warning, "{report}");
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("contacts_age_check"), "{json}");
    assert!(!json.contains(&password));
    let execution = service.store.execution(id).unwrap().unwrap();
    assert!(!format!("{execution:?}").contains(&password));

    // A refused password: the reason says so, and names neither password.
    let mut wrong = warehouse.clone();
    wrong.secrets = vec![("postgres.password".into(), "wrong-password-1234".into())];
    service.store.put_connection(&wrong).unwrap();
    let state = service.check_connection("warehouse").unwrap();
    let ConnectionState::NeedsFixing { reason } = state else {
        panic!("{state:?}")
    };
    assert!(reason.contains("authentication refused"), "{reason}");
    assert!(!reason.contains("wrong-password-1234") && !reason.contains(&password));
    let refused = Engine::new(common::runtime())
        .run(
            &{
                let mut p = csv_to_postgres(files.path(), grant.clone());
                p.destination.grants.postgres.as_mut().unwrap().password =
                    Some(Secret::new("wrong-password-1234"));
                p
            },
            &mut Quiet,
        )
        .map(|r| format!("{r} {}", serde_json::to_string(&r).unwrap()))
        .unwrap_or_else(|e| format!("{e} {e:?}"));
    assert!(refused.contains("authentication refused"), "{refused}");
    assert!(!refused.contains("wrong-password-1234"), "{refused}");

    drop(service);
    let stored = store_text(&data.path().join("store"));
    assert!(!stored.is_empty());
    assert!(
        !stored.contains(&password),
        "the store holds the password in clear"
    );
}

/// A role that may log in but holds no privilege on a table: reading it and writing it
/// say "permission missing" (connection health's words), not a generic failure.
#[test]
fn a_table_the_role_may_not_use_says_permission_missing() {
    let Some(db) = pg::database("perm") else {
        return;
    };
    db.exec("CREATE TABLE locked (id bigint PRIMARY KEY, name text)");
    let role = format!(
        "weir_limited_{}",
        db.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    );
    db.exec(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'limited-pass-7f3a'"
    ));
    let mut grant = db.grant();
    grant.user = role.clone();
    grant.password = Some(Secret::new("limited-pass-7f3a".to_string()));
    let cfg = Config::default();
    let mut inst = instance(granted(grant));
    inst.check(&cfg).expect("the role may connect");
    let read = inst
        .read(
            &cfg,
            &ReadRequest {
                entity: "locked".into(),
                organization: None,
                cursor: None,
                max_records: 10,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(read.contains("permission missing"), "{read}");
    let write = inst
        .open_writer(
            &cfg,
            &weir_types::WriteRequest {
                entity: "locked".into(),
                organization: None,
                key_fields: vec!["id".into()],
            },
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(write.contains("permission missing"), "{write}");
    db.exec(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

/// Contract 0.2.0's `unchanged` through a whole project: a first run inserts 100
/// rows, a re-run of the same file finds all 100 unchanged (and writes no row
/// version), a run with 10 rows changed updates those 10 and leaves 90 unchanged.
#[test]
fn unchanged_rows_are_counted_on_a_rerun_and_with_ten_changed() {
    let Some(db) = pg::database("unchanged_counts") else {
        return;
    };
    db.exec("CREATE TABLE contacts (id bigint PRIMARY KEY, name text NOT NULL, age int)");
    let dir = tempfile::tempdir().unwrap();
    let names = |changed: &[i64]| -> Vec<(i64, String, String)> {
        (1..=100)
            .map(|i| {
                let name = if changed.contains(&i) {
                    format!("person {i} (renamed)")
                } else {
                    format!("person {i}")
                };
                (i, name, (20 + i % 50).to_string())
            })
            .collect()
    };
    let write = |rows: &[(i64, String, String)]| write_owned_csv(dir.path(), rows);
    let project = csv_to_postgres(dir.path(), db.grant());
    let counts = |project: &Project| {
        let report = common::run(project);
        assert_eq!(report.status, Status::Completed, "{report}");
        let c = report.tasks[0].counts;
        (c.read, c.inserted, c.updated, c.unchanged, c.failed)
    };
    let versions = || -> Vec<String> {
        db.client()
            .query("SELECT xmin::text FROM contacts ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };

    write(&names(&[]));
    assert_eq!(counts(&project), (100, 100, 0, 0, 0), "first run");
    let before = versions();
    assert_eq!(
        counts(&project),
        (100, 0, 0, 100, 0),
        "re-run of the same file"
    );
    assert_eq!(versions(), before, "no row got a new version");

    let changed: Vec<i64> = (1..=10).map(|i| i * 7).collect();
    write(&names(&changed));
    assert_eq!(counts(&project), (100, 0, 10, 90, 0), "ten changed rows");
    let after = versions();
    let rewritten = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert_eq!(rewritten, 10, "only the changed rows were written");
    assert_eq!(db.count("contacts"), 100);
}

/// A batch goes as one statement (each column one text array, cast to the
/// column's type): every value type arrives as the record-by-record path would
/// send it — text with the characters an array literal quotes, NULLs, floats,
/// booleans, numerics, timestamps into `timestamptz`, `timestamp` and `date`,
/// bytes into `bytea` — and an update of the same rows reports `updated` or
/// `unchanged` by position.
#[test]
fn a_batch_in_one_statement_carries_every_value_type_intact() {
    use weir_types::Value as V;
    let Some(db) = pg::database("bulk") else {
        return;
    };
    db.exec(
        "CREATE TABLE t (id bigint PRIMARY KEY, s text, f float8, b boolean, n numeric(10,2), \
         ts timestamptz, tl timestamp, d date, raw bytea, small int2)",
    );
    let mut inst = instance(granted(db.grant()));
    let request = weir_types::WriteRequest {
        entity: "t".into(),
        organization: None,
        key_fields: vec!["id".into()],
    };
    let fields = [
        ("id", FieldType::Integer),
        ("s", FieldType::Text),
        ("f", FieldType::Float),
        ("b", FieldType::Boolean),
        ("n", FieldType::Decimal),
        ("ts", FieldType::Timestamp),
        ("tl", FieldType::Timestamp),
        ("d", FieldType::Timestamp),
        ("raw", FieldType::Bytes),
        ("small", FieldType::Integer),
    ];
    // 2024-02-29T13:45:07.123456Z and 1969-12-31T23:59:59Z (before the epoch).
    let leap = 1_709_214_307_123_456_i64;
    let rows: Vec<Vec<V>> = vec![
        vec![
            V::Integer(1),
            V::Text(r#"quote " back\slash {brace}, comma NULL"#.into()),
            V::Float(0.1),
            V::Boolean(true),
            V::Decimal("-12.50".into()),
            V::Timestamp(leap),
            V::Timestamp(leap),
            V::Timestamp(leap),
            V::Bytes(vec![0, 1, 0xfe, b'"']),
            V::Integer(-7),
        ],
        vec![
            V::Integer(2),
            V::Text("NULL".into()),
            V::Float(f64::INFINITY),
            V::Boolean(false),
            V::Null,
            V::Timestamp(-1_000_000),
            V::Null,
            V::Null,
            V::Null,
            V::Null,
        ],
        vec![
            V::Integer(3),
            V::Text("ünïcødé ✓".into()),
            V::Float(-2.5e-300),
            V::Null,
            V::Decimal("99999999.99".into()),
            V::Null,
            V::Timestamp(0),
            V::Timestamp(-1),
            V::Bytes(Vec::new()),
            V::Integer(32767),
        ],
    ];
    let batch = |rows: &[Vec<V>]| {
        let mut b = weir_types::BatchBuilder::new(&fields);
        for r in rows {
            b.push_row(r).unwrap();
        }
        b.finish()
    };
    let cfg = Config::default();
    let w = inst.open_writer(&cfg, &request).unwrap();
    let out = inst.upsert(&w, batch(&rows)).unwrap();
    assert_eq!(out, vec![UpsertOutcome::Inserted; 3]);
    inst.finish(w).unwrap();

    let mut client = db.client();
    let got: Vec<(i64, Option<String>, Option<f64>, Option<bool>, Option<String>, Option<String>, Option<String>, Option<String>, Option<Vec<u8>>, Option<i16>)> = client
        .query(
            "SELECT id, s, f, b, n::text, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
             to_char(tl, 'YYYY-MM-DD HH24:MI:SS.US'), d::text, raw, small FROM t ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8), r.get(9)))
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    let (_, s, f, b, n, ts, tl, d, raw, small) = &got[0];
    assert_eq!(
        s.as_deref(),
        Some(r#"quote " back\slash {brace}, comma NULL"#)
    );
    assert_eq!(*f, Some(0.1));
    assert_eq!(*b, Some(true));
    assert_eq!(n.as_deref(), Some("-12.50"));
    assert_eq!(ts.as_deref(), Some("2024-02-29 13:45:07.123456"));
    assert_eq!(tl.as_deref(), Some("2024-02-29 13:45:07.123456"));
    assert_eq!(d.as_deref(), Some("2024-02-29"));
    assert_eq!(raw.as_deref(), Some(&[0u8, 1, 0xfe, b'"'][..]));
    assert_eq!(*small, Some(-7));
    let (_, s, f, b, n, ts, tl, d, raw, small) = &got[1];
    assert_eq!(s.as_deref(), Some("NULL"), "the text NULL is not a null");
    assert_eq!(*f, Some(f64::INFINITY));
    assert_eq!(*b, Some(false));
    assert_eq!((n, tl, d, raw, small), (&None, &None, &None, &None, &None));
    assert_eq!(ts.as_deref(), Some("1969-12-31 23:59:59.000000"));
    let (_, s, f, b, n, ts, tl, d, raw, small) = &got[2];
    assert_eq!(s.as_deref(), Some("ünïcødé ✓"));
    assert_eq!(*f, Some(-2.5e-300));
    assert_eq!((b, ts), (&None, &None));
    assert_eq!(n.as_deref(), Some("99999999.99"));
    assert_eq!(tl.as_deref(), Some("1970-01-01 00:00:00.000000"));
    assert_eq!(d.as_deref(), Some("1969-12-31"), "a date is the UTC day");
    assert_eq!(raw.as_deref(), Some(&[][..]));
    assert_eq!(*small, Some(32767));

    // Again, with row 2 changed: outcomes by position.
    let mut again = rows.clone();
    again[1][1] = V::Text("changed".into());
    let w = inst.open_writer(&cfg, &request).unwrap();
    let out = inst.upsert(&w, batch(&again)).unwrap();
    assert_eq!(
        out,
        [
            UpsertOutcome::Unchanged,
            UpsertOutcome::Updated,
            UpsertOutcome::Unchanged
        ]
    );
    inst.finish(w).unwrap();
}

/// A value too long for a `varchar(n)` column is that record's error, never cut
/// short (an explicit cast would cut it: such tables are written record by record).
#[test]
fn a_value_too_long_for_its_column_is_refused_not_cut() {
    let Some(db) = pg::database("toolong") else {
        return;
    };
    db.exec("CREATE TABLE t (id bigint PRIMARY KEY, code varchar(5))");
    let mut inst = instance(granted(db.grant()));
    let request = weir_types::WriteRequest {
        entity: "t".into(),
        organization: None,
        key_fields: vec!["id".into()],
    };
    let mut b =
        weir_types::BatchBuilder::new(&[("id", FieldType::Integer), ("code", FieldType::Text)]);
    b.push_row(&[
        weir_types::Value::Integer(1),
        weir_types::Value::Text("abc".into()),
    ])
    .unwrap();
    b.push_row(&[
        weir_types::Value::Integer(2),
        weir_types::Value::Text("abcdefgh".into()),
    ])
    .unwrap();
    let w = inst.open_writer(&Config::default(), &request).unwrap();
    let out = inst.upsert(&w, b.finish()).unwrap();
    assert_eq!(out[0], UpsertOutcome::Inserted);
    assert!(
        matches!(&out[1], UpsertOutcome::Failed(e) if e.message.contains("too long")),
        "{out:?}"
    );
    inst.finish(w).unwrap();
    let mut client = db.client();
    let codes: Vec<String> = client
        .query("SELECT code FROM t ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(codes, ["abc"], "nothing cut short, nothing else written");
}
