//! The record keys a transform hands back, checked against the keys it was given.
//!
//! Why: a transform sees every record between source and destination, and a
//! guest language can corrupt a key without any error. QuickJS carries `s64`
//! as a float, so ids 9007199254740992 and 9007199254740993 both come back as
//! …992; the destination then upserts one record twice ("inserted 1, updated 1")
//! and the run ends Completed with a record lost. The host cannot know what a
//! transform means to do with other fields, but it can see the keys: a key
//! field the transform passes through must come back unchanged, and a
//! transform must not give two records of one batch the same key when their
//! input keys differed. Such records fail, naming the column and both values.
//!
//! "Passes through": a transform whose configuration names a key field (any
//! option value equal to the field name, or listing it among comma-separated
//! names, as `field = "email"`) is taken to rewrite that field on purpose
//! (normalising an email key), so only the second rule applies to it.

use std::collections::HashMap;

use weir_types::{Batch, Column, Config, RecordError, Value};

/// Why a transformed record's key is refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TransformKeyProblem {
    #[error(
        "the transform changed key field `{field}` from `{before}` to `{after}`; the record was not sent"
    )]
    Changed {
        field: String,
        before: String,
        after: String,
    },
    #[error(
        "the transform gave this record the key {key} already given to record {first} of the batch, whose input key was {first_before} (this record's was {before}); the record was not sent"
    )]
    Merged {
        /// `field = value` pairs of the shared output key.
        key: String,
        first: usize,
        first_before: String,
        before: String,
    },
}

impl TransformKeyProblem {
    /// The field to name in the record error.
    pub fn field(&self, key_fields: &[String]) -> String {
        match self {
            TransformKeyProblem::Changed { field, .. } => field.clone(),
            TransformKeyProblem::Merged { .. } => key_fields.join(", "),
        }
    }
}

/// The key values of a batch before a transform, kept so the batch itself can
/// be moved into the call. Copies only the key columns.
pub struct KeysBefore {
    fields: Vec<String>,
    /// Key field `f`'s column; `None` when the batch has no such column (a key
    /// the transform is expected to add). A clone of a column is a few copies,
    /// and comparing whole columns keeps the common case (keys untouched) cheap.
    columns: Vec<Option<Column>>,
}

impl KeysBefore {
    pub fn new(key_fields: &[String], batch: &Batch) -> KeysBefore {
        KeysBefore {
            fields: key_fields.to_vec(),
            columns: key_fields
                .iter()
                .map(|f| batch.column(f).cloned())
                .collect(),
        }
    }

    /// Checks the transform's `output` (one record per input record, as the
    /// runtime already enforced); `failed` are the records the transform
    /// itself failed, which are not checked. `config` is the step's
    /// configuration (see the module comment on fields it names).
    pub fn check(
        &self,
        output: &Batch,
        config: &Config,
        failed: &[u32],
    ) -> Vec<(usize, TransformKeyProblem)> {
        let mut refused: Vec<(usize, TransformKeyProblem)> = Vec::new();
        // Without every key field in the input there is no input key to compare.
        let Some(columns) = self
            .columns
            .iter()
            .map(Option::as_ref)
            .collect::<Option<Vec<&Column>>>()
        else {
            return refused;
        };
        let mut outputs = Vec::with_capacity(self.fields.len());
        for f in &self.fields {
            match output.column(f) {
                Some(c) => outputs.push(c),
                // The transform dropped a key column: the key check after all
                // steps names it (empty key) for every record.
                None => return refused,
            }
        }
        if self.fields.is_empty() || columns.iter().zip(&outputs).all(|(a, b)| a == b) {
            return refused;
        }
        let n = output.len();
        let mut skip = vec![false; n];
        for &i in failed {
            if let Some(s) = skip.get_mut(i as usize) {
                *s = true;
            }
        }
        let was: Vec<Vec<Value>> = columns
            .iter()
            .map(|c| (0..n).map(|i| c.value(i)).collect())
            .collect();
        let after: Vec<Vec<Value>> = outputs
            .iter()
            .map(|c| (0..n).map(|i| c.value(i)).collect())
            .collect();
        let before = |i: usize| -> Vec<&Value> { was.iter().map(|v| &v[i]).collect() };
        let named = |field: &str| {
            config
                .entries()
                .iter()
                .any(|(_, v)| v == field || v.split(',').any(|part| part.trim() == field))
        };
        for (fi, field) in self.fields.iter().enumerate() {
            if named(field) {
                continue;
            }
            for i in 0..n {
                if !skip[i] && !same_value(&was[fi][i], &after[fi][i]) {
                    skip[i] = true;
                    refused.push((
                        i,
                        TransformKeyProblem::Changed {
                            field: field.clone(),
                            before: shown(&was[fi][i]),
                            after: shown(&after[fi][i]),
                        },
                    ));
                }
            }
        }
        // Records two different input keys ended up sharing. Keyed by the
        // output key's text, per batch (across batches the read's key check
        // refuses duplicates).
        let mut first: HashMap<String, usize> = HashMap::new();
        for i in 0..n {
            if skip[i] {
                continue;
            }
            let key = self
                .fields
                .iter()
                .enumerate()
                .map(|(fi, f)| format!("`{f}` = `{}`", shown(&after[fi][i])))
                .collect::<Vec<_>>()
                .join(", ");
            match first.get(&key) {
                Some(&j) if before(j) != before(i) => refused.push((
                    i,
                    TransformKeyProblem::Merged {
                        key,
                        first: j,
                        first_before: join(&before(j)),
                        before: join(&before(i)),
                    },
                )),
                Some(_) => {}
                None => {
                    first.insert(key, i);
                }
            }
        }
        refused
    }

