//! The destination side: `INSERT ... ON CONFLICT (key) DO UPDATE`, one
//! transaction per write session.
//!
//! `open-writer` begins a transaction on the host's session; each `upsert` runs
//! the statement once per record in one host call (`execute-each`), where a
//! record the server refuses (a constraint, a bad value) is rolled back alone
//! under a savepoint and reported with PostgreSQL's message while the others
//! stay; `finish` commits, so records are durable exactly when it returns.
//! Dropping the writer without `finish` rolls back. `RETURNING (xmax = 0)` tells
//! an insert (a new row version with no deleting transaction) from an update;
//! `WHERE ROW(..) IS DISTINCT FROM ROW(EXCLUDED..)` leaves a row that already
//! holds the values untouched (no row version, no WAL).
//!
//! The fast path sends a whole batch as one statement: each column travels as
//! one text-array parameter, `unnest`ed and cast to the column's type, and the
//! rows written come back with their position in the batch (the key joins them
//! to their input). One statement per batch instead of one per record is what
//! makes the server's work close to `COPY` + one upsert. When the statement
//! fails (a refused value, a constraint, a key twice in the batch), it is rolled
//! back to its savepoint and the batch goes again record by record, as above,
//! so each refused record is reported alone with its own message.

use std::cell::Cell;

use weir_sdk::{Batch, Column, Error, RecordError, UpsertOutcome, Value, Writer};

use crate::catalog::{self, Table};
use crate::sql::{self, DbValue, RowOutcome, ident};

thread_local! {
    /// A write session holds the instance's one database transaction.
    static OPEN: Cell<bool> = const { Cell::new(false) };
}

pub struct PgWriter {
    table: Table,
    key_fields: Vec<String>,
    /// The statement for the last batch's field list.
    statement: Option<(Vec<String>, String)>,
    /// The one-statement-per-batch form of it.
    bulk: Option<(Vec<String>, String)>,
    /// The statement's `INSERT INTO ... (columns)` and `ON CONFLICT ...` parts.
    parts: Option<(String, String)>,
    open: bool,
}

pub fn open(schema: &str, entity: &str, key_fields: Vec<String>) -> Result<PgWriter, Error> {
    if OPEN.with(Cell::get) {
        return Err(Error::internal(
            "a write session is already open on this connection",
        ));
    }
    let table = catalog::table(schema, entity)?;
    if !table.can_write {
        return Err(Error::config(format!(
            "permission missing: cannot insert into and update `{}.{}` (or it is a view)",
            table.schema, table.name
        )));
    }
    if key_fields.is_empty() {
        return Err(Error::config(format!(
            "upserting into `{}` needs key fields",
            table.name
        )));
    }
    for k in &key_fields {
        if table.column(k).is_none() {
            return Err(Error::config(format!(
                "key field `{k}` is not a column of `{}.{}`",
                table.schema, table.name
            )));
        }
    }
    if !catalog::is_unique_key(&table, &key_fields)? {
        return Err(Error::config(format!(
            "key ({}) is neither the primary key nor a unique constraint of `{}.{}`: the upsert (ON CONFLICT) needs one",
            key_fields.join(", "),
            table.schema,
            table.name
        )));
    }
    sql::execute("BEGIN", &[])?;
    OPEN.with(|o| o.set(true));
    Ok(PgWriter {
        table,
        key_fields,
        statement: None,
        bulk: None,
        parts: None,
        open: true,
    })
}

