//! The plugin conformance suite behind `weir plugin test`: named checks of a
//! plugin against the contract, each passed or failed with the reason.
//!
//! What it is: black-box calls through the same runtime that runs projects (so
//! limits and grants apply), comparing answers with what the contract promises.
//! What it is not: a test of the system behind the connector. Run it against a
//! test connection: the upsert checks write records.

use serde::Serialize;
use weir_types::{
    Batch, BatchBuilder, Config, EntitySchema, FieldSchema, FieldType, ReadRequest, UpsertOutcome,
    Value, WriteRequest,
};

use crate::runtime::{CallError, Grants, Limits, Plugin, PluginKind};

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    /// `state == Pass`, kept for readers of the JSON from before `state`.
    pub passed: bool,
    pub state: State,
    /// For `NotTried`: the check whose failure left nothing to test.
    pub depends_on: Option<&'static str>,
    pub detail: String,
}

/// What became of a check. A check that could not run because an earlier step
/// failed is `NotTried`, not `Pass`: a green line must mean something was tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Pass,
    Fail,
    NotTried,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            State::Pass => "PASS",
            State::Fail => "FAIL",
            State::NotTried => "NOT TRIED",
        }
    }
}

/// The results of a suite run.
#[derive(Clone, Debug, Serialize)]
pub struct ConformanceReport {
    pub plugin: String,
    pub kind: PluginKind,
    pub checks: Vec<CheckResult>,
}

impl ConformanceReport {
    /// No check failed. (A check is only `NotTried` when another one failed.)
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.state != State::Fail)
    }

    pub fn failed(&self) -> Vec<&'static str> {
        self.with_state(State::Fail)
    }

    pub fn with_state(&self, state: State) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.state == state)
            .map(|c| c.name)
            .collect()
    }

    /// The check named `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl std::fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "conformance of {} ({:?} plugin)", self.plugin, self.kind)?;
        for c in &self.checks {
            let detail = match c.depends_on {
                Some(d) => format!("(`{d}` failed) {}", c.detail),
                None => c.detail.clone(),
            };
            writeln!(f, "{} {:<26} {}", c.state.label(), c.name, detail)?;
        }
        let failed = self.failed();
        let not_tried = self.with_state(State::NotTried);
        if failed.is_empty() {
            writeln!(f, "all {} checks passed", self.checks.len())
        } else {
            writeln!(
                f,
                "{} of {} checks failed: {}{}",
                failed.len(),
                self.checks.len(),
                failed.join(", "),
                if not_tried.is_empty() {
                    String::new()
                } else {
                    format!("; not tried: {}", not_tried.join(", "))
                }
            )
        }
    }
}

pub(crate) struct Suite {
    checks: Vec<CheckResult>,
    trapped: Vec<String>,
}

impl Suite {
    pub(crate) fn record(&mut self, name: &'static str, result: Result<String, String>) {
        let (state, detail) = match result {
            Ok(d) => (State::Pass, d),
            Err(d) => (State::Fail, d),
        };
        self.checks.push(CheckResult {
            name,
            passed: state == State::Pass,
            state,
            depends_on: None,
            detail,
        });
    }

    /// Records `name` as not tried because `depends_on` failed (`why`).
    pub(crate) fn not_tried(&mut self, name: &'static str, depends_on: &'static str, why: &str) {
        self.checks.push(CheckResult {
            name,
            passed: false,
            state: State::NotTried,
            depends_on: Some(depends_on),
            detail: why.to_owned(),
        });
    }

    /// Whether the check named `name` failed or was not tried.
    pub(crate) fn did_not_pass(&self, name: &str) -> bool {
        self.checks
            .iter()
            .any(|c| c.name == name && c.state != State::Pass)
    }

    /// Notes a trap or a contract breach, which fail `limits` / the check.
    pub(crate) fn call<T>(&mut self, r: Result<T, CallError>) -> Result<T, String> {
        r.map_err(|e| {
            if matches!(e, CallError::Trap { .. }) {
                self.trapped.push(e.to_string());
            }
            e.to_string()
        })
    }
}

