//! Mapping throughput: a 5-expression VRL mapping over 10-field records, next to
//! a hand-written native Rust mapping doing the same work, in the same run.
//!
//! Run: `cargo bench -p weir-host --bench mapping` (optionally `-- RECORDS`,
//! default 1,000,000). Prints records/s for both and the ratio. Not a test: the
//! numbers go to BENCHMARKS.md, nothing asserts on them.

use std::collections::BTreeMap;
use std::time::Instant;

use weir_host::engine::mapping::CompiledMappings;
use weir_host::project::Mapping;
use weir_types::{Batch, Column, ColumnBuilder, ColumnData, FieldSchema, FieldType, VarData};

const BATCH: usize = 1_000;

/// A seeded generator, so every run maps the same records.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() as usize) % items.len()]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Barbara", "Linus", "Margaret", "Ken", "Dennis", "Frances", "Edsger",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Liskov", "Torvalds", "Hamilton", "Thompson", "Ritchie",
];
const CITIES: &[&str] = &[
    "San Francisco",
    "London",
    "Paris",
    "Berlin",
    "Madrid",
    "Sydney",
    "Toronto",
];
const COMPANIES: &[&str] = &[
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Contoso",
];

fn fields() -> Vec<(&'static str, FieldType)> {
    vec![
        ("id", FieldType::Integer),
        ("first_name", FieldType::Text),
        ("last_name", FieldType::Text),
        ("email", FieldType::Text),
        ("phone", FieldType::Text),
        ("company", FieldType::Text),
        ("city", FieldType::Text),
        ("country", FieldType::Text),
        ("amount", FieldType::Integer),
        ("created_at", FieldType::Text),
    ]
}

fn text(values: Vec<String>) -> ColumnData {
    let mut v = VarData::with_capacity(values.len(), values.len() * 16);
    for s in &values {
        v.push(s.as_bytes());
    }
    ColumnData::Text(v)
}

/// One batch of `n` realistic contacts, built column by column.
fn batch(rng: &mut Lcg, start: usize, n: usize) -> Batch {
    let mut cols: Vec<Vec<String>> = vec![Vec::with_capacity(n); 8];
    let (mut ids, mut amounts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (f, l) = (rng.pick(FIRST), rng.pick(LAST));
        let company = rng.pick(COMPANIES);
        ids.push((start + i) as i64);
        cols[0].push(f.to_owned());
        cols[1].push(l.to_owned());
        cols[2].push(
            format!("{f}.{l}@{}.com", company.to_lowercase().replace(' ', "")).to_uppercase(),
        );
        cols[3].push(format!("+1 415 555 {:04}", rng.next() % 10_000));
        cols[4].push(company.to_owned());
        cols[5].push(rng.pick(CITIES).to_owned());
        cols[6].push("US".to_owned());
        cols[7].push(format!(
            "2024-{:02}-{:02}T10:00:00Z",
            rng.next() % 12 + 1,
            rng.next() % 28 + 1
        ));
        amounts.push((rng.next() % 100_000) as i64);
    }
    let names = fields();
    let mut columns = Vec::new();
    let mut texts = cols.into_iter();
    for (name, ty) in names {
        let data = match (name, ty) {
            ("id", _) => ColumnData::Integer(ids.clone()),
            ("amount", _) => ColumnData::Integer(amounts.clone()),
            _ => text(texts.next().unwrap()),
        };
        columns.push(Column {
            name: name.to_owned(),
            data,
            nulls: Vec::new(),
        });
    }
    Batch { len: n, columns }
}

