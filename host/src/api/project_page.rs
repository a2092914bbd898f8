//! The dashboard's project page: a project's connection set, its tasks and their
//! mapping rows as the file has them, a row edited in place (validated before it is
//! stored as a new version) and what changed from the previous version.
//!
//! What the page receives is structure only — connection names, plugin names,
//! organizations, entities, keys and mapping rows — never a connection's options,
//! grants or credentials, and every text passes the project's `Redactor`. An edit
//! names the version it was made on: the row is replaced in that version's text
//! (the rest of the file, comments included, is kept byte for byte), the candidate
//! is validated with the plugins, and only a valid candidate is stored. A refused
//! save leaves the stored project as it was.

use std::ops::Range;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, UrlPath};
use super::{ApiError, ApiState, blocking, error, scrubbed};
use crate::project::file::{MappingSpec, ProjectFile, TaskSpec};
use crate::project::{PluginRef, PluginSource, Project};
use crate::redact::Redactor;

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(project_mappings, save_mapping))
        .routes(routes!(check_mapping))
}

/// A project as its page shows it.
#[derive(Serialize, ToSchema)]
struct ProjectMappings {
    name: String,
    /// The stored version shown (edits name it).
    version: u32,
    connection_set: ConnectionSetView,
    tasks: Vec<TaskView>,
    /// The version before this one, when the store still has it.
    previous_version: Option<u32>,
    /// What changed from `previous_version`.
    changes: Changes,
}

#[derive(Serialize, ToSchema)]
struct ConnectionSetView {
    name: String,
    source: SideView,
    destination: SideView,
    /// The organization pair this project uses, if any.
    organization: Option<OrganizationView>,
    /// Every pair the connection set declares.
    organizations: Vec<OrganizationView>,
}

/// One side of a connection set: the connection's name and its plugin (no options).
#[derive(Serialize, ToSchema)]
struct SideView {
    connection: String,
    plugin: String,
}

#[derive(Serialize, ToSchema)]
struct OrganizationView {
    source: String,
    destination: String,
}

#[derive(Serialize, ToSchema)]
struct TaskView {
    /// Position in the file (0-based): what an edit names.
    index: usize,
    name: String,
    source_entity: String,
    destination_entity: String,
    key: Vec<String>,
    rows: Vec<RowView>,
}

/// A mapping row as written: a source field or an expression → a destination field.
#[derive(Clone, PartialEq, Serialize, ToSchema)]
struct RowView {
    /// 1-based, as validation counts rows.
    row: usize,
    destination: String,
    source: Option<String>,
    expr: Option<String>,
    /// The destination field is one of the task's key fields.
    key: bool,
    /// The row's line in the project file.
    line: Option<usize>,
}

/// The difference between two versions, row by row.
#[derive(Serialize, ToSchema, Default)]
struct Changes {
    rows: Vec<RowChange>,
    /// The file also changed outside the mapping rows (connections, schedule, …).
    other: bool,
}

#[derive(Serialize, ToSchema)]
struct RowChange {
    task: String,
    row: usize,
    kind: ChangeKind,
    before: Option<RowView>,
    after: Option<RowView>,
}

#[derive(Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ChangeKind {
    Changed,
    Added,
    Removed,
}

/// One mapping row rewritten: exactly one of `source` and `expr`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RowEdit {
    /// The version the edit was made on; a newer stored version is a conflict (409).
    version: u32,
    /// The task's `index` on the page.
    task: usize,
    /// The row's `row` (1-based).
    row: usize,
    destination: String,
    source: Option<String>,
    expr: Option<String>,
}

/// A candidate version: its validation and its difference from the stored one.
#[derive(Serialize, ToSchema)]
struct Candidate {
    valid: bool,
    /// The validation report (`problems`: code, task, field, message, hint, place).
    #[schema(value_type = Object)]
    report: serde_json::Value,
    changes: Changes,
}

