//! Projects: the validated runtime form, and loading it from a project file.
//!
//! What it is: [`Project`] and its parts (connections, entity tasks, mappings,
//! transform steps), buildable from code (see `examples/embed`) or loaded from
//! TOML by [`Project::load`], which reports every mistake with the file, line
//! and column. What it is not: plugin loading or execution (that is `engine`);
//! this module names no wasmtime type.

mod addresses;
pub mod file;
pub mod schedule;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use weir_types::Config;

use crate::runtime::capabilities::validate_host_grant;
use crate::runtime::{Grants, HttpAuth, HttpLimits, Limits, PostgresGrant, Secret};
pub use addresses::{check_webhook_url, parse_email_list};
use file::{AuthSpec, ConfigValue, GrantsSpec, LimitsSpec, PostgresGrantSpec, ProjectFile};
pub use schedule::{Notify, RetryPolicy, Schedule};

/// The largest batch a project may ask for.
pub const MAX_BATCH_SIZE: u32 = 10_000;
/// The batch size when a project names none.
pub const DEFAULT_BATCH_SIZE: u32 = 500;

/// The prefix of the environment variables any project may name in `*_env`
/// options.
pub const ENV_PREFIX: &str = "WEIR_ENV_";

/// Which environment variables a project's `*_env` options may name. The
/// administrator sets it: `WEIR_ENV_*` always, names listed in the daemon's
/// `[secrets] env_allow`, and never weir's own `WEIR_*` variables (the store's
/// key, the admin token, ...) — a project naming `WEIR_SECRET_KEY` as its bearer
/// token would send the key to any host it is granted. Projects sent through the
/// API read no variable at all: their author is not the one who set the
/// environment, and their secrets belong in a stored connection.
#[derive(Clone, Debug)]
pub struct EnvPolicy {
    /// `false`: no variable may be named (projects sent through the API).
    readable: bool,
    /// Names allowed beyond `WEIR_ENV_*`.
    allow: Vec<String>,
    /// Names never readable whatever their prefix: the daemon's own secrets kept in
    /// variables it was told to read (the SMTP password's).
    deny: Vec<String>,
}

impl Default for EnvPolicy {
    fn default() -> EnvPolicy {
        EnvPolicy {
            readable: true,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

impl EnvPolicy {
    /// `WEIR_ENV_*` and the administrator's `names` (which must not be `WEIR_*`).
    pub fn allowing(names: Vec<String>) -> Result<EnvPolicy, String> {
        if let Some(own) = names.iter().find(|n| is_weirs_own(n)) {
            return Err(format!(
                "`{own}` is one of weir's own variables (`WEIR_*`) and cannot be allowed; name the variable `{ENV_PREFIX}...` instead"
            ));
        }
        Ok(EnvPolicy {
            readable: true,
            allow: names,
            deny: Vec::new(),
        })
    }

    /// Never `var`, even named `WEIR_ENV_*` (a variable holding one of the
    /// daemon's own secrets).
    pub fn denying(mut self, var: &str) -> EnvPolicy {
        self.deny.push(var.to_owned());
        self
    }

    /// No variable at all: for projects sent through the API.
    pub fn none() -> EnvPolicy {
        EnvPolicy {
            readable: false,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }

    /// Whether `var` may be named; the error says why not and what to do.
    pub fn check(&self, var: &str) -> Result<(), String> {
        if !self.readable {
            return Err(format!(
                "environment variable `{var}`: a project sent through the API cannot read the server's environment; store the secret in a connection (`secrets`) and name that connection in the connection set"
            ));
        }
        if self.deny.iter().any(|d| d == var) {
            return Err(format!(
                "environment variable `{var}` holds one of the daemon's own secrets and is never readable by a project"
            ));
        }
        if var.len() > ENV_PREFIX.len() && var.starts_with(ENV_PREFIX) {
            return Ok(());
        }
        if is_weirs_own(var) {
            return Err(format!(
                "environment variable `{var}` is one of weir's own and is never readable by a project; name a variable `{ENV_PREFIX}...`"
            ));
        }
        if self.allow.iter().any(|a| a == var) {
            return Ok(());
        }
        Err(format!(
            "environment variable `{var}` is not allowed: a project may read variables named `{ENV_PREFIX}...` and those the administrator lists in `[secrets] env_allow`"
        ))
    }

    /// The value of `var` if allowed, set and not empty.
    pub fn read(&self, var: &str) -> Result<Secret, String> {
        self.check(var)?;
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            Ok(_) => Err(format!("environment variable `{var}` is empty")),
            Err(_) => Err(format!("environment variable `{var}` is not set")),
        }
    }
}

/// weir's own variables: `WEIR_*` except `WEIR_ENV_*`.
fn is_weirs_own(var: &str) -> bool {
    var.to_ascii_uppercase().starts_with("WEIR_") && !var.starts_with(ENV_PREFIX)
}

/// Every `*_env` option of a connection, by its name in the file, so one check
/// covers them all (a new one added to the file format must be listed here).
fn env_options(conn: &file::ConnectionSpec) -> Vec<(&'static str, &Spanned<String>)> {
    let mut out = Vec::new();
    if let Some(a) = &conn.auth {
        for (name, v) in [
            ("auth.token_env", &a.token_env),
            ("auth.password_env", &a.password_env),
            ("auth.key_env", &a.key_env),
            ("auth.client_secret_env", &a.client_secret_env),
        ] {
            if let Some(v) = v {
                out.push((name, v));
            }
        }
    }
    if let Some(pg) = &conn.grants.postgres
        && let Some(v) = &pg.password_env
    {
        out.push(("grants.postgres.password_env", v));
    }
    out
}

/// A place in a project file, for messages: `project.toml:12:5`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("cannot read project file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{place}: {message}")]
    Invalid { place: Place, message: String },
}

/// Where a plugin comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PluginSource {
    /// A plugin bundled with weir (`csv`, `jsonl`, `normalize`).
    Bundled(String),
    /// A `.wasm` component file.
    File(PathBuf),
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Bundled(name) => write!(f, "{name} (bundled)"),
            PluginSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A plugin reference and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginRef {
    pub source: PluginSource,
    pub place: Option<Place>,
}

impl PluginRef {
    /// A plugin as written in a project file or on the command line: a path if it
    /// looks like one (ends in `.wasm` or has a slash), else a bundled name.
    pub fn parse(value: &str, base: &Path) -> PluginRef {
        let value = value.trim();
        let source = if value.ends_with(".wasm") || value.contains('/') || value.contains('\\') {
            PluginSource::File(base.join(value))
        } else {
            PluginSource::Bundled(value.to_owned())
        };
        PluginRef {
            source,
            place: None,
        }
    }

    pub fn bundled(name: &str) -> PluginRef {
        PluginRef {
            source: PluginSource::Bundled(name.to_owned()),
            place: None,
        }
    }

    pub fn file(path: impl Into<PathBuf>) -> PluginRef {
        PluginRef {
            source: PluginSource::File(path.into()),
            place: None,
        }
    }
}

/// A configured connector with its credentials and grants.
#[derive(Clone, Debug)]
pub struct Connection {
    pub name: String,
    pub plugin: PluginRef,
    pub config: Config,
    pub grants: Grants,
    pub limits: Limits,
    /// The options whose values are stored secrets (a stored connection's,
    /// decrypted for its plugin): the one way an option the plugin declares
    /// secret may reach it. Validation refuses any other secret option.
    pub secret_options: Vec<String>,
    /// Where each option was written, for a connection from a project file.
    pub option_places: BTreeMap<String, Place>,
}

impl Connection {
    /// A connection with no grants and default limits.
    pub fn new(name: &str, plugin: PluginRef) -> Connection {
        Connection {
            name: name.to_owned(),
            plugin,
            config: Config::default(),
            grants: Grants::none(),
            limits: Limits::default(),
            secret_options: Vec::new(),
            option_places: BTreeMap::new(),
        }
    }

    pub fn with_config(mut self, key: &str, value: &str) -> Connection {
        self.config.set(key, value);
        self
    }

    pub fn with_directory(mut self, dir: impl Into<PathBuf>) -> Connection {
        self.grants.directory = Some(dir.into());
        self
    }
}

/// A source organization and the destination organization it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrganizationPair {
    pub source: String,
    pub destination: String,
}

/// Where a mapped value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappingFrom {
    /// A source field, copied as is.
    Field(String),
    /// A VRL expression over the source record (`.first_name + " " + .last_name`).
    Expr(String),
    /// Neither was given (validation reports it).
    Nothing,
    /// Both were given (validation reports it).
    Both { field: String, expr: String },
}

