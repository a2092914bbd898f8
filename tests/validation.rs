//! Every validation code in an obeyed/violated pair: the good project has no
//! problem of that code, the broken one has it, with a useful message.

mod common;

use common::*;
use weir_host::engine::{Engine, Problem, ValidationReport};
use weir_host::project::{Mapping, OrganizationPair, PluginRef, Project, TransformStep};
use weir_host::runtime::Limits;

fn validate(project: &Project) -> ValidationReport {
    Engine::new(runtime())
        .validate(project)
        .expect("plugins load")
}

/// The problems with `code`.
fn with_code(report: &ValidationReport, code: &str) -> Vec<Problem> {
    report
        .problems
        .iter()
        .filter(|p| p.code == code)
        .cloned()
        .collect()
}

/// Asserts the pair: `good` has no `code`, `bad` has exactly one and it
/// mentions every fragment.
fn pair(good: &Project, bad: &Project, code: &str, fragments: &[&str]) -> Problem {
    let good_report = validate(good);
    assert!(
        with_code(&good_report, code).is_empty(),
        "obeyed case reported {code}: {good_report}"
    );
    let bad_report = validate(bad);
    let found = with_code(&bad_report, code);
    assert_eq!(
        found.len(),
        1,
        "violated case: expected one {code}: {bad_report}"
    );
    let text = format!(
        "{} {}",
        found[0].message,
        found[0].hint.clone().unwrap_or_default()
    );
    for f in fragments {
        assert!(text.contains(f), "`{f}` missing from: {text}");
    }
    assert!(!bad_report.valid || found[0].severity == weir_host::engine::Severity::Warning);
    found[0].clone()
}

fn base() -> Project {
    testkit_project(10)
}

#[test]
fn the_base_project_is_valid() {
    let report = validate(&base());
    assert!(report.valid && report.problems.is_empty(), "{report}");
}

#[test]
fn connection_not_connected() {
    let mut bad = base();
    bad.destination
        .config
        .set("refuse_check", "login refused for user sync");
    let p = pair(
        &base(),
        &bad,
        "connection-not-connected",
        &["destination", "login refused for user sync"],
    );
    assert_eq!(p.field.as_deref(), Some("destination"));
}

#[test]
fn organization_unknown_lists_the_valid_ones() {
    let mut good = base();
    good.source.config.set("organizations", "usmf,demf");
    good.organization = Some(OrganizationPair {
        source: "usmf".into(),
        destination: "main".into(),
    });
    let mut bad = good.clone();
    bad.organization = Some(OrganizationPair {
        source: "usfm".into(),
        destination: "main".into(),
    });
    pair(
        &good,
        &bad,
        "organization-unknown",
        &[
            "no organization `usfm`",
            "usmf, demf",
            "did you mean `usmf`?",
        ],
    );
}

#[test]
fn organization_missing_where_the_system_has_several() {
    let mut good = base();
    good.source.config.set("organizations", "usmf,demf");
    good.organization = Some(OrganizationPair {
        source: "demf".into(),
        destination: "x".into(),
    });
    let mut bad = good.clone();
    bad.organization = None;
    pair(&good, &bad, "organization-missing", &["usmf, demf"]);
}

#[test]
fn entity_unknown_suggests_the_nearest() {
    let mut bad = base();
    bad.tasks[0].source_entity = "peple".into();
    pair(
        &base(),
        &bad,
        "entity-unknown",
        &["no entity `peple`", "did you mean `people`?"],
    );
}

#[test]
fn mandatory_field_unmapped() {
    let mut good = base();
    good.destination.config.set("extra_fields", "country:text");
    good.destination.config.set("required", "country");
    good.tasks[0]
        .mappings
        .push(Mapping::expr("country", r#""US""#));
    let mut bad = good.clone();
    bad.tasks[0].mappings.pop();
    pair(
        &good,
        &bad,
        "mandatory-field-unmapped",
        &["requires `country`"],
    );
}

#[test]
fn mapping_incomplete_rows_and_unknown_destination_fields() {
    let mut bad = base();
    bad.tasks[0].mappings.push(Mapping {
        destination: "email2".into(),
        from: weir_host::project::MappingFrom::Nothing,
        place: None,
    });
    let report = validate(&bad);
    let found = with_code(&report, "mapping-incomplete");
    assert_eq!(found.len(), 2, "{report}");
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("neither `source` nor `expr`"))
    );
    assert!(
        found
            .iter()
            .any(|p| p.message.contains("has no field `email2`")
                && p.hint.as_deref() == Some("did you mean `email`?"))
    );
    assert!(with_code(&validate(&base()), "mapping-incomplete").is_empty());
}

