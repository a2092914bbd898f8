//! Endpoints for the store commands the rest of the API did not cover, so every `weir`
//! command on a data directory works while `weir serve` holds it (the CLI talks to the
//! daemon then; see `daemon::local_access`): project versions as stored, pruning the
//! history, installed plugins.
//!
//! What it is not: a second API for the CLI. Each answer is what the store says, in the
//! store's own field names, so the CLI prints one typed value whichever side produced it.

use std::path::PathBuf;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{JsonBody, UrlPath};
use super::{ApiError, ApiState, Items, blocking, error};
use crate::store::{ExecutionSummary, InstalledPlugin, ProjectSummary, Retention, StoredProject};

pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(project_versions))
        .routes(routes!(project_version))
        .routes(routes!(prune_executions))
        .routes(routes!(list_plugins, install_plugin))
}

/// A project's latest version, as the store lists it.
#[derive(Serialize, ToSchema)]
struct ProjectHead {
    name: String,
    latest_version: u32,
    /// When the latest version was applied (unix millis).
    updated_at: i64,
}

impl From<ProjectSummary> for ProjectHead {
    fn from(p: ProjectSummary) -> ProjectHead {
        ProjectHead {
            name: p.name,
            latest_version: p.latest_version,
            updated_at: p.updated_at,
        }
    }
}

/// Every project's latest version number and when it was applied, by name.
#[utoipa::path(get, path = "/api/v1/project-versions", tag = "projects",
    responses((status = 200, description = "every project's latest version", body = Items<ProjectHead>), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn project_versions(
    State(state): State<ApiState>,
) -> Result<Json<Items<ProjectHead>>, ApiError> {
    blocking(move || {
        let items = state.daemon.service().store.projects()?;
        Ok(Json(Items {
            items: items.into_iter().map(ProjectHead::from).collect(),
        }))
    })
    .await
}

/// One stored version of a project file.
#[derive(Serialize, ToSchema)]
struct ProjectVersion {
    name: String,
    version: u32,
    /// The project file's TOML, as applied.
    text: String,
    /// Where its relative paths resolve.
    #[schema(value_type = String)]
    base_dir: PathBuf,
    /// When this version was applied (unix millis).
    created_at: i64,
}

impl From<StoredProject> for ProjectVersion {
    fn from(p: StoredProject) -> ProjectVersion {
        ProjectVersion {
            name: p.name,
            version: p.version,
            text: p.text,
            base_dir: p.base_dir,
            created_at: p.created_at,
        }
    }
}

/// One version of a project (`latest` or a number), with its file text.
#[utoipa::path(get, path = "/api/v1/projects/{name}/versions/{version}", tag = "projects",
    params(("name" = String, Path, description = "the project's name"), ("version" = String, Path, description = "a version number, or `latest`")),
    responses((status = 200, description = "the version", body = ProjectVersion), (status = 400, description = "a version that is neither a number nor `latest`", body = error::Body), (status = 404, description = "no such project or version", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn project_version(
    State(state): State<ApiState>,
    UrlPath((name, version)): UrlPath<(String, String)>,
) -> Result<Json<ProjectVersion>, ApiError> {
    let number =
        match version.as_str() {
            "latest" => None,
            n => Some(n.parse::<u32>().map_err(|_| {
                ApiError::bad_request(format!("version `{n}`: a number, or `latest`"))
            })?),
        };
    blocking(move || {
        let stored = state
            .daemon
            .service()
            .store
            .project(&name, number)?
            .ok_or_else(|| ApiError::not_found("project", &name))?;
        Ok(Json(stored.into()))
    })
    .await
}

/// What to prune: the rule of `weir executions prune`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PruneBody {
    /// Keep executions that started less than this many days ago.
    days: Option<u32>,
    /// Keep the newest N executions of each project, whatever their age.
    keep_last: Option<usize>,
    /// List what would be deleted, delete nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/executions/prune`'s answer.
#[derive(Serialize, ToSchema)]
struct Pruned {
    /// The rule applied, in words.
    rule: String,
    dry_run: bool,
    /// The executions the rule lets go, oldest first (in a dry run, what would go).
    executions: Vec<ExecutionSummary>,
    /// How many were deleted (0 in a dry run).
    deleted: usize,
}

/// Deletes old executions with their logs, record errors and staging data. An
/// execution is kept if any rule given keeps it (among the newest `keep_last` of its
/// project, or younger than `days`); never a running one. With neither rule, `days` 45.
#[utoipa::path(post, path = "/api/v1/executions/prune", tag = "executions",
    request_body(content = PruneBody),
    responses((status = 200, description = "what was deleted (or would be)", body = Pruned), (status = 400, description = "a body that does not parse", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn prune_executions(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<PruneBody>,
) -> Result<Json<Pruned>, ApiError> {
    let retention = Retention {
        max_age_days: body.days.or(body.keep_last.is_none().then_some(45)),
        keep_last: body.keep_last,
    };
    blocking(move || {
        let store = &state.daemon.service().store;
        let now = crate::store::now_millis();
        let going = store.prune_candidates(&retention, now)?;
        let deleted = if body.dry_run {
            0
        } else {
            let n = store.prune(&retention, now)?;
            tracing::info!(deleted = n, rule = %retention, "pruned executions");
            n
        };
        Ok(Json(Pruned {
            rule: retention.to_string(),
            dry_run: body.dry_run,
            executions: going,
            deleted,
        }))
    })
    .await
}

/// An installed plugin.
#[derive(Serialize, ToSchema)]
struct PluginView {
    name: String,
    version: String,
    /// connector or transform.
    kind: String,
    sha256: String,
    /// The installed copy.
    #[schema(value_type = String)]
    path: PathBuf,
    installed_at: i64,
}

impl From<InstalledPlugin> for PluginView {
    fn from(p: InstalledPlugin) -> PluginView {
        PluginView {
            name: p.name,
            version: p.version,
            kind: p.kind,
            sha256: p.sha256,
            path: p.path,
            installed_at: p.installed_at,
        }
    }
}

/// Installed plugins.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, description = "every installed plugin", body = Items<PluginView>), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn list_plugins(State(state): State<ApiState>) -> Result<Json<Items<PluginView>>, ApiError> {
    blocking(move || {
        let items = state.daemon.service().store.plugins()?;
        Ok(Json(Items {
            items: items.into_iter().map(PluginView::from).collect(),
        }))
    })
    .await
}

/// A plugin file on the daemon's machine to install.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct InstallBody {
    /// Absolute path of the `.wasm` file, readable by the daemon.
    #[schema(value_type = String)]
    file: PathBuf,
}

/// Installs a plugin: validated, precompiled, copied under the data directory.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins",
    request_body(content = InstallBody),
    responses((status = 201, description = "installed", body = PluginView), (status = 400, description = "not an absolute path, or not a valid plugin", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn install_plugin(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<InstallBody>,
) -> Result<Response, ApiError> {
    if !body.file.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "file {}: give an absolute path",
            body.file.display()
        )));
    }
    blocking(move || {
        let plugins_dir = state.base_dir.join("plugins");
        let installed = state
            .daemon
            .service()
            .install_plugin(&body.file, &plugins_dir)?;
        Ok((StatusCode::CREATED, Json(PluginView::from(installed))).into_response())
    })
    .await
}