/// One mapping row: a destination field and where its value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub destination: String,
    pub from: MappingFrom,
    /// Where the row is written, for messages.
    pub place: Option<Place>,
}

impl Mapping {
    /// destination ← source field.
    pub fn new(destination: &str, source: &str) -> Mapping {
        Mapping {
            destination: destination.to_owned(),
            from: MappingFrom::Field(source.to_owned()),
            place: None,
        }
    }

    /// destination ← a VRL expression.
    pub fn expr(destination: &str, expr: &str) -> Mapping {
        Mapping {
            destination: destination.to_owned(),
            from: MappingFrom::Expr(expr.to_owned()),
            place: None,
        }
    }

    /// The row as written, for messages: `email ← email` or `name ← .a + .b`.
    pub fn describe(&self) -> String {
        match &self.from {
            MappingFrom::Field(f) => format!("`{}` ← `{f}`", self.destination),
            MappingFrom::Expr(e) => format!("`{}` ← `{e}`", self.destination),
            MappingFrom::Nothing => format!("`{}` ← (nothing)", self.destination),
            MappingFrom::Both { field, expr } => {
                format!("`{}` ← `{field}` and `{expr}`", self.destination)
            }
        }
    }
}

/// A transform plugin step of an entity task.
#[derive(Clone, Debug)]
pub struct TransformStep {
    pub plugin: PluginRef,
    pub config: Config,
    pub limits: Limits,
}

/// Source entity → destination entity, with mappings, key and transforms.
#[derive(Clone, Debug)]
pub struct EntityTask {
    pub name: String,
    pub source_entity: String,
    pub destination_entity: String,
    /// Destination fields identifying a record for the upsert.
    pub key: Vec<String>,
    pub mappings: Vec<Mapping>,
    pub transforms: Vec<TransformStep>,
    /// Each recorded run starts where the last finished one stopped (the source's
    /// cursor), so only new or changed records are read. Off by default: a run reads
    /// the whole entity.
    pub incremental: bool,
    /// When too many failed records stop the task (default: never).
    pub stop_on_failures: FailureThreshold,
    /// What a change of its entities' schemas since the last successful validation
    /// does (default `evolve`).
    pub schema_change: SchemaPolicy,
    /// The memory the duplicate-key check of one read may hold
    /// (`duplicate_check_memory_mb`; default [`KeyCheckBudget::DEFAULT_MIB`]).
    pub duplicate_check: KeyCheckBudget,
}

/// The memory one read's duplicate-key check may hold (`duplicate_check_memory_mb`
/// in a task of the project file): it bounds how many distinct keys the engine
/// remembers per read (`engine::keys`, which turns the budget into a number of
/// keys); past them, duplicates are no longer detected and the run's log says
/// so once. A budget, not a growth: the check never holds more, however many
/// records the read has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCheckBudget {
    bytes: u64,
}

impl KeyCheckBudget {
    /// The default: 80 MiB, room for 1,835,008 keys (the fixed limit it replaces
    /// was 1,000,000 keys in a table that reached ~100 MiB while it grew).
    pub const DEFAULT_MIB: u64 = 80;
    /// The smallest budget a project may set.
    pub const MIN_MIB: u64 = 1;
    /// The largest budget a project may set (16 GiB: 234,881,024 keys).
    pub const MAX_MIB: u64 = 16 * 1024;

    /// A budget of `mib` MiB, [`Self::MIN_MIB`] to [`Self::MAX_MIB`].
    pub fn from_mib(mib: u64) -> Result<KeyCheckBudget, BudgetError> {
        if !(Self::MIN_MIB..=Self::MAX_MIB).contains(&mib) {
            return Err(BudgetError::OutOfRange {
                mib: i64::try_from(mib).unwrap_or(i64::MAX),
            });
        }
        Ok(KeyCheckBudget { bytes: mib << 20 })
    }

    /// The budget in bytes.
    pub fn bytes(self) -> u64 {
        self.bytes
    }
}

impl Default for KeyCheckBudget {
    fn default() -> Self {
        KeyCheckBudget {
            bytes: Self::DEFAULT_MIB << 20,
        }
    }
}

/// A [`KeyCheckBudget`] refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "duplicate_check_memory_mb: {mib} is out of range ({} to {} MiB)",
        KeyCheckBudget::MIN_MIB,
        KeyCheckBudget::MAX_MIB
    )]
    OutOfRange { mib: i64 },
}

/// What a task does when its entities' schemas changed since the recorded baseline
/// (`schema_change = "…"`; the engine's `drift` module applies it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemaPolicy {
    #[default]
    Evolve,
    Freeze,
    DiscardRow,
    Pause,
}

impl SchemaPolicy {
    /// The names a project file accepts.
    pub const NAMES: [&'static str; 4] = ["evolve", "freeze", "discard-row", "pause"];

    pub fn name(self) -> &'static str {
        match self {
            SchemaPolicy::Evolve => "evolve",
            SchemaPolicy::Freeze => "freeze",
            SchemaPolicy::DiscardRow => "discard-row",
            SchemaPolicy::Pause => "pause",
        }
    }

    pub fn parse(name: &str) -> Option<SchemaPolicy> {
        match name {
            "evolve" => Some(SchemaPolicy::Evolve),
            "freeze" => Some(SchemaPolicy::Freeze),
            "discard-row" => Some(SchemaPolicy::DiscardRow),
            "pause" => Some(SchemaPolicy::Pause),
            _ => None,
        }
    }
}

impl fmt::Display for SchemaPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fewest records a task must have read before `stop_on_failures.percent` is
/// judged: without a floor the first bad record of a run would be 100% of it.
pub const PERCENT_THRESHOLD_MIN_READ: u64 = 100;

/// A task's failure threshold (Conduit's nack threshold): the task stops, in Error,
/// once more than `records` records, or more than `percent` % of the records read
/// (judged from [`PERCENT_THRESHOLD_MIN_READ`] records read on), have failed in this
/// run. Both `None` (the default): no threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FailureThreshold {
    pub records: Option<u64>,
    pub percent: Option<f64>,
}

/// Which part of a [`FailureThreshold`] was crossed, and by how much.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThresholdCrossed {
    /// More than `limit` records failed.
    Records { failed: u64, limit: u64 },
    /// More than `limit` % of `read` records failed.
    Percent { failed: u64, read: u64, limit: f64 },
}

