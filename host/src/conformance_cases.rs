//! The transform checks of `weir plugin test`: a fixed batch, the built-in
//! edge cases, and the author's own sample and expected output.
//!
//! Why values and not only shapes: the corruptions that lose data are silent.
//! A guest language that carries `s64` as a float rounds 2^53+1; one that
//! reinterprets a typed array turns 2 into 4611686018427387904; both return
//! well-formed batches. So each case sends values at the edges of every column
//! type, in `edge_*` columns no transform knows about, and checks they come
//! back unchanged, with the key (`id` unless `--key` says otherwise) unchanged
//! too. A record the transform fails with a typed error is not compared: a
//! refusal is an answer, a changed value is not.

use weir_types::{
    Batch, BatchBuilder, Config, FieldSchema, FieldType, RecordError, Transformed, Value,
};

use crate::conformance::{Options, Suite};
use crate::conformance_sample::compare_expected;
use crate::engine::transform_check::{KeysBefore, same_value, shown};
use crate::runtime::TransformInstance;

/// The columns every edge case adds, one per field type.
const EDGE_COLUMNS: [(&str, FieldType); 7] = [
    ("edge_boolean", FieldType::Boolean),
    ("edge_integer", FieldType::Integer),
    ("edge_float", FieldType::Float),
    ("edge_decimal", FieldType::Decimal),
    ("edge_text", FieldType::Text),
    ("edge_timestamp", FieldType::Timestamp),
    ("edge_bytes", FieldType::Bytes),
];

/// 2^53 + 1: the first integer an IEEE double cannot hold.
const BEYOND_F64: i64 = 9_007_199_254_740_993;

