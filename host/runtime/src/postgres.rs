//! The host side of the `weir:sql/postgres` import: statements on the one
//! PostgreSQL database a connection's grant names.
//!
//! Exactly what happens to one call:
//!
//! 1. **Grant.** Without [`PostgresGrant`] in the connection's grants every
//!    function returns `denied` and nothing is sent
//!    ([`capabilities::check_postgres`]). The plugin never names an address: the
//!    host connects to the grant's host, port and database as its user, with its
//!    password (which never crosses into the plugin).
//! 2. **Session.** One database session per plugin instance ([`PgSession`], in
//!    the instance's `HostState`), opened on first use and reused across calls,
//!    so a transaction the plugin opens in one call (`open-writer`) goes on in
//!    the next (`upsert`, `finish`). It ends with the instance (a trap, the end
//!    of a run), which rolls back whatever was not committed. A session that
//!    broke is reported once (`io`: an open transaction is lost) and reopened on
//!    the following statement, so a lost transaction never looks committed.
//! 3. **Time.** Connecting is bounded by 10 s and by what is left of the plugin
//!    call's time limit; each statement by the session's `statement_timeout`,
//!    which the host keeps at or below what is left of the call (set again when
//!    a new call starts or the call's remaining time drops below it). A
//!    cancelled statement is `timeout`. The epoch deadline cannot interrupt the
//!    host, so this is what keeps a slow query inside the call's limit.
//! 4. **Values.** Parameters are converted to the types the prepared statement
//!    expects (integers range-checked, text and decimals sent as text for the
//!    server to parse, so text reaches any column type); a value that cannot be
//!    sent is `bad-parameter(index, reason)`. Results are decoded from the
//!    binary format for the common types; other types are `unsupported(name)`
//!    (the plugin casts them to `text` in its statement). Results above 64 MiB
//!    are refused (`too-large`).
//! 5. **Batches.** `execute-each` runs one statement for many parameter rows in
//!    one host call. Inside a transaction it first runs them all under one
//!    savepoint (one round trip per row); if a row fails it rolls back to that
//!    savepoint and runs each row under its own savepoint, so only the failing
//!    rows are lost and each gets the server's error. Outside a transaction
//!    each row is its own transaction.
//! 6. **Redaction.** Logs name the grant's address, never a parameter value;
//!    every error text has the password scrubbed out.
//!
//! The client is the `postgres` crate's synchronous one: plugin calls are
//! synchronous on plain threads, never on an async task. No TLS yet.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use super::bindings::postgres as wit;
use super::capabilities::{self, Grants, PostgresGrant};

/// How long connecting alone may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time kept back from the call's deadline, so the plugin can answer.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);
/// The largest result handed to a plugin (decoded values, roughly).
const MAX_RESULT_BYTES: u64 = 64 << 20;
/// Prepared statements kept per session.
const STATEMENT_CACHE: usize = 64;
/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The database session of one plugin instance.
#[derive(Default)]
pub(crate) struct PgSession {
    client: Option<Client>,
    statements: HashMap<String, Statement>,
    /// The `statement_timeout` in force, as far as the host knows.
    timeout: Option<Duration>,
    /// A statement ran on the current session.
    used: bool,
}

/// One call of the import: the grants, the deadline, the session.
pub(crate) struct PgCall<'a> {
    pub plugin: &'a str,
    pub grants: &'a Grants,
    pub deadline: Instant,
    pub session: &'a mut PgSession,
}

