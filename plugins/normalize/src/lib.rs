//! `normalize`: a weir transform that writes phone numbers in E.164 and emails
//! trimmed and lower-cased, so records from different systems compare equal.
//!
//! What it is: for each configured text field, every value is rewritten
//! (`(415) 555-0134` → `+14155550134`, ` Ada@Example.COM` → `ada@example.com`);
//! a value that cannot be fails its record with a message naming the field and
//! the value. Nulls pass through. Only the configured columns are touched, each
//! rewritten in one pass into one new buffer.
//!
//! What it is not: a phone-number database. It knows no national numbering plans
//! beyond North America's fixed length (country code 1): it checks the E.164
//! length (8 to 15 digits), not whether a number exists, and it does not validate
//! email domains.

mod rules;

use weir_sdk::*;

use rules::{normalize_email, phone_to_e164, valid_country_code};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Phone,
    Email,
}

#[derive(Debug, PartialEq)]
struct Options {
    /// `(field, kind, the option that named it)`, phones first.
    fields: Vec<(String, Kind, &'static str)>,
    country_code: String,
}

impl Options {
    fn from_config(config: &Config) -> Result<Options, Error> {
        // An option set to nothing means no such fields; unset means the default.
        let list = |key: &str, default: &str| match config.get(key) {
            None => vec![default.to_owned()],
            Some(_) => config.list(key),
        };
        let mut fields = Vec::new();
        for (option, kind, default) in [
            ("phone_fields", Kind::Phone, "phone"),
            ("email_fields", Kind::Email, "email"),
        ] {
            for field in list(option, default) {
                if fields.iter().any(|(f, _, _)| *f == field) {
                    return Err(Error::config(format!(
                        "field `{field}` is named twice in `phone_fields` and `email_fields`"
                    )));
                }
                fields.push((field, kind, option));
            }
        }
        let country_code = config.get_or("default_country_code", "1").trim().to_owned();
        if !valid_country_code(&country_code) {
            return Err(Error::config(format!(
                "option `default_country_code`: `{country_code}` is not a country calling code (1 to 3 digits, such as 1 or 44)"
            )));
        }
        Ok(Options {
            fields,
            country_code,
        })
    }
}

/// The error for a configured field that the input lacks or that is not text.
fn field_error<'a>(
    field: &str,
    option: &str,
    problem: &str,
    input: impl Iterator<Item = &'a str>,
) -> Error {
    let names: Vec<&str> = input.collect();
    let fields = if names.is_empty() {
        "the input has no fields".to_owned()
    } else {
        format!("the input fields are: {}", names.join(", "))
    };
    Error::config(format!(
        "field `{field}` (from `{option}`) {problem}; {fields}"
    ))
}

/// Rewrites one text column in place: a new buffer for the values, the same null
/// flags. Failed values keep their original text.
fn rewrite(
    column: &mut Column,
    kind: Kind,
    country_code: &str,
    failed: &mut [bool],
    failures: &mut Vec<(u32, RecordError)>,
) {
    let Column { name, data, nulls } = column;
    let ColumnData::Text(old) = data else {
        return;
    };
    let n = old.len();
    // E.164 adds at most `+` and a country code to the digits it keeps; emails
    // only shrink (ASCII) or stay close (the rare non-ASCII lower case).
    let extra = if kind == Kind::Phone {
        n * (1 + country_code.len())
    } else {
        0
    };
    let mut new = VarData::with_capacity(n, old.data.len() + extra);
    for (i, already_failed) in failed.iter_mut().enumerate().take(n) {
        if nulls.get(i).copied().unwrap_or(false) {
            new.offsets.push(new.data.len() as u32);
            continue;
        }
        let value = old.get_str(i);
        let done = match (kind, value) {
            (Kind::Phone, Some(v)) => phone_to_e164(v, country_code, &mut new.data)
                .map_err(|why| format!("cannot normalise `{v}` to E.164: {why}")),
            (Kind::Email, Some(v)) => normalize_email(v, &mut new.data)
                .then_some(())
                .ok_or_else(|| format!("`{v}` is not an email address")),
            // The host validates batches; this is only a guard.
            (_, None) => Err("the value is not UTF-8 text".to_owned()),
        };
        if let Err(message) = done {
            new.data.extend_from_slice(old.get(i));
            // One failure per record: the host drops it whole, so a second reason
            // would only count it twice.
            if !*already_failed {
                *already_failed = true;
                failures.push((i as u32, RecordError::field(name.as_str(), message)));
            }
        }
        new.offsets.push(new.data.len() as u32);
    }
    *old = new;
}

