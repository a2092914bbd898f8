use std::collections::BTreeMap;

use weir_types::{BatchBuilder, FieldSchema, FieldType, Value};

use super::*;
use crate::project::Mapping;

fn schema() -> Vec<FieldSchema> {
    vec![
        FieldSchema::new("id", FieldType::Integer).required(),
        FieldSchema::new("first_name", FieldType::Text),
        FieldSchema::new("last_name", FieldType::Text).required(),
        FieldSchema::new("email", FieldType::Text),
        FieldSchema::new("amount", FieldType::Integer).required(),
        FieldSchema::new("country", FieldType::Text),
        FieldSchema::new("fax", FieldType::Text),
    ]
}

fn batch() -> Batch {
    let fields: Vec<(&str, FieldType)> = vec![
        ("id", FieldType::Integer),
        ("first_name", FieldType::Text),
        ("last_name", FieldType::Text),
        ("email", FieldType::Text),
        ("amount", FieldType::Integer),
        ("country", FieldType::Text),
        ("fax", FieldType::Text),
    ];
    let mut b = BatchBuilder::new(&fields);
    let t = |s: &str| Value::Text(s.into());
    b.push_row(&[
        Value::Integer(1),
        t("Ada"),
        t("Lovelace"),
        t("  ADA@Example.com "),
        Value::Integer(1200),
        t("United Kingdom"),
        Value::Null,
    ])
    .unwrap();
    b.push_row(&[
        Value::Integer(2),
        Value::Null,
        t("Turing"),
        t("alan@example.org"),
        Value::Integer(5),
        t("Atlantis"),
        t("+1 555"),
    ])
    .unwrap();
    b.finish()
}

fn lookups() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut countries = BTreeMap::new();
    countries.insert("United Kingdom".to_owned(), "GB".to_owned());
    countries.insert("France".to_owned(), "FR".to_owned());
    BTreeMap::from([("countries".to_owned(), countries)])
}

fn compile(rows: &[Mapping]) -> Result<CompiledMappings, Vec<MappingProblem>> {
    CompiledMappings::compile(rows, Some(&schema()), &lookups())
}

fn problems(rows: &[Mapping]) -> Vec<MappingProblem> {
    match compile(rows) {
        Ok(_) => panic!("expected problems"),
        Err(p) => p,
    }
}

#[test]
fn plain_rows_rename_reorder_and_duplicate_columns() {
    let m = compile(&[
        Mapping::new("B", "first_name"),
        Mapping::new("A", "id"),
        Mapping::new("A2", "id"),
    ])
    .unwrap();
    let out = m.apply(batch()).unwrap();
    out.batch.validate().unwrap();
    let names: Vec<_> = out.batch.fields().map(|(n, _)| n).collect();
    assert_eq!(names, ["B", "A", "A2"]);
    assert_eq!(out.batch.row(1).get("A2"), Some(Value::Integer(2)));
    assert_eq!(out.batch.row(0).text("B"), Some("Ada"));
}

