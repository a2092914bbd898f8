//! The project file as users write it (TOML). Every table denies unknown keys, so
//! a typo is an error with its line and column, never a silently ignored option.
//! [`super::Project`] is the validated runtime form built from it.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole project file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Connections by name.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionSpec>,
    /// Connection sets by name.
    #[serde(default)]
    pub connection_sets: BTreeMap<String, ConnectionSetSpec>,
    pub project: ProjectSpec,
}

/// A configured connector and what it is granted — or, with `connection`, a
/// stored connection used as the store holds it (plugin, options, grants and
/// encrypted secrets), so the file carries no credentials at all.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// A stored connection's name (`weir connection add`). Excludes every
    /// other key of the entry.
    pub connection: Option<Spanned<String>>,
    /// A bundled plugin name (`csv`, `jsonl`), an installed plugin with an
    /// optional version requirement (`acme-crm@1.2`, `acme-crm@^1.2`,
    /// `acme-crm@1.2.3`, `acme-crm` = the highest installed) or a path to a
    /// `.wasm` file, relative to the project file.
    pub plugin: Option<Spanned<String>>,
    /// Options passed to the plugin as text.
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<ConfigValue>>,
    #[serde(default)]
    pub grants: GrantsSpec,
    /// Credentials the host adds to the plugin's HTTP requests.
    pub auth: Option<AuthSpec>,
    #[serde(default)]
    pub limits: LimitsSpec,
}

/// An option value: text, a number or a boolean (all passed on as text).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
}

impl ConfigValue {
    pub fn to_text(&self) -> String {
        match self {
            ConfigValue::Text(s) => s.clone(),
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(x) => x.to_string(),
            ConfigValue::Boolean(b) => b.to_string(),
        }
    }
}

/// What a connection's plugin may touch. Nothing by default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSpec {
    /// A directory, relative to the project file, seen by the plugin as `/data`.
    pub directory: Option<Spanned<String>>,
    /// Hosts the plugin may reach through the host's HTTP import:
    /// `host[:port][/path-prefix]`.
    #[serde(default)]
    pub http_hosts: Vec<Spanned<String>>,
    /// The longest one HTTP request may take (default 30 s).
    pub http_timeout_secs: Option<Spanned<f64>>,
    /// The largest HTTP response body accepted, in MiB (default 16).
    pub http_max_response_mb: Option<Spanned<u64>>,
    /// Lets hosts granted by name in `http_hosts` resolve to internal addresses
    /// (loopback, private, link-local, ...), for on-premise systems. Default
    /// false: such a name is refused when it connects.
    #[serde(default)]
    pub http_internal: bool,
    /// The one PostgreSQL database the plugin may use (`weir:sql/postgres`).
    pub postgres: Option<PostgresGrantSpec>,
}

/// `[connections.x.grants.postgres]`: the database the host connects the plugin
/// to. The plugin names no address and never sees the password, which is named
/// by environment variable (`password_env = "CRM_PG_PASSWORD"`) and read when
/// the project is loaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresGrantSpec {
    pub host: Spanned<String>,
    /// Default 5432.
    pub port: Option<Spanned<u16>>,
    pub dbname: Spanned<String>,
    pub user: Spanned<String>,
    /// The variable holding the password (none: connect without one).
    pub password_env: Option<Spanned<String>>,
}

/// `[connections.x.auth]`: credentials the host injects into the plugin's HTTP
/// requests, so the plugin never holds them. Secret values are never written in
/// the file: they are named by environment variable (`token_env = "CRM_TOKEN"`)
/// and read when the project is loaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// `bearer`, `basic`, `api_key` or `oauth2_client_credentials`.
    pub kind: Spanned<String>,
    /// bearer: the variable holding the token.
    pub token_env: Option<Spanned<String>>,
    /// basic: the user name.
    pub username: Option<Spanned<String>>,
    /// basic: the variable holding the password.
    pub password_env: Option<Spanned<String>>,
    /// api_key: the header to send (default `X-API-Key`).
    pub header: Option<Spanned<String>>,
    /// api_key: the variable holding the key.
    pub key_env: Option<Spanned<String>>,
    /// oauth2_client_credentials: the token endpoint (must be in `http_hosts`).
    pub token_url: Option<Spanned<String>>,
    /// oauth2_client_credentials: the client id.
    pub client_id: Option<Spanned<String>>,
    /// oauth2_client_credentials: the variable holding the client secret.
    pub client_secret_env: Option<Spanned<String>>,
    /// oauth2_client_credentials: the scope to ask for (optional).
    pub scope: Option<Spanned<String>>,
}