impl FailureThreshold {
    /// No threshold.
    pub const NONE: FailureThreshold = FailureThreshold {
        records: None,
        percent: None,
    };

    /// Whether `failed` failures out of `read` records read cross the threshold.
    pub fn crossed(&self, failed: u64, read: u64) -> Option<ThresholdCrossed> {
        if let Some(limit) = self.records
            && failed > limit
        {
            return Some(ThresholdCrossed::Records { failed, limit });
        }
        if let Some(limit) = self.percent
            && read >= PERCENT_THRESHOLD_MIN_READ
            && failed as f64 * 100.0 > limit * read as f64
        {
            return Some(ThresholdCrossed::Percent {
                failed,
                read,
                limit,
            });
        }
        None
    }
}

impl fmt::Display for ThresholdCrossed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThresholdCrossed::Records { failed, limit } => write!(
                f,
                "stopped: {failed} records failed, more than the task's threshold of {limit} (stop_on_failures.records)"
            ),
            ThresholdCrossed::Percent {
                failed,
                read,
                limit,
            } => write!(
                f,
                "stopped: {failed} of {read} records read failed ({:.1}%), more than the task's threshold of {limit}% (stop_on_failures.percent)",
                *failed as f64 * 100.0 / *read as f64
            ),
        }
    }
}

/// A project ready to run.
#[derive(Clone, Debug)]
pub struct Project {
    pub name: String,
    /// The connection set's name, for reports.
    pub connection_set: String,
    pub source: Connection,
    pub destination: Connection,
    pub organization: Option<OrganizationPair>,
    pub batch_size: u32,
    /// Lookup tables for `lookup("table", key)` in mapping expressions.
    pub lookups: BTreeMap<String, BTreeMap<String, String>>,
    pub tasks: Vec<EntityTask>,
    /// When the daemon runs it; `None` = on demand only.
    pub schedule: Option<Schedule>,
    pub retry: RetryPolicy,
    pub notify: Notify,
}

/// Turns byte offsets in one file into places.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn place(&self, offset: usize) -> Place {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Place {
            path: self.path.to_owned(),
            line,
            column,
        }
    }

    fn err<T>(&self, offset: usize, message: impl Into<String>) -> Result<T, ProjectError> {
        Err(ProjectError::Invalid {
            place: self.place(offset),
            message: message.into(),
        })
    }
}