#[test]
fn expressions_cover_the_everyday_mappings() {
    let m = compile(&[
        Mapping::expr("full_name", r#"(.first_name || "") + " " + .last_name"#),
        Mapping::expr("email", "downcase(strip_whitespace(string!(.email)))"),
        Mapping::expr("fax", r#"if is_null(.fax) { "n/a" } else { .fax }"#),
        Mapping::expr("amount_eur", "to_string(.amount / 100) + \" EUR\""),
        Mapping::expr("double", ".amount * 2"),
        Mapping::expr("country_code", r#"lookup("countries", .country) || "XX""#),
        Mapping::expr("source", r#""crm""#),
        Mapping::expr("domain", r#"split(string!(.email), "@")[1]"#),
        Mapping::expr("dashed", r#"replace!(.last_name, "i", "-")"#),
    ])
    .unwrap();
    let types: Vec<_> = m.outputs().map(|(_, t)| t.unwrap()).collect();
    assert_eq!(types[0], FieldType::Text);
    assert_eq!(types[4], FieldType::Integer);
    let out = m.apply(batch()).unwrap();
    assert!(out.failures.is_empty(), "{:?}", out.failures);
    let r0 = out.batch.row(0);
    assert_eq!(r0.text("full_name"), Some("Ada Lovelace"));
    assert_eq!(r0.text("email"), Some("ada@example.com"));
    assert_eq!(r0.text("fax"), Some("n/a"));
    assert_eq!(r0.text("amount_eur"), Some("12 EUR"));
    assert_eq!(r0.get("double"), Some(Value::Integer(2400)));
    assert_eq!(r0.text("country_code"), Some("GB"));
    assert_eq!(r0.text("source"), Some("crm"));
    let r1 = out.batch.row(1);
    assert_eq!(r1.text("full_name"), Some(" Turing"));
    assert_eq!(r1.text("fax"), Some("+1 555"));
    assert_eq!(r1.text("country_code"), Some("XX"));
    assert_eq!(r1.text("domain"), Some("example.org"));
    assert_eq!(r1.text("dashed"), Some("Tur-ng"));
}

#[test]
fn a_failing_expression_fails_only_its_record_naming_expression_and_inputs() {
    let m = compile(&[
        Mapping::new("id", "id"),
        Mapping::expr("code", "to_int!(.country)"),
    ])
    .unwrap();
    let out = m.apply(batch()).unwrap();
    assert_eq!(out.failures.len(), 2);
    let f = &out.failures[0];
    assert_eq!((f.record, f.destination.as_str()), (0, "code"));
    assert!(f.message.contains("`to_int!(.country)`"), "{}", f.message);
    assert!(
        f.message.contains("country=\"United Kingdom\""),
        "{}",
        f.message
    );
    assert_eq!(out.batch.len(), 2, "one output record per input record");
}

#[test]
fn a_misspelled_source_field_gets_the_nearest_name() {
    let p = problems(&[Mapping::new("a", "emial")]);
    assert_eq!(p[0].code, "source-field-unknown");
    assert_eq!(p[0].hint.as_deref(), Some("did you mean `email`?"));
    let p = problems(&[Mapping::expr("name", r#".frist_name + "x""#)]);
    assert_eq!(p[0].code, "source-field-unknown", "{p:?}");
    assert_eq!(p[0].hint.as_deref(), Some("did you mean `first_name`?"));
}

#[test]
fn adding_text_to_a_number_is_a_type_error_before_any_run() {
    let p = problems(&[Mapping::expr("total", r#".amount + " EUR""#)]);
    assert_eq!(p[0].code, "type-mismatch", "{p:?}");
    assert!(
        p[0].message.contains("integer and text"),
        "{}",
        p[0].message
    );
    assert!(p[0].hint.as_deref().unwrap().contains("to_string(.amount)"));
    // Obeyed: converting first compiles, as text.
    let ok = compile(&[Mapping::expr("total", r#"to_string(.amount) + " EUR""#)]).unwrap();
    assert_eq!(ok.outputs().next().unwrap().1, Some(FieldType::Text));
}

#[test]
fn unhandled_fallible_calls_and_unknown_functions_are_reported() {
    let p = problems(&[
        Mapping::expr("n", "to_int(.country)"),
        Mapping::expr("t", "now()"),
    ]);
    assert_eq!(p.len(), 2, "every problem at once");
    assert_eq!(p[0].code, "expression-invalid");
    assert!(p[0].hint.as_deref().unwrap().contains('!'), "{:?}", p[0]);
    assert!(p[1].message.contains("E105"), "{}", p[1].message);
}

#[test]
fn hostile_expressions_are_refused_or_stopped() {
    let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let p = problems(&[Mapping::expr("x", &deep)]);
    assert_eq!(p[0].code, "expression-rejected");
    let p = problems(&[Mapping::expr("x", r#""x" * 1000000000"#)]);
    assert_eq!(p[0].code, "expression-rejected");
    let p = problems(&[Mapping::expr("x", ".last_name * 1000000000")]);
    assert_eq!(p[0].code, "expression-rejected");
    let p = problems(&[Mapping::expr("x", "s = .last_name\ns + s")]);
    assert_eq!(p[0].code, "expression-rejected");
    let long_sum = "1+".repeat(600) + "1";
    assert_eq!(
        problems(&[Mapping::expr("x", &long_sum)])[0].code,
        "expression-rejected"
    );
    // Quadratic growth through replace is stopped per record.
    let m = compile(&[Mapping::expr("x", &{
        let l1 = r#"replace!(.last_name, "", .last_name)"#;
        let l2 = format!(r#"replace!({l1}, "", {l1})"#);
        format!(r#"replace!({l2}, "", {l2})"#)
    })])
    .unwrap();
    let out = m.apply(batch()).unwrap();
    assert_eq!(out.failures.len(), 2);
    assert!(
        out.failures[0].message.contains("at most 1048576"),
        "{}",
        out.failures[0].message
    );
}

/// The issue's amplifier, one nesting level deeper than the one that took
/// 1.1 GB: each level splits into characters and joins them with the field
/// itself — over a 1,000-character field, a 1,000-byte separator as in the
/// issue; over a one-letter field, slow growth that passes.
fn amplifier() -> String {
    let level = |inner: &str| format!(r#"join(split!({inner}, ""), string!(.name))"#);
    format!("strlen({})", level(&level(&level("string!(.name)"))))
}

#[test]
fn an_amplifying_expression_fails_its_record_and_the_others_pass() {
    let schema = [FieldSchema::new("name", FieldType::Text)];
    let mut b = BatchBuilder::new(&[("name", FieldType::Text)]);
    for name in [
        "a".to_owned(),
        "n".repeat(1_000),
        String::new(),
        "b".to_owned(),
    ] {
        b.push_row(&[Value::Text(name)]).unwrap();
    }
    let m = CompiledMappings::compile(
        &[Mapping::expr("len", &amplifier())],
        Some(&schema),
        &BTreeMap::new(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = m.apply(b.finish()).unwrap();
    let took = started.elapsed();
    assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
    assert_eq!(out.failures[0].record, 1);
    let message = &out.failures[0].message;
    assert!(
        message.contains("`split` would produce a value of 41082080 bytes or more; the limit for any value in a mapping is 1048576 bytes (1 MiB)")
            && message.contains("mapping `len` = `strlen(join(split!("),
        "{message}"
    );
    for i in [0, 2, 3] {
        assert!(
            matches!(out.batch.row(i).get("len"), Some(Value::Integer(_))),
            "record {i}: {:?}",
            out.batch.row(i).get("len")
        );
    }
    // Each step is bounded, so the failing record costs milliseconds, not
    // gigabytes and seconds.
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}

/// Two values within the bound can make a product past it in one step: a
/// 1,000-part array joined with a 1 MB separator would be 1 GB. `join` works
/// out its size before building anything.
#[test]
fn a_join_whose_product_is_too_large_is_refused_before_it_is_built() {
    let schema = [FieldSchema::new("name", FieldType::Text)];
    let mut b = BatchBuilder::new(&[("name", FieldType::Text)]);
    b.push_row(&[Value::Text("n".repeat(1_000))]).unwrap();
    let expr = r#"strlen(join(split!(string!(.name), ""), join(split!(string!(.name), ""), string!(.name))))"#;
    let m = CompiledMappings::compile(
        &[Mapping::expr("len", expr)],
        Some(&schema),
        &BTreeMap::new(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = m.apply(b.finish()).unwrap();
    let took = started.elapsed();
    assert_eq!(out.failures.len(), 1);
    let message = &out.failures[0].message;
    assert!(
        message.contains("`join` would produce a value of 1003003000 bytes or more"),
        "{message}"
    );
    assert!(took < std::time::Duration::from_millis(500), "{took:?}");
}

#[test]
fn value_size_counts_elements_not_only_text() {
    use vrl::value::Value as V;
    let chars = V::Array((0..1_000).map(|_| V::from("a")).collect());
    assert!(functions::value_size(&chars, usize::MAX) >= 1_000 * 17);
    assert_eq!(functions::value_size(&V::from("abc"), usize::MAX), 3);
    // Counting stops once past the limit.
    let big = V::Array((0..100_000).map(|_| V::from("a")).collect());
    assert!(functions::value_size(&big, 1_000) < 2_000);
}