/// A saved edit.
#[derive(Serialize, ToSchema)]
struct SavedMapping {
    version: u32,
    previous_version: u32,
    changes: Changes,
}

/// The project's connection set, tasks and mapping rows (no option or credential).
#[utoipa::path(get, path = "/api/v1/projects/{name}/mappings", tag = "projects", params(("name" = String, Path, description = "the project's name")),
    responses((status = 200, description = "the project's page", body = ProjectMappings),
        (status = 404, description = "no such project", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn project_mappings(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let svc = state.daemon.service();
        let stored = svc
            .store
            .project(&name, None)?
            .ok_or_else(|| ApiError::not_found("project", &name))?;
        let (project, secrets) = svc.project_from_text(&name, &stored.text, &stored.base_dir)?;
        let file = parse_file(&stored.text)?;
        let previous = match stored.version.checked_sub(1).filter(|v| *v > 0) {
            Some(v) => svc.store.project(&name, Some(v))?,
            None => None,
        };
        let changes = match &previous {
            Some(p) => changes(&p.text, &stored.text).unwrap_or_else(|| Changes {
                rows: Vec::new(),
                other: true,
            }),
            None => Changes::default(),
        };
        let view = ProjectMappings {
            name: name.clone(),
            version: stored.version,
            connection_set: connection_set(&project, &file),
            tasks: tasks(&project, &file, &stored.text),
            previous_version: previous.map(|p| p.version),
            changes,
        };
        Ok(Json(scrub(view, &secrets)?))
    })
    .await
}

/// Validates a project with one mapping row rewritten, without storing anything.
#[utoipa::path(post, path = "/api/v1/projects/{name}/mappings/check", tag = "projects", params(("name" = String, Path, description = "the project's name")),
    request_body(content = RowEdit),
    responses((status = 200, description = "the candidate's validation and its changes (nothing stored)", body = Candidate),
        (status = 400, description = "no such task or row, or the row is not an inline table", body = error::Body),
        (status = 404, description = "no such project", body = error::Body),
        (status = 409, description = "the project has a newer version than the edit's", body = error::Body),
        (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn check_mapping(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    JsonBody(edit): JsonBody<RowEdit>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let (candidate, _, secrets) = candidate(&state, &name, &edit)?;
        Ok(Json(scrub(candidate, &secrets)?))
    })
    .await
}

/// Stores a project with one mapping row rewritten, as a new version, if the
/// candidate validates; otherwise 422 with the report and nothing stored.
#[utoipa::path(put, path = "/api/v1/projects/{name}/mappings", tag = "projects", params(("name" = String, Path, description = "the project's name")),
    request_body(content = RowEdit),
    responses((status = 201, description = "stored as a new version", body = SavedMapping),
        (status = 400, description = "no such task or row, or the row is not an inline table", body = error::Body),
        (status = 404, description = "no such project", body = error::Body),
        (status = 409, description = "the project has a newer version than the edit's", body = error::Body),
        (status = 422, description = "the candidate is invalid (`details`: the validation report); the stored project is unchanged", body = error::Body),
        (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn save_mapping(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    JsonBody(edit): JsonBody<RowEdit>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    blocking(move || {
        let (candidate, text, secrets) = candidate(&state, &name, &edit)?;
        if !candidate.valid {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "the edited project does not validate; nothing was stored",
            );
            e.details = Some(candidate.report);
            return Err(e);
        }
        let svc = state.daemon.service();
        let stored = svc
            .store
            .project(&name, None)?
            .ok_or_else(|| ApiError::not_found("project", &name))?;
        let label = std::path::PathBuf::from(format!("{name}.toml"));
        let applied = svc.apply_project_text(
            &label,
            &text,
            &stored.base_dir,
            &crate::project::EnvPolicy::none(),
        )?;
        state.daemon.reload(&name)?;
        Ok((
            StatusCode::CREATED,
            Json(scrub(
                SavedMapping {
                    version: applied.version,
                    previous_version: edit.version,
                    changes: candidate.changes,
                },
                &secrets,
            )?),
        ))
    })
    .await
}

/// The edited text of the stored version `edit.version`, validated.
fn candidate(
    state: &ApiState,
    name: &str,
    edit: &RowEdit,
) -> Result<(Candidate, String, Redactor), ApiError> {
    let svc = state.daemon.service();
    let stored = svc
        .store
        .project(name, None)?
        .ok_or_else(|| ApiError::not_found("project", name))?;
    if stored.version != edit.version {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "the edit was made on version {} but version {} is stored now; reload the page",
                edit.version, stored.version
            ),
        ));
    }
    let text = edited(&stored.text, edit)?;
    let (project, secrets) = svc.project_from_text(name, &text, &stored.base_dir)?;
    let report = svc
        .engine()
        .validate(&project)
        .map_err(|e| scrubbed(crate::service::ServiceError::from(e).into(), &secrets))?;
    let valid = report.valid;
    let mut report = serde_json::to_value(report).map_err(ApiError::internal)?;
    secrets.scrub_json(&mut report);
    let changes = changes(&stored.text, &text).unwrap_or_default();
    let candidate = Candidate {
        valid,
        report,
        changes,
    };
    Ok((candidate, text, secrets))
}

