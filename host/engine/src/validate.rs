//! Validation: everything that can be checked before any record moves, reported
//! at once, each problem with a stable code, the entity task, the field and a fix.
//!
//! Codes (stable; tools may match on them):
//!
//! | code | what |
//! |---|---|
//! | `connection-not-connected` | the connection check failed |
//! | `organization-missing` / `organization-unknown` | no organization chosen where the system has several, or one it does not know |
//! | `entity-unknown` | the source entity was not discovered (error); the destination entity neither (a warning where the destination creates it on the first write, an error with the `CREATE TABLE` that would create it for a PostgreSQL destination) |
//! | `directory-missing` | a granted directory does not exist: the source's (error), the destination's (warning: a run creates it; validation creates nothing, so the destination's checks are skipped) |
//! | `mandatory-field-unmapped` | a required destination field has no mapping |
//! | `mapping-incomplete` | a row without `source`/`expr`, with both, without a destination, or naming a destination field that does not exist |
//! | `source-field-unknown` | a row reads a source field that does not exist (with the nearest name) |
//! | `mapping-duplicate` | two rows write one destination field (both named) |
//! | `type-mismatch` | a mapped value's type does not fit the destination field, or an operator's operands never fit |
//! | `expression-invalid` / `expression-rejected` | an expression that does not compile / that screening refuses |
//! | `key-unmapped` | a key field is not a mapped destination field |
//! | `transform-output-incompatible` | a transform refuses the mapped fields, or outputs what the destination cannot take |
//!
//! Validation does not stop at the first problem: every row of every task is
//! checked. Checks that cannot be made (the source's schema is unknown because its
//! connection failed or its organization is unknown) are listed in
//! [`ValidationReport::skipped`], each saying why, rather than reported as
//! problems they would only guess at.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use weir_types::{EntitySchema, FieldSchema, FieldType, Organization};

use super::ExecutionPlugins;
use super::mapping::{CompiledMappings, nearest, types};
use crate::project::{EntityTask, MappingFrom, Project};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found by validation.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub code: &'static str,
    /// The entity task, when the problem is in one.
    pub task: Option<String>,
    /// The destination field (or the connection, for connection problems).
    pub field: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    /// `file:line:column` of the mapping row, when known.
    pub place: Option<String>,
}

/// Every problem of a project.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationReport {
    pub project: String,
    pub valid: bool,
    pub problems: Vec<Problem>,
    /// Checks that could not be made, and why (a connection that failed).
    #[serde(default)]
    pub skipped: Vec<SkippedCheck>,
    /// Per task, how its entities' schemas differ from the recorded baseline and what
    /// its policy does (a run) or would do (`weir validate`). Empty without a baseline.
    #[serde(default)]
    pub schema_changes: Vec<crate::drift::TaskDrift>,
}

/// A check validation could not make, because a problem it reported prevents it.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedCheck {
    /// The entity task, when the check is one task's.
    pub task: Option<String>,
    /// What was not checked.
    pub checks: String,
    /// The reported problem that prevents it (its code).
    pub because: &'static str,
}

impl ValidationReport {
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    pub fn codes(&self) -> Vec<&'static str> {
        self.problems.iter().map(|p| p.code).collect()
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.errors().count();
        let warnings = self.problems.len() - errors;
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        writeln!(
            f,
            "project {}: {} ({}, {})",
            self.project,
            if self.valid { "valid" } else { "invalid" },
            plural(errors, "error"),
            plural(warnings, "warning")
        )?;
        for p in &self.problems {
            let severity = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            write!(f, "{severity}[{}]", p.code)?;
            if let Some(task) = &p.task {
                write!(f, " task `{task}`")?;
            }
            if let Some(field) = &p.field {
                write!(f, " field `{field}`")?;
            }
            writeln!(f, ": {}", p.message)?;
            if let Some(place) = &p.place {
                writeln!(f, "  at {place}")?;
            }
            if let Some(hint) = &p.hint {
                writeln!(f, "  fix: {hint}")?;
            }
        }
        for s in &self.skipped {
            write!(f, "skipped")?;
            if let Some(task) = &s.task {
                write!(f, " task `{task}`")?;
            }
            writeln!(f, ": {} (because of {})", s.checks, s.because)?;
        }
        if !self.schema_changes.is_empty() {
            writeln!(f, "schema changes since the last successful validation:")?;
            for d in &self.schema_changes {
                write!(f, "{d}")?;
            }
        }
        Ok(())
    }
}