fn names<T>(map: &BTreeMap<String, T>) -> String {
    if map.is_empty() {
        "none are defined".to_owned()
    } else {
        format!(
            "defined: {}",
            map.keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Project {
    /// Loads and validates a project file. Paths inside it are relative to it.
    pub fn load(path: &Path) -> Result<Project, ProjectError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Read {
            path: path.to_owned(),
            source,
        })?;
        Project::parse(path, &text)
    }

    /// Parses and validates project text; `path` names it in errors and anchors
    /// relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Project, ProjectError> {
        Project::parse_with(path, text, &BTreeMap::new())
    }

    /// Like [`Project::parse`], with connections kept elsewhere (the store): a
    /// connection set may name them, and they take precedence over connections of
    /// the same name in the file (the administrator's credentials win).
    pub fn parse_with(
        path: &Path,
        text: &str,
        known: &BTreeMap<String, Connection>,
    ) -> Result<Project, ProjectError> {
        Project::parse_with_env(path, text, known, &EnvPolicy::default())
    }

    /// Like [`Project::parse_with`], reading `*_env` options under `env`.
    pub fn parse_with_env(
        path: &Path,
        text: &str,
        known: &BTreeMap<String, Connection>,
        env: &EnvPolicy,
    ) -> Result<Project, ProjectError> {
        let loc = Locator { path, text };
        let mut file: ProjectFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ProjectError::Invalid {
                place: loc.place(offset),
                message: e.message().trim().to_owned(),
            }
        })?;
        normalize_names(&loc, &mut file)?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let spec = &file.project;
        // Every connection of the file, used or not: one shadowed by a stored
        // connection today is read when that connection is deleted tomorrow.
        for (name, conn) in &file.connections {
            for (option, var) in env_options(conn) {
                if let Err(e) = env.check(var.get_ref()) {
                    return loc.err(
                        var.span().start,
                        format!("connections.{name}.{option}: {e}"),
                    );
                }
            }
        }

        let set_name = spec.connection_set.get_ref();
        let Some(set) = file.connection_sets.get(set_name) else {
            return loc.err(
                spec.connection_set.span().start,
                format!(
                    "project.connection_set: no connection set named `{set_name}` ({})",
                    names(&file.connection_sets)
                ),
            );
        };
        let connection = |name: &Spanned<String>, role: &str| -> Result<Connection, ProjectError> {
            if let Some(stored) = known.get(name.get_ref()) {
                return Ok(stored.clone());
            }
            let Some(conn) = file.connections.get(name.get_ref()) else {
                return loc.err(
                    name.span().start,
                    format!(
                        "connection_sets.{set_name}.{role}: no connection named `{}` ({})",
                        name.get_ref(),
                        if known.is_empty() {
                            names(&file.connections)
                        } else {
                            let mut all: Vec<&str> = file
                                .connections
                                .keys()
                                .chain(known.keys())
                                .map(String::as_str)
                                .collect();
                            all.sort();
                            all.dedup();
                            format!("defined: {}", all.join(", "))
                        }
                    ),
                );
            };
            if let Some(stored) = &conn.connection {
                return stored_connection(&loc, name.get_ref(), conn, stored, known);
            }
            let Some(plugin) = &conn.plugin else {
                return loc.err(
                    name.span().start,
                    format!(
                        "connections.{}: name a `plugin` (or a stored `connection`)",
                        name.get_ref()
                    ),
                );
            };
            let plugin = plugin_ref(&loc, base, plugin)?;
            let directory = conn
                .grants
                .directory
                .as_ref()
                .map(|d| base.join(d.get_ref()));
            Ok(Connection {
                name: name.get_ref().clone(),
                plugin,
                config: config(&conn.config),
                grants: Grants {
                    directory,
                    http_hosts: http_hosts(&loc, &conn.grants)?,
                    http_internal: conn.grants.http_internal,
                    http_auth: match &conn.auth {
                        Some(auth) => Some(http_auth(&loc, auth, env)?),
                        None => None,
                    },
                    http_limits: http_limits(&loc, &conn.grants)?,
                    postgres: match &conn.grants.postgres {
                        Some(spec) => Some(postgres_grant(&loc, spec, env)?),
                        None => None,
                    },
                },
                limits: limits(&loc, &conn.limits)?,
                secret_options: Vec::new(),
                option_places: conn
                    .config
                    .iter()
                    .map(|(k, v)| (k.clone(), loc.place(v.span().start)))
                    .collect(),
            })
        };
        let source = connection(&set.source, "source")?;
        let destination = connection(&set.destination, "destination")?;

        let organization = match &spec.organization {
            None => set.organizations.first().map(|p| OrganizationPair {
                source: p.source.clone(),
                destination: p.destination.clone(),
            }),
            Some(org) => {
                let Some(pair) = set
                    .organizations
                    .iter()
                    .find(|p| &p.source == org.get_ref())
                else {
                    let known: Vec<_> = set
                        .organizations
                        .iter()
                        .map(|p| p.source.as_str())
                        .collect();
                    return loc.err(
                        org.span().start,
                        format!(
                            "project.organization: connection set `{set_name}` pairs no organization `{}` (pairs: {})",
                            org.get_ref(),
                            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                        ),
                    );
                };
                Some(OrganizationPair {
                    source: pair.source.clone(),
                    destination: pair.destination.clone(),
                })
            }
        };

        let batch_size = match &spec.batch_size {
            None => DEFAULT_BATCH_SIZE,
            Some(b) if (1..=MAX_BATCH_SIZE).contains(b.get_ref()) => *b.get_ref(),
            Some(b) => {
                return loc.err(
                    b.span().start,
                    format!(
                        "project.batch_size: {} is out of range (1 to {MAX_BATCH_SIZE})",
                        b.get_ref()
                    ),
                );
            }
        };

        if spec.tasks.get_ref().is_empty() {
            return loc.err(
                spec.tasks.span().start,
                "project.tasks: a project needs at least one entity task",
            );
        }
        let mut tasks = Vec::new();
        for t in spec.tasks.get_ref() {
            let name = t
                .name
                .clone()
                .unwrap_or_else(|| t.destination_entity.clone());
            // Mapping rows and keys are checked by validation, which reports every
            // problem at once; here only their places are recorded.
            let mappings: Vec<Mapping> = t
                .mappings
                .get_ref()
                .iter()
                .map(|m| {
                    let row = m.get_ref();
                    let from = match (&row.source, &row.expr) {
                        (Some(f), None) => MappingFrom::Field(f.clone()),
                        (None, Some(e)) => MappingFrom::Expr(e.clone()),
                        (None, None) => MappingFrom::Nothing,
                        (Some(f), Some(e)) => MappingFrom::Both {
                            field: f.clone(),
                            expr: e.clone(),
                        },
                    };
                    Mapping {
                        destination: row.destination.clone(),
                        from,
                        place: Some(loc.place(m.span().start)),
                    }
                })
                .collect();
            let mut transforms = Vec::new();
            for step in &t.transforms {
                transforms.push(TransformStep {
                    plugin: plugin_ref(&loc, base, &step.plugin)?,
                    config: config(&step.config),
                    limits: limits(&loc, &step.limits)?,
                });
            }
            let schema_change = match &t.schema_change {
                None => SchemaPolicy::default(),
                Some(p) => match SchemaPolicy::parse(p.get_ref()) {
                    Some(policy) => policy,
                    None => {
                        return loc.err(
                            p.span().start,
                            format!(
                                "task `{name}`: schema_change `{}` is not a policy (one of: {})",
                                p.get_ref(),
                                SchemaPolicy::NAMES.join(", ")
                            ),
                        );
                    }
                },
            };
            let duplicate_check = match &t.duplicate_check_memory_mb {
                None => KeyCheckBudget::default(),
                Some(mb) => match mb.get_ref() {
                    file::ConfigValue::Integer(n) => u64::try_from(*n)
                        .map_err(|_| BudgetError::OutOfRange { mib: *n })
                        .and_then(KeyCheckBudget::from_mib)
                        .or_else(|e| loc.err(mb.span().start, format!("task `{name}`: {e}")))?,
                    other => {
                        return loc.err(
                            mb.span().start,
                            format!(
                                "task `{name}`: duplicate_check_memory_mb: {:?} is not a number of MiB (a whole number, {} to {})",
                                other.to_text(),
                                KeyCheckBudget::MIN_MIB,
                                KeyCheckBudget::MAX_MIB
                            ),
                        );
                    }
                },
            };
            tasks.push(EntityTask {
                duplicate_check,
                incremental: t.incremental,
                stop_on_failures: failure_threshold(&loc, &name, t.stop_on_failures.as_ref())?,
                schema_change,
                name,
                source_entity: t.source_entity.clone(),
                destination_entity: t.destination_entity.clone(),
                key: t.key.get_ref().clone(),
                mappings,
                transforms,
            });
        }

        let schedule = match &spec.schedule {
            None => {
                if let Some(tz) = &spec.timezone {
                    return loc.err(
                        tz.span().start,
                        "project.timezone is set but project.schedule is not",
                    );
                }
                None
            }
            Some(expr) => {
                let tz = spec.timezone.as_ref();
                match Schedule::parse(expr.get_ref(), tz.map(|t| t.get_ref().as_str())) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        let at = if e.starts_with("timezone") {
                            tz.map_or(expr.span().start, |t| t.span().start)
                        } else {
                            expr.span().start
                        };
                        return loc.err(at, format!("project.{e}"));
                    }
                }
            }
        };
        let retry = retry_policy(&loc, &spec.retry)?;
        let mut notify = Notify::default();
        if let Some(emails) = &spec.notify.emails {
            notify.emails = match parse_email_list(emails.get_ref()) {
                Ok(list) => list,
                Err(e) => {
                    return loc.err(emails.span().start, format!("project.notify.emails: {e}"));
                }
            };
        }
        for hook in &spec.notify.webhooks {
            if let Err(e) = check_webhook_url(hook.get_ref()) {
                return loc.err(hook.span().start, format!("project.notify.webhooks: {e}"));
            }
            notify.webhooks.push(hook.get_ref().clone());
        }

        Ok(Project {
            schedule,
            retry,
            notify,
            name: spec.name.get_ref().clone(),
            connection_set: set_name.clone(),
            source,
            destination,
            organization,
            batch_size,
            lookups: spec.lookups.clone(),
            tasks,
        })
    }
}

/// `connection = "crm-prod"`: the stored connection as the store holds it
/// (its organization is still checked by validation, like any other). Any other
/// key beside it is refused: the stored connection is the whole definition.
fn stored_connection(
    loc: &Locator<'_>,
    entry: &str,
    spec: &file::ConnectionSpec,
    stored: &Spanned<String>,
    known: &BTreeMap<String, Connection>,
) -> Result<Connection, ProjectError> {
    let beside = spec.plugin.is_some()
        || !spec.config.is_empty()
        || spec.auth.is_some()
        || spec.grants.directory.is_some()
        || !spec.grants.http_hosts.is_empty()
        || spec.grants.postgres.is_some()
        || spec.limits.memory_mb.is_some()
        || spec.limits.call_timeout_secs.is_some();
    if beside {
        return loc.err(
            stored.span().start,
            format!(
                "connections.{entry}: `connection` names a stored connection, which is the whole definition; remove the other keys of the entry"
            ),
        );
    }
    let name = crate::names::normalize(stored.get_ref()).map_err(|e| ProjectError::Invalid {
        place: loc.place(stored.span().start),
        message: format!("connections.{entry}.connection: {e}"),
    })?;
    match known.get(&name) {
        Some(conn) => Ok(conn.clone()),
        None => loc.err(
            stored.span().start,
            format!(
                "connections.{entry}.connection: no stored connection named `{name}` (stored: {})",
                if known.is_empty() {
                    "none; a project file reaches stored connections when it is run or validated with the data directory that holds them".to_owned()
                } else {
                    known.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
                }
            ),
        ),
    }
}

