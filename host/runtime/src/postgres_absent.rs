//! The `weir:sql/postgres` import in a runtime built without its `postgres` feature.
//!
//! The import stays linked, so a plugin that imports it (the bundled `postgres`
//! connector) still loads and its other functions work; every database call is
//! refused with a message that says why, instead of an instantiation error that
//! names a missing import. The grant is checked first, as in the real import, so a
//! connection without one gets the usual "grants no PostgreSQL database".

use std::time::Instant;

use super::bindings::postgres as wit;
use super::capabilities::{self, Grants};

const ABSENT: &str =
    "this weir was built without PostgreSQL support (weir-runtime's `postgres` feature)";

/// Stands for the database session of one plugin instance: there is none.
#[derive(Default)]
pub(crate) struct PgSession;

/// One call of the import (same fields as with the feature, so `HostState` is one type).
#[allow(dead_code)]
pub(crate) struct PgCall<'a> {
    pub plugin: &'a str,
    pub grants: &'a Grants,
    pub deadline: Instant,
    pub session: &'a mut PgSession,
}

impl PgCall<'_> {
    fn refuse<T>(self) -> Result<T, wit::Error> {
        capabilities::check_postgres(self.grants).map_err(wit::Error::Denied)?;
        Err(wit::Error::Denied(ABSENT.to_owned()))
    }

    pub fn query(self, _: &str, _: Vec<wit::DbValue>) -> Result<wit::RowSet, wit::Error> {
        self.refuse()
    }

    pub fn execute(self, _: &str, _: Vec<wit::DbValue>) -> Result<u64, wit::Error> {
        self.refuse()
    }

    pub fn execute_each(
        self,
        _: &str,
        _: Vec<Vec<wit::DbValue>>,
    ) -> Result<Vec<wit::RowOutcome>, wit::Error> {
        self.refuse()
    }
}