impl PgWriter {
    fn statement_for(&mut self, fields: &[String]) -> Result<String, Error> {
        if let Some((f, s)) = &self.statement {
            if f == fields {
                return Ok(s.clone());
            }
        }
        for f in fields {
            match self.table.column(f) {
                None => {
                    return Err(Error::config(format!(
                        "field `{f}` is not a column of `{}.{}`",
                        self.table.schema, self.table.name
                    )));
                }
                Some(c) if c.generated => {
                    return Err(Error::config(format!(
                        "column `{f}` of `{}` is generated: it cannot be written",
                        self.table.name
                    )));
                }
                Some(_) => {}
            }
        }
        for k in &self.key_fields {
            if !fields.contains(k) {
                return Err(Error::config(format!(
                    "the records have no key field `{k}`"
                )));
            }
        }
        let columns: Vec<String> = fields.iter().map(|f| ident(f)).collect();
        let placeholders: Vec<String> = (1..=fields.len()).map(|i| format!("${i}")).collect();
        let mut set: Vec<&String> = fields
            .iter()
            .filter(|f| !self.key_fields.contains(f))
            .collect();
        if set.is_empty() {
            // Only key columns: the guard below is never true, so nothing is written.
            set.push(&self.key_fields[0]);
        }
        let updates: Vec<String> = set
            .iter()
            .map(|f| format!("{0} = EXCLUDED.{0}", ident(f)))
            .collect();
        // A row that already holds these values is not updated at all: no new
        // row version, no dead tuple, no WAL — a re-sync of unchanged data writes
        // nothing. Such a row returns no row: `unchanged`. Types without an
        // equality operator (json, xml, point...) compare as text.
        let (mine, theirs): (Vec<String>, Vec<String>) = set
            .iter()
            .map(|f| {
                let cast = match self.table.column(f) {
                    Some(c) if has_equality(&c.type_name) => "",
                    _ => "::text",
                };
                (
                    format!("{TARGET}.{}{cast}", ident(f)),
                    format!("EXCLUDED.{}{cast}", ident(f)),
                )
            })
            .unzip();
        let head = format!(
            "INSERT INTO {} AS {TARGET} ({})",
            self.table.qualified(),
            columns.join(", ")
        );
        let conflict = format!(
            "ON CONFLICT ({}) DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})",
            self.key_fields
                .iter()
                .map(|k| ident(k))
                .collect::<Vec<_>>()
                .join(", "),
            updates.join(", "),
            mine.join(", "),
            theirs.join(", ")
        );
        let statement = format!(
            "{head} VALUES ({}) {conflict} RETURNING (xmax = 0)",
            placeholders.join(", ")
        );
        self.parts = Some((head, conflict));
        self.statement = Some((fields.to_vec(), statement.clone()));
        Ok(statement)
    }
}

/// The alias of the target table in the upsert (so the guard can name its row
/// whatever the table is called; `EXCLUDED` is PostgreSQL's for the new one).
const TARGET: &str = "weir_target";

/// Whether a column type (its `typname`) has a default equality operator for
/// `IS DISTINCT FROM`; others are compared as text (every type has a text form).
fn has_equality(type_name: &str) -> bool {
    matches!(
        type_name,
        "bool"
            | "int2"
            | "int4"
            | "int8"
            | "float4"
            | "float8"
            | "numeric"
            | "text"
            | "varchar"
            | "bpchar"
            | "name"
            | "char"
            | "uuid"
            | "date"
            | "time"
            | "timetz"
            | "timestamp"
            | "timestamptz"
            | "interval"
            | "bytea"
            | "jsonb"
            | "inet"
            | "cidr"
            | "macaddr"
            | "money"
            | "oid"
    )
}

impl PgWriter {
    /// The batch as one statement (see the module's docs); `fields` were
    /// checked by [`PgWriter::statement_for`].
    fn bulk_statement_for(&mut self, fields: &[String]) -> String {
        if let Some((f, s)) = &self.bulk {
            if f == fields {
                return s.clone();
            }
        }
        // Builds `parts` for these fields (already checked, so it cannot fail).
        let _ = self.statement_for(fields);
        let (head, conflict) = self.parts.clone().expect("statement_for sets the parts");
        let sql_type = |f: &String| {
            self.table
                .column(f)
                .map(|c| c.sql_type.clone())
                .unwrap_or_else(|| "text".to_owned())
        };
        let inputs: Vec<String> = (1..=fields.len()).map(|i| format!("weir_c{i}")).collect();
        let arrays: Vec<String> = (1..=fields.len())
            .map(|i| format!("${i}::text[]"))
            .collect();
        let casts: Vec<String> = fields
            .iter()
            .zip(&inputs)
            .map(|(f, c)| format!("{c}::{}", sql_type(f)))
            .collect();
        let returning: Vec<String> = self.key_fields.iter().map(|k| ident(k)).collect();
        let join: Vec<String> = self
            .key_fields
            .iter()
            .map(|k| {
                let i = fields.iter().position(|f| f == k).expect("a key field");
                format!("w.{} = i.{}::{}", ident(k), inputs[i], sql_type(k))
            })
            .collect();
        let statement = format!(
            "WITH i AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS i({inputs}, weir_n)), \
             w AS ({head} SELECT {casts} FROM i ORDER BY weir_n {conflict} \
             RETURNING {returning}, (xmax = 0) AS weir_inserted) \
             SELECT i.weir_n, w.weir_inserted FROM w JOIN i ON {join}",
            arrays = arrays.join(", "),
            inputs = inputs.join(", "),
            casts = casts.join(", "),
            returning = returning.join(", "),
            join = join.join(" AND "),
        );
        self.bulk = Some((fields.to_vec(), statement.clone()));
        statement
    }