impl PgCall<'_> {
    pub fn query(
        self,
        statement: &str,
        params: Vec<wit::DbValue>,
    ) -> Result<wit::RowSet, wit::Error> {
        let secrets = self.secrets();
        self.with_session(|session, deadline| {
            let stmt = session.prepare(statement)?;
            let params = encode_params(&stmt, &params)?;
            session.check_time(deadline)?;
            session.query(&stmt, &params)
        })
        .map_err(|e| scrub_error(e, &secrets))
    }

    pub fn execute(self, statement: &str, params: Vec<wit::DbValue>) -> Result<u64, wit::Error> {
        let secrets = self.secrets();
        self.with_session(|session, deadline| {
            let stmt = session.prepare(statement)?;
            let params = encode_params(&stmt, &params)?;
            session.check_time(deadline)?;
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let client = session.client.as_mut().expect("connected");
            let result = client.execute(&stmt, &refs);
            if is_transaction_end(statement) {
                // A rollback also undoes a `SET statement_timeout` made in it.
                session.timeout = None;
            }
            result.map_err(|e| session.statement_error(e))
        })
        .map_err(|e| scrub_error(e, &secrets))
    }

    pub fn execute_each(
        self,
        statement: &str,
        rows: Vec<Vec<wit::DbValue>>,
    ) -> Result<Vec<wit::RowOutcome>, wit::Error> {
        let secrets = self.secrets();
        self.with_session(|session, deadline| {
            let stmt = session.prepare(statement)?;
            let encoded: Vec<Result<Vec<Encoded>, (u32, String)>> = rows
                .iter()
                .map(|row| match encode_params(&stmt, row) {
                    Ok(p) => Ok(p),
                    Err(wit::Error::BadParameter(bad)) => Err(bad),
                    Err(_) => unreachable!("encode_params only fails with bad-parameter"),
                })
                .collect();
            session.execute_each(&stmt, &encoded, deadline)
        })
        .map(|outcomes| {
            outcomes
                .into_iter()
                .map(|o| match o {
                    wit::RowOutcome::Failed(e) => wit::RowOutcome::Failed(scrub_query(e, &secrets)),
                    other => other,
                })
                .collect()
        })
        .map_err(|e| scrub_error(e, &secrets))
    }

    fn secrets(&self) -> Vec<String> {
        self.grants
            .secrets()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Checks the grant, (re)connects, bounds the statement time, then runs `f`.
    fn with_session<R>(
        self,
        f: impl FnOnce(&mut PgSession, Instant) -> Result<R, wit::Error>,
    ) -> Result<R, wit::Error> {
        let grant = capabilities::check_postgres(self.grants).map_err(wit::Error::Denied)?;
        let session = self.session;
        session.connect(self.plugin, grant, self.deadline)?;
        session.bound_statement_time(self.deadline)?;
        session.used = true;
        f(session, self.deadline)
    }
}

/// `BEGIN`/`COMMIT`/`ROLLBACK`-like statements (their `SET`s may be undone).
fn is_transaction_end(statement: &str) -> bool {
    let first = statement
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(first.as_str(), "rollback" | "abort" | "commit" | "end")
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())?
        .checked_sub(DEADLINE_MARGIN)
        .filter(|d| !d.is_zero())
}

impl PgSession {
    fn check_time(&self, deadline: Instant) -> Result<Duration, wit::Error> {
        remaining(deadline).ok_or(wit::Error::Timeout)
    }