fn parse_file(text: &str) -> Result<ProjectFile, ApiError> {
    toml::from_str(text).map_err(|e| ApiError::bad_request(format!("the project file: {e}")))
}

/// `text` with the edited row replaced by a new inline table.
fn edited(text: &str, edit: &RowEdit) -> Result<String, ApiError> {
    let file = parse_file(text)?;
    let task =
        file.project.tasks.get_ref().get(edit.task).ok_or_else(|| {
            ApiError::bad_request(format!("the project has no task {}", edit.task))
        })?;
    let span = edit
        .row
        .checked_sub(1)
        .and_then(|i| task.mappings.get_ref().get(i))
        .map(|m| m.span())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "task {} has no mapping row {}",
                edit.task, edit.row
            ))
        })?;
    let old = text.get(span.clone()).unwrap_or("");
    if !(old.starts_with('{') && old.ends_with('}')) {
        return Err(ApiError::bad_request(
            "this row is not written as an inline table `{ … }`; edit the project file instead",
        ));
    }
    let from = match (&edit.source, &edit.expr) {
        (Some(s), None) => ("source", s),
        (None, Some(e)) => ("expr", e),
        _ => {
            return Err(ApiError::bad_request(
                "give the row either `source` (a field) or `expr` (an expression)",
            ));
        }
    };
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let row = format!(
        "{{ destination = {}, {} = {} }}",
        quote(&edit.destination),
        from.0,
        quote(from.1)
    );
    let mut out = String::with_capacity(text.len() + row.len());
    out.push_str(&text[..span.start]);
    out.push_str(&row);
    out.push_str(&text[span.end..]);
    Ok(out)
}

fn plugin_name(plugin: &PluginRef) -> String {
    match &plugin.source {
        PluginSource::Bundled(name) => name.clone(),
        PluginSource::File(path) => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    }
}