fn retry_policy(loc: &Locator<'_>, spec: &file::RetrySpec) -> Result<RetryPolicy, ProjectError> {
    let mut policy = RetryPolicy::default();
    if let Some(a) = &spec.attempts {
        if !(1..=20).contains(a.get_ref()) {
            return loc.err(
                a.span().start,
                format!(
                    "project.retry.attempts: {} is out of range (1 to 20)",
                    a.get_ref()
                ),
            );
        }
        policy.attempts = *a.get_ref();
    }
    let secs = |v: &Option<Spanned<f64>>, name: &str| -> Result<Option<Duration>, ProjectError> {
        match v {
            None => Ok(None),
            Some(s) if s.get_ref().is_finite() && (0.0..=3600.0).contains(s.get_ref()) => {
                Ok(Some(Duration::from_secs_f64(*s.get_ref())))
            }
            Some(s) => loc.err(
                s.span().start,
                format!(
                    "project.retry.{name}: {} is out of range (0 to 3600 seconds)",
                    s.get_ref()
                ),
            ),
        }
    };
    if let Some(d) = secs(&spec.backoff_secs, "backoff_secs")? {
        policy.backoff = d;
    }
    if let Some(d) = secs(&spec.max_backoff_secs, "max_backoff_secs")? {
        policy.max_backoff = d;
    }
    if policy.max_backoff < policy.backoff {
        policy.max_backoff = policy.backoff;
    }
    if let Some(n) = &spec.pause_after_errors {
        policy.pause_after_errors = *n.get_ref();
    }
    Ok(policy)
}

/// `stop_on_failures` of task `task`, checked: a count, a percentage from 0 to
/// under 100 (more than 100% can never fail), at least one of them.
fn failure_threshold(
    loc: &Locator<'_>,
    task: &str,
    spec: Option<&Spanned<file::StopOnFailuresSpec>>,
) -> Result<FailureThreshold, ProjectError> {
    let Some(spec) = spec else {
        return Ok(FailureThreshold::NONE);
    };
    let inner = spec.get_ref();
    if inner.records.is_none() && inner.percent.is_none() {
        return loc.err(
            spec.span().start,
            format!(
                "task `{task}`: stop_on_failures names no threshold: give `records` (a count) or `percent` (0 to under 100), or both"
            ),
        );
    }
    let percent = match &inner.percent {
        None => None,
        Some(p) if p.get_ref().is_finite() && (0.0..100.0).contains(p.get_ref()) => {
            Some(*p.get_ref())
        }
        Some(p) => {
            return loc.err(
                p.span().start,
                format!(
                    "task `{task}`: stop_on_failures.percent: {} is out of range (0 to under 100)",
                    p.get_ref()
                ),
            );
        }
    };
    Ok(FailureThreshold {
        records: inner.records.as_ref().map(|r| *r.get_ref()),
        percent,
    })
}

fn plugin_ref(
    loc: &Locator<'_>,
    base: &Path,
    plugin: &Spanned<String>,
) -> Result<PluginRef, ProjectError> {
    let value = plugin.get_ref().trim();
    if value.is_empty() {
        return loc.err(
            plugin.span().start,
            "plugin: name a bundled plugin or a .wasm file",
        );
    }
    Ok(PluginRef {
        place: Some(loc.place(plugin.span().start)),
        ..PluginRef::parse(value, base)
    })
}

fn config(values: &BTreeMap<String, Spanned<ConfigValue>>) -> Config {
    Config::new(
        values
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().to_text()))
            .collect(),
    )
}

fn limits(loc: &Locator<'_>, spec: &LimitsSpec) -> Result<Limits, ProjectError> {
    let mut limits = Limits::default();
    if let Some(mb) = &spec.memory_mb {
        limits.memory_bytes = mebibytes(loc, "limits.memory_mb", mb)? as usize;
    }
    if let Some(secs) = &spec.call_timeout_secs {
        limits.call_timeout = seconds(loc, "limits.call_timeout_secs", secs)?;
    }
    Ok(limits)
}

/// A time limit of 0.01 to 3600 seconds.
/// Puts every name in the file — project, connections, connection sets, entity
/// tasks, and the references between them — into NFC, refusing invisible and
/// control characters (`crate::names`), so two spellings of one name are one
/// name everywhere after this.
fn normalize_names(loc: &Locator<'_>, file: &mut ProjectFile) -> Result<(), ProjectError> {
    let spanned = |what: &str, name: &mut Spanned<String>| -> Result<(), ProjectError> {
        match crate::names::normalize(name.get_ref()) {
            Ok(n) => {
                *name.get_mut() = n;
                Ok(())
            }
            Err(e) => loc.err(
                name.span().start,
                format!("{what} {:?}: {e}", name.get_ref()),
            ),
        }
    };
    spanned("project.name", &mut file.project.name)?;
    spanned("project.connection_set", &mut file.project.connection_set)?;
    // Table keys carry no span here; the message names the key instead.
    fn keys<T>(
        loc: &Locator<'_>,
        what: &str,
        map: &mut BTreeMap<String, T>,
    ) -> Result<(), ProjectError> {
        let mut out = BTreeMap::new();
        for (name, value) in std::mem::take(map) {
            let normal = crate::names::normalize(&name)
                .or_else(|e| loc.err(0, format!("{what} {name:?}: {e}")))?;
            if out.contains_key(&normal) {
                return loc.err(
                    0,
                    format!("{what}: two names are `{normal}` once normalized (NFC)"),
                );
            }
            out.insert(normal, value);
        }
        *map = out;
        Ok(())
    }
    keys(loc, "connections", &mut file.connections)?;
    keys(loc, "connection_sets", &mut file.connection_sets)?;
    for set in file.connection_sets.values_mut() {
        spanned("source", &mut set.source)?;
        spanned("destination", &mut set.destination)?;
    }
    for (i, task) in file.project.tasks.get_mut().iter_mut().enumerate() {
        if let Some(name) = &task.name {
            task.name = Some(
                crate::names::normalize(name)
                    .or_else(|e| loc.err(0, format!("project.tasks[{i}].name {name:?}: {e}")))?,
            );
        }
    }
    Ok(())
}

fn seconds(loc: &Locator<'_>, name: &str, secs: &Spanned<f64>) -> Result<Duration, ProjectError> {
    let s = *secs.get_ref();
    if !(0.01..=3600.0).contains(&s) {
        return loc.err(secs.span().start, format!("{name}: must be 0.01 to 3600"));
    }
    Ok(Duration::from_secs_f64(s))
}

/// A size of 1 to 1024 MiB, in bytes.
fn mebibytes(loc: &Locator<'_>, name: &str, mb: &Spanned<u64>) -> Result<u64, ProjectError> {
    if !(1..=1024).contains(mb.get_ref()) {
        return loc.err(mb.span().start, format!("{name}: must be 1 to 1024"));
    }
    Ok(*mb.get_ref() << 20)
}

fn http_hosts(loc: &Locator<'_>, spec: &GrantsSpec) -> Result<Vec<String>, ProjectError> {
    let mut hosts = Vec::new();
    for h in &spec.http_hosts {
        if let Err(e) = validate_host_grant(h.get_ref()) {
            return loc.err(h.span().start, format!("grants.http_hosts: {e}"));
        }
        hosts.push(h.get_ref().clone());
    }
    Ok(hosts)
}

fn http_limits(loc: &Locator<'_>, spec: &GrantsSpec) -> Result<HttpLimits, ProjectError> {
    let mut limits = HttpLimits::default();
    if let Some(secs) = &spec.http_timeout_secs {
        limits.timeout = seconds(loc, "grants.http_timeout_secs", secs)?;
    }
    if let Some(mb) = &spec.http_max_response_mb {
        limits.max_response_bytes = mebibytes(loc, "grants.http_max_response_mb", mb)?;
    }
    Ok(limits)
}

/// The default PostgreSQL port.
const POSTGRES_PORT: u16 = 5432;

