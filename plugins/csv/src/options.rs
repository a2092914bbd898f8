//! The connection's options, parsed once per call.

use weir_sdk::{Config, Error, FieldType};

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub delimiter: u8,
    /// Declared column types, in the order written. Columns not named here are
    /// text.
    pub types: Vec<(String, FieldType)>,
}

impl Options {
    pub fn from_config(config: &Config) -> Result<Options, Error> {
        Options::parse(config.get("delimiter"), config.get("types"))
    }

    pub fn parse(delimiter: Option<&str>, types: Option<&str>) -> Result<Options, Error> {
        Ok(Options {
            delimiter: parse_delimiter(delimiter.unwrap_or(","))?,
            types: parse_types(types.unwrap_or(""))?,
        })
    }

    /// The type of a column: declared, else text. Never inferred from the data, so
    /// every page of a file (and every file) agrees on it.
    pub fn type_of(&self, column: &str) -> FieldType {
        self.types
            .iter()
            .find(|(name, _)| name == column)
            .map_or(FieldType::Text, |(_, t)| *t)
    }
}

fn parse_delimiter(text: &str) -> Result<u8, Error> {
    // A literal tab is awkward to write in a project file, hence the spellings.
    if text == "\\t" || text.eq_ignore_ascii_case("tab") {
        return Ok(b'\t');
    }
    match text.as_bytes() {
        [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => Ok(*b),
        _ => Err(Error::config(format!(
            "option `delimiter`: `{text}` is not one ASCII character (other than a quote or a line break; `\\t` means tab)"
        ))),
    }
}

fn parse_types(text: &str) -> Result<Vec<(String, FieldType)>, Error> {
    let mut out: Vec<(String, FieldType)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = |why: &str| Error::config(format!("option `types`: `{item}`: {why}"));
        // The last colon splits, so a column name may itself contain one.
        let (name, ty) = item
            .rsplit_once(':')
            .ok_or_else(|| bad("expected `column:type`"))?;
        let (name, ty) = (name.trim(), ty.trim());
        if name.is_empty() {
            return Err(bad("the column name is empty"));
        }
        // Timestamps and bytes have no single obvious CSV spelling; declaring them
        // would be a guess, so they stay text for the user to convert.
        let ty = match FieldType::from_name(ty) {
            Some(
                t @ (FieldType::Boolean
                | FieldType::Integer
                | FieldType::Float
                | FieldType::Decimal
                | FieldType::Text),
            ) => t,
            _ => {
                return Err(bad(&format!(
                    "unknown type `{ty}` (use boolean, integer, float, decimal or text)"
                )));
            }
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad("the column is declared twice"));
        }
        out.push((name.to_owned(), ty));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let o = Options::parse(None, None).unwrap();
        assert_eq!(o.delimiter, b',');
        assert!(o.types.is_empty());
        assert_eq!(o.type_of("anything"), FieldType::Text);
    }

    #[test]
    fn delimiters() {
        assert_eq!(Options::parse(Some(";"), None).unwrap().delimiter, b';');
        assert_eq!(Options::parse(Some("\t"), None).unwrap().delimiter, b'\t');
        assert_eq!(Options::parse(Some("\\t"), None).unwrap().delimiter, b'\t');
        assert_eq!(Options::parse(Some("TAB"), None).unwrap().delimiter, b'\t');
        for bad in ["", ";;", "\"", "é", "\n"] {
            let err = Options::parse(Some(bad), None).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.contains("delimiter")),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn declared_types() {
        let o = Options::parse(
            None,
            Some("id:integer, amount:decimal,active:boolean,score:float,,a:b:text"),
        )
        .unwrap();
        assert_eq!(o.type_of("id"), FieldType::Integer);
        assert_eq!(o.type_of("amount"), FieldType::Decimal);
        assert_eq!(o.type_of("active"), FieldType::Boolean);
        assert_eq!(o.type_of("score"), FieldType::Float);
        assert_eq!(o.type_of("a:b"), FieldType::Text);
        assert_eq!(o.type_of("name"), FieldType::Text);
        for (bad, needle) in [
            ("id", "column:type"),
            (":integer", "empty"),
            ("id:int", "unknown type `int`"),
            ("at:timestamp", "unknown type"),
            ("id:integer,id:text", "twice"),
        ] {
            let err = Options::parse(None, Some(bad)).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidConfig(m) if m.contains(needle)),
                "{bad}: {err}"
            );
        }
    }
}