/// Per-call limits; unset values take the runtime's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub memory_mb: Option<Spanned<u64>>,
    pub call_timeout_secs: Option<Spanned<f64>>,
}

/// A source and a destination connection, with organization pairs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSetSpec {
    pub source: Spanned<String>,
    pub destination: Spanned<String>,
    #[serde(default)]
    pub organizations: Vec<OrganizationPairSpec>,
}

/// A source organization and the destination organization it maps to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationPairSpec {
    pub source: String,
    pub destination: String,
}

/// The project: a connection set and its entity tasks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    pub name: Spanned<String>,
    pub connection_set: Spanned<String>,
    /// The source organization of the pair to run (default: the first pair).
    pub organization: Option<Spanned<String>>,
    /// Records per batch (default 500, at most 10,000).
    pub batch_size: Option<Spanned<u32>>,
    /// Lookup tables for `lookup("table", key)` in mapping expressions.
    #[serde(default)]
    pub lookups: BTreeMap<String, BTreeMap<String, String>>,
    /// A cron expression: when `weir serve` runs the project (none = on demand only).
    pub schedule: Option<Spanned<String>>,
    /// The schedule's IANA time zone (default UTC).
    pub timezone: Option<Spanned<String>>,
    #[serde(default)]
    pub retry: RetrySpec,
    #[serde(default)]
    pub notify: NotifySpec,
    pub tasks: Spanned<Vec<TaskSpec>>,
}

/// `[project.retry]`: transient failures and automatic pausing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Tries per call on a transient connection error, the first included.
    pub attempts: Option<Spanned<u32>>,
    pub backoff_secs: Option<Spanned<f64>>,
    pub max_backoff_secs: Option<Spanned<f64>>,
    /// Pause the schedule after this many consecutive Error executions (0 = never).
    pub pause_after_errors: Option<Spanned<u32>>,
}

/// `[project.notify]`: who hears about Warning, Error and recovery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Comma-separated email addresses.
    pub emails: Option<Spanned<String>>,
    #[serde(default)]
    pub webhooks: Vec<Spanned<String>>,
}

/// One entity task: source entity → destination entity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: Option<String>,
    pub source_entity: String,
    pub destination_entity: String,
    /// Destination fields identifying a record for the upsert.
    pub key: Spanned<Vec<String>>,
    pub mappings: Spanned<Vec<Spanned<MappingSpec>>>,
    #[serde(default)]
    pub transforms: Vec<TransformSpec>,
    /// Start each recorded run from the cursor the last finished run ended at.
    #[serde(default)]
    pub incremental: bool,
    /// Stop the task when too many records have failed (none: never).
    pub stop_on_failures: Option<Spanned<StopOnFailuresSpec>>,
    /// What a change of the source or destination entity's schema since the last
    /// successful validation does: `evolve` (default), `freeze`, `discard-row`,
    /// `pause` (see the engine's `drift` module).
    pub schema_change: Option<Spanned<String>>,
    /// The memory, in MiB, the duplicate-key check of one read may hold (default
    /// 80, room for ~1.8 M keys; 1 to 16384): past it, duplicates are no longer
    /// detected, and the run's log says so. Any TOML value, so that a wrong one
    /// (`"64 MiB"`) is refused by a message naming this key, not serde's.
    pub duplicate_check_memory_mb: Option<Spanned<ConfigValue>>,
}

/// `stop_on_failures = { records = 10 }` or `{ percent = 5.0 }` (or both: whichever
/// is crossed first): a task stops when more than this many records, or more than
/// this percentage of the records read, have failed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopOnFailuresSpec {
    pub records: Option<Spanned<u64>>,
    pub percent: Option<Spanned<f64>>,
}

/// One mapping row: a destination field and where its value comes from — a
/// source field (`source`) or a VRL expression over the source record (`expr`).
/// Rows are checked by validation, which reports every problem at once, so
/// nothing here is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    #[serde(default)]
    pub destination: String,
    pub source: Option<String>,
    pub expr: Option<String>,
}

/// A transform plugin step.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    pub plugin: Spanned<String>,
    #[serde(default)]
    pub config: BTreeMap<String, Spanned<ConfigValue>>,
    #[serde(default)]
    pub limits: LimitsSpec,
}