#[test]
fn source_field_unknown_suggests_the_nearest() {
    let mut bad = base();
    bad.tasks[0].mappings[2] = Mapping::new("email", "emial");
    pair(
        &base(),
        &bad,
        "source-field-unknown",
        &["no field `emial`", "did you mean `email`?"],
    );
}

#[test]
fn duplicate_mapping_names_both_rows() {
    // The seed's example: `fax` mapped to ADDRESSCITY while another row also
    // maps ADDRESSCITY.
    let mut good = base();
    good.source.config.set("extra_fields", "fax:text,city:text");
    good.destination
        .config
        .set("extra_fields", "ADDRESSCITY:text,FAX:text");
    good.tasks[0].mappings.push(Mapping::new("FAX", "fax"));
    good.tasks[0]
        .mappings
        .push(Mapping::new("ADDRESSCITY", "city"));
    let mut bad = good.clone();
    bad.tasks[0].mappings[3] = Mapping::new("ADDRESSCITY", "fax");
    let p = pair(
        &good,
        &bad,
        "mapping-duplicate",
        &["`ADDRESSCITY` is written by row 4 (from `fax`) and row 5 (from `city`)"],
    );
    assert_eq!(p.field.as_deref(), Some("ADDRESSCITY"));
}

#[test]
fn type_mismatch_text_into_a_number_column() {
    let mut good = base();
    good.destination
        .config
        .set("extra_fields", "amount:integer");
    good.tasks[0]
        .mappings
        .push(Mapping::expr("amount", "to_int!(.name)"));
    let mut bad = good.clone();
    bad.tasks[0].mappings[3] = Mapping::expr("amount", ".name || \"none\"");
    pair(
        &good,
        &bad,
        "type-mismatch",
        &["gives text for `amount`, a integer field", "to_int!"],
    );
    // Operators whose operands never fit are type errors too.
    let mut op = good.clone();
    op.tasks[0].mappings[3] = Mapping::expr("amount", r#".id + " EUR""#);
    let report = validate(&op);
    let found = with_code(&report, "type-mismatch");
    assert!(
        found[0]
            .message
            .contains("cannot apply `+` to integer and text"),
        "{report}"
    );
}

#[test]
fn expression_invalid_and_rejected() {
    let mut good = base();
    good.tasks[0].mappings[1] = Mapping::expr("name", r#"upcase(.name || "")"#);
    let mut bad = good.clone();
    bad.tasks[0].mappings[1] = Mapping::expr("name", "to_int(.email)");
    pair(&good, &bad, "expression-invalid", &["E100", "!"]);
    let mut hostile = good.clone();
    let deep = format!("{}.name{}", "(".repeat(10_000), ")".repeat(10_000));
    hostile.tasks[0].mappings[1] = Mapping::expr("name", &deep);
    pair(&good, &hostile, "expression-rejected", &["bytes long"]);
}

#[test]
fn key_unmapped() {
    let mut bad = base();
    bad.tasks[0].key = vec!["idd".into()];
    pair(
        &base(),
        &bad,
        "key-unmapped",
        &[
            "`idd` is not a mapped destination field",
            "did you mean `id`?",
        ],
    );
}

#[test]
fn transform_output_incompatible() {
    let step = |phone_fields: &str| TransformStep {
        plugin: PluginRef::bundled("normalize"),
        config: {
            let mut c = weir_host::Config::default();
            c.set("phone_fields", phone_fields);
            c.set("email_fields", "email");
            c
        },
        limits: Limits::default(),
    };
    let mut good = base();
    good.tasks[0].transforms.push(step(""));
    let mut bad = base();
    bad.tasks[0].transforms.push(step("phone"));
    pair(&good, &bad, "transform-output-incompatible", &["phone"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut bad = base();
    bad.tasks[0].key = vec!["idd".into()];
    bad.tasks[0].mappings[2] = Mapping::new("email", "emial");
    bad.tasks[0].mappings.push(Mapping::new("name", "name"));
    let report = validate(&bad);
    let mut codes = report.codes();
    codes.sort();
    assert_eq!(
        codes,
        ["key-unmapped", "mapping-duplicate", "source-field-unknown"],
        "{report}"
    );
}
