//! Issue 6's end-to-end project, against real servers on 127.0.0.1: a REST source
//! (json-server, paged through its `Link` header) → mappings (a VRL expression
//! among them) → a PostgreSQL table, through the `rest` and `postgres` plugins and
//! the host's HTTP and PostgreSQL capabilities. Run twice: the second run updates,
//! with no duplicates; a record the database refuses (a CHECK constraint) is a
//! record error carrying PostgreSQL's message, and the rest of its batch is written.

mod common;
#[path = "common/json_server.rs"]
mod json_server;
#[path = "common/pg.rs"]
mod pg;

use json_server::JsonServer;
use serde_json::{Value as Json, json};
use weir_host::engine::{Stage, Status};
use weir_host::project::{Connection, EntityTask, Mapping, PluginRef};
use weir_host::runtime::Grants;

fn contacts(count: usize, rename: bool) -> Json {
    let items: Vec<Json> = (1..=count)
        .map(|i| {
            json!({
                "id": i,
                "firstName": format!("First{i}"),
                "lastName": if rename { format!("Renamed{i}") } else { format!("Last{i}") },
                "email": format!("c{i}@example.com"),
                // Contact 7 has a negative score: the table's CHECK refuses it.
                "score": if i == 7 { -1 } else { i as i64 * 10 },
            })
        })
        .collect();
    json!(items)
}

#[test]
fn rest_source_to_postgres_twice_updates_without_duplicates_and_keeps_refusals() {
    let Some(db) = pg::database("rest_e2e") else {
        return;
    };
    db.exec(
        "CREATE TABLE contacts (contact_id bigint PRIMARY KEY, full_name text NOT NULL, \
         email text, score int CHECK (score >= 0))",
    );
    let Some(server) = JsonServer::start(&json!({ "contacts": contacts(23, false) }), None) else {
        return;
    };

    let mut source = Connection::new("crm", PluginRef::file(common::plugin_path("rest")));
    source.config.set("base_url", &server.url(""));
    source.config.set("entities", "contacts");
    source.config.set("pagination", "link");
    source.config.set("page_size", "10");
    source.grants.http_hosts = vec![server.host()];
    let mut destination = Connection::new(
        "warehouse",
        PluginRef::file(common::plugin_path("postgres")),
    );
    destination.grants = Grants {
        postgres: Some(db.grant()),
        ..Grants::none()
    };
    let mut project = common::testkit_project(0);
    project.name = "crm-to-warehouse".into();
    project.source = source;
    project.destination = destination;
    project.batch_size = 10;
    project.tasks = vec![EntityTask {
        name: "contacts".into(),
        source_entity: "contacts".into(),
        destination_entity: "contacts".into(),
        key: vec!["contact_id".into()],
        mappings: vec![
            Mapping::new("contact_id", "id"),
            Mapping::expr("full_name", r#".firstName + " " + .lastName"#),
            Mapping::new("email", "email"),
            Mapping::new("score", "score"),
        ],
        transforms: vec![],
        incremental: false,
        stop_on_failures: Default::default(),
        schema_change: Default::default(),
        duplicate_check: Default::default(),
    }];

    let first = common::run(&project);
    assert_eq!(first.status, Status::Warning, "{first}");
    let c = first.tasks[0].counts;
    assert_eq!(
        (c.read, c.inserted, c.updated, c.failed),
        (23, 22, 0, 1),
        "{first}"
    );
    let refused = &first.tasks[0].failures[0];
    assert_eq!(refused.stage, Stage::Upsert);
    assert_eq!(refused.key.as_deref(), Some("7"));
    assert!(
        refused.message.contains("check constraint"),
        "PostgreSQL's own message: {}",
        refused.message
    );
    assert_eq!(db.count("contacts"), 22);
    let pages = server
        .requests()
        .iter()
        .filter(|r| r.contains("/contacts"))
        .count();
    assert!(
        pages >= 3,
        "23 records in pages of 10: {pages} list requests"
    );

    // The CRM changes every last name; the second run updates, never duplicates.
    for i in 1..=23 {
        server.patch(
            &format!("/contacts/{i}"),
            &json!({ "lastName": format!("Renamed{i}") }),
        );
    }
    let second = common::run(&project);
    let c = second.tasks[0].counts;
    assert_eq!(
        (c.read, c.inserted, c.updated, c.failed),
        (23, 0, 22, 1),
        "{second}"
    );
    assert_eq!(db.count("contacts"), 22, "no duplicates");
    let name: String = db
        .client()
        .query_one("SELECT full_name FROM contacts WHERE contact_id = 13", &[])
        .unwrap()
        .get(0);
    assert_eq!(name, "First13 Renamed13");
}