struct Normalize;

impl Transform for Normalize {
    fn info() -> PluginInfo {
        PluginInfo::new(
            "normalize",
            env!("CARGO_PKG_VERSION"),
            "Phone numbers to E.164, emails trimmed and lower-cased; values that cannot be fail their record.",
        )
        .option(
            ConfigField::new(
                "phone_fields",
                "Comma-separated text fields holding phone numbers (empty for none).",
            )
            .default_value("phone"),
        )
        .option(
            ConfigField::new(
                "email_fields",
                "Comma-separated text fields holding email addresses (empty for none).",
            )
            .default_value("email"),
        )
        .option(
            ConfigField::new(
                "default_country_code",
                "The country calling code of national phone numbers (those without `+` or `00`).",
            )
            .default_value("1"),
        )
    }

    fn output_schema(config: &Config, input: Vec<FieldSchema>) -> Result<Vec<FieldSchema>, Error> {
        let options = Options::from_config(config)?;
        let names = || input.iter().map(|f| f.name.as_str());
        for (field, _, option) in &options.fields {
            match input.iter().find(|f| f.name == *field) {
                None => return Err(field_error(field, option, "is not in the input", names())),
                Some(f) if f.field_type != FieldType::Text => {
                    let problem = format!("is {}, not text", f.field_type);
                    return Err(field_error(field, option, &problem, names()));
                }
                Some(_) => {}
            }
        }
        Ok(input)
    }

    fn transform(config: &Config, mut records: Batch) -> Result<Transformed, Error> {
        let options = Options::from_config(config)?;
        let mut failed = vec![false; records.len()];
        let mut failures = Vec::new();
        for (field, kind, option) in &options.fields {
            let names = || records.columns.iter().map(|c| c.name.as_str());
            let Some(i) = records.column_index(field) else {
                return Err(field_error(field, option, "is not in the input", names()));
            };
            let ty = records.columns[i].data.field_type();
            if ty != FieldType::Text {
                let problem = format!("is {ty}, not text");
                return Err(field_error(field, option, &problem, names()));
            }
            rewrite(
                &mut records.columns[i],
                *kind,
                &options.country_code,
                &mut failed,
                &mut failures,
            );
        }
        failures.sort_by_key(|(i, _)| *i);
        Ok(Transformed { records, failures })
    }
}