    fn connect(
        &mut self,
        plugin: &str,
        grant: &PostgresGrant,
        deadline: Instant,
    ) -> Result<(), wit::Error> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.drop_client();
            if std::mem::take(&mut self.used) {
                // Report the loss once: a transaction open on it is gone, and a
                // later COMMIT on a fresh session must not look like success.
                return Err(wit::Error::Io(
                    "the database session was lost; anything not committed on it was rolled back"
                        .to_owned(),
                ));
            }
        }
        if self.client.is_some() {
            return Ok(());
        }
        let left = self.check_time(deadline)?;
        let mut config = postgres::Config::new();
        config
            .host(&grant.host)
            .port(grant.port)
            .dbname(&grant.dbname)
            .user(&grant.user)
            .application_name("weir")
            .connect_timeout(left.min(CONNECT_TIMEOUT))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .tcp_user_timeout(Duration::from_secs(30));
        if let Some(password) = &grant.password {
            config.password(password.expose());
        }
        let started = Instant::now();
        match config.connect(NoTls) {
            Ok(client) => {
                tracing::debug!(plugin, database = %grant.address(), elapsed = ?started.elapsed(), "PostgreSQL session opened");
                self.client = Some(client);
                self.used = false;
                Ok(())
            }
            Err(e) => {
                let (kind, message) = connect_failure(&e, grant);
                tracing::warn!(plugin, database = %grant.address(), reason = %message, "PostgreSQL connection failed");
                Err(wit::Error::ConnectionFailed((kind, message)))
            }
        }
    }

    fn drop_client(&mut self) {
        self.client = None;
        self.statements.clear();
        self.timeout = None;
    }

    /// Keeps `statement_timeout` at or below what is left of the call.
    fn bound_statement_time(&mut self, deadline: Instant) -> Result<(), wit::Error> {
        let left = self.check_time(deadline)?;
        let fits = self
            .timeout
            .is_some_and(|t| t <= left && t + Duration::from_secs(2) >= left);
        if fits {
            return Ok(());
        }
        let value = left
            .saturating_sub(Duration::from_millis(500))
            .max(Duration::from_millis(1));
        let client = self.client.as_mut().expect("connected");
        match client.batch_execute(&format!("SET statement_timeout = {}", value.as_millis())) {
            Ok(()) => {
                self.timeout = Some(value);
                Ok(())
            }
            Err(e) => Err(self.statement_error(e)),
        }
    }

    fn prepare(&mut self, sql: &str) -> Result<Statement, wit::Error> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let client = self.client.as_mut().expect("connected");
        match client.prepare(sql) {
            Ok(stmt) => {
                if self.statements.len() >= STATEMENT_CACHE {
                    self.statements.clear();
                }
                self.statements.insert(sql.to_owned(), stmt.clone());
                Ok(stmt)
            }
            Err(e) => Err(self.statement_error(e)),
        }
    }

    /// Maps an error of a statement; drops a broken session, forgets what a
    /// failed statement may have undone.
    fn statement_error(&mut self, e: postgres::Error) -> wit::Error {
        if let Some(db) = e.as_db_error() {
            // An aborted transaction rolls back a `SET` made in it.
            self.timeout = None;
            if matches!(
                *db.code(),
                SqlState::INVALID_SQL_STATEMENT_NAME | SqlState::FEATURE_NOT_SUPPORTED
            ) {
                // "cached plan must not change result type" and the like.
                self.statements.clear();
            }
            if *db.code() == SqlState::QUERY_CANCELED {
                return wit::Error::Timeout;
            }
            return wit::Error::QueryFailed(query_error(db));
        }
        let broken = e.is_closed() || self.client.as_ref().is_none_or(Client::is_closed);
        if broken {
            self.drop_client();
            self.used = false;
            return wit::Error::Io(format!(
                "the database session broke ({e}); anything not committed on it was rolled back"
            ));
        }
        wit::Error::Io(e.to_string())
    }

    fn query(&mut self, stmt: &Statement, params: &[Encoded]) -> Result<wit::RowSet, wit::Error> {
        let columns = stmt
            .columns()
            .iter()
            .map(|c| wit::Column {
                name: c.name().to_owned(),
                type_name: c.type_().name().to_owned(),
            })
            .collect();
        let client = self.client.as_mut().expect("connected");
        let result = (|| {
            let mut iter = client.query_raw(stmt, params.iter())?;
            let mut rows = Vec::new();
            let mut size = 0u64;
            while let Some(row) = iter.next()? {
                let mut values = Vec::with_capacity(row.len());
                for i in 0..row.len() {
                    let Cell(value) = row.get(i);
                    size += value_size(&value);
                    values.push(value);
                }
                rows.push(values);
                if size > MAX_RESULT_BYTES {
                    return Ok(Err(wit::Error::TooLarge(MAX_RESULT_BYTES)));
                }
            }
            Ok(Ok(rows))
        })();
        match result {
            Ok(Ok(rows)) => Ok(wit::RowSet { columns, rows }),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(self.statement_error(e)),
        }
    }

    fn simple(&mut self, sql: &str) -> Result<(), wit::Error> {
        let client = self.client.as_mut().expect("connected");
        client
            .batch_execute(sql)
            .map_err(|e| self.statement_error(e))
    }

    fn execute_each(
        &mut self,
        stmt: &Statement,
        rows: &[Result<Vec<Encoded>, (u32, String)>],
        deadline: Instant,
    ) -> Result<Vec<wit::RowOutcome>, wit::Error> {
        // Inside a transaction? A savepoint outside one is refused, harmlessly.
        let in_transaction = {
            let client = self.client.as_mut().expect("connected");
            match client.batch_execute("SAVEPOINT weir_batch") {
                Ok(()) => true,
                Err(e) if e.code() == Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION) => false,
                Err(e) => return Err(self.statement_error(e)),
            }
        };
        let run = |session: &mut PgSession,
                   row: &Result<Vec<Encoded>, (u32, String)>|
         -> Result<Result<wit::RowOutcome, wit::QueryError>, wit::Error> {
            let params = match row {
                Ok(p) => p,
                Err(bad) => return Ok(Ok(wit::RowOutcome::BadParameter(bad.clone()))),
            };
            session.check_time(deadline)?;
            match session.query(stmt, params) {
                Ok(set) => Ok(Ok(wit::RowOutcome::Done(set))),
                Err(wit::Error::QueryFailed(e)) => Ok(Err(e)),
                Err(other) => Err(other),
            }
        };
        if !in_transaction {
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                out.push(run(self, row)?.unwrap_or_else(wit::RowOutcome::Failed));
            }
            return Ok(out);
        }
        // Fast path: every row under the one savepoint.
        let mut out = Vec::with_capacity(rows.len());
        let mut failed = false;
        for row in rows {
            match run(self, row)? {
                Ok(outcome) => out.push(outcome),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            self.simple("RELEASE SAVEPOINT weir_batch")?;
            return Ok(out);
        }
        // A row failed and aborted the transaction: undo the batch, then run
        // each row under its own savepoint so only the failing ones are lost.
        self.simple("ROLLBACK TO SAVEPOINT weir_batch")?;
        out.clear();
        for row in rows {
            if row.is_err() {
                out.push(run(self, row)?.unwrap_or_else(wit::RowOutcome::Failed));
                continue;
            }
            self.simple("SAVEPOINT weir_row")?;
            match run(self, row)? {
                Ok(outcome) => {
                    self.simple("RELEASE SAVEPOINT weir_row")?;
                    out.push(outcome);
                }
                Err(e) => {
                    self.simple("ROLLBACK TO SAVEPOINT weir_row")?;
                    out.push(wit::RowOutcome::Failed(e));
                }
            }
        }
        self.simple("RELEASE SAVEPOINT weir_batch")?;
        Ok(out)
    }
}