fn check_info(name: &str, version: &str, fields: &[String]) -> Result<String, String> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
    {
        return Err(format!("name `{name}` must be a short lowercase word"));
    }
    let parts: Vec<&str> = version
        .split(['-', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .collect();
    if parts.len() != 3 || parts.iter().any(|p| p.parse::<u64>().is_err()) {
        return Err(format!("version `{version}` is not semver (x.y.z)"));
    }
    for (i, f) in fields.iter().enumerate() {
        if fields[..i].contains(f) {
            return Err(format!("configuration option `{f}` is declared twice"));
        }
    }
    Ok(format!("{name} {version}, {} options", fields.len()))
}

fn check_schema(e: &EntitySchema) -> Result<(), String> {
    if e.name.is_empty() {
        return Err("an entity has no name".to_owned());
    }
    for (i, f) in e.fields.iter().enumerate() {
        if f.name.is_empty() || e.fields[..i].iter().any(|o| o.name == f.name) {
            return Err(format!(
                "entity `{}`: field names must be unique and non-empty",
                e.name
            ));
        }
    }
    for k in &e.key_fields {
        if !e.fields.iter().any(|f| &f.name == k) {
            return Err(format!(
                "entity `{}`: key field `{k}` is not one of its fields",
                e.name
            ));
        }
    }
    Ok(())
}

/// Runs the suite against `plugin` with a connection's `config` and `grants`.
pub fn run(plugin: &Plugin, config: &Config, grants: Grants, limits: Limits) -> ConformanceReport {
    run_with(plugin, config, grants, limits, &Options::default())
}

/// What an author adds to the suite (`weir plugin test --input --expect --key`).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A transform's sample input, run as its own check (`sample`).
    pub input: Option<Batch>,
    /// What the transform must return for `input`, compared value by value.
    pub expect: Option<Batch>,
    /// The key fields of a transform's input (default `id`): they must come back
    /// unchanged unless the configuration names them (the rule the host applies
    /// at run time, see `engine::transform_check`).
    pub key: Vec<String>,
}

/// [`run`] with an author's sample, expected output and key.
pub fn run_with(
    plugin: &Plugin,
    config: &Config,
    grants: Grants,
    limits: Limits,
    options: &Options,
) -> ConformanceReport {
    let mut suite = Suite {
        checks: Vec::new(),
        trapped: Vec::new(),
    };
    match plugin.kind() {
        PluginKind::Connector => connector(&mut suite, plugin, config, grants, limits),
        PluginKind::Transform => transform(&mut suite, plugin, config, limits, options),
    }
    let trapped = std::mem::take(&mut suite.trapped);
    suite.record(
        "limits",
        if trapped.is_empty() {
            Ok("no call trapped or exceeded its limits".to_owned())
        } else {
            Err(trapped.join("; "))
        },
    );
    ConformanceReport {
        plugin: plugin.label().to_owned(),
        kind: plugin.kind(),
        checks: suite.checks,
    }
}

