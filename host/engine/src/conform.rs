//! Holds a source's pages to the schema its connector declared.
//!
//! Why: the mappings are compiled and type-checked against the declared schema, and the
//! destination trusts what the mappings produce. A source that declares `id` an integer
//! and sends the text `abc` would otherwise be written as it came, and the run would say
//! Completed. A column whose type is not the declared one fails each record that has a
//! value in it (field, declared type, value), like any record the source could not read;
//! the others go on. Null values carry no type and always conform; columns the schema
//! does not name are left to the mappings (which only read declared fields).

use weir_types::{Batch, EntitySchema, ReadPage, RecordError, Rejected, Value};

/// How much of a value a record error quotes.
const QUOTE_CHARS: usize = 64;

/// Moves the records of `page` with a value of the wrong type into its rejected
/// records. Costs one comparison per column when the page conforms.
pub(crate) fn conform_page(page: &mut ReadPage, schema: &EntitySchema, plugin: &str) {
    let batch = &page.records;
    let mut bad: Vec<Option<RecordError>> = Vec::new();
    for column in &batch.columns {
        let Some(declared) = schema.fields.iter().find(|f| f.name == column.name) else {
            continue;
        };
        let sent = column.data.field_type();
        if sent == declared.field_type {
            continue;
        }
        if bad.is_empty() {
            bad = vec![None; batch.len()];
        }
        for (i, slot) in bad.iter_mut().enumerate() {
            if slot.is_some() || column.is_null(i) {
                continue;
            }
            *slot = Some(RecordError {
                message: format!(
                    "source plugin `{plugin}` declared field `{}` as {}, but sent {} {}",
                    column.name,
                    declared.field_type,
                    sent,
                    quote(&column.value(i)),
                ),
                field: Some(column.name.clone()),
            });
        }
    }
    if bad.iter().all(Option::is_none) {
        return;
    }
    let keep: Vec<bool> = bad.iter().map(Option::is_none).collect();
    for (i, error) in bad.into_iter().enumerate() {
        let Some(error) = error else { continue };
        page.rejected.push(Rejected {
            position: format!("record {} of its page", i + 1),
            key: source_key(batch, &schema.key_fields, i),
            error,
        });
    }
    page.records = page.records.filter(&keep);
}

fn source_key(batch: &Batch, key_fields: &[String], i: usize) -> Option<String> {
    if key_fields.is_empty() {
        return None;
    }
    let key = batch.row(i).key(key_fields);
    (!key.is_empty()).then_some(key)
}

fn quote(v: &Value) -> String {
    let text = match v {
        Value::Bytes(b) => format!("{} bytes", b.len()),
        other => format!("`{}`", other.to_text()),
    };
    if text.chars().count() > QUOTE_CHARS {
        let cut: String = text.chars().take(QUOTE_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}