fn query_error(db: &postgres::error::DbError) -> wit::QueryError {
    wit::QueryError {
        code: db.code().code().to_owned(),
        message: db.message().to_owned(),
        detail: db.detail().map(str::to_owned),
        column: db.column().map(str::to_owned),
        constraint_name: db.constraint().map(str::to_owned),
    }
}

/// Why connecting failed, in the import's terms, with a message for people.
fn connect_failure(e: &postgres::Error, grant: &PostgresGrant) -> (wit::ConnectFailure, String) {
    use wit::ConnectFailure as F;
    let address = grant.address();
    if let Some(db) = e.as_db_error() {
        let kind = match *db.code() {
            SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                F::AuthenticationRefused
            }
            SqlState::INVALID_CATALOG_NAME => F::DatabaseNotFound,
            SqlState::INSUFFICIENT_PRIVILEGE => F::PermissionDenied,
            _ => F::Other,
        };
        return (kind, format!("{address}: {}", db.message()));
    }
    let text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            let kind = if io.kind() == std::io::ErrorKind::TimedOut {
                F::Timeout
            } else {
                F::HostUnreachable
            };
            return (kind, format!("{address}: {io}"));
        }
        source = s.source();
    }
    let kind = if text.contains("password") {
        // "password missing": the server asked for one and the grant has none.
        F::AuthenticationRefused
    } else if text.contains("timeout") {
        F::Timeout
    } else {
        F::Other
    };
    (kind, format!("{address}: {text}"))
}