    /// The batch in one statement: `None` when a value has no text form the
    /// arrays can carry, or the server refused the statement (rolled back by
    /// the host: the caller goes record by record).
    fn upsert_bulk(
        &mut self,
        fields: &[String],
        columns: &[&Column],
        len: usize,
    ) -> Result<Option<Vec<UpsertOutcome>>, Error> {
        // An explicit cast to `varchar(n)`, `char(n)` or `bit(n)` cuts a value
        // that is too long where an insert refuses it: such tables go record
        // by record, so an over-long value is that record's error, never cut.
        let cuts = fields.iter().any(|f| {
            self.table.column(f).is_some_and(|c| {
                matches!(c.type_name.as_str(), "varchar" | "bpchar" | "bit" | "varbit")
                    && c.sql_type.contains('(')
            })
        });
        if cuts {
            return Ok(None);
        }
        let mut params = Vec::with_capacity(columns.len());
        for (f, c) in fields.iter().zip(columns) {
            let bytea = self
                .table
                .column(f)
                .is_some_and(|col| col.type_name == "bytea");
            let Some(array) = text_array(c, len, bytea) else {
                return Ok(None);
            };
            params.push(DbValue::Text(array));
        }
        let statement = self.bulk_statement_for(fields);
        // `execute-each` with the one statement: the host runs it under a
        // savepoint and rolls a refusal back, so the transaction goes on.
        let outcome = sql::execute_each(&statement, &[params])?.pop();
        let Some(RowOutcome::Done(set)) = outcome else {
            return Ok(None);
        };
        // Rows the guard held back come back as no row: unchanged.
        let mut out = vec![UpsertOutcome::Unchanged; len];
        for row in &set.rows {
            let (Some(DbValue::Int64(n)), Some(inserted)) = (row.first(), row.get(1)) else {
                continue;
            };
            if let Some(slot) = usize::try_from(*n - 1).ok().and_then(|i| out.get_mut(i)) {
                *slot = if sql::boolean(inserted) {
                    UpsertOutcome::Inserted
                } else {
                    UpsertOutcome::Updated
                };
            }
        }
        Ok(Some(out))
    }
}

/// Column `c`'s first `len` values as a PostgreSQL array literal of text
/// (`{"a","b",NULL}`), each in the text form the column's input cast reads;
/// `None` when one has none here (the record-by-record path decides).
fn text_array(c: &Column, len: usize, bytea: bool) -> Option<String> {
    let mut out = String::with_capacity(2 + len * 12);
    out.push('{');
    for i in 0..len {
        if i > 0 {
            out.push(',');
        }
        if c.is_null(i) {
            out.push_str("NULL");
            continue;
        }
        let text: std::borrow::Cow<'_, str> = match c.value(i) {
            Value::Null => {
                out.push_str("NULL");
                continue;
            }
            Value::Boolean(b) => (if b { "true" } else { "false" }).into(),
            Value::Integer(n) => n.to_string().into(),
            Value::Float(x) if x.is_nan() => "NaN".into(),
            Value::Float(x) if x.is_infinite() => {
                (if x > 0.0 { "Infinity" } else { "-Infinity" }).into()
            }
            Value::Float(x) => x.to_string().into(),
            Value::Decimal(s) | Value::Text(s) if bytea => hex_bytea(s.as_bytes()).into(),
            Value::Decimal(s) | Value::Text(s) => {
                if s.contains('\0') {
                    return None;
                }
                s.into()
            }
            Value::Bytes(b) if bytea => hex_bytea(&b).into(),
            Value::Bytes(_) => return None,
            Value::Timestamp(us) => rfc3339(us)?.into(),
        };
        out.push('"');
        for ch in text.chars() {
            if ch == '"' || ch == '\\' {
                out.push('\\');
            }
            out.push(ch);
        }
        out.push('"');
    }
    out.push('}');
    Some(out)
}

