//! What the database holds, from `pg_catalog`: schemas (organizations), tables
//! (entities), their columns, types, NOT NULL constraints and primary keys.

use weir_sdk::{EntitySchema, Error, FieldSchema, FieldType, Organization};

use crate::sql::{self, DbValue, boolean, text};

/// Schemas the user may use, without PostgreSQL's own.
pub fn schemas() -> Result<Vec<Organization>, Error> {
    let set = sql::query(
        "SELECT nspname::text FROM pg_catalog.pg_namespace \
         WHERE nspname NOT IN ('pg_catalog', 'information_schema') \
           AND nspname NOT LIKE 'pg\\_%' \
           AND has_schema_privilege(oid, 'USAGE') \
         ORDER BY nspname",
        &[],
    )?;
    Ok(set
        .rows
        .iter()
        .filter_map(|r| text(&r[0]))
        .map(|name| Organization {
            id: name.to_owned(),
            name: name.to_owned(),
            kind: "schema".to_owned(),
        })
        .collect())
}

/// One column of a table.
#[derive(Clone, Debug)]
pub struct ColumnInfo {
    pub name: String,
    /// `pg_type.typname` (of the base type, for a domain): `int4`, `varchar`.
    pub type_name: String,
    /// `format_type`: `integer`, `character varying(40)`, for casts.
    pub sql_type: String,
    pub not_null: bool,
    /// A default, an identity or a generated column.
    pub has_default: bool,
    pub generated: bool,
}

impl ColumnInfo {
    pub fn field_type(&self) -> FieldType {
        field_type(&self.type_name)
    }

    /// How to select it so the host returns a value of [`Self::field_type`]:
    /// types the host does not decode are cast to text.
    pub fn select_expr(&self) -> String {
        let quoted = sql::ident(&self.name);
        let native = matches!(
            self.type_name.as_str(),
            "int2"
                | "int4"
                | "int8"
                | "float4"
                | "float8"
                | "numeric"
                | "bool"
                | "timestamp"
                | "timestamptz"
                | "date"
                | "bytea"
                | "text"
                | "varchar"
                | "bpchar"
                | "name"
                | "uuid"
                | "json"
                | "jsonb"
        );
        if native {
            quoted
        } else {
            format!("{quoted}::text AS {quoted}")
        }
    }
}

/// The weir field type of a PostgreSQL type name.
pub fn field_type(type_name: &str) -> FieldType {
    match type_name {
        "int2" | "int4" | "int8" => FieldType::Integer,
        "float4" | "float8" => FieldType::Float,
        "numeric" => FieldType::Decimal,
        "bool" => FieldType::Boolean,
        "timestamp" | "timestamptz" | "date" => FieldType::Timestamp,
        "bytea" => FieldType::Bytes,
        _ => FieldType::Text,
    }
}

/// A table (or view) with its columns and primary key.
#[derive(Clone, Debug)]
pub struct Table {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    pub can_select: bool,
    /// A table (not a view) the user may insert into and update.
    pub can_write: bool,
}

impl Table {
    /// `"schema"."table"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", sql::ident(&self.schema), sql::ident(&self.name))
    }

    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn schema(&self) -> EntitySchema {
        EntitySchema {
            name: self.name.clone(),
            fields: self
                .columns
                .iter()
                .map(|c| {
                    let mut f = FieldSchema::new(&c.name, c.field_type());
                    f.required = c.not_null && !c.has_default;
                    f.description = c.sql_type.clone();
                    f
                })
                .collect(),
            key_fields: self.primary_key.clone(),
            readable: self.can_select,
            writable: self.can_write,
        }
    }
}

/// The tables of `schema` (or only `only`), in name order.
pub fn tables(schema: &str, only: Option<&str>) -> Result<Vec<Table>, Error> {
    let filter = if only.is_some() {
        " AND c.relname = $2"
    } else {
        ""
    };
    let mut params = vec![DbValue::Text(schema.to_owned())];
    if let Some(t) = only {
        params.push(DbValue::Text(t.to_owned()));
    }
    let rels = sql::query(
        &format!(
            "SELECT c.relname::text, has_table_privilege(c.oid, 'SELECT'), \
                    c.relkind IN ('r', 'p') AND has_table_privilege(c.oid, 'INSERT') \
                        AND has_table_privilege(c.oid, 'UPDATE') \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f'){filter} \
             ORDER BY c.relname"
        ),
        &params,
    )?;
    let columns = sql::query(
        &format!(
            "SELECT c.relname::text, a.attname::text, \
                    (CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END)::text, \
                    format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '', \
                    a.attgenerated <> '' \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype \
             WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped{filter} \
             ORDER BY c.relname, a.attnum"
        ),
        &params,
    )?;
    let keys = sql::query(
        &format!(
            "SELECT c.relname::text, a.attname::text \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE n.nspname = $1 AND i.indisprimary{filter} \
             ORDER BY c.relname, array_position(i.indkey::int2[], a.attnum)"
        ),
        &params,
    )?;
    let mut tables: Vec<Table> = rels
        .rows
        .iter()
        .filter_map(|r| {
            Some(Table {
                schema: schema.to_owned(),
                name: text(&r[0])?.to_owned(),
                columns: Vec::new(),
                primary_key: Vec::new(),
                can_select: boolean(&r[1]),
                can_write: boolean(&r[2]),
            })
        })
        .collect();
    for r in &columns.rows {
        let (Some(table), Some(name), Some(ty), Some(sql_type)) =
            (text(&r[0]), text(&r[1]), text(&r[2]), text(&r[3]))
        else {
            continue;
        };
        if let Some(t) = tables.iter_mut().find(|t| t.name == table) {
            t.columns.push(ColumnInfo {
                name: name.to_owned(),
                type_name: ty.to_owned(),
                sql_type: sql_type.to_owned(),
                not_null: boolean(&r[4]),
                has_default: boolean(&r[5]),
                generated: boolean(&r[6]),
            });
        }
    }
    for r in &keys.rows {
        let (Some(table), Some(column)) = (text(&r[0]), text(&r[1])) else {
            continue;
        };
        if let Some(t) = tables.iter_mut().find(|t| t.name == table) {
            t.primary_key.push(column.to_owned());
        }
    }
    Ok(tables)
}

/// One table, or a configuration error naming what exists.
pub fn table(schema: &str, name: &str) -> Result<Table, Error> {
    tables(schema, Some(name))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Error::config(format!(
                "no table `{name}` in schema `{schema}` (or no permission to see it)"
            ))
        })
}

/// Whether `columns` are exactly the columns of the primary key or of a unique
/// index of the table (what `ON CONFLICT` needs).
pub fn is_unique_key(table: &Table, columns: &[String]) -> Result<bool, Error> {
    let mut wanted: Vec<&str> = columns.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    let mut pk: Vec<&str> = table.primary_key.iter().map(String::as_str).collect();
    pk.sort_unstable();
    if !pk.is_empty() && pk == wanted {
        return Ok(true);
    }
    let set = sql::query(
        "SELECT array_to_string(ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) ORDER BY a.attname), ',') \
         FROM pg_catalog.pg_index i \
         JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2 AND i.indisunique AND i.indpred IS NULL \
           AND i.indexprs IS NULL",
        &[
            DbValue::Text(table.schema.clone()),
            DbValue::Text(table.name.clone()),
        ],
    )?;
    let wanted = {
        let mut w: Vec<String> = columns.to_vec();
        w.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        w.join(",")
    };
    Ok(set
        .rows
        .iter()
        .any(|r| text(&r[0]) == Some(wanted.as_str())))
}
