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
        let statement = format!(
            "INSERT INTO {} AS {TARGET} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {} \
             WHERE ROW({}) IS DISTINCT FROM ROW({}) RETURNING (xmax = 0)",
            self.table.qualified(),
            columns.join(", "),
            placeholders.join(", "),
            self.key_fields
                .iter()
                .map(|k| ident(k))
                .collect::<Vec<_>>()
                .join(", "),
            updates.join(", "),
            mine.join(", "),
            theirs.join(", ")
        );
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