/// What validation hands to the run: per task, its compiled mappings.
pub(crate) struct Validated {
    pub report: ValidationReport,
    pub mappings: Vec<Option<CompiledMappings>>,
    /// Per task, the source entity's schema when it was discovered.
    pub sources: Vec<Option<EntitySchema>>,
    /// Per task, the destination entity's schema when it was discovered (for the
    /// drift check).
    pub destinations: Vec<Option<EntitySchema>>,
    /// Retries of transient connection failures, for the execution log.
    pub notes: Vec<String>,
}

struct Collector {
    problems: Vec<Problem>,
    skipped: Vec<SkippedCheck>,
}

impl Collector {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        task: Option<&str>,
        field: Option<&str>,
        message: String,
        hint: Option<String>,
    ) -> &mut Problem {
        self.problems.push(Problem {
            severity,
            code,
            task: task.map(str::to_owned),
            field: field.map(str::to_owned),
            message,
            hint,
            place: None,
        });
        self.problems.last_mut().unwrap()
    }

    fn error(
        &mut self,
        code: &'static str,
        task: Option<&str>,
        field: Option<&str>,
        message: String,
        hint: Option<String>,
    ) -> &mut Problem {
        self.push(Severity::Error, code, task, field, message, hint)
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// What validation knows of one side's entities.
enum Side {
    /// Discovered.
    Known(Vec<EntitySchema>),
    /// Not discovered; the reported problem with this code says why.
    Unknown { because: &'static str },
}

impl Side {
    fn entities(&self) -> Option<&[EntitySchema]> {
        match self {
            Side::Known(e) => Some(e),
            Side::Unknown { .. } => None,
        }
    }
}

/// Checks the connections, organizations, entities, mappings, keys and
/// transforms of `project` with its plugins. Every task is checked whatever an
/// earlier check found; what cannot be checked is listed as skipped.
pub(crate) fn validate(
    project: &Project,
    prepared: &mut ExecutionPlugins,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Validated {
    let mut c = Collector {
        problems: Vec::new(),
        skipped: Vec::new(),
    };
    let mut notes = Vec::new();
    let source_side = check_side(
        &mut c,
        project,
        "source",
        &project.source,
        &mut prepared.source,
        project.organization.as_ref().map(|o| o.source.as_str()),
        stop,
        &mut notes,
    );
    let destination_side = check_side(
        &mut c,
        project,
        "destination",
        &project.destination,
        &mut prepared.destination,
        project
            .organization
            .as_ref()
            .map(|o| o.destination.as_str()),
        stop,
        &mut notes,
    );

    let mut mappings = Vec::new();
    let mut sources = Vec::new();
    let mut destinations = Vec::new();
    for (n, task) in project.tasks.iter().enumerate() {
        let t = Some(task.name.as_str());
        for (side, checks) in [
            (
                &source_side,
                format!(
                    "source entity `{}`, source field names and the types of expressions",
                    task.source_entity
                ),
            ),
            (
                &destination_side,
                format!(
                    "destination entity `{}`: its fields, types and required fields",
                    task.destination_entity
                ),
            ),
        ] {
            if let Side::Unknown { because } = side {
                c.skipped.push(SkippedCheck {
                    task: t.map(str::to_owned),
                    checks,
                    because,
                });
            }
        }
        let source = find_entity(
            &mut c,
            task,
            source_side.entities(),
            &task.source_entity,
            Severity::Error,
            "source",
        );
        // A PostgreSQL destination creates no table: a missing one is an error
        // (reported below, with the DDL from the mapped types).
        let creates_entities = project.destination.grants.postgres.is_none();
        let destination = match destination_side.entities() {
            Some(entities) if !creates_entities => {
                entities.iter().find(|e| e.name == task.destination_entity)
            }
            entities => find_entity(
                &mut c,
                task,
                entities,
                &task.destination_entity,
                Severity::Warning,
                "destination",
            ),
        };
        let compiled = task_mappings(
            &mut c,
            project,
            task,
            source.map(|e| e.fields.as_slice()),
            destination,
        );
        if destination.is_none() && !creates_entities {
            if let Some(entities) = destination_side.entities() {
                missing_table(&mut c, task, entities, compiled.outputs.as_slice());
            }
        }
        let compiled = compiled.ready;
        let transform_fields = check_transforms(&mut c, task, prepared, n, compiled.as_ref());
        if let (Some(fields), Some(dest)) = (&transform_fields, destination) {
            check_against_destination(&mut c, task, fields, dest, "the last transform");
        }
        if let Some(dest) = destination {
            // What reaches the destination: the last transform's output, or the
            // mapped fields.
            let written: Vec<&str> = match &transform_fields {
                Some(fields) => fields.iter().map(|f| f.name.as_str()).collect(),
                None => task
                    .mappings
                    .iter()
                    .map(|m| m.destination.as_str())
                    .collect(),
            };
            // A missing row has no place of its own: the task's first row is
            // where the mappings it belongs with are written.
            let task_place = task
                .mappings
                .first()
                .and_then(|m| m.place.as_ref())
                .map(|p| p.to_string());
            for f in dest.fields.iter().filter(|f| f.required) {
                if !written.contains(&f.name.as_str()) {
                    c.error(
                        "mandatory-field-unmapped",
                        Some(&task.name),
                        Some(&f.name),
                        format!(
                            "the destination requires `{}` ({}) and no row maps it",
                            f.name, f.field_type
                        ),
                        Some(format!(
                            "add a mapping row for `{}` (a constant works: `expr = '\"…\"'`)",
                            f.name
                        )),
                    )
                    .place = task_place.clone();
                }
            }
        }
        mappings.push(compiled);
        sources.push(source.cloned());
        destinations.push(destination.cloned());
    }
    let valid = !c.problems.iter().any(|p| p.severity == Severity::Error);
    Validated {
        notes,
        report: ValidationReport {
            project: project.name.clone(),
            valid,
            problems: c.problems,
            skipped: c.skipped,
            schema_changes: Vec::new(),
        },
        mappings,
        sources,
        destinations,
    }
}

/// Checks one side's connection and organization and discovers its entities.
#[allow(clippy::too_many_arguments)]
fn check_side(
    c: &mut Collector,
    project: &Project,
    role: &str,
    conn: &crate::project::Connection,
    instance: &mut weir_runtime::ConnectorInstance,
    wanted_org: Option<&str>,
    stop: Option<&std::sync::atomic::AtomicBool>,
    notes: &mut Vec<String>,
) -> Side {
    // Validation creates nothing: a destination directory a run would create
    // is not there to look into, and nothing in it could exist yet.
    if let Some(dir) = conn.grants.directory.as_ref().filter(|d| !d.exists()) {
        // Only the destination's is created by a run; a source's must exist.
        let severity = if role == "destination" {
            Severity::Warning
        } else {
            Severity::Error
        };
        c.push(
            severity,
            "directory-missing",
            None,
            Some(&conn.name),
            format!(
                "{role} connection `{}`: directory {} does not exist",
                conn.name,
                dir.display()
            ),
            Some(if role == "destination" {
                "a run creates it; validation creates nothing".to_owned()
            } else {
                format!("create {} or grant another directory", dir.display())
            }),
        );
        return Side::Unknown {
            because: "directory-missing",
        };
    }
    // A server that is briefly down is retried (the project's retry policy)
    // before the connection is declared as needing fixing.
    let checked = super::retry::with_retry(
        &project.retry,
        stop,
        &format!("{role} `{}` check", conn.name),
        |n| notes.push(n),
        || instance.check(&conn.config),
    );
    if let Err(e) = checked {
        c.error(
            "connection-not-connected",
            None,
            Some(&conn.name),
            format!("{role} connection `{}` needs fixing: {e}", conn.name),
            Some(format!(
                "fix connection `{}` (its configuration or credentials), then validate again",
                conn.name
            )),
        );
        return Side::Unknown {
            because: "connection-not-connected",
        };
    }
    let orgs: Vec<Organization> = match instance.organizations(&conn.config) {
        Ok(o) => o,
        Err(e) => return cannot(c, role, conn, "list organizations", &e),
    };
    let ids: Vec<&str> = orgs.iter().map(|o| o.id.as_str()).collect();
    match wanted_org {
        Some(wanted) if !ids.is_empty() && !ids.contains(&wanted) => {
            c.error(
                "organization-unknown",
                None,
                Some(&conn.name),
                format!("{role} connection `{}` has no organization `{wanted}`; valid organizations: {}", conn.name, list(&ids)),
                nearest(wanted, ids.iter().copied()).map(|n| format!("did you mean `{n}`?")),
            );
            return Side::Unknown {
                because: "organization-unknown",
            };
        }
        None if ids.len() > 1 => {
            c.error(
                "organization-missing",
                None,
                Some(&conn.name),
                format!("{role} connection `{}` has several organizations and the project names none; valid organizations: {}", conn.name, list(&ids)),
                Some("pair organizations in the connection set (`organizations = [{ source = \"…\", destination = \"…\" }]`)".to_owned()),
            );
            return Side::Unknown {
                because: "organization-missing",
            };
        }
        _ => {}
    }
    match instance.discover(&conn.config, wanted_org) {
        Ok(entities) => Side::Known(entities),
        Err(e) => cannot(c, role, conn, "discover entities", &e),
    }
}

/// A connection that answered its check but not `what` it was asked next.
fn cannot(
    c: &mut Collector,
    role: &str,
    conn: &crate::project::Connection,
    what: &str,
    e: &dyn fmt::Display,
) -> Side {
    c.error(
        "connection-not-connected",
        None,
        Some(&conn.name),
        format!("{role} connection `{}` cannot {what}: {e}", conn.name),
        None,
    );
    Side::Unknown {
        because: "connection-not-connected",
    }
}

/// A PostgreSQL destination table that does not exist: an error whose fix is
/// the `CREATE TABLE` the mapped fields and the key would need.
fn missing_table(
    c: &mut Collector,
    task: &EntityTask,
    entities: &[EntitySchema],
    outputs: &[(String, Option<FieldType>)],
) {
    let names: Vec<&str> = entities.iter().map(|e| e.name.as_str()).collect();
    let guess = nearest(&task.destination_entity, names.iter().copied())
        .map(|n| format!("did you mean `{n}`? otherwise create it: "))
        .unwrap_or_else(|| "create it: ".to_owned());
    let place = task
        .mappings
        .first()
        .and_then(|m| m.place.as_ref())
        .map(|p| p.to_string());
    c.error(
        "entity-unknown",
        Some(&task.name),
        None,
        format!(
            "the destination database has no table `{}` (it has: {}); PostgreSQL destinations do not create tables",
            task.destination_entity,
            list(&names)
        ),
        Some(format!(
            "{guess}{}",
            create_table(&task.destination_entity, outputs, &task.key)
        )),
    )
    .place = place;
}

/// `CREATE TABLE` for a destination entity from the mapped fields' types
/// (text where a type is not known) and the key.
pub fn create_table(
    entity: &str,
    fields: &[(String, Option<FieldType>)],
    key: &[String],
) -> String {
    let ident = |name: &str| {
        if !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        {
            name.to_owned()
        } else {
            format!("\"{}\"", name.replace('"', "\"\""))
        }
    };
    let table = entity.split('.').map(ident).collect::<Vec<_>>().join(".");
    let mut columns: Vec<String> = fields
        .iter()
        .map(|(name, ty)| {
            let sql = match ty.unwrap_or(FieldType::Text) {
                FieldType::Text => "text",
                FieldType::Integer => "bigint",
                FieldType::Float => "double precision",
                FieldType::Decimal => "numeric",
                FieldType::Boolean => "boolean",
                FieldType::Timestamp => "timestamptz",
                FieldType::Bytes => "bytea",
            };
            let not_null = if key.contains(name) { " NOT NULL" } else { "" };
            format!("{} {sql}{not_null}", ident(name))
        })
        .collect();
    if !key.is_empty() {
        columns.push(format!(
            "PRIMARY KEY ({})",
            key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    format!("CREATE TABLE {table} ({});", columns.join(", "))
}

fn find_entity<'e>(
    c: &mut Collector,
    task: &EntityTask,
    entities: Option<&'e [EntitySchema]>,
    name: &str,
    severity: Severity,
    role: &str,
) -> Option<&'e EntitySchema> {
    let entities = entities?;
    if let Some(e) = entities.iter().find(|e| e.name == name) {
        return Some(e);
    }
    let names: Vec<&str> = entities.iter().map(|e| e.name.as_str()).collect();
    let hint = match nearest(name, names.iter().copied()) {
        Some(n) => Some(format!("did you mean `{n}`?")),
        None if severity == Severity::Warning => Some(
            "the destination may create it on the first write; otherwise check the name".to_owned(),
        ),
        None => None,
    };
    c.push(
        severity,
        "entity-unknown",
        Some(&task.name),
        None,
        format!(
            "the {role} has no entity `{name}` (it has: {})",
            list(&names)
        ),
        hint,
    );
    None
}

/// A task's mappings as validation compiled them.
struct TaskMappings {
    /// All rows compiled: what the run applies. `None` when a row did not.
    ready: Option<CompiledMappings>,
    /// `(destination field, type when known)` of the rows that compiled.
    outputs: Vec<(String, Option<FieldType>)>,
}

/// Compiles the task's mappings against the source schema and checks them
/// against the destination schema: every row, whatever another row's problem.
fn task_mappings(
    c: &mut Collector,
    project: &Project,
    task: &EntityTask,
    source: Option<&[FieldSchema]>,
    destination: Option<&EntitySchema>,
) -> TaskMappings {
    let t = Some(task.name.as_str());
    let place = |row: usize| {
        task.mappings
            .get(row)
            .and_then(|m| m.place.as_ref())
            .map(|p| p.to_string())
    };

    // Rows without a destination, and destinations written twice.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in task.mappings.iter().enumerate() {
        if m.destination.trim().is_empty() {
            c.error(
                "mapping-incomplete",
                t,
                None,
                format!("mapping row {} has no destination field", i + 1),
                Some("add `destination = \"field\"`".to_owned()),
            )
            .place = place(i);
            continue;
        }
        if let Some(&first) = seen.get(m.destination.as_str()) {
            let other = &task.mappings[first];
            c.error(
                "mapping-duplicate",
                t,
                Some(&m.destination),
                format!(
                    "`{}` is written by row {} ({}) and row {} ({})",
                    m.destination,
                    first + 1,
                    source_of(&other.from),
                    i + 1,
                    source_of(&m.from)
                ),
                Some("keep one row per destination field".to_owned()),
            )
            .place = place(i);
        } else {
            seen.insert(&m.destination, i);
        }
    }
    if task.mappings.is_empty() {
        c.error(
            "mapping-incomplete",
            t,
            None,
            "the task maps no field".to_owned(),
            Some("add mapping rows".to_owned()),
        );
    }

    // Key fields must be mapped destination fields.
    if task.key.is_empty() {
        c.error(
            "key-unmapped",
            t,
            None,
            "the task names no key to upsert by".to_owned(),
            Some("set `key = [\"field\"]` to destination fields".to_owned()),
        );
    }
    for k in &task.key {
        if !seen.contains_key(k.as_str()) {
            let mapped: Vec<&str> = seen.keys().copied().collect();
            c.error(
                "key-unmapped",
                t,
                Some(k),
                format!("key field `{k}` is not a mapped destination field"),
                Some(match nearest(k, mapped.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`? or map `{k}`"),
                    None => format!("map `{k}` or choose the key among: {}", list(&mapped)),
                }),
            );
        }
    }

    let each = CompiledMappings::compile_each(&task.mappings, source, &project.lookups);
    let outputs: Vec<(String, Option<FieldType>)> = each
        .compiled
        .outputs()
        .map(|(n, t)| (n.to_owned(), t))
        .collect();
    let mut unchecked = Vec::new();
    let mut failed = false;
    for p in each.problems {
        if p.code == crate::mapping::UNCHECKED {
            unchecked.push(p.row + 1);
            continue;
        }
        failed = true;
        let dest = task.mappings.get(p.row).map(|m| m.destination.clone());
        c.error(p.code, t, dest.as_deref(), p.message, p.hint).place = place(p.row);
    }
    if !unchecked.is_empty() {
        // The source's schema is unknown; its reason is already reported (and a
        // run cannot start), so these rows are listed, not blamed.
        failed = true;
        c.skipped.push(SkippedCheck {
            task: t.map(str::to_owned),
            checks: format!(
                "the types of mapping rows {} (they need the source's field types)",
                unchecked
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            because: "connection-not-connected",
        });
    }
    let compiled = (!failed).then_some(each.compiled);

    if let Some(dest) = destination {
        // Destination fields that do not exist.
        for (i, m) in task.mappings.iter().enumerate() {
            if m.destination.trim().is_empty()
                || dest.fields.iter().any(|f| f.name == m.destination)
            {
                continue;
            }
            let names: Vec<&str> = dest.fields.iter().map(|f| f.name.as_str()).collect();
            c.error(
                "mapping-incomplete",
                t,
                Some(&m.destination),
                format!(
                    "the destination entity `{}` has no field `{}`",
                    dest.name, m.destination
                ),
                Some(match nearest(&m.destination, names.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None => format!("destination fields: {}", list(&names)),
                }),
            )
            .place = place(i);
        }
        if task.transforms.is_empty() {
            let before = c.problems.len();
            check_types(c, task, &outputs, dest, "mapping");
            // The row that writes the field is where the fix goes.
            for p in &mut c.problems[before..] {
                let row = task
                    .mappings
                    .iter()
                    .position(|m| Some(&m.destination) == p.field.as_ref());
                p.place = row.and_then(place);
            }
        }
    }
    TaskMappings {
        ready: compiled,
        outputs,
    }
}

fn source_of(from: &MappingFrom) -> String {
    match from {
        MappingFrom::Field(f) => format!("from `{f}`"),
        MappingFrom::Expr(e) => format!("from `{e}`"),
        MappingFrom::Nothing => "from nothing".to_owned(),
        MappingFrom::Both { field, .. } => format!("from `{field}`"),
    }
}

fn check_types(
    c: &mut Collector,
    task: &EntityTask,
    fields: &[(String, Option<FieldType>)],
    dest: &EntitySchema,
    what: &str,
) {
    for (name, ty) in fields {
        let (Some(ty), Some(target)) = (ty, dest.fields.iter().find(|f| &f.name == name)) else {
            continue;
        };
        if !types::compatible(*ty, target.field_type) {
            c.error(
                "type-mismatch",
                Some(&task.name),
                Some(name),
                format!(
                    "{what} gives {ty} for `{name}`, a {} field of `{}`",
                    target.field_type, dest.name
                ),
                Some(match (ty, target.field_type) {
                    (FieldType::Text, FieldType::Integer) => {
                        format!("convert it: `to_int!(…)` or `parse_int!(…)` for `{name}`")
                    }
                    (FieldType::Text, FieldType::Float | FieldType::Decimal) => {
                        format!("convert it: `to_float!(…)` for `{name}`")
                    }
                    (FieldType::Text, FieldType::Timestamp) => {
                        format!("convert it: `parse_timestamp!(…, \"%Y-%m-%d\")` for `{name}`")
                    }
                    _ => format!("convert the value to {}", target.field_type),
                }),
            );
        }
    }
}

fn check_against_destination(
    c: &mut Collector,
    task: &EntityTask,
    fields: &[FieldSchema],
    dest: &EntitySchema,
    what: &str,
) {
    let typed: Vec<(String, Option<FieldType>)> = fields
        .iter()
        .map(|f| (f.name.clone(), Some(f.field_type)))
        .collect();
    let before = c.problems.len();
    check_types(c, task, &typed, dest, what);
    for p in &mut c.problems[before..] {
        p.code = "transform-output-incompatible";
    }
    for k in &task.key {
        if !fields.iter().any(|f| &f.name == k) {
            c.error(
                "transform-output-incompatible",
                Some(&task.name),
                Some(k),
                format!("{what} does not output key field `{k}`"),
                Some("keep the key fields in the transform's output".to_owned()),
            );
        }
    }
}

/// Asks each transform for its output schema, feeding it the previous one.
/// Returns the last output, when every step answered.
fn check_transforms(
    c: &mut Collector,
    task: &EntityTask,
    prepared: &mut ExecutionPlugins,
    n: usize,
    compiled: Option<&CompiledMappings>,
) -> Option<Vec<FieldSchema>> {
    if task.transforms.is_empty() {
        return None;
    }
    let mut fields: Vec<FieldSchema> = compiled?
        .outputs()
        .map(|(name, ty)| FieldSchema::new(name, ty.unwrap_or(FieldType::Text)))
        .collect();
    for (step, instance) in task
        .transforms
        .iter()
        .zip(prepared.transforms[n].iter_mut())
    {
        match instance.output_schema(&step.config, &fields) {
            Ok(out) => fields = out,
            Err(e) => {
                c.error(
                    "transform-output-incompatible",
                    Some(&task.name),
                    None,
                    format!("{e}"),
                    Some("fix the transform's configuration or the mappings it reads".to_owned()),
                );
                return None;
            }
        }
    }
    Some(fields)
}