/// `[connections.x.grants.postgres]` into the grant; the password is read from
/// the environment variable the table names.
fn postgres_grant(
    loc: &Locator<'_>,
    spec: &PostgresGrantSpec,
    env: &EnvPolicy,
) -> Result<PostgresGrant, ProjectError> {
    let password = match &spec.password_env {
        None => None,
        Some(var) => match env.read(var.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                return loc.err(
                    var.span().start,
                    format!("grants.postgres.password_env: {e}"),
                );
            }
        },
    };
    let grant = PostgresGrant {
        host: spec.host.get_ref().clone(),
        port: spec.port.as_ref().map_or(POSTGRES_PORT, |p| *p.get_ref()),
        dbname: spec.dbname.get_ref().clone(),
        user: spec.user.get_ref().clone(),
        password,
    };
    if let Err(e) = grant.validate() {
        let at = if e.starts_with("postgres.dbname") {
            spec.dbname.span().start
        } else if e.starts_with("postgres.user") {
            spec.user.span().start
        } else if e.starts_with("postgres.port") {
            spec.port
                .as_ref()
                .map_or(spec.host.span().start, |p| p.span().start)
        } else {
            spec.host.span().start
        };
        return loc.err(at, format!("grants.{e}"));
    }
    Ok(grant)
}

/// Option names of a *stored* connection that grant a PostgreSQL database
/// rather than configure the plugin (the plugin never receives them):
/// `postgres.host`, `postgres.port` (default 5432), `postgres.dbname`,
/// `postgres.user`, and the secret `postgres.password`.
pub const STORED_POSTGRES_PREFIX: &str = "postgres.";

/// The PostgreSQL grant a stored connection's `postgres.*` options describe
/// (`None` when it has none). `options` are the plain options, `secrets` the
/// decrypted ones.
pub fn postgres_grant_from_stored(
    options: &[(String, String)],
    secrets: &[(String, String)],
) -> Result<Option<PostgresGrant>, String> {
    let key = |name: &str| format!("{STORED_POSTGRES_PREFIX}{name}");
    let option = |name: &str| {
        options
            .iter()
            .find(|(k, _)| *k == key(name))
            .map(|(_, v)| v.clone())
    };
    if options.iter().any(|(k, _)| *k == key("password")) {
        return Err(format!(
            "`{}` must be stored as a secret, not as an option",
            key("password")
        ));
    }
    let any = options
        .iter()
        .chain(secrets)
        .any(|(k, _)| k.starts_with(STORED_POSTGRES_PREFIX));
    if !any {
        return Ok(None);
    }
    let needed = |name: &str| {
        option(name).ok_or_else(|| format!("a PostgreSQL grant needs the option `{}`", key(name)))
    };
    let port = match option("port") {
        None => POSTGRES_PORT,
        Some(p) => p
            .parse()
            .map_err(|_| format!("`{}`: `{p}` is not a port number", key("port")))?,
    };
    let grant = PostgresGrant {
        host: needed("host")?,
        port,
        dbname: needed("dbname")?,
        user: needed("user")?,
        password: secrets
            .iter()
            .find(|(k, _)| *k == key("password"))
            .map(|(_, v)| Secret::new(v.clone())),
    };
    grant.validate()?;
    Ok(Some(grant))
}

/// The kinds of `[connections.x.auth]` and the keys each one takes.
const AUTH_KINDS: &[(&str, &[&str])] = &[
    ("bearer", &["token_env"]),
    ("basic", &["username", "password_env"]),
    ("api_key", &["header", "key_env"]),
    (
        "oauth2_client_credentials",
        &["token_url", "client_id", "client_secret_env", "scope"],
    ),
];

