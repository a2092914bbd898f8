//! `country-lookup`: adds the name of a code from a lookup table in the
//! configuration (`country = FR` → `country_name = France`).
//!
//! What it is: the Rust twin of the Python and JavaScript example transforms
//! (`examples/python-sdk/transform.py`, `examples/js-sdk/transform.js`), option
//! for option, so the per-language benchmark compares the same work. Not
//! bundled into the product.

use std::collections::HashMap;

use weir_sdk::*;

struct Options {
    field: String,
    into: String,
    table: HashMap<String, String>,
    fail_missing: bool,
}

impl Options {
    fn from_config(config: &Config) -> Result<Options, Error> {
        let mut table = HashMap::new();
        for item in config.require("table")?.split(';') {
            match item.split_once('=') {
                Some((code, name)) if !code.trim().is_empty() => {
                    table.insert(code.trim().to_owned(), name.trim().to_owned());
                }
                _ => {
                    return Err(Error::config(format!(
                        "option `table`: `{item}` is not CODE=NAME"
                    )));
                }
            }
        }
        Ok(Options {
            field: config.get_or("field", "country").to_owned(),
            into: config.get_or("into", "country_name").to_owned(),
            table,
            fail_missing: config.get_or("missing", "fail") == "fail",
        })
    }
}

struct CountryLookup;

impl Transform for CountryLookup {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "country-lookup",
            env!("CARGO_PKG_VERSION"),
            "Adds the name of a code from a lookup table (Rust).",
        )
        .option(ConfigField::new("field", "The field holding the code.").default_value("country"))
        .option(
            ConfigField::new("into", "The field to add with the looked-up name.")
                .default_value("country_name"),
        )
        .option(ConfigField::new("table", "CODE=NAME pairs separated by `;`.").required())
        .option(
            ConfigField::new(
                "missing",
                "A code not in the table: `fail` the record or leave the name `null`.",
            )
            .default_value("fail"),
        )
    }

    fn output_schema(config: &Config, input: Vec<FieldSchema>) -> Result<Vec<FieldSchema>, Error> {
        let o = Options::from_config(config)?;
        if !input.iter().any(|f| f.name == o.field) {
            return Err(Error::config(format!("no input field `{}`", o.field)));
        }
        let mut out: Vec<FieldSchema> = input.into_iter().filter(|f| f.name != o.into).collect();
        out.push(FieldSchema::new(&o.into, FieldType::Text));
        Ok(out)
    }

    fn transform(config: &Config, mut records: Batch) -> Result<Transformed, Error> {
        let o = Options::from_config(config)?;
        let Some(codes) = records.column(&o.field) else {
            return Err(Error::config(format!("no input field `{}`", o.field)));
        };
        let n = records.len();
        let mut names = VarData::with_capacity(n, n * 8);
        let mut nulls = vec![false; n];
        let mut failures = Vec::new();
        for (i, null) in nulls.iter_mut().enumerate() {
            match codes.str_at(i) {
                None => {
                    names.push(b"");
                    *null = true;
                }
                Some(code) => match o.table.get(code) {
                    Some(name) => names.push(name.as_bytes()),
                    None => {
                        if o.fail_missing {
                            failures.push((
                                i as u32,
                                RecordError::field(
                                    &o.field,
                                    format!("no entry for `{code}` in the lookup table"),
                                ),
                            ));
                        }
                        names.push(b"");
                        *null = true;
                    }
                },
            }
        }
        records.columns.retain(|c| c.name != o.into);
        records.columns.push(Column {
            name: o.into.clone(),
            data: ColumnData::Text(names),
            nulls: if nulls.contains(&true) { nulls } else { Vec::new() },
        });
        Ok(Transformed { records, failures })
    }
}

export_transform!(CountryLookup);
