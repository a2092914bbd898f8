//! `testkit-transform`: a weir transform for the host's own tests. Not bundled
//! into the product.
//!
//! What it is: a pass-through that can fail chosen records (`fail_field` +
//! `fail_contains`), add a text column (`add_field`, every value `x`), and act out
//! the same hostile `mode`s as the `testkit` connector (endless loop, unbounded
//! memory, unbounded recursion, panic, reading a file...) in `transform`.
//!
//! What it is not: a useful transform.

// The hostile modes are the connector's, word for word: one file, so the two
// plugins cannot drift apart.
#[path = "../../testkit-connector/src/hostile.rs"]
mod hostile;

use weir_sdk::*;

use hostile::{MODES, Mode, act};

struct Options {
    mode: Mode,
    /// `(field, text)`: fail the records whose field contains the text.
    fail: Option<(String, String)>,
    add_field: Option<String>,
}

impl Options {
    fn from_config(config: &Config) -> Result<Options, Error> {
        let fail = match (config.get("fail_field"), config.get("fail_contains")) {
            (Some(f), Some(c)) => Some((f.to_owned(), c.to_owned())),
            (None, None) => None,
            _ => {
                return Err(Error::config(
                    "options `fail_field` and `fail_contains` go together",
                ));
            }
        };
        Ok(Options {
            mode: Mode::from_config(config)?,
            fail,
            add_field: config.get("add_field").map(str::to_owned),
        })
    }
}

struct TestkitTransform;

impl Transform for TestkitTransform {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "testkit-transform",
            env!("CARGO_PKG_VERSION"),
            "For the host's tests: fails chosen records, adds a column, and hostile modes.",
        )
        .option(
            ConfigField::new("mode", &format!("How to misbehave in transform: {MODES}."))
                .default_value("ok"),
        )
        .option(ConfigField::new(
            "path",
            "The file that modes `open` and `write-outside` try.",
        ))
        .option(ConfigField::new(
            "fail_field",
            "The field that `fail_contains` looks at.",
        ))
        .option(ConfigField::new(
            "fail_contains",
            "Fail records whose `fail_field` contains this text.",
        ))
        .option(ConfigField::new(
            "add_field",
            "Add a text column of this name, every value `x`.",
        ))
        .option(ConfigField::new(
            "malform",
            "Break the contract in the output: offsets-past-end, offsets-backwards, column-length, utf8, nulls-length, duplicate-column, batch-length, drop-record, failure-index, round-integers.",
        ))
    }

    fn output_schema(
        config: &Config,
        mut input: Vec<FieldSchema>,
    ) -> Result<Vec<FieldSchema>, Error> {
        let options = Options::from_config(config)?;
        if let Some((field, _)) = &options.fail
            && !input.iter().any(|f| f.name == *field)
        {
            return Err(Error::config(format!(
                "fail_field `{field}` is not in the input"
            )));
        }
        if let Some(add) = &options.add_field {
            if input.iter().any(|f| f.name == *add) {
                return Err(Error::config(format!(
                    "add_field `{add}` is already in the input"
                )));
            }
            input.push(FieldSchema::new(add, FieldType::Text));
        }
        Ok(input)
    }

    fn transform(config: &Config, mut records: Batch) -> Result<Transformed, Error> {
        let options = Options::from_config(config)?;
        act(options.mode, config)?;
        let mut failures = Vec::new();
        if let Some((field, needle)) = &options.fail {
            if records.column(field).is_none() {
                return Err(Error::config(format!(
                    "fail_field `{field}` is not in the input"
                )));
            }
            for row in records.rows() {
                let value = row.get(field).map(|v| v.to_text()).unwrap_or_default();
                if value.contains(needle.as_str()) {
                    failures.push((
                        row.index() as u32,
                        RecordError::field(
                            field,
                            format!("failed by testkit-transform: `{value}` contains `{needle}`"),
                        ),
                    ));
                }
            }
        }
        if let Some(add) = &options.add_field {
            if records.column(add).is_some() {
                return Err(Error::config(format!(
                    "add_field `{add}` is already in the input"
                )));
            }
            let n = records.len();
            records.columns.push(Column {
                name: add.clone(),
                data: ColumnData::Text(VarData {
                    data: vec![b'x'; n],
                    offsets: (0..=n as u32).collect(),
                }),
                nulls: Vec::new(),
            });
        }
        if let Some(how) = config.get("malform") {
            return malform(how, records, failures);
        }
        Ok(Transformed { records, failures })
    }
}