/// The five mappings, as VRL.
fn mappings() -> Vec<Mapping> {
    vec![
        Mapping::expr("full_name", r#".first_name + " " + .last_name"#),
        Mapping::expr("email", "downcase(.email)"),
        Mapping::expr("city", "upcase(.city)"),
        Mapping::expr("amount_cents", ".amount * 100"),
        Mapping::expr(
            "label",
            r#"if .amount > 50000 { "large" } else { "small" }"#,
        ),
    ]
}

/// The same five mappings, hand-written.
fn native(b: &Batch) -> Batch {
    let col = |name: &str| b.column(name).unwrap();
    let (first, last, email, city, amount) = (
        col("first_name"),
        col("last_name"),
        col("email"),
        col("city"),
        col("amount"),
    );
    let ColumnData::Integer(amounts) = &amount.data else {
        unreachable!()
    };
    let mut full = ColumnBuilder::new(FieldType::Text, b.len());
    let mut mail = ColumnBuilder::new(FieldType::Text, b.len());
    let mut up = ColumnBuilder::new(FieldType::Text, b.len());
    let mut cents = ColumnBuilder::new(FieldType::Integer, b.len());
    let mut label = ColumnBuilder::new(FieldType::Text, b.len());
    let mut buf = String::new();
    for i in 0..b.len() {
        buf.clear();
        buf.push_str(first.str_at(i).unwrap());
        buf.push(' ');
        buf.push_str(last.str_at(i).unwrap());
        full.push_bytes(buf.as_bytes());
        mail.push_bytes(email.str_at(i).unwrap().to_lowercase().as_bytes());
        up.push_bytes(city.str_at(i).unwrap().to_uppercase().as_bytes());
        cents
            .push(&weir_types::Value::Integer(amounts[i] * 100))
            .unwrap();
        label.push_bytes(if amounts[i] > 50_000 {
            b"large"
        } else {
            b"small"
        });
    }
    Batch {
        len: b.len(),
        columns: vec![
            full.finish("full_name"),
            mail.finish("email"),
            up.finish("city"),
            cents.finish("amount_cents"),
            label.finish("label"),
        ],
    }
}

fn main() {
    let records: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = Lcg(20261125);
    let batches: Vec<Batch> = (0..records.div_ceil(BATCH))
        .map(|n| batch(&mut rng, n * BATCH, BATCH.min(records - n * BATCH)))
        .collect();
    let schema: Vec<FieldSchema> = fields()
        .into_iter()
        .map(|(n, t)| FieldSchema::new(n, t).required())
        .collect();
    let compiled = CompiledMappings::compile(&mappings(), Some(&schema), &BTreeMap::new())
        .unwrap_or_else(|p| panic!("{p:?}"));

    // Check once that both produce the same records.
    let a = compiled.apply(batches[0].clone()).unwrap();
    assert!(a.failures.is_empty());
    let b = native(&batches[0]);
    for i in 0..batches[0].len() {
        assert_eq!(
            a.batch.row(i).values().collect::<Vec<_>>(),
            b.row(i).values().collect::<Vec<_>>()
        );
    }

    let input_bytes: usize = batches.iter().map(Batch::byte_size).sum();
    let mut best_vrl = f64::MAX;
    let mut best_native = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let mut out = 0usize;
        for b in &batches {
            out += compiled.apply(b.clone()).unwrap().batch.len();
        }
        assert_eq!(out, records);
        best_vrl = best_vrl.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut out = 0usize;
        for b in &batches {
            out += native(&b.clone()).len();
        }
        assert_eq!(out, records);
        best_native = best_native.min(t.elapsed().as_secs_f64());
    }
    let rate = |secs: f64| records as f64 / secs;
    println!(
        "mapping benchmark: {records} records of 10 fields ({:.1} MB), 5 expressions, batches of {BATCH}, best of 3",
        input_bytes as f64 / 1e6
    );
    println!(
        "  weir (VRL):  {:>12.0} records/s  ({:.3} s)",
        rate(best_vrl),
        best_vrl
    );
    println!(
        "  native Rust: {:>12.0} records/s  ({:.3} s)",
        rate(best_native),
        best_native
    );
    println!(
        "  ratio weir/native: {:.1}%",
        100.0 * best_native / best_vrl
    );
}