fn connection_set(project: &Project, file: &ProjectFile) -> ConnectionSetView {
    let organizations = file
        .connection_sets
        .get(&project.connection_set)
        .map(|set| {
            set.organizations
                .iter()
                .map(|o| OrganizationView {
                    source: o.source.clone(),
                    destination: o.destination.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    ConnectionSetView {
        name: project.connection_set.clone(),
        source: SideView {
            connection: project.source.name.clone(),
            plugin: plugin_name(&project.source.plugin),
        },
        destination: SideView {
            connection: project.destination.name.clone(),
            plugin: plugin_name(&project.destination.plugin),
        },
        organization: project.organization.as_ref().map(|o| OrganizationView {
            source: o.source.clone(),
            destination: o.destination.clone(),
        }),
        organizations,
    }
}

fn line_of(text: &str, span: &Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

fn task_name(spec: &TaskSpec) -> String {
    spec.name
        .clone()
        .unwrap_or_else(|| spec.destination_entity.clone())
}

fn rows(spec: &TaskSpec, text: &str) -> Vec<RowView> {
    let key = spec.key.get_ref();
    spec.mappings
        .get_ref()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let MappingSpec {
                destination,
                source,
                expr,
            } = m.get_ref();
            RowView {
                row: i + 1,
                destination: destination.clone(),
                source: source.clone(),
                expr: expr.clone(),
                key: key.contains(destination),
                line: Some(line_of(text, &m.span())),
            }
        })
        .collect()
}

fn tasks(project: &Project, file: &ProjectFile, text: &str) -> Vec<TaskView> {
    file.project
        .tasks
        .get_ref()
        .iter()
        .enumerate()
        .map(|(index, spec)| TaskView {
            index,
            // The name validation reports (normalized), by position.
            name: project
                .tasks
                .get(index)
                .map_or_else(|| task_name(spec), |t| t.name.clone()),
            source_entity: spec.source_entity.clone(),
            destination_entity: spec.destination_entity.clone(),
            key: spec.key.get_ref().clone(),
            rows: rows(spec, text),
        })
        .collect()
}

/// Row by row, what changed from `before` to `after` (tasks matched by name);
/// `None` when either does not parse.
fn changes(before: &str, after: &str) -> Option<Changes> {
    let (old, new) = (parse_file(before).ok()?, parse_file(after).ok()?);
    let mut out = Changes::default();
    let old_tasks = old.project.tasks.get_ref();
    for spec in new.project.tasks.get_ref() {
        let name = task_name(spec);
        let now = rows(spec, after);
        let was = old_tasks
            .iter()
            .find(|t| task_name(t) == name)
            .map(|t| rows(t, before))
            .unwrap_or_default();
        for i in 0..now.len().max(was.len()) {
            let (b, a) = (was.get(i), now.get(i));
            let same = |x: &RowView, y: &RowView| {
                (&x.destination, &x.source, &x.expr, x.key)
                    == (&y.destination, &y.source, &y.expr, y.key)
            };
            let kind = match (b, a) {
                (Some(b), Some(a)) if same(b, a) => continue,
                (Some(_), Some(_)) => ChangeKind::Changed,
                (None, Some(_)) => ChangeKind::Added,
                (Some(_), None) => ChangeKind::Removed,
                (None, None) => continue,
            };
            out.rows.push(RowChange {
                task: name.clone(),
                row: i + 1,
                kind,
                before: b.cloned(),
                after: a.cloned(),
            });
        }
    }
    // Outside the rows: the texts with every mapping row cut out.
    out.other = without_rows(before, &old) != without_rows(after, &new)
        || old_tasks.len() != new.project.tasks.get_ref().len();
    Some(out)
}

/// The text with each mapping row's span removed.
fn without_rows(text: &str, file: &ProjectFile) -> String {
    let mut spans: Vec<Range<usize>> = file
        .project
        .tasks
        .get_ref()
        .iter()
        .flat_map(|t| t.mappings.get_ref().iter().map(|m| m.span()))
        .collect();
    spans.sort_by_key(|s| s.start);
    let mut out = String::new();
    let mut at = 0;
    for s in spans {
        if s.start >= at {
            out.push_str(&text[at..s.start]);
            at = s.end;
        }
    }
    out.push_str(&text[at.min(text.len())..]);
    out
}

/// `value` as JSON with every text through the project's redactor (the page shows
/// names and expressions, and an expression may quote anything).
fn scrub(value: impl Serialize, secrets: &Redactor) -> Result<serde_json::Value, ApiError> {
    let mut v = serde_json::to_value(value).map_err(ApiError::internal)?;
    secrets.scrub_json(&mut v);
    Ok(v)
}