/// `\x0a1b`: bytea's hex input form.
fn hex_bytea(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("\\x");
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (read as UTC by
/// `timestamp`, `timestamptz` and `date` alike); `None` outside years 1–9999.
fn rfc3339(us: i64) -> Option<String> {
    let days = us.div_euclid(86_400_000_000);
    let rest = us.rem_euclid(86_400_000_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if !(1..=9999).contains(&year) {
        return None;
    }
    let secs = rest / 1_000_000;
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rest % 1_000_000
    ))
}

impl Writer for PgWriter {
    fn upsert(&mut self, records: Batch) -> Result<Vec<UpsertOutcome>, Error> {
        if !self.open {
            return Err(Error::internal("the write session is finished"));
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = records.fields().map(|(n, _)| n.to_owned()).collect();
        let statement = self.statement_for(&fields)?;
        let columns: Vec<&Column> = fields
            .iter()
            .map(|f| records.column(f).expect("listed field"))
            .collect();
        if let Some(outcomes) = self.upsert_bulk(&fields, &columns, records.len())? {
            return Ok(outcomes);
        }
        let rows: Vec<Vec<DbValue>> = (0..records.len())
            .map(|i| columns.iter().map(|c| db_value(c, i)).collect())
            .collect();
        let outcomes = sql::execute_each(&statement, &rows)?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                RowOutcome::Done(set) => match set.rows.first().and_then(|r| r.first()) {
                    Some(DbValue::Boolean(true)) => UpsertOutcome::Inserted,
                    Some(_) => UpsertOutcome::Updated,
                    // The guard held the row back: it already had these values.
                    None => UpsertOutcome::Unchanged,
                },
                RowOutcome::Failed(e) => UpsertOutcome::Failed(match e.column {
                    Some(column) => RecordError::field(column, e.message),
                    None => RecordError::new(e.message),
                }),
                RowOutcome::BadParameter((i, message)) => {
                    let field = fields.get(i as usize).cloned().unwrap_or_default();
                    UpsertOutcome::Failed(RecordError::field(
                        field.clone(),
                        format!("`{field}`: {message}"),
                    ))
                }
            })
            .collect())
    }

    fn finish(&mut self) -> Result<(), Error> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        OPEN.with(|o| o.set(false));
        sql::execute("COMMIT", &[])?;
        Ok(())
    }
}

impl Drop for PgWriter {
    fn drop(&mut self) {
        if self.open {
            self.open = false;
            OPEN.with(|o| o.set(false));
            // Not finished: nothing of this session may become durable.
            let _ = sql::execute("ROLLBACK", &[]);
        }
    }
}

/// Value `i` of a batch column, as a parameter.
fn db_value(column: &Column, i: usize) -> DbValue {
    if column.is_null(i) {
        return DbValue::Null;
    }
    match column.value(i) {
        Value::Null => DbValue::Null,
        Value::Boolean(b) => DbValue::Boolean(b),
        Value::Integer(n) => DbValue::Int64(n),
        Value::Float(x) => DbValue::Float64(x),
        Value::Decimal(s) => DbValue::Decimal(s),
        Value::Text(s) => DbValue::Text(s),
        Value::Timestamp(t) => DbValue::Timestamp(t),
        Value::Bytes(b) => DbValue::Bytes(b),
    }
}