fn connector(s: &mut Suite, plugin: &Plugin, config: &Config, grants: Grants, limits: Limits) {
    let fresh = || {
        plugin
            .connector(grants.clone(), limits.clone())
            .expect("kind checked")
    };
    let mut c = fresh();
    let info = s.call(c.describe());
    let r = info.and_then(|i| {
        check_info(
            &i.name,
            &i.version,
            &i.config.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
        )
    });
    s.record("describe", r);

    // A failing check must be a typed error, not a trap: try an option no plugin knows
    // with an absurd value as well as the real configuration.
    let checked = s
        .call(c.check(config))
        .map(|()| "the connection checks Connected".to_owned());
    let typed = match c.check(&Config::new(vec![(
        "\u{0}weir-conformance".into(),
        "\u{0}".into(),
    )])) {
        Err(CallError::Trap { .. }) => {
            Err("check trapped on an unknown option instead of answering".to_owned())
        }
        _ => Ok(()),
    };
    s.record("check", checked.and_then(|d| typed.map(|()| d)));

    let entities = s.call(c.discover(config, None));
    let entities = match entities {
        Ok(es) => {
            let r = es
                .iter()
                .try_for_each(check_schema)
                .map(|()| format!("{} entities, schemas well formed", es.len()));
            s.record("discover", r);
            es
        }
        Err(e) => {
            s.record("discover", Err(e));
            Vec::new()
        }
    };
    if s.did_not_pass("discover") {
        for name in [
            "read-to-end",
            "read-resume",
            "upsert-outcomes",
            "upsert-idempotent",
        ] {
            s.not_tried(name, "discover", "no entity schemas to read or write");
        }
        return;
    }

    // Reads: page to the end, then resume from the first page's cursor in a fresh
    // instance and get the same records.
    let mut sample: Option<(EntitySchema, Batch)> = None;
    match entities.iter().find(|e| e.readable) {
        None => {
            s.record(
                "read-to-end",
                Ok("no readable entity (not a source)".to_owned()),
            );
            s.record(
                "read-resume",
                Ok("no readable entity (not a source)".to_owned()),
            );
        }
        Some(entity) => {
            let read_all =
                |s: &mut Suite,
                 c: &mut crate::runtime::ConnectorInstance,
                 cursor: Option<String>|
                 -> Result<(Vec<String>, Option<String>, Option<Batch>), String> {
                    let mut rows = Vec::new();
                    let mut cursor = cursor;
                    let mut first_cursor = None;
                    let mut first_page = None;
                    for page_no in 0..100_000 {
                        let page = s.call(c.read(
                            config,
                            &ReadRequest {
                                entity: entity.name.clone(),
                                organization: None,
                                cursor: cursor.clone(),
                                max_records: 7,
                            },
                        ))?;
                        if page.records.len() > 7 {
                            return Err(format!(
                                "a page of at most 7 records had {}",
                                page.records.len()
                            ));
                        }
                        rows.extend(
                            page.records
                                .rows()
                                .map(|r| format!("{:?}", r.values().collect::<Vec<_>>())),
                        );
                        if page_no == 0 {
                            first_cursor = page.next_cursor.clone();
                            first_page = Some(page.records.clone());
                        }
                        if page.done {
                            return Ok((rows, first_cursor, first_page));
                        }
                        if page.records.is_empty()
                            && page.rejected.is_empty()
                            && page.next_cursor == cursor
                        {
                            return Err(
                                "an empty page that is not the last did not move the cursor"
                                    .to_owned(),
                            );
                        }
                        cursor = page.next_cursor;
                    }
                    Err("no end after 100,000 pages".to_owned())
                };
            match read_all(s, &mut c, None) {
                Ok((all, first_cursor, first_page)) => {
                    s.record(
                        "read-to-end",
                        Ok(format!(
                            "entity `{}`: {} records in pages of 7",
                            entity.name,
                            all.len()
                        )),
                    );
                    if let Some(p) = first_page.filter(|p| !p.is_empty()) {
                        sample = Some((entity.clone(), p));
                    }
                    let first_len = all.len().min(7);
                    let resumed = if all.len() <= 7 {
                        Ok("fewer than two pages; nothing to resume".to_owned())
                    } else {
                        let mut again = fresh();
                        read_all(s, &mut again, first_cursor).and_then(|(rest, _, _)| {
                            if rest[..] == all[first_len..] {
                                Ok(format!("resumed after {first_len} records in a fresh instance: the same {} records", rest.len()))
                            } else {
                                Err(format!("resuming after the first page gave {} records, expected the remaining {}", rest.len(), all.len() - first_len))
                            }
                        })
                    };
                    s.record("read-resume", resumed);
                }
                Err(e) => {
                    s.record("read-to-end", Err(e.clone()));
                    s.not_tried("read-resume", "read-to-end", &e);
                }
            }
        }
    }

    // Upserts: one outcome per record; the same batch again inserts nothing (each
    // record is updated, or unchanged where the destination can tell).
    let Some(entity) = entities.iter().find(|e| e.writable) else {
        s.record(
            "upsert-outcomes",
            Ok("no writable entity (not a destination)".to_owned()),
        );
        s.record(
            "upsert-idempotent",
            Ok("no writable entity (not a destination)".to_owned()),
        );
        return;
    };
    let (batch, key) = match sample.filter(|(e, _)| e.name == entity.name) {
        Some((e, b)) => (
            b,
            if e.key_fields.is_empty() {
                vec![e.fields[0].name.clone()]
            } else {
                e.key_fields.clone()
            },
        ),
        None => synthesize(entity),
    };
    let mut w = fresh();
    let result = (|| -> Result<(String, String), String> {
        let writer = s.call(w.open_writer(
            config,
            &WriteRequest {
                entity: entity.name.clone(),
                organization: None,
                key_fields: key.clone(),
            },
        ))?;
        let first = s.call(w.upsert(&writer, batch.clone()))?;
        let outcomes = format!("{} records → {} outcomes", batch.len(), first.len());
        let second = s.call(w.upsert(&writer, batch.clone()))?;
        s.call(w.finish(writer))?;
        let inserted_again = second
            .iter()
            .filter(|o| matches!(o, UpsertOutcome::Inserted))
            .count();
        if inserted_again > 0 {
            return Err(format!(
                "{outcomes}|the same {} records upserted again: {inserted_again} inserted again (duplicates)",
                batch.len()
            ));
        }
        let unchanged = second
            .iter()
            .filter(|o| matches!(o, UpsertOutcome::Unchanged))
            .count();
        Ok((
            outcomes,
            format!(
                "the same {} records upserted again: none inserted again ({unchanged} unchanged, the rest updated or failed)",
                batch.len()
            ),
        ))
    })();
    match result {
        Ok((a, b)) => {
            s.record("upsert-outcomes", Ok(a));
            s.record("upsert-idempotent", Ok(b));
        }
        Err(e) => match e.split_once('|') {
            Some((a, b)) => {
                s.record("upsert-outcomes", Ok(a.to_owned()));
                s.record("upsert-idempotent", Err(b.to_owned()));
            }
            None => {
                s.record("upsert-outcomes", Err(e.clone()));
                s.not_tried("upsert-idempotent", "upsert-outcomes", &e);
            }
        },
    }
}

