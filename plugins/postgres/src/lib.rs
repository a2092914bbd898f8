//! `postgres`: a weir connector for PostgreSQL tables, as a source and as a
//! destination.
//!
//! What it is: the schemas of the granted database are the organizations, their
//! tables the entities (discovered from `pg_catalog`: column types mapped to
//! weir's, NOT NULL without a default = required, primary key = key). Reads are
//! keyset-paginated with a resumable cursor (see `read`); writes upsert with
//! `INSERT ... ON CONFLICT (key) DO UPDATE` in one transaction per write session,
//! a savepoint per refused record (see `write`).
//!
//! What it is not: a database client. The statements run in the host through the
//! `weir:sql/postgres` import (`wit/sql/since_v0.1.0`): the host connects to the
//! one database the connection's grant names, holds the password, and bounds
//! every statement by the call's time limit. The plugin never sees an address or
//! a credential.

mod catalog;
mod read;
mod sql;
mod write;

use weir_sdk::*;

struct Postgres;

/// The schema of a request: its organization, else the `schema` option.
fn schema<'a>(config: &'a Config, organization: Option<&'a str>) -> &'a str {
    organization.unwrap_or_else(|| config.get_or("schema", "public"))
}

impl Connector for Postgres {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "postgres",
            env!("CARGO_PKG_VERSION"),
            "PostgreSQL tables of the granted database: schemas are organizations, tables are entities; keyset reads with a resumable cursor, upserts with ON CONFLICT. Needs `grants.postgres` (host, port, dbname, user, password) on the connection.",
        )
        .option(
            ConfigField::new(
                "schema",
                "The schema used when the project names no organization.",
            )
            .default_value("public"),
        )
        .option(ConfigField::new(
            "cursor_column",
            "The column incremental reads follow (e.g. `updated_at`), for every table that has it; the primary key breaks ties. Default: the primary key. `cursor_column.<table>` sets it for one table.",
        ))
        .option(ConfigField::new(
            "updated_since",
            "With a cursor column: read only rows whose cursor column is at or after this value (e.g. `2024-01-01T00:00:00Z`).",
        ))
    }

    fn check(_config: &Config) -> Result<(), Error> {
        sql::query("SELECT 1", &[]).map(drop)
    }

    fn organizations(_config: &Config) -> Result<Vec<Organization>, Error> {
        catalog::schemas()
    }

    fn discover(config: &Config, organization: Option<&str>) -> Result<Vec<EntitySchema>, Error> {
        let schema = schema(config, organization);
        Ok(catalog::tables(schema, None)?
            .iter()
            .map(|t| {
                let mut entity = t.schema();
                // Readable only when it can be read in a stable order.
                entity.readable &= read::cursor_columns(config, t).is_ok();
                entity
            })
            .collect())
    }

    fn read(config: &Config, request: ReadRequest) -> Result<ReadPage, Error> {
        let schema = schema(config, request.organization.as_deref()).to_owned();
        read::read(config, &schema, request)
    }

    fn open_writer(config: &Config, request: WriteRequest) -> Result<Box<dyn Writer>, Error> {
        let schema = schema(config, request.organization.as_deref());
        Ok(Box::new(write::open(
            schema,
            &request.entity,
            request.key_fields,
        )?))
    }
}

export_connector!(Postgres);