fn scrub(text: String, secrets: &[String]) -> String {
    crate::redact::scrub(&text, secrets.iter().map(String::as_str))
}

fn scrub_query(mut e: wit::QueryError, secrets: &[String]) -> wit::QueryError {
    e.message = scrub(e.message, secrets);
    e.detail = e.detail.map(|d| scrub(d, secrets));
    e
}

fn scrub_error(e: wit::Error, secrets: &[String]) -> wit::Error {
    use wit::Error as E;
    match e {
        E::Denied(m) => E::Denied(scrub(m, secrets)),
        E::ConnectionFailed((k, m)) => E::ConnectionFailed((k, scrub(m, secrets))),
        E::BadParameter((i, m)) => E::BadParameter((i, scrub(m, secrets))),
        E::QueryFailed(q) => E::QueryFailed(scrub_query(q, secrets)),
        E::Io(m) => E::Io(scrub(m, secrets)),
        other => other,
    }
}

/// A parameter, already converted for the statement's parameter type.
#[derive(Debug)]
enum Encoded {
    Null,
    Binary(Vec<u8>),
    Text(String),
}

impl ToSql for Encoded {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Encoded::Null => return Ok(IsNull::Yes),
            Encoded::Binary(b) => out.extend_from_slice(b),
            Encoded::Text(t) => out.extend_from_slice(t.as_bytes()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            Encoded::Text(_) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

fn encode_params(stmt: &Statement, params: &[wit::DbValue]) -> Result<Vec<Encoded>, wit::Error> {
    let types = stmt.params();
    if types.len() != params.len() {
        return Err(wit::Error::BadParameter((
            params.len().min(types.len()) as u32,
            format!(
                "the statement takes {} parameters, {} were given",
                types.len(),
                params.len()
            ),
        )));
    }
    params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(i, (v, ty))| encode(v, ty).map_err(|m| wit::Error::BadParameter((i as u32, m))))
        .collect()
}

fn is_text_type(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    )
}

