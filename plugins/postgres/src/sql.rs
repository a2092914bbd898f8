//! The `weir:sql/postgres` import, and its errors as the contract's errors.
//!
//! The host connects to the database the connection's grant names (the plugin
//! knows neither the address nor the password) and keeps one session per
//! plugin instance, so a transaction opened in `open-writer` goes on through
//! `upsert` to `finish`.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/sql/since_v0.1.0",
        world: "postgres-client",
    });
}

use bindings::weir::sql::postgres as wit;
pub use bindings::weir::sql::postgres::{
    ConnectFailure, DbValue, Error as SqlError, QueryError, RowOutcome, RowSet,
};
use weir_sdk::Error;

pub fn query(statement: &str, params: &[DbValue]) -> Result<RowSet, Error> {
    wit::query(statement, params).map_err(error)
}

pub fn execute(statement: &str, params: &[DbValue]) -> Result<u64, Error> {
    wit::execute(statement, params).map_err(error)
}

pub fn execute_each(statement: &str, rows: &[Vec<DbValue>]) -> Result<Vec<RowOutcome>, Error> {
    wit::execute_each(statement, rows).map_err(error)
}

/// A failed call in plain words, transient when retrying later may work.
pub fn error(e: SqlError) -> Error {
    match e {
        SqlError::Denied(m) => Error::connection(m),
        SqlError::ConnectionFailed((kind, m)) => match kind {
            ConnectFailure::AuthenticationRefused => {
                Error::connection(format!("authentication refused: {m}"))
            }
            ConnectFailure::HostUnreachable => Error::transient(format!("host unreachable: {m}")),
            ConnectFailure::DatabaseNotFound => {
                Error::connection(format!("database does not exist: {m}"))
            }
            ConnectFailure::PermissionDenied => {
                Error::connection(format!("permission missing: {m}"))
            }
            ConnectFailure::Timeout => {
                Error::transient(format!("host unreachable: connecting timed out: {m}"))
            }
            ConnectFailure::Other => Error::connection(format!("cannot connect: {m}")),
        },
        SqlError::BadParameter((i, m)) => Error::config(format!("parameter {}: {m}", i + 1)),
        SqlError::QueryFailed(q) => query_error(q),
        SqlError::Timeout => {
            Error::transient("a statement ran past the call's time limit and was cancelled")
        }
        SqlError::TooLarge(limit) => Error::config(format!(
            "a result is larger than the host accepts ({limit} bytes): lower the batch size"
        )),
        SqlError::Io(m) => Error::transient(m),
    }
}

/// A statement the server refused, for a whole call.
pub fn query_error(q: QueryError) -> Error {
    let class = q.code.get(..2).unwrap_or("");
    match (class, q.code.as_str()) {
        (_, "42501") => Error::config(format!("permission missing: {}", q.message)),
        // Connection exceptions, serialization failures and deadlocks, shutdowns.
        ("08", _) | ("40", _) | ("57", _) | ("53", _) => {
            Error::transient(format!("PostgreSQL: {}", q.message))
        }
        _ => Error::connection(format!("PostgreSQL: {} ({})", q.message, q.code)),
    }
}

/// `"name"`, quoted for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The text of a value a catalog query returned.
pub fn text(value: &DbValue) -> Option<&str> {
    match value {
        DbValue::Text(s) | DbValue::Decimal(s) => Some(s),
        _ => None,
    }
}

pub fn boolean(value: &DbValue) -> bool {
    matches!(value, DbValue::Boolean(true))
}