export_transform!(Normalize);

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

    fn people(rows: &[(i64, Option<&str>, Option<&str>)]) -> Batch {
        let mut b = BatchBuilder::new(&[
            ("id", FieldType::Integer),
            ("phone", FieldType::Text),
            ("email", FieldType::Text),
        ]);
        let text = |v: &Option<&str>| v.map_or(Value::Null, |s| Value::Text(s.into()));
        for (id, phone, email) in rows {
            b.push_row(&[Value::Integer(*id), text(phone), text(email)])
                .unwrap();
        }
        b.finish()
    }

    #[test]
    fn options() {
        let o = Options::from_config(&Config::default()).unwrap();
        assert_eq!(
            o.fields,
            vec![
                ("phone".into(), Kind::Phone, "phone_fields"),
                ("email".into(), Kind::Email, "email_fields")
            ]
        );
        assert_eq!(o.country_code, "1");
        let o = Options::from_config(&config(&[
            ("phone_fields", "mobile, fax"),
            ("email_fields", ""),
            ("default_country_code", " 44 "),
        ]))
        .unwrap();
        let names: Vec<_> = o.fields.iter().map(|(f, _, _)| f.as_str()).collect();
        assert_eq!(names, ["mobile", "fax"]);
        assert_eq!(o.country_code, "44");
        for bad in [
            config(&[("default_country_code", "+44")]),
            config(&[("default_country_code", "")]),
            config(&[("phone_fields", "contact"), ("email_fields", "contact")]),
        ] {
            assert!(matches!(
                Options::from_config(&bad),
                Err(Error::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn output_schema_checks_fields() {
        let input = vec![
            FieldSchema::new("id", FieldType::Integer),
            FieldSchema::new("phone", FieldType::Text),
            FieldSchema::new("email", FieldType::Text),
        ];
        assert_eq!(
            Normalize::output_schema(&Config::default(), input.clone()).unwrap(),
            input
        );
        let err = Normalize::output_schema(&config(&[("email_fields", "mail")]), input.clone())
            .unwrap_err();
        assert_eq!(
            err,
            Error::config(
                "field `mail` (from `email_fields`) is not in the input; the input fields are: id, phone, email"
            )
        );
        let err = Normalize::output_schema(&config(&[("phone_fields", "id")]), input).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("`id` (from `phone_fields`) is integer, not text")),
            "{err}"
        );
        let err = Normalize::output_schema(&Config::default(), vec![]).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.ends_with("is not in the input; the input has no fields")),
            "{err}"
        );
        let err = Normalize::output_schema(
            &config(&[("phone_fields", "id")]),
            vec![FieldSchema::new("id", FieldType::Integer)],
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("`id` (from `phone_fields`) is integer, not text")),
            "{err}"
        );
    }

    #[test]
    fn transform_rewrites_and_fails_per_record() {
        let batch = people(&[
            (1, Some("(415) 555-0134"), Some(" Ada@Example.COM ")),
            (2, None, None),
            (3, Some("555-CALL-NOW"), Some("not-an-email")),
            (4, Some("0044 20 7946 0958"), Some("bo@x.org")),
            (5, Some("+44 20 7946 0958"), Some("bad@")),
        ]);
        let out = Normalize::transform(&Config::default(), batch).unwrap();
        out.records.validate().unwrap();
        assert_eq!(out.records.len(), 5);
        let col = |name: &str| -> Vec<Option<&str>> {
            out.records.rows().map(|r| r.text(name)).collect()
        };
        assert_eq!(
            col("phone"),
            vec![
                Some("+14155550134"),
                None,
                Some("555-CALL-NOW"),
                Some("+442079460958"),
                Some("+442079460958")
            ]
        );
        assert_eq!(
            col("email"),
            vec![
                Some("ada@example.com"),
                None,
                Some("not-an-email"),
                Some("bo@x.org"),
                Some("bad@")
            ]
        );
        assert_eq!(
            out.failures,
            vec![
                (
                    2,
                    RecordError::field(
                        "phone",
                        "cannot normalise `555-CALL-NOW` to E.164: `C` is not allowed in a phone number"
                    )
                ),
                (
                    4,
                    RecordError::field("email", "`bad@` is not an email address")
                ),
            ]
        );
        // Untouched columns are untouched, nulls kept.
        assert_eq!(out.records.row(4).get("id"), Some(Value::Integer(5)));
        assert!(out.records.column("phone").unwrap().is_null(1));
    }

    #[test]
    fn transform_errors_on_a_missing_or_wrong_column() {
        let err =
            Normalize::transform(&config(&[("phone_fields", "mobile")]), people(&[])).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("`mobile`")),
            "{err}"
        );
        let err =
            Normalize::transform(&config(&[("phone_fields", "id")]), people(&[])).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("is integer, not text")),
            "{err}"
        );
        let out = Normalize::transform(
            &config(&[("phone_fields", ""), ("email_fields", "")]),
            people(&[(1, Some("junk"), Some("junk"))]),
        )
        .unwrap();
        assert!(out.failures.is_empty());
    }

    #[test]
    fn big_batches_stay_well_formed() {
        let rows: Vec<(i64, Option<&str>, Option<&str>)> = (0..5000)
            .map(|i| match i % 3 {
                0 => (i, Some("415.555.0134"), Some("A@B.CO")),
                1 => (i, None, Some("x")),
                _ => (i, Some("12"), None),
            })
            .collect();
        let out = Normalize::transform(&Config::default(), people(&rows)).unwrap();
        out.records.validate().unwrap();
        assert_eq!(out.records.len(), 5000);
        assert_eq!(out.failures.len(), 3333);
        assert_eq!(out.records.row(2998).text("email"), Some("x"));
        assert_eq!(out.records.row(2999).text("email"), None);
        assert_eq!(out.records.row(2997).text("phone"), Some("+14155550134"));
        assert_eq!(out.records.row(2997).text("email"), Some("a@b.co"));
    }
}