/// The standard batch, then the edge cases, then the author's sample.
pub(crate) fn transform_checks(
    s: &mut Suite,
    t: &mut TransformInstance,
    config: &Config,
    options: &Options,
    standard: Batch,
    declared: Option<Vec<FieldSchema>>,
) {
    let key = if options.key.is_empty() {
        vec!["id".to_owned()]
    } else {
        options.key.clone()
    };
    let keys = KeysBefore::new(&key, &standard);
    let n = standard.len();
    match s.call(t.transform(config, standard)) {
        Ok(out) => {
            s.record(
                "transform-one-per-record",
                Ok(format!(
                    "{n} records → {} records, {} failures",
                    out.records.len(),
                    out.failures.len()
                )),
            );
            match &declared {
                None => s.not_tried(
                    "transform-honours-schema",
                    "output-schema",
                    "no declared output schema to compare with",
                ),
                Some(d) => s.record(
                    "transform-honours-schema",
                    honours_schema(d, &out.records)
                        .map(|()| "output columns match the declared schema".to_owned()),
                ),
            }
            s.record(
                "transform-keeps-keys",
                keys_kept(&keys, &key, config, &out)
                    .map(|()| format!("key `{}` unchanged in {n} records", key.join(", "))),
            );
        }
        Err(e) => {
            s.record("transform-one-per-record", Err(e.clone()));
            s.not_tried("transform-honours-schema", "transform-one-per-record", &e);
            s.not_tried("transform-keeps-keys", "transform-one-per-record", &e);
        }
    }

    let cases: [(&'static str, fn() -> Batch); 6] = [
        ("edge-nulls", edge_nulls),
        ("edge-text", edge_text),
        ("edge-integers", edge_integers),
        ("edge-timestamps", edge_timestamps),
        ("edge-empty-batch", || edge_batch(&[])),
        ("edge-large-batch", edge_large),
    ];
    if declared.is_none() {
        for (name, _) in cases {
            s.not_tried(name, "output-schema", "the transform has no output schema");
        }
    } else {
        let edge_fields = schema_of(&with_sample_columns(edge_batch(&[]), options));
        let edge_declared = s.call(t.output_schema(config, &edge_fields));
        for (name, batch) in cases {
            let r = match &edge_declared {
                Err(e) => Err(format!("output-schema refused the edge-case columns: {e}")),
                Ok(d) => run_case(s, t, config, &key, d, with_sample_columns(batch(), options))
                    .map(|(detail, _)| detail),
            };
            s.record(name, r);
        }
    }

    let Some(sample) = &options.input else {
        return;
    };
    let r = match s.call(t.output_schema(config, &schema_of(sample))) {
        Err(e) => Err(format!("output-schema refused the sample's fields: {e}")),
        Ok(d) => run_case(s, t, config, &key, &d, sample.clone()),
    };
    let out = match r {
        Ok((detail, out)) => {
            s.record("sample", Ok(detail));
            Some(out)
        }
        Err(e) => {
            s.record("sample", Err(e));
            None
        }
    };
    if let Some(expected) = &options.expect {
        match out {
            Some(out) => s.record("expected-output", compare_expected(expected, &out, &key)),
            None => s.not_tried("expected-output", "sample", "no output to compare"),
        }
    }
}

/// One batch through the transform: its output must match `declared`, keep
/// its keys and give back the `edge_*` columns unchanged.
fn run_case(
    s: &mut Suite,
    t: &mut TransformInstance,
    config: &Config,
    key: &[String],
    declared: &[FieldSchema],
    batch: Batch,
) -> Result<(String, Transformed), String> {
    let keys = KeysBefore::new(key, &batch);
    let sent = batch.clone();
    let out = s.call(t.transform(config, batch))?;
    honours_schema(declared, &out.records)?;
    keys_kept(&keys, key, config, &out)?;
    unchanged_edges(&sent, &out)?;
    Ok((
        format!(
            "{} records → {} records, {} failed with a record error",
            sent.len(),
            out.records.len(),
            out.failures.len()
        ),
        out,
    ))
}

fn honours_schema(declared: &[FieldSchema], records: &Batch) -> Result<(), String> {
    let got: Vec<(String, FieldType)> = records.fields().map(|(n, t)| (n.to_owned(), t)).collect();
    let want: Vec<(String, FieldType)> = declared
        .iter()
        .map(|f| (f.name.clone(), f.field_type))
        .collect();
    if got == want {
        Ok(())
    } else {
        Err(format!("declared {want:?}, returned {got:?}"))
    }
}

fn keys_kept(
    keys: &KeysBefore,
    key: &[String],
    config: &Config,
    out: &Transformed,
) -> Result<(), String> {
    let failed: Vec<u32> = out.failures.iter().map(|(i, _)| *i).collect();
    let problems = keys.check(&out.records, config, &failed);
    if problems.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = problems
        .iter()
        .take(3)
        .map(|(i, p)| format!("record {i}, column `{}`: {p}", p.field(key)))
        .collect();
    Err(format!(
        "{} of {} records: {}{}",
        problems.len(),
        out.records.len(),
        shown.join("; "),
        if problems.len() > 3 { "; …" } else { "" }
    ))
}

/// The `edge_*` columns the transform returned hold what was sent.
fn unchanged_edges(sent: &Batch, out: &Transformed) -> Result<(), String> {
    let failed = failed_set(&out.failures, sent.len());
    for (name, _) in EDGE_COLUMNS {
        let (Some(before), Some(after)) = (sent.column(name), out.records.column(name)) else {
            continue;
        };
        for i in (0..sent.len()).filter(|i| !failed[*i]) {
            let (b, a) = (before.value(i), after.value(i));
            if !same_value(&b, &a) {
                return Err(format!(
                    "column `{name}`, record {i}: sent `{}`, got back `{}` (a column the transform does not know must pass unchanged)",
                    shown(&b),
                    shown(&a)
                ));
            }
        }
    }
    Ok(())
}

/// `batch` with the columns of the author's sample that it lacks, record `i`
/// taking the sample's record `i % len` (nulls for an empty sample).
pub(crate) fn with_sample_columns(batch: Batch, options: &Options) -> Batch {
    let Some(sample) = &options.input else {
        return batch;
    };
    let extra: Vec<(&str, FieldType)> = sample
        .fields()
        .filter(|(n, _)| batch.column(n).is_none())
        .collect();
    if extra.is_empty() {
        return batch;
    }
    let mut fields: Vec<(&str, FieldType)> = batch.fields().collect();
    fields.extend(extra.iter().copied());
    let mut b = BatchBuilder::with_capacity(&fields, batch.len());
    for i in 0..batch.len() {
        let mut row: Vec<Value> = batch.row(i).values().map(|(_, v)| v).collect();
        for (name, _) in &extra {
            row.push(match sample.len() {
                0 => Value::Null,
                n => sample.row(i % n).get(name).unwrap_or(Value::Null),
            });
        }
        b.push_row(&row).expect("columns copied with their types");
    }
    b.finish()
}

pub(crate) fn failed_set(failures: &[(u32, RecordError)], n: usize) -> Vec<bool> {
    let mut failed = vec![false; n];
    for (i, _) in failures {
        if let Some(f) = failed.get_mut(*i as usize) {
            *f = true;
        }
    }
    failed
}

pub(crate) fn schema_of(batch: &Batch) -> Vec<FieldSchema> {
    batch
        .fields()
        .map(|(n, t)| FieldSchema::new(n, t))
        .collect()
}

/// A record of the edge batch: `id`, `name`, `email`, `phone`, then one value per
/// `EDGE_COLUMNS` entry.
type EdgeRow = (i64, [Value; 3], [Value; 7]);

fn edge_batch(rows: &[EdgeRow]) -> Batch {
    let mut fields = vec![
        ("id", FieldType::Integer),
        ("name", FieldType::Text),
        ("email", FieldType::Text),
        ("phone", FieldType::Text),
    ];
    fields.extend(EDGE_COLUMNS);
    let mut b = BatchBuilder::with_capacity(&fields, rows.len());
    for (id, people, edges) in rows {
        let mut row = vec![Value::Integer(*id)];
        row.extend(people.iter().cloned());
        row.extend(edges.iter().cloned());
        b.push_row(&row).expect("edge rows match their columns");
    }
    b.finish()
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn plain(i: i64) -> EdgeRow {
    (
        i,
        [
            text(&format!("Person {i}")),
            text(&format!("p{i}@example.com")),
            text("+1 415 555 0100"),
        ],
        [
            Value::Boolean(i % 2 == 0),
            Value::Integer(i * 1_000_003),
            Value::Float(i as f64 / 8.0),
            Value::Decimal(format!("{i}.25")),
            text(&format!("text {i}")),
            Value::Timestamp(1_700_000_000_000_000 + i),
            Value::Bytes(vec![i as u8, 0, 255]),
        ],
    )
}

fn edge_nulls() -> Batch {
    let null3 = || [Value::Null, Value::Null, Value::Null];
    let null7 = || std::array::from_fn(|_| Value::Null);
    edge_batch(&[
        (1, null3(), null7()),
        (2, plain(2).1, null7()),
        (3, null3(), plain(3).2),
        plain(4),
    ])
}

fn edge_text() -> Batch {
    let with = |id: i64, s: &str, decimal: &str, bytes: Vec<u8>| -> EdgeRow {
        let mut row = plain(id);
        row.1 = [text(s), text(s), text(s)];
        row.2[3] = Value::Decimal(decimal.to_owned());
        row.2[4] = text(s);
        row.2[6] = Value::Bytes(bytes);
        row
    };
    edge_batch(&[
        with(1, "", "0", vec![]),
        with(2, "Zoë Ångström, Łódź, 東京", "-12.50", vec![0xff, 0x00]),
        with(
            3,
            "🦀 𝄞 😀 👩‍👩‍👧",
            "0.000000000000000000001",
            vec![0xf0, 0x9f, 0xa6, 0x80],
        ),
        with(
            4,
            " a \"quoted\", text\nwith a new line\t",
            "99999999999999999999.99",
            vec![0; 64],
        ),
    ])
}

fn edge_integers() -> Batch {
    let with = |id: i64| -> EdgeRow {
        let mut row = plain(1);
        row.0 = id;
        row.2[1] = Value::Integer(id);
        row
    };
    edge_batch(&[
        with(i64::MAX),
        with(-i64::MAX),
        with(BEYOND_F64),
        with(-BEYOND_F64),
        with(BEYOND_F64 - 1),
        with(0),
    ])
}

fn edge_timestamps() -> Batch {
    let with = |id: i64, micros: i64| -> EdgeRow {
        let mut row = plain(id);
        row.2[5] = Value::Timestamp(micros);
        row
    };
    edge_batch(&[
        // A microsecond before the epoch, a day before, 1900, year 1.
        with(1, -1),
        with(2, -86_400_000_000),
        with(3, -2_208_988_800_000_000),
        with(4, -62_135_596_800_000_000),
        with(5, BEYOND_F64),
        with(6, 253_402_300_799_999_999),
    ])
}

fn edge_large() -> Batch {
    let rows: Vec<EdgeRow> = (1..=10_000).map(plain).collect();
    edge_batch(&rows)
}