/// `malform`: answers something the contract forbids, so the host can prove it
/// checks what plugins return. The first text column (or the last record) is
/// broken in the named way.
fn malform(
    how: &str,
    mut records: Batch,
    mut failures: Vec<(u32, RecordError)>,
) -> Result<Transformed, Error> {
    let n = records.len();
    let text = records.columns.iter_mut().find_map(|c| match &mut c.data {
        ColumnData::Text(v) => Some(v),
        _ => None,
    });
    match (how, text) {
        // An offset past the end of the text buffer.
        ("offsets-past-end", Some(v)) => {
            if let Some(last) = v.offsets.last_mut() {
                *last = u32::MAX;
            }
        }
        // Offsets that go backwards.
        ("offsets-backwards", Some(v)) if v.offsets.len() > 2 => v.offsets.swap(1, 2),
        // One offset too few: the column is a record short.
        ("column-length", Some(v)) => {
            v.offsets.pop();
        }
        // Bytes that are not UTF-8 in a text column.
        ("utf8", Some(v)) => {
            if let Some(b) = v.data.first_mut() {
                *b = 0xff;
            }
        }
        // A nulls list of the wrong length.
        ("nulls-length", _) => {
            if let Some(c) = records.columns.first_mut() {
                c.nulls = vec![false; n + 7];
            }
        }
        // The same column twice.
        ("duplicate-column", _) => {
            if let Some(c) = records.columns.first().cloned() {
                records.columns.push(c);
            }
        }
        // A batch that claims more records than its columns hold.
        ("batch-length", _) => records.len = n + 1,
        // Fewer records out than in.
        ("drop-record", _) => {
            records = records.filter(&(0..n).map(|i| i + 1 < n).collect::<Vec<_>>());
        }
        // A failure for a record that does not exist.
        ("failure-index", _) => failures.push((
            n as u32 + 1000,
            RecordError::field("id", "failed by testkit-transform: no such record"),
        )),
        // 64-bit integers carried as floats, as QuickJS does: beyond 2^53 they
        // round (…993 becomes …992), silently.
        ("round-integers", _) => {
            for c in &mut records.columns {
                if let ColumnData::Integer(v) | ColumnData::Timestamp(v) = &mut c.data {
                    v.iter_mut().for_each(|x| *x = *x as f64 as i64);
                }
            }
        }
        (other, _) => {
            return Err(Error::config(format!(
                "option `malform`: unknown or inapplicable `{other}`"
            )));
        }
    }
    Ok(Transformed { records, failures })
}

export_transform!(TestkitTransform);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    fn people() -> Batch {
        let mut b = BatchBuilder::new(&[("id", FieldType::Integer), ("email", FieldType::Text)]);
        for (id, email) in [(1, Some("a@x.org")), (2, Some("bad@y.org")), (3, None)] {
            b.push_row(&[
                Value::Integer(id),
                email.map_or(Value::Null, |e| Value::Text(e.into())),
            ])
            .unwrap();
        }
        b.finish()
    }

    #[test]
    fn passes_through_by_default() {
        let out = TestkitTransform::transform(&Config::default(), people()).unwrap();
        assert_eq!(out.records, people());
        assert!(out.failures.is_empty());
    }

    #[test]
    fn fails_chosen_records_and_adds_a_column() {
        let cfg = config(&[
            ("fail_field", "email"),
            ("fail_contains", "bad"),
            ("add_field", "tag"),
        ]);
        let out = TestkitTransform::transform(&cfg, people()).unwrap();
        out.records.validate().unwrap();
        assert_eq!(
            out.failures,
            vec![(
                1,
                RecordError::field(
                    "email",
                    "failed by testkit-transform: `bad@y.org` contains `bad`"
                )
            )]
        );
        let tags: Vec<_> = out.records.rows().map(|r| r.text("tag")).collect();
        assert_eq!(tags, vec![Some("x"); 3]);
        let schema = TestkitTransform::output_schema(
            &cfg,
            vec![
                FieldSchema::new("id", FieldType::Integer),
                FieldSchema::new("email", FieldType::Text),
            ],
        )
        .unwrap();
        assert_eq!(
            schema.last(),
            Some(&FieldSchema::new("tag", FieldType::Text))
        );
        // An empty batch gets a well-formed empty column.
        let out = TestkitTransform::transform(&cfg, people().filter(&[false; 3])).unwrap();
        out.records.validate().unwrap();
    }

    #[test]
    fn option_errors() {
        for (pairs, needle) in [
            (&[("fail_field", "email")][..], "go together"),
            (
                &[("fail_field", "nope"), ("fail_contains", "x")][..],
                "`nope`",
            ),
            (&[("add_field", "email")][..], "already in the input"),
            (&[("mode", "nope")][..], "unknown mode"),
        ] {
            let err = TestkitTransform::transform(&config(pairs), people()).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.contains(needle)),
                "{err}"
            );
        }
        let cfg = config(&[("mode", "open"), ("path", "/definitely/not/here")]);
        let err = TestkitTransform::transform(&cfg, people()).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.starts_with("cannot open /definitely/not/here"))
        );
    }
}
