//! The source side: keyset pagination over a table, resumable from a cursor.
//!
//! A page is `SELECT ... WHERE (c1, c2) > (cursor) ORDER BY c1, c2 LIMIT n + 1`
//! on the cursor columns: the configured cursor column (`cursor_column`, e.g.
//! `updated_at`) followed by the primary key, or the primary key alone. The
//! cursor is the last row's values of those columns, as PostgreSQL's own text
//! (a JSON array), so the next page (in this run or days later) starts right
//! after it and rows updated since (a larger `updated_at`) come again. Rows
//! whose cursor column is NULL are not read.

use weir_sdk::{
    BatchBuilder, Config, Error, FieldType, ReadPage, ReadRequest, RecordError, Rejected, Value,
};

use crate::catalog::{self, ColumnInfo, Table};
use crate::sql::{self, DbValue, ident};

/// The cursor columns of `table`: the configured one (if the table has it),
/// then the primary key; and whether the first is the configured one.
pub fn cursor_columns(config: &Config, table: &Table) -> Result<(Vec<ColumnInfo>, bool), Error> {
    let configured = config
        .get(&format!("cursor_column.{}", table.name))
        .or_else(|| config.get("cursor_column"))
        .filter(|c| !c.is_empty());
    let mut names: Vec<String> = Vec::new();
    let mut has_configured = false;
    if let Some(c) = configured {
        if table.column(c).is_some() {
            names.push(c.to_owned());
            has_configured = true;
        } else if config
            .get(&format!("cursor_column.{}", table.name))
            .is_some()
        {
            return Err(Error::config(format!(
                "cursor_column.{}: table `{}` has no column `{c}`",
                table.name, table.name
            )));
        }
    }
    for k in &table.primary_key {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    if names.is_empty() {
        return Err(Error::config(format!(
            "table `{}` has no primary key: name a column to read it in order with `cursor_column.{}`",
            table.name, table.name
        )));
    }
    let columns = names
        .iter()
        .filter_map(|n| table.column(n).cloned())
        .collect();
    Ok((columns, has_configured))
}

pub fn read(config: &Config, schema: &str, request: ReadRequest) -> Result<ReadPage, Error> {
    let table = catalog::table(schema, &request.entity)?;
    if !table.can_select {
        return Err(Error::config(format!(
            "permission missing: cannot read table `{}`",
            table.name
        )));
    }
    let (keys, has_configured) = cursor_columns(config, &table)?;
    let limit = request.max_records.max(1) as usize;

    let mut select: Vec<String> = table.columns.iter().map(ColumnInfo::select_expr).collect();
    for (i, k) in keys.iter().enumerate() {
        select.push(format!("{}::text AS \"__weir_cursor_{i}\"", ident(&k.name)));
    }
    let mut params: Vec<DbValue> = Vec::new();
    let mut conditions: Vec<String> = Vec::new();
    if let Some(cursor) = &request.cursor {
        let values: Vec<String> = serde_json::from_str(cursor)
            .ok()
            .filter(|v: &Vec<String>| v.len() == keys.len())
            .ok_or_else(|| {
                Error::config(format!(
                    "cursor `{cursor}` does not fit the cursor columns of `{}` ({}); was cursor_column changed?",
                    table.name,
                    names(&keys)
                ))
            })?;
        let mut placeholders = Vec::new();
        for (k, v) in keys.iter().zip(values) {
            params.push(DbValue::Text(v));
            placeholders.push(format!("CAST(${} AS {})", params.len(), k.sql_type));
        }
        conditions.push(format!(
            "({}) > ({})",
            keys.iter()
                .map(|k| ident(&k.name))
                .collect::<Vec<_>>()
                .join(", "),
            placeholders.join(", ")
        ));
    }
    if let Some(since) = config.get("updated_since").filter(|s| !s.is_empty()) {
        // Only on the configured cursor column (an `updated_at`), never on a key.
        let first = &keys[0];
        if has_configured {
            params.push(DbValue::Text(since.to_owned()));
            conditions.push(format!(
                "{} >= CAST(${} AS {})",
                ident(&first.name),
                params.len(),
                first.sql_type
            ));
        }
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let statement = format!(
        "SELECT {} FROM {}{filter} ORDER BY {} LIMIT {}",
        select.join(", "),
        table.qualified(),
        keys.iter()
            .map(|k| ident(&k.name))
            .collect::<Vec<_>>()
            .join(", "),
        limit + 1
    );
    let set = sql::query(&statement, &params)?;

    let fields: Vec<(&str, FieldType)> = table
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.field_type()))
        .collect();
    let done = set.rows.len() <= limit;
    let rows = &set.rows[..set.rows.len().min(limit)];
    let mut builder = BatchBuilder::with_capacity(&fields, rows.len());
    let mut rejected = Vec::new();
    let ncols = table.columns.len();
    for row in rows {
        let cursor: Vec<&str> = row[ncols..].iter().filter_map(sql::text).collect();
        let position = format!("{} {}", names(&keys), cursor.join(", "));
        let mut values = Vec::with_capacity(ncols);
        let mut bad = None;
        for (c, v) in table.columns.iter().zip(&row[..ncols]) {
            match value(v, c.field_type()) {
                Some(v) => values.push(v),
                None => {
                    bad = Some(RecordError::field(
                        &c.name,
                        format!(
                            "a value of type {} cannot be read as {}",
                            c.sql_type,
                            c.field_type()
                        ),
                    ));
                    values.push(Value::Null);
                }
            }
        }
        match bad {
            Some(error) => rejected.push(Rejected {
                position,
                key: Some(cursor.join(",")),
                error,
            }),
            None => builder
                .push_row(&values)
                .map_err(|e| Error::internal(e.to_string()))?,
        }
    }
    let next_cursor = match rows.last() {
        Some(last) => {
            let values: Vec<&str> = last[ncols..].iter().filter_map(sql::text).collect();
            Some(serde_json::to_string(&values).map_err(|e| Error::internal(e.to_string()))?)
        }
        None => request.cursor.clone(),
    };
    Ok(ReadPage {
        records: builder.finish(),
        rejected,
        next_cursor,
        done,
    })
}

fn names(keys: &[ColumnInfo]) -> String {
    keys.iter()
        .map(|k| k.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A returned value as a weir value of `ty` (`None`: it does not fit).
fn value(v: &DbValue, ty: FieldType) -> Option<Value> {
    Some(match (v, ty) {
        (DbValue::Null, _) => Value::Null,
        (DbValue::Boolean(b), FieldType::Boolean) => Value::Boolean(*b),
        (DbValue::Int64(i), FieldType::Integer) => Value::Integer(*i),
        (DbValue::Float64(x), FieldType::Float) => Value::Float(*x),
        (DbValue::Decimal(s), FieldType::Decimal) => Value::Decimal(s.clone()),
        (DbValue::Text(s), FieldType::Text) => Value::Text(s.clone()),
        (DbValue::Timestamp(t), FieldType::Timestamp) => Value::Timestamp(*t),
        (DbValue::Bytes(b), FieldType::Bytes) => Value::Bytes(b.clone()),
        _ => return None,
    })
}