    /// [`check`](Self::check) as record failures to add to the transform's own.
    pub fn failures(
        &self,
        output: &Batch,
        config: &Config,
        failed: &[u32],
    ) -> Vec<(u32, RecordError)> {
        self.check(output, config, failed)
            .into_iter()
            .map(|(i, p)| {
                (
                    i as u32,
                    RecordError::field(p.field(&self.fields), p.to_string()),
                )
            })
            .collect()
    }
}

/// Equal as keys: floats by their bits, so a NaN key that stays NaN is unchanged.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        _ => a == b,
    }
}

/// A value in a message: null as `null`, so it differs from an empty text.
pub fn shown(v: &Value) -> String {
    if v.is_null() {
        "null".to_owned()
    } else {
        v.to_text()
    }
}

fn join(values: &[&Value]) -> String {
    values
        .iter()
        .map(|v| format!("`{}`", shown(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_types::{BatchBuilder, FieldType};

    fn ids(values: &[i64]) -> Batch {
        let mut b = BatchBuilder::new(&[("id", FieldType::Integer), ("name", FieldType::Text)]);
        for v in values {
            b.push_row(&[Value::Integer(*v), Value::Text("x".into())])
                .unwrap();
        }
        b.finish()
    }

    fn key() -> Vec<String> {
        vec!["id".to_owned()]
    }

    #[test]
    fn a_rounded_key_fails_naming_the_column_and_both_values() {
        let before = KeysBefore::new(&key(), &ids(&[9007199254740992, 9007199254740993]));
        let after = ids(&[9007199254740992, 9007199254740992]);
        let problems = before.check(&after, &Config::default(), &[]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, 1);
        let text = problems[0].1.to_string();
        assert!(
            text.contains("`id`")
                && text.contains("9007199254740993")
                && text.contains("9007199254740992"),
            "{text}"
        );
    }

    #[test]
    fn unchanged_keys_and_failed_records_pass() {
        let input = ids(&[1, 2, 3]);
        let before = KeysBefore::new(&key(), &input);
        assert!(before.check(&input, &Config::default(), &[]).is_empty());
        let after = ids(&[1, 7, 3]);
        assert!(before.check(&after, &Config::default(), &[1]).is_empty());
    }

    #[test]
    fn a_transform_that_names_the_key_may_rewrite_it_but_not_merge_records() {
        let before = KeysBefore::new(&key(), &ids(&[1, 2, 3]));
        let config = Config::new(vec![("field".into(), "id".into())]);
        assert!(before.check(&ids(&[10, 20, 30]), &config, &[]).is_empty());
        let merged = before.check(&ids(&[10, 10, 30]), &config, &[]);
        assert_eq!(merged.len(), 1, "{merged:?}");
        let text = merged[0].1.to_string();
        assert!(
            text.contains("`id` = `10`") && text.contains("`1`") && text.contains("`2`"),
            "{text}"
        );
    }

    #[test]
    fn same_input_keys_are_left_to_the_read_key_check() {
        let input = ids(&[5, 5]);
        let before = KeysBefore::new(&key(), &input);
        assert!(before.check(&input, &Config::default(), &[]).is_empty());
    }
}
