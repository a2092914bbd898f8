//! Field mappings applied to a columnar batch.
//!
//! A plain mapping (destination ← source field) moves or clones whole columns:
//! no per-record work at all. Scripted expressions arrive with the mapping issue.

use weir_types::Batch;

use crate::project::Mapping;

/// Mappings ready to apply to batches of one source entity.
pub struct CompiledMappings {
    rows: Vec<Mapping>,
}

/// A mapping that cannot be applied to the source's batches.
#[derive(Debug, thiserror::Error)]
#[error(
    "mapping `{destination}` ← `{source_field}`: the source has no field `{source_field}` (it has: {available})"
)]
pub struct MappingError {
    pub destination: String,
    pub source_field: String,
    pub available: String,
}

impl CompiledMappings {
    pub fn new(rows: &[Mapping]) -> CompiledMappings {
        CompiledMappings {
            rows: rows.to_vec(),
        }
    }

    /// The destination field names, in mapping order.
    pub fn destination_fields(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(|m| m.destination.as_str())
    }

    /// Builds the destination batch: one column per mapping row, in mapping order.
    pub fn apply(&self, mut batch: Batch) -> Result<Batch, MappingError> {
        let mut columns = Vec::with_capacity(self.rows.len());
        for (i, m) in self.rows.iter().enumerate() {
            let Some(idx) = batch.column_index(&m.source) else {
                return Err(MappingError {
                    destination: m.destination.clone(),
                    source_field: m.source.clone(),
                    available: batch
                        .fields()
                        .map(|(n, _)| n)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            // Move the column when no later row reads it; clone otherwise.
            let used_later = self.rows[i + 1..].iter().any(|o| o.source == m.source);
            let mut column = if used_later {
                batch.columns[idx].clone()
            } else {
                let placeholder = weir_types::Column {
                    name: String::new(),
                    data: weir_types::ColumnData::Boolean(Vec::new()),
                    nulls: Vec::new(),
                };
                let col = std::mem::replace(&mut batch.columns[idx], placeholder);
                // Keep the name so a later lookup of this source still fails cleanly.
                batch.columns[idx].name = col.name.clone();
                col
            };
            column.name = m.destination.clone();
            columns.push(column);
        }
        Ok(Batch {
            len: batch.len,
            columns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_types::{BatchBuilder, FieldType, Value};

    #[test]
    fn renames_reorders_and_duplicates_columns() {
        let mut b = BatchBuilder::new(&[("a", FieldType::Integer), ("b", FieldType::Text)]);
        b.push_row(&[Value::Integer(1), Value::Text("x".into())])
            .unwrap();
        let m = CompiledMappings::new(&[
            Mapping::new("B", "b"),
            Mapping::new("A", "a"),
            Mapping::new("A2", "a"),
        ]);
        let out = m.apply(b.finish()).unwrap();
        out.validate().unwrap();
        let names: Vec<_> = out.fields().map(|(n, _)| n).collect();
        assert_eq!(names, ["B", "A", "A2"]);
        assert_eq!(out.row(0).get("A2"), Some(Value::Integer(1)));
        assert_eq!(out.row(0).text("B"), Some("x"));
    }

    #[test]
    fn a_missing_source_field_is_named() {
        let b = BatchBuilder::new(&[("a", FieldType::Integer)]).finish();
        let err = CompiledMappings::new(&[Mapping::new("x", "nope")])
            .apply(b)
            .unwrap_err();
        assert!(
            err.to_string().contains("no field `nope` (it has: a)"),
            "{err}"
        );
    }
}
