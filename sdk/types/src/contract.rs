//! The contract's plain data types (mirroring `wit/since_v0.2.0/types.wit` and
//! `connector.wit`); the host and the SDK convert generated bindings to these.

use std::fmt;
use std::str::FromStr;

use crate::{Batch, FieldType};

/// A connection's or transform's configuration: the `key = value` pairs from the
/// project file.
#[derive(Clone, Debug, Default)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    pub fn new(entries: Vec<(String, String)>) -> Config {
        Config { entries }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`, or an [`PluginError::InvalidConfig`] naming it.
    pub fn require(&self, key: &str) -> Result<&str, PluginError> {
        self.get(key)
            .ok_or_else(|| PluginError::config(format!("missing configuration option `{key}`")))
    }

    /// The value of `key` parsed as `T`, `default` if unset; an error naming the
    /// option and the value if it does not parse.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, PluginError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| {
                PluginError::config(format!(
                    "configuration option `{key}`: cannot read `{v}` as {}",
                    std::any::type_name::<T>()
                ))
            }),
        }
    }

    /// A comma-separated list option (empty items dropped).
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The pairs as the generated bindings want them.
    #[allow(clippy::ptr_arg)]
    pub fn pairs(&self) -> &Vec<(String, String)> {
        &self.entries
    }

    /// Sets `key` (replacing an earlier value).
    pub fn set(&mut self, key: &str, value: &str) {
        self.entries.retain(|(k, _)| k != key);
        self.entries.push((key.to_owned(), value.to_owned()));
    }
}

/// Why a whole call failed (WIT `error`). A bad *record* is not an error of the
/// call: return [`UpsertOutcome::Failed`] or a transform failure instead.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PluginError {
    /// The configuration or request is wrong; retrying will not help.
    InvalidConfig(String),
    /// The connection failed; `transient` when retrying later may succeed.
    Connection {
        message: String,
        transient: bool,
        retry_after_ms: Option<u64>,
    },
    /// An unexpected state inside the plugin.
    Internal(String),
}

impl PluginError {
    pub fn config(message: impl Into<String>) -> PluginError {
        PluginError::InvalidConfig(message.into())
    }

    /// A connection failure that may pass (timeout, host down).
    pub fn transient(message: impl Into<String>) -> PluginError {
        PluginError::Connection {
            message: message.into(),
            transient: true,
            retry_after_ms: None,
        }
    }

    /// A connection failure that will not pass by itself (credentials refused).
    pub fn connection(message: impl Into<String>) -> PluginError {
        PluginError::Connection {
            message: message.into(),
            transient: false,
            retry_after_ms: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> PluginError {
        PluginError::Internal(message.into())
    }

    /// An I/O error on `what` (a path, usually): a missing or forbidden file is a
    /// configuration problem, anything else an internal one.
    pub fn io(what: &str, err: std::io::Error) -> PluginError {
        use std::io::ErrorKind::*;
        match err.kind() {
            NotFound | PermissionDenied | NotADirectory | IsADirectory | InvalidInput => {
                PluginError::config(format!("{what}: {err}"))
            }
            _ => PluginError::internal(format!("{what}: {err}")),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::InvalidConfig(m) => write!(f, "invalid configuration: {m}"),
            PluginError::Connection { message, .. } => write!(f, "connection failed: {message}"),
            PluginError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// Why one record was refused.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RecordError {
    pub message: String,
    pub field: Option<String>,
}

impl RecordError {
    pub fn new(message: impl Into<String>) -> RecordError {
        RecordError {
            message: message.into(),
            field: None,
        }
    }

    /// A record error about one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> RecordError {
        RecordError {
            message: message.into(),
            field: Some(field.into()),
        }
    }
}

/// What happened to one upserted record.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum UpsertOutcome {
    /// The key was new: a record was added.
    Inserted,
    /// The key existed and its record was changed (or the destination cannot tell
    /// whether it changed).
    Updated,
    /// The key existed and the destination already held these values: nothing was
    /// written. Contract 0.2.0; a 0.1.0 plugin never answers it.
    Unchanged,
    /// The record was refused; the rest of the batch goes on.
    Failed(RecordError),
}

/// A capability a plugin asks for; the connection grants it or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Capability {
    /// A directory of files, seen by the plugin as `/data`.
    Files,
    /// Outgoing HTTP through the `http` import.
    Http,
}

/// A configuration option the plugin understands.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ConfigField {
    pub name: String,
    pub description: String,
    pub required: bool,
    pub secret: bool,
    pub default_value: Option<String>,
}

impl ConfigField {
    /// An optional, non-secret option.
    pub fn new(name: &str, description: &str) -> ConfigField {
        ConfigField {
            name: name.to_owned(),
            description: description.to_owned(),
            required: false,
            secret: false,
            default_value: None,
        }
    }

    pub fn required(mut self) -> ConfigField {
        self.required = true;
        self
    }

    /// Marks a credential: encrypted at rest by the host, never logged.
    pub fn secret(mut self) -> ConfigField {
        self.secret = true;
        self
    }

    pub fn default_value(mut self, value: &str) -> ConfigField {
        self.default_value = Some(value.to_owned());
        self
    }
}

/// What a plugin says about itself.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub config: Vec<ConfigField>,
    pub capabilities: Vec<Capability>,
}

impl PluginInfo {
    pub fn new(name: &str, version: &str, description: &str) -> PluginInfo {
        PluginInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            description: description.to_owned(),
            config: Vec::new(),
            capabilities: Vec::new(),
        }
    }

    pub fn option(mut self, field: ConfigField) -> PluginInfo {
        self.config.push(field);
        self
    }

    pub fn capability(mut self, capability: Capability) -> PluginInfo {
        self.capabilities.push(capability);
        self
    }
}

/// One field of an entity.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FieldSchema {
    pub name: String,
    pub field_type: FieldType,
    pub required: bool,
    pub description: String,
}

impl FieldSchema {
    pub fn new(name: &str, field_type: FieldType) -> FieldSchema {
        FieldSchema {
            name: name.to_owned(),
            field_type,
            required: false,
            description: String::new(),
        }
    }

    pub fn required(mut self) -> FieldSchema {
        self.required = true;
        self
    }
}

/// An entity a connector reads or writes.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EntitySchema {
    pub name: String,
    pub fields: Vec<FieldSchema>,
    pub key_fields: Vec<String>,
    pub readable: bool,
    pub writable: bool,
}

/// An organization inside a system.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub kind: String,
}

/// A request for the next page of an entity.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReadRequest {
    pub entity: String,
    pub organization: Option<String>,
    /// `None` to start at the beginning; otherwise a `next_cursor` returned earlier.
    pub cursor: Option<String>,
    pub max_records: u32,
}

/// A source record that could not be read.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Rejected {
    /// Where it is in the source, for people: `line 17`, an id.
    pub position: String,
    /// Its key, when it could be read.
    pub key: Option<String>,
    pub error: RecordError,
}

/// One page of records.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadPage {
    pub records: Batch,
    /// Records of this page that could not be read (stage "pull").
    pub rejected: Vec<Rejected>,
    /// The position after this page, to resume from.
    pub next_cursor: Option<String>,
    /// No records remain after this page.
    pub done: bool,
}

/// A request to open a writer.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WriteRequest {
    pub entity: String,
    pub organization: Option<String>,
    pub key_fields: Vec<String>,
}

/// The result of `Transform::transform`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transformed {
    /// One output record per input record.
    pub records: Batch,
    /// `(input index, why)` for the records that could not be transformed.
    pub failures: Vec<(u32, RecordError)>,
}

impl Transformed {
    /// Every record transformed.
    pub fn ok(records: Batch) -> Transformed {
        Transformed {
            records,
            failures: Vec::new(),
        }
    }
}