/// Converts one value for a parameter of type `ty`.
fn encode(value: &wit::DbValue, ty: &Type) -> Result<Encoded, String> {
    use wit::DbValue as V;
    let out_of_range = |v: &dyn std::fmt::Display| format!("{v} is out of range for {}", ty.name());
    Ok(match value {
        V::Null => Encoded::Null,
        V::Boolean(b) if *ty == Type::BOOL => Encoded::Binary(vec![u8::from(*b)]),
        V::Boolean(b) => Encoded::Text(b.to_string()),
        V::Int64(i) => match *ty {
            Type::INT8 => Encoded::Binary(i.to_be_bytes().to_vec()),
            Type::INT4 => Encoded::Binary(
                i32::try_from(*i)
                    .map_err(|_| out_of_range(i))?
                    .to_be_bytes()
                    .to_vec(),
            ),
            Type::INT2 => Encoded::Binary(
                i16::try_from(*i)
                    .map_err(|_| out_of_range(i))?
                    .to_be_bytes()
                    .to_vec(),
            ),
            Type::FLOAT8 => Encoded::Binary((*i as f64).to_be_bytes().to_vec()),
            _ => Encoded::Text(i.to_string()),
        },
        V::Float64(x) => match *ty {
            Type::FLOAT8 => Encoded::Binary(x.to_be_bytes().to_vec()),
            Type::FLOAT4 => Encoded::Binary((*x as f32).to_be_bytes().to_vec()),
            _ if x.is_nan() => Encoded::Text("NaN".to_owned()),
            _ if x.is_infinite() => {
                Encoded::Text(if *x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned())
            }
            _ => Encoded::Text(x.to_string()),
        },
        V::Decimal(s) | V::Text(s) if *ty == Type::BYTEA => Encoded::Binary(s.as_bytes().to_vec()),
        V::Decimal(s) | V::Text(s) => {
            if s.contains('\0') {
                return Err("text with a NUL character cannot be sent".to_owned());
            }
            Encoded::Text(s.clone())
        }
        V::Bytes(b) if *ty == Type::BYTEA => Encoded::Binary(b.clone()),
        V::Bytes(b) if is_text_type(ty) => Encoded::Text(
            String::from_utf8(b.clone())
                .map_err(|_| format!("bytes that are not UTF-8 cannot be sent as {}", ty.name()))?,
        ),
        V::Bytes(_) => return Err(format!("bytes cannot be sent as {}", ty.name())),
        V::Timestamp(us) => match *ty {
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Encoded::Binary(
                us.checked_sub(PG_EPOCH_MICROS)
                    .ok_or_else(|| out_of_range(us))?
                    .to_be_bytes()
                    .to_vec(),
            ),
            Type::DATE => {
                let days = (us - PG_EPOCH_MICROS).div_euclid(MICROS_PER_DAY);
                Encoded::Binary(
                    i32::try_from(days)
                        .map_err(|_| out_of_range(us))?
                        .to_be_bytes()
                        .to_vec(),
                )
            }
            _ => Encoded::Text(rfc3339(*us)),
        },
        V::Unsupported(name) => {
            return Err(format!(
                "a value of unsupported type `{name}` cannot be sent"
            ));
        }
    })
}