/// Three records for an entity that cannot be read, from its schema.
fn synthesize(entity: &EntitySchema) -> (Batch, Vec<String>) {
    let fields: Vec<(&str, FieldType)> = entity
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.field_type))
        .collect();
    let mut b = BatchBuilder::new(&fields);
    for i in 1..=3i64 {
        let row: Vec<Value> = entity.fields.iter().map(|f| sample_value(f, i)).collect();
        let _ = b.push_row(&row);
    }
    let key = if entity.key_fields.is_empty() {
        vec![
            entity
                .fields
                .first()
                .map(|f| f.name.clone())
                .unwrap_or_default(),
        ]
    } else {
        entity.key_fields.clone()
    };
    (b.finish(), key)
}

fn sample_value(f: &FieldSchema, i: i64) -> Value {
    match f.field_type {
        FieldType::Boolean => Value::Boolean(i % 2 == 0),
        FieldType::Integer => Value::Integer(900_000 + i),
        FieldType::Float => Value::Float(i as f64 + 0.5),
        FieldType::Decimal => Value::Decimal(format!("{i}.25")),
        FieldType::Text => Value::Text(format!("weir-conformance-{i}")),
        FieldType::Timestamp => Value::Timestamp(1_700_000_000_000_000 + i),
        FieldType::Bytes => Value::Bytes(vec![i as u8]),
    }
}

fn transform(s: &mut Suite, plugin: &Plugin, config: &Config, limits: Limits, options: &Options) {
    let mut t = plugin.transform(limits).expect("kind checked");
    let info = s.call(t.describe());
    let r = info.and_then(|i| {
        check_info(
            &i.name,
            &i.version,
            &i.config.iter().map(|f| f.name.clone()).collect::<Vec<_>>(),
        )
    });
    s.record("describe", r);
    let mut b = BatchBuilder::new(&[
        ("id", FieldType::Integer),
        ("name", FieldType::Text),
        ("email", FieldType::Text),
        ("phone", FieldType::Text),
    ]);
    for i in 1..=10i64 {
        let _ = b.push_row(&[
            Value::Integer(i),
            Value::Text(format!("Person {i}")),
            Value::Text(format!("P{i}@Example.com ")),
            Value::Text(format!("+1 415 555 01{i:02}")),
        ]);
    }
    // With an author's sample, every batch also carries the sample's columns, so a
    // transform that needs its own fields (a `country` to look up) gets them.
    let standard = crate::conformance_cases::with_sample_columns(b.finish(), options);
    let input: Vec<FieldSchema> = crate::conformance_cases::schema_of(&standard)
        .into_iter()
        .map(|f| if f.name == "id" { f.required() } else { f })
        .collect();
    let declared = match s.call(t.output_schema(config, &input)) {
        Ok(out) => {
            s.record("output-schema", Ok(format!("{} output fields", out.len())));
            Some(out)
        }
        Err(e) => {
            s.record("output-schema", Err(e));
            None
        }
    };
    crate::conformance_cases::transform_checks(s, &mut t, config, options, standard, declared);
}