/// `[connections.x.auth]` into the credential the host injects; secrets are
/// read from the environment variables the table names.
fn http_auth(
    loc: &Locator<'_>,
    spec: &AuthSpec,
    env: &EnvPolicy,
) -> Result<HttpAuth, ProjectError> {
    let kind = spec.kind.get_ref().as_str();
    let Some((_, allowed)) = AUTH_KINDS.iter().find(|(k, _)| *k == kind) else {
        let kinds: Vec<&str> = AUTH_KINDS.iter().map(|(k, _)| *k).collect();
        return loc.err(
            spec.kind.span().start,
            format!(
                "auth.kind: unknown kind `{kind}` (one of: {})",
                kinds.join(", ")
            ),
        );
    };
    let given = [
        ("token_env", &spec.token_env),
        ("username", &spec.username),
        ("password_env", &spec.password_env),
        ("header", &spec.header),
        ("key_env", &spec.key_env),
        ("token_url", &spec.token_url),
        ("client_id", &spec.client_id),
        ("client_secret_env", &spec.client_secret_env),
        ("scope", &spec.scope),
    ];
    for (name, value) in given {
        if let Some(v) = value {
            if !allowed.contains(&name) {
                return loc.err(
                    v.span().start,
                    format!(
                        "auth.{name}: not used by kind `{kind}` (it takes: {})",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }
    let required = |name: &str, value: &Option<Spanned<String>>| -> Result<String, ProjectError> {
        match value {
            Some(v) if !v.get_ref().trim().is_empty() => Ok(v.get_ref().clone()),
            Some(v) => loc.err(v.span().start, format!("auth.{name}: must not be empty")),
            None => loc.err(
                spec.kind.span().start,
                format!("auth: kind `{kind}` needs `{name}`"),
            ),
        }
    };
    let secret = |name: &str, value: &Option<Spanned<String>>| -> Result<Secret, ProjectError> {
        let var = required(name, value)?;
        let at = value.as_ref().map_or(0, |v| v.span().start);
        env.read(&var)
            .or_else(|e| loc.err(at, format!("auth.{name}: {e}")))
    };
    Ok(match kind {
        "bearer" => HttpAuth::Bearer {
            token: secret("token_env", &spec.token_env)?,
        },
        "basic" => HttpAuth::Basic {
            username: required("username", &spec.username)?,
            password: secret("password_env", &spec.password_env)?,
        },
        "api_key" => {
            let header = spec
                .header
                .as_ref()
                .map_or_else(|| "X-API-Key".to_owned(), |h| h.get_ref().clone());
            if let Err(e) = check_auth_header(&header) {
                let at = spec.header.as_ref().map_or(0, |h| h.span().start);
                return loc.err(at, format!("auth.header: {e}"));
            }
            HttpAuth::ApiKey {
                header,
                key: secret("key_env", &spec.key_env)?,
            }
        }
        _ => {
            let token_url = required("token_url", &spec.token_url)?;
            if !token_url.starts_with("https://") && !token_url.starts_with("http://") {
                let at = spec.token_url.as_ref().map_or(0, |u| u.span().start);
                return loc.err(at, "auth.token_url: must be an http(s) URL");
            }
            HttpAuth::OAuth2ClientCredentials {
                token_url,
                client_id: required("client_id", &spec.client_id)?,
                client_secret: secret("client_secret_env", &spec.client_secret_env)?,
                scope: spec.scope.as_ref().map(|s| s.get_ref().clone()),
            }
        }
    })
}

fn check_auth_header(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a header name"))
    }
}

/// Option names of a *stored* connection that configure the host's HTTP
/// credentials rather than the plugin (the plugin never receives them):
/// `auth.kind` (`bearer`, `basic`, `api_key`, `oauth2_client_credentials`);
/// the secrets `auth.token`, `auth.password`, `auth.key`, `auth.client_secret`
/// (which must be stored as secrets); and `auth.username`, `auth.header`,
/// `auth.token_url`, `auth.client_id`, `auth.scope`.
pub const STORED_AUTH_PREFIX: &str = "auth.";

/// The `auth.*` options that are not credentials.
const STORED_AUTH_PLAIN: &[&str] = &[
    "kind",
    "username",
    "header",
    "token_url",
    "client_id",
    "scope",
];

/// Whether a stored connection's option is a secret by convention, whatever
/// the plugin declares: an `auth.*` credential (any `auth.` key but the plain
/// ones, so a new credential kind is secret by default) or the PostgreSQL
/// password.
pub fn is_stored_secret_option(key: &str) -> bool {
    match key.strip_prefix(STORED_AUTH_PREFIX) {
        Some(rest) => !STORED_AUTH_PLAIN.contains(&rest),
        None => key == format!("{STORED_POSTGRES_PREFIX}password"),
    }
}

/// The credential a stored connection's `auth.*` options describe (`None` when
/// it has none). `options` are the plain options, `secrets` the decrypted ones.
pub fn http_auth_from_stored(
    options: &[(String, String)],
    secrets: &[(String, String)],
) -> Result<Option<HttpAuth>, String> {
    let option = |name: &str| {
        options
            .iter()
            .chain(secrets)
            .find(|(k, _)| k == &format!("{STORED_AUTH_PREFIX}{name}"))
            .map(|(_, v)| v.clone())
    };
    let secret = |name: &str| -> Result<Secret, String> {
        let key = format!("{STORED_AUTH_PREFIX}{name}");
        if options.iter().any(|(k, _)| k == &key) {
            return Err(format!(
                "`{key}` must be stored as a secret, not as an option"
            ));
        }
        secrets
            .iter()
            .find(|(k, _)| k == &key)
            .map(|(_, v)| Secret::new(v.clone()))
            .ok_or_else(|| format!("`{STORED_AUTH_PREFIX}kind` needs the secret `{key}`"))
    };
    let needed = |name: &str| {
        option(name).ok_or_else(|| {
            format!("`{STORED_AUTH_PREFIX}kind` needs the option `{STORED_AUTH_PREFIX}{name}`")
        })
    };
    let Some(kind) = option("kind") else {
        let stray = options
            .iter()
            .chain(secrets)
            .find(|(k, _)| k.starts_with(STORED_AUTH_PREFIX));
        return match stray {
            Some((k, _)) => Err(format!(
                "`{k}` is set but `{STORED_AUTH_PREFIX}kind` is not"
            )),
            None => Ok(None),
        };
    };
    Ok(Some(match kind.as_str() {
        "bearer" => HttpAuth::Bearer {
            token: secret("token")?,
        },
        "basic" => HttpAuth::Basic {
            username: needed("username")?,
            password: secret("password")?,
        },
        "api_key" => {
            let header = option("header").unwrap_or_else(|| "X-API-Key".to_owned());
            check_auth_header(&header)?;
            HttpAuth::ApiKey {
                header,
                key: secret("key")?,
            }
        }
        "oauth2_client_credentials" => HttpAuth::OAuth2ClientCredentials {
            token_url: needed("token_url")?,
            client_id: needed("client_id")?,
            client_secret: secret("client_secret")?,
            scope: option("scope"),
        },
        other => {
            return Err(format!(
                "`{STORED_AUTH_PREFIX}kind`: unknown kind `{other}` (one of: bearer, basic, api_key, oauth2_client_credentials)"
            ));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[connections.src]
plugin = "csv"
grants = { directory = "in" }

[connections.dst]
plugin = "plugins/dest.wasm"
config = { delimiter = ";", retries = 3 }

[connection_sets.main]
source = "src"
destination = "dst"

[project]
name = "p"
connection_set = "main"

[[project.tasks]]
source_entity = "contacts"
destination_entity = "people"
key = ["id"]
mappings = [
  { destination = "id", source = "contact_id" },
  { destination = "email", source = "email" },
]
"#;

    fn parse(text: &str) -> Result<Project, ProjectError> {
        Project::parse(Path::new("dir/project.toml"), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_loads_with_relative_paths_resolved() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.source.plugin.source, PluginSource::Bundled("csv".into()));
        assert_eq!(
            p.destination.plugin.source,
            PluginSource::File("dir/plugins/dest.wasm".into())
        );
        assert_eq!(p.source.grants.directory, Some("dir/in".into()));
        assert_eq!(p.destination.config.get("retries"), Some("3"));
        assert_eq!(p.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(p.tasks[0].name, "people");
    }

    #[test]
    fn the_duplicate_check_budget_is_set_per_task_and_checked() {
        assert_eq!(
            parse(GOOD).unwrap().tasks[0].duplicate_check,
            KeyCheckBudget::default()
        );
        let with = |mb: &str| {
            GOOD.replace(
                "key = [\"id\"]",
                &format!("key = [\"id\"]\nduplicate_check_memory_mb = {mb}"),
            )
        };
        let p = parse(&with("256")).unwrap();
        assert_eq!(p.tasks[0].duplicate_check.bytes(), 256 << 20);
        for bad in ["0", "16385"] {
            let e = err(&with(bad));
            assert!(
                e.contains(&format!(
                    "task `people`: duplicate_check_memory_mb: {bad} is out of range (1 to 16384 MiB)"
                )),
                "{e}"
            );
            assert!(e.contains("project.toml:"), "the place is named: {e}");
        }
        let e = err(&with("\"64 MiB\""));
        assert!(
            e.contains(
                "task `people`: duplicate_check_memory_mb: \"64 MiB\" is not a number of MiB (a whole number, 1 to 16384)"
            ),
            "{e}"
        );
        let e = err(&with("-1"));
        assert!(
            e.contains("duplicate_check_memory_mb: -1 is out of range"),
            "{e}"
        );
    }

    #[test]
    fn names_are_nfc_and_bidi_or_zero_width_characters_are_refused_by_code_point() {
        // TOML escapes (`\u202E`), so the file itself is plain ASCII.
        let e = err(&GOOD.replace(r#"name = "p""#, r#"name = "p\u202Eevil""#));
        assert!(e.contains("project.name \""), "{e}");
        assert!(
            e.contains(": it contains U+202E RIGHT-TO-LEFT OVERRIDE, which makes names look alike"),
            "{e}"
        );
        let e = err(&GOOD
            .replace("[connections.src]", r#"[connections."s\u200Brc"]"#)
            .replace(r#"source = "src""#, r#"source = "s\u200Brc""#));
        assert!(e.contains("connections \""), "{e}");
        assert!(e.contains(": it contains U+200B ZERO WIDTH SPACE"), "{e}");
        // The project named with a decomposed é is the project named with the
        // composed one; references between names are normalized alike.
        let p = parse(
            &GOOD
                .replace(r#"name = "p""#, r#"name = "cafe\u0301""#)
                .replace("[connections.src]", r#"[connections."caf\u00e9"]"#)
                .replace(r#"source = "src""#, r#"source = "cafe\u0301""#),
        )
        .unwrap();
        assert_eq!(p.name, "caf\u{e9}");
        assert_eq!(p.source.name, "caf\u{e9}");
    }

    #[test]
    fn unknown_key_is_named_with_line_and_column() {
        let text = GOOD.replace("name = \"p\"", "name = \"p\"\nschedul = \"x\"");
        let e = err(&text);
        assert!(e.starts_with("dir/project.toml:16:1:"), "{e}");
        assert!(e.contains("unknown field `schedul`"), "{e}");
    }

    #[test]
    fn wrong_type_is_named_with_its_place() {
        let text = GOOD.replace("name = \"p\"", "name = \"p\"\nbatch_size = \"big\"");
        let e = err(&text);
        assert!(e.starts_with("dir/project.toml:16:14:"), "{e}");
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn missing_connection_lists_the_defined_ones() {
        let text = GOOD.replace("destination = \"dst\"", "destination = \"dts\"");
        let e = err(&text);
        assert!(e.starts_with("dir/project.toml:12:15:"), "{e}");
        assert!(
            e.contains("no connection named `dts` (defined: dst, src)"),
            "{e}"
        );
    }

    #[test]
    fn batch_size_out_of_range_is_refused() {
        let text = GOOD.replace("name = \"p\"", "name = \"p\"\nbatch_size = 0");
        assert!(err(&text).contains("project.batch_size: 0 is out of range"));
    }

    #[test]
    fn auth_reads_secrets_from_the_environment_only() {
        let with = |auth: &str| {
            GOOD.replace(
                "config = { delimiter = \";\", retries = 3 }",
                &format!(
                    "config = {{ delimiter = \";\" }}\ngrants = {{ http_hosts = [\"api.example.com/v2/\"], http_timeout_secs = 5 }}\nauth = {auth}"
                ),
            )
        };
        // PATH is set wherever the tests run; its value stands in for a token.
        let path_allowed = EnvPolicy::allowing(vec!["PATH".to_owned()]).unwrap();
        let p = Project::parse_with_env(
            Path::new("dir/project.toml"),
            &with("{ kind = \"bearer\", token_env = \"PATH\" }"),
            &BTreeMap::new(),
            &path_allowed,
        )
        .unwrap();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            p.destination.grants.http_auth,
            Some(HttpAuth::Bearer {
                token: Secret::new(path.clone())
            })
        );
        assert_eq!(p.destination.grants.http_hosts, vec!["api.example.com/v2/"]);
        assert_eq!(
            p.destination.grants.http_limits.timeout,
            Duration::from_secs(5)
        );
        assert!(
            !p.destination.grants.http_internal,
            "public addresses only by default"
        );
        assert!(!format!("{:?}", p.destination).contains(&path));
        let e = err(&with(
            "{ kind = \"bearer\", token_env = \"WEIR_ENV_TEST_SURELY_UNSET_VAR\" }",
        ));
        assert!(
            e.contains("environment variable `WEIR_ENV_TEST_SURELY_UNSET_VAR` is not set"),
            "{e}"
        );
        // A literal secret is an unknown key, not a silently accepted one.
        let e = err(&with("{ kind = \"bearer\", token = \"abc\" }"));
        assert!(e.contains("unknown field `token`"), "{e}");
        let e = err(&with("{ kind = \"basic\", token_env = \"WEIR_ENV_X\" }"));
        assert!(
            e.contains("auth.token_env: not used by kind `basic`"),
            "{e}"
        );
        let e = err(&with("{ kind = \"magic\" }"));
        assert!(e.contains("auth.kind: unknown kind `magic`"), "{e}");
        let e = err(&with(
            "{ kind = \"oauth2_client_credentials\", client_id = \"c\", client_secret_env = \"WEIR_ENV_X\" }",
        ));
        assert!(e.contains("needs `token_url`"), "{e}");
        let bad_host = GOOD.replace(
            "grants = { directory = \"in\" }",
            "grants = { directory = \"in\", http_hosts = [\"https://x.com\"] }",
        );
        assert!(err(&bad_host).contains("grants.http_hosts: http host grant `https://x.com`"));
        let internal = GOOD.replace(
            "grants = { directory = \"in\" }",
            "grants = { directory = \"in\", http_hosts = [\"erp.corp.local\"], http_internal = true }",
        );
        assert!(parse(&internal).unwrap().source.grants.http_internal);
    }

    #[test]
    fn env_options_read_only_allowed_variables() {
        let with = |auth: &str| {
            GOOD.replace(
                "config = { delimiter = \";\", retries = 3 }",
                &format!(
                    "config = {{ delimiter = \";\" }}\ngrants = {{ http_hosts = [\"api.example.com\"] }}\nauth = {auth}"
                ),
            )
        };
        let parse_env = |text: &str, env: &EnvPolicy| {
            Project::parse_with_env(Path::new("dir/project.toml"), text, &BTreeMap::new(), env)
                .map_err(|e| e.to_string())
        };
        let standard = EnvPolicy::default();
        for own in [
            "WEIR_SECRET_KEY",
            "WEIR_ADMIN_TOKEN",
            "WEIR_SECRET_KEY_FILE",
            "WEIR_SMTP_PASSWORD",
            "weir_secret_key",
        ] {
            let e = parse_env(
                &with(&format!("{{ kind = \"bearer\", token_env = \"{own}\" }}")),
                &standard,
            )
            .unwrap_err();
            assert!(e.contains(&format!("connections.dst.auth.token_env: environment variable `{own}` is one of weir's own")), "{e}");
        }
        let e = parse_env(
            &with("{ kind = \"bearer\", token_env = \"HOME\" }"),
            &standard,
        )
        .unwrap_err();
        assert!(e.contains("`HOME` is not allowed"), "{e}");
        // Allowed by the administrator; and `WEIR_ENV_*` always (here: unset).
        let home = EnvPolicy::allowing(vec!["HOME".to_owned()]).unwrap();
        assert!(parse_env(&with("{ kind = \"bearer\", token_env = \"HOME\" }"), &home).is_ok());
        let e = parse_env(
            &with("{ kind = \"api_key\", key_env = \"WEIR_ENV_SURELY_UNSET\" }"),
            &standard,
        )
        .unwrap_err();
        assert!(
            e.contains("auth.key_env: environment variable `WEIR_ENV_SURELY_UNSET` is not set"),
            "{e}"
        );
        assert!(EnvPolicy::allowing(vec!["WEIR_ADMIN_TOKEN".to_owned()]).is_err());
        // Through the API: none at all, even in a connection the set does not use.
        let unused = format!(
            "{}\n[connections.spare]\nplugin = \"csv\"\n[connections.spare.grants.postgres]\nhost = \"h\"\ndbname = \"d\"\nuser = \"u\"\npassword_env = \"WEIR_ENV_PG\"\n",
            GOOD
        );
        let e = parse_env(&unused, &EnvPolicy::none()).unwrap_err();
        assert!(e.contains("connections.spare.grants.postgres.password_env: environment variable `WEIR_ENV_PG`: a project sent through the API"), "{e}");
        assert!(parse_env(GOOD, &EnvPolicy::none()).is_ok());
    }

    #[test]
    fn stored_auth_options_need_their_secrets() {
        let o = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(http_auth_from_stored(&o(&[("x", "1")]), &[]), Ok(None));
        assert_eq!(
            http_auth_from_stored(
                &o(&[("auth.kind", "api_key"), ("auth.header", "X-Token")]),
                &o(&[("auth.key", "k-123")])
            ),
            Ok(Some(HttpAuth::ApiKey {
                header: "X-Token".into(),
                key: Secret::new("k-123")
            }))
        );
        let e = http_auth_from_stored(&o(&[("auth.kind", "bearer"), ("auth.token", "t")]), &[])
            .unwrap_err();
        assert!(e.contains("must be stored as a secret"), "{e}");
        let e = http_auth_from_stored(&[], &o(&[("auth.token", "t")])).unwrap_err();
        assert!(e.contains("`auth.kind` is not"), "{e}");
        let e = http_auth_from_stored(&o(&[("auth.kind", "oauth2_client_credentials")]), &[])
            .unwrap_err();
        assert!(e.contains("auth.token_url"), "{e}");
    }
}