/// A decoded result value.
struct Cell(wit::DbValue);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Cell, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(decode(ty, raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Cell, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell(wit::DbValue::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Decodes a value in PostgreSQL's binary format; a type without a variant
/// (or malformed data) is `unsupported`.
fn decode(ty: &Type, raw: &[u8]) -> wit::DbValue {
    use wit::DbValue as V;
    let unsupported = || V::Unsupported(ty.name().to_owned());
    let be = |n: usize| -> Option<&[u8]> { (raw.len() == n).then_some(raw) };
    let text =
        |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_or_else(|_| unsupported(), V::Text);
    let value = match *ty {
        Type::BOOL => be(1).map(|b| V::Boolean(b[0] != 0)),
        Type::INT2 => be(2).map(|b| V::Int64(i16::from_be_bytes([b[0], b[1]]).into())),
        Type::INT4 => be(4).map(|b| V::Int64(i32::from_be_bytes(b.try_into().unwrap()).into())),
        Type::INT8 => be(8).map(|b| V::Int64(i64::from_be_bytes(b.try_into().unwrap()))),
        Type::OID => be(4).map(|b| V::Int64(u32::from_be_bytes(b.try_into().unwrap()).into())),
        Type::FLOAT4 => be(4).map(|b| V::Float64(f32::from_be_bytes(b.try_into().unwrap()).into())),
        Type::FLOAT8 => be(8).map(|b| V::Float64(f64::from_be_bytes(b.try_into().unwrap()))),
        Type::NUMERIC => numeric_text(raw).map(V::Decimal),
        Type::BYTEA => Some(V::Bytes(raw.to_vec())),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => be(8).map(|b| {
            V::Timestamp(i64::from_be_bytes(b.try_into().unwrap()).saturating_add(PG_EPOCH_MICROS))
        }),
        Type::DATE => be(4).map(|b| {
            let days = i64::from(i32::from_be_bytes(b.try_into().unwrap()));
            V::Timestamp(
                days.saturating_mul(MICROS_PER_DAY)
                    .saturating_add(PG_EPOCH_MICROS),
            )
        }),
        Type::UUID => be(16).map(|b| {
            // 8-4-4-4-12 hex digits.
            let h = hex::encode(b);
            V::Text(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }),
        Type::JSONB => raw.split_first().map(|(_, rest)| text(rest)),
        _ if is_text_type(ty) || *ty == Type::JSON || *ty == Type::XML => Some(text(raw)),
        _ => match ty.kind() {
            // An enum's binary form is its label.
            Kind::Enum(_) => Some(text(raw)),
            Kind::Domain(inner) => Some(decode(inner, raw)),
            _ => None,
        },
    };
    value.unwrap_or_else(unsupported)
}

fn value_size(v: &wit::DbValue) -> u64 {
    use wit::DbValue as V;
    16 + match v {
        V::Decimal(s) | V::Text(s) | V::Unsupported(s) => s.len() as u64,
        V::Bytes(b) => b.len() as u64,
        _ => 0,
    }
}

/// The text of a `numeric` in binary form: base-10000 digits, a weight, a sign
/// and a display scale.
fn numeric_text(raw: &[u8]) -> Option<String> {
    let word = |i: usize| raw.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let ndigits = usize::from(word(0)?);
    let weight = i32::from(word(2)? as i16);
    let sign = word(4)?;
    let dscale = usize::from(word(6)?);
    if raw.len() != 8 + 2 * ndigits {
        return None;
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Some("NaN".to_owned()),
        0xD000 => return Some("Infinity".to_owned()),
        0xF000 => return Some("-Infinity".to_owned()),
        _ => return None,
    }
    let digit = |i: i32| -> u16 {
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            word(8 + 2 * i as usize).unwrap_or(0)
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(s, "{}", digit(i));
            } else {
                let _ = write!(s, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

/// `1970-01-01T00:00:00.000000Z` for microseconds since the epoch.
fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(
        || us.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut raw = Vec::new();
        for w in [ndigits.len() as u16, weight as u16, sign, dscale] {
            raw.extend_from_slice(&w.to_be_bytes());
        }
        for d in ndigits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_decode_to_their_canonical_text() {
        assert_eq!(
            numeric_text(&numeric(&[12, 5000], 0, 0, 2)).unwrap(),
            "12.50"
        );
        assert_eq!(
            numeric_text(&numeric(&[1, 2345], 1, 0x4000, 0)).unwrap(),
            "-12345"
        );
        assert_eq!(numeric_text(&numeric(&[5], -1, 0, 4)).unwrap(), "0.0005");
        assert_eq!(numeric_text(&numeric(&[5], -2, 0, 6)).unwrap(), "0.000000");
        assert_eq!(numeric_text(&numeric(&[], 0, 0, 0)).unwrap(), "0");
        assert_eq!(numeric_text(&numeric(&[1], 2, 0, 0)).unwrap(), "100000000");
        assert_eq!(numeric_text(&numeric(&[], 0, 0xC000, 0)).unwrap(), "NaN");
    }

    #[test]
    fn timestamps_format_and_encode() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        let Encoded::Binary(b) = encode(
            &wit::DbValue::Timestamp(PG_EPOCH_MICROS),
            &Type::TIMESTAMPTZ,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(b, 0i64.to_be_bytes());
        assert!(matches!(
            decode(&Type::DATE, &1i32.to_be_bytes()),
            wit::DbValue::Timestamp(t) if t == PG_EPOCH_MICROS + MICROS_PER_DAY
        ));
    }

    #[test]
    fn integers_are_range_checked_and_text_goes_as_text() {
        let e = encode(&wit::DbValue::Int64(1 << 40), &Type::INT4).unwrap_err();
        assert!(e.contains("out of range for int4"), "{e}");
        assert!(matches!(
            encode(&wit::DbValue::Int64(7), &Type::NUMERIC).unwrap(),
            Encoded::Text(t) if t == "7"
        ));
        assert!(matches!(
            encode(
                &wit::DbValue::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into()),
                &Type::UUID
            )
            .unwrap(),
            Encoded::Text(_)
        ));
        assert!(encode(&wit::DbValue::Bytes(vec![1]), &Type::INT4).is_err());
    }
}
