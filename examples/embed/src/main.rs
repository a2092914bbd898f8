//! Embedding weir: load the bundled plugins and run a project built in code — no
//! daemon, no project file, no data directory. It depends on `weir-engine` alone, so no
//! HTTP server, mailer, store or PostgreSQL client is compiled into it.
//!
//! Run: `cargo run --release -p weir-embed-example`
//!
//! It writes a few CRM contacts to a temporary folder, moves them to JSON Lines
//! through the bundled `csv`, `normalize` and `jsonl` plugins, and prints the
//! report and the output.

use anyhow::Result;
use weir_engine::project::{Connection, EntityTask, Mapping, PluginRef, Project, TransformStep};
use weir_engine::runtime::{Limits, Runtime, RuntimeConfig};
use weir_engine::{Engine, Quiet, Status};

fn main() -> Result<()> {
    let work = std::env::temp_dir().join(format!("weir-embed-{}", std::process::id()));
    let (input, output) = (work.join("in"), work.join("out"));
    std::fs::create_dir_all(&input)?;
    std::fs::write(
        input.join("contacts.csv"),
        "id,name,email,phone\n\
         1,Ada Lovelace, ADA@Example.com ,(415) 555-0134\n\
         2,Alan Turing,alan@example.org,+44 20 7946 0958\n",
    )?;

    // Instances are pre-instantiated and pooled; no compiled-component cache here.
    let runtime = Runtime::new(RuntimeConfig::default())?;

    let mut normalize = weir_engine::Config::default();
    normalize.set("phone_fields", "phone");
    normalize.set("email_fields", "email");
    normalize.set("default_country_code", "1");
    let project = Project {
        name: "embedded".into(),
        connection_set: "in-code".into(),
        source: Connection::new("crm", PluginRef::bundled("csv"))
            .with_config("types", "id:integer")
            .with_directory(&input),
        destination: Connection::new("marketing", PluginRef::bundled("jsonl"))
            .with_directory(&output),
        organization: None,
        lookups: Default::default(),
        batch_size: 500,
        schedule: None,
        retry: Default::default(),
        notify: Default::default(),
        tasks: vec![EntityTask {
            incremental: false,
            stop_on_failures: Default::default(),
            schema_change: Default::default(),
            duplicate_check: Default::default(),
            name: "contacts".into(),
            source_entity: "contacts".into(),
            destination_entity: "people".into(),
            key: vec!["contact_id".into()],
            mappings: vec![
                Mapping::new("contact_id", "id"),
                Mapping::new("full_name", "name"),
                Mapping::new("email", "email"),
                Mapping::new("phone", "phone"),
            ],
            transforms: vec![TransformStep {
                plugin: PluginRef::bundled("normalize"),
                config: normalize,
                limits: Limits::default(),
            }],
        }],
    };

    let report = Engine::new(&runtime).run(&project, &mut Quiet)?;
    print!("{report}");
    println!("{}", std::fs::read_to_string(output.join("people.jsonl"))?);
    std::fs::remove_dir_all(&work)?;
    anyhow::ensure!(report.status == Status::Completed, "expected Completed");
    Ok(())
}
