//! Where a store command's answer comes from: the store opened by this process, or the
//! daemon that holds the data directory (`weir serve`), through its HTTP API on
//! loopback with the token of its local-access file (`daemon::local_access`).
//!
//! [`Backend`] has one method per question a command asks, and both sides answer with
//! the same typed value (the store's own types), so `cli_store` prints one value in one
//! place whichever side answered: same output, same exit codes.
//!
//! What it is not: printing (that is `cli_store`), nor any decision the service makes
//! (the daemon's service decides on its side). It never logs the token nor a secret.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use weir_host::daemon::local_access::{Found, LocalAccess};
use weir_host::engine::validate::SkippedCheck;
use weir_host::engine::{Observer, Problem, Severity, ValidationReport};
use weir_host::service::{AppliedProject, Service};
use weir_host::store::{
    ConnectionState, ConnectionSummary, ExecStatus, Execution, ExecutionFilter, ExecutionId,
    ExecutionSummary, InstalledPlugin, ProjectSummary, Retention, StagedRecord, StoredConnection,
    StoredProject, StoredRecordError, now_millis,
};

/// Which side answers this command.
pub enum Backend {
    /// No daemon holds the data directory: this process opened the store.
    Local(Box<Service>),
    /// A daemon holds it: every question goes to its API.
    Daemon(DaemonClient),
}

/// A recorded run (`weir run NAME`, a re-run), finished.
pub struct RunOutcome {
    /// The execution as the store recorded it.
    pub execution: Execution,
    /// Records that failed while being read and have no stored copy to re-send (a
    /// failed-only re-run); `None` for a run.
    pub without_copy: Option<u64>,
    /// Its first record errors (at most [`FIRST_ERRORS`]), shown with the summary.
    pub first_errors: Vec<StoredRecordError>,
}

/// How many record errors a run's summary shows.
pub const FIRST_ERRORS: u64 = 10;

/// What `executions prune` did (or, in a dry run, would do).
pub struct PruneOutcome {
    /// The rule applied, in words.
    pub rule: String,
    /// The executions the rule lets go, oldest first.
    pub going: Vec<ExecutionSummary>,
    /// How many were deleted (0 in a dry run).
    pub deleted: usize,
}

impl Backend {
    /// The daemon when one answers for `data_dir`; otherwise the store, opened here. A
    /// stale local-access file (its daemon killed) is passed over.
    pub fn open(data_dir: &Path, key_file: Option<&Path>) -> Result<Backend> {
        if let Some(client) = DaemonClient::find(data_dir) {
            return Ok(Backend::Daemon(client));
        }
        let runtime = crate::runtime(data_dir)?;
        let store = crate::cli_store::open_store(data_dir, key_file)?;
        Ok(Backend::Local(Box::new(Service::new(store, &runtime))))
    }

    pub fn connections(&self) -> Result<Vec<ConnectionSummary>> {
        match self {
            Backend::Local(s) => Ok(s.store.connections()?),
            Backend::Daemon(d) => Ok(d.get::<Items<_>>("/api/v1/connections")?.items),
        }
    }

    /// Stores a connection (replacing one of the same name), then checks it.
    pub fn put_connection(&self, conn: &StoredConnection) -> Result<ConnectionState> {
        match self {
            Backend::Local(s) => {
                s.put_connection(conn)?;
                Ok(s.check_connection(&conn.name)?)
            }
            Backend::Daemon(d) => {
                let body = serde_json::json!({
                    "plugin": conn.plugin,
                    "config": conn.config.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "secrets": conn.secrets.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "directory": conn.directory,
                    "http_hosts": conn.http_hosts,
                    "http_internal": conn.http_internal,
                });
                let view: ConnectionAnswer = d.send(
                    reqwest::Method::PUT,
                    &conn_path(&conn.name, ""),
                    Some(&body),
                )?;
                Ok(view.state)
            }
        }
    }

    /// Replaces a stored connection's secrets, then checks it; `None`: no such connection.
    pub fn update_credentials(
        &self,
        name: &str,
        secrets: Vec<(String, String)>,
    ) -> Result<Option<ConnectionState>> {
        let current = match self {
            Backend::Local(s) => s.store.connection(name)?,
            Backend::Daemon(d) => {
                // The API shows secret names only: the stored connection's other fields
                // are sent back as they are, with the new secrets.
                d.get_optional::<ConnectionAnswer>(&conn_path(name, ""))?
                    .map(|v| StoredConnection {
                        name: name.to_owned(),
                        plugin: v.plugin,
                        config: v.config.into_iter().collect(),
                        secrets: Vec::new(),
                        directory: v.directory,
                        http_hosts: v.http_hosts,
                        http_internal: v.http_internal,
                        state: v.state,
                        updated_at: v.updated_at,
                    })
            }
        };
        let Some(mut conn) = current else {
            return Ok(None);
        };
        conn.secrets = secrets;
        conn.updated_at = now_millis();
        self.put_connection(&conn).map(Some)
    }

    pub fn check_connection(&self, name: &str) -> Result<ConnectionState> {
        match self {
            Backend::Local(s) => Ok(s.check_connection(name)?),
            Backend::Daemon(d) => {
                let c: ConnectionAnswer =
                    d.send(reqwest::Method::POST, &conn_path(name, "/check"), None)?;
                Ok(c.state)
            }
        }
    }

    /// False: there was no such connection.
    pub fn delete_connection(&self, name: &str) -> Result<bool> {
        match self {
            Backend::Local(s) => Ok(s.store.delete_connection(name)?),
            Backend::Daemon(d) => d.delete(&conn_path(name, "")),
        }
    }

    pub fn apply_project(&self, file: &Path) -> Result<AppliedProject> {
        match self {
            Backend::Local(s) => Ok(s.apply_project(file)?),
            Backend::Daemon(d) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let name = text
                    .parse::<toml::Table>()
                    .ok()
                    .and_then(|t| t.get("project")?.get("name")?.as_str().map(str::to_owned))
                    .with_context(|| format!("{}: no project.name in the file", file.display()))?;
                // Relative paths resolve against the file's folder, as when applied here.
                let folder = std::path::absolute(file)?
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                let mut url = d.url(&project_path(&name, ""));
                url.query_pairs_mut()
                    .append_pair("base_dir", &folder.to_string_lossy())
                    // Errors name the file as the command was given it, as locally.
                    .append_pair("file_name", &file.to_string_lossy());
                let applied: AppliedAnswer = d.request(
                    d.http
                        .put(url)
                        .header("content-type", "text/plain")
                        .body(text),
                )?;
                Ok(AppliedProject {
                    name: applied.name,
                    version: applied.version,
                    created: applied.changed,
                })
            }
        }
    }

    pub fn projects(&self) -> Result<Vec<ProjectSummary>> {
        match self {
            Backend::Local(s) => Ok(s.store.projects()?),
            Backend::Daemon(d) => Ok(d.get::<Items<_>>("/api/v1/project-versions")?.items),
        }
    }

    pub fn project(&self, name: &str, version: Option<u32>) -> Result<Option<StoredProject>> {
        match self {
            Backend::Local(s) => Ok(s.store.project(name, version)?),
            Backend::Daemon(d) => {
                let v = version.map_or("latest".to_owned(), |v| v.to_string());
                d.get_optional(&project_path(name, &format!("/versions/{v}")))
            }
        }
    }

    /// False: there was no such project.
    pub fn delete_project(&self, name: &str) -> Result<bool> {
        match self {
            Backend::Local(s) => Ok(s.store.delete_project(name)?),
            Backend::Daemon(d) => d.delete(&project_path(name, "")),
        }
    }

    /// Pauses (with a reason) or resumes a project's schedule; through the daemon it
    /// applies at once.
    pub fn set_paused(&self, name: &str, pause_reason: Option<String>) -> Result<()> {
        match self {
            Backend::Local(s) => {
                let paused = pause_reason.is_some();
                s.store.set_project_state(name, paused, pause_reason)?;
                Ok(())
            }
            Backend::Daemon(d) => {
                let (path, body) = match pause_reason {
                    Some(reason) => ("/pause", Some(serde_json::json!({ "reason": reason }))),
                    None => ("/resume", None),
                };
                let _: serde_json::Value = d.send(
                    reqwest::Method::POST,
                    &project_path(name, path),
                    body.as_ref(),
                )?;
                Ok(())
            }
        }
    }

    pub fn validate(&self, name: &str) -> Result<ValidationReport> {
        match self {
            // Remembers the project's secrets, so printed lines are scrubbed of them.
            Backend::Local(s) => Ok(s.validate_project(name, None)?),
            Backend::Daemon(d) => {
                let answer: ReportAnswer = d.send(
                    reqwest::Method::POST,
                    &project_path(name, "/validate"),
                    None,
                )?;
                Ok(answer.into_report())
            }
        }
    }

    pub fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        match self {
            Backend::Local(s) => Ok(s.store.executions(filter)?),
            Backend::Daemon(d) => d.executions(filter),
        }
    }

    pub fn execution(&self, id: ExecutionId) -> Result<Option<Execution>> {
        match self {
            Backend::Local(s) => Ok(s.store.execution(id)?),
            Backend::Daemon(d) => d.get_optional(&format!("/api/v1/executions/{id}")),
        }
    }

    /// One page of an execution's record errors or staged records, and their total;
    /// the records' password-like fields redacted.
    pub fn page<T: Paged>(
        &self,
        id: ExecutionId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<T>, u64)> {
        match self {
            Backend::Local(s) => {
                let (mut page, total) = (T::FETCH)(&s.store, id, offset, limit)?;
                for item in &mut page {
                    let r = item.record();
                    *r = weir_host::service::redact_record(r);
                }
                Ok((page, total))
            }
            Backend::Daemon(d) => d.page(id, T::API_PATH, offset, limit),
        }
    }

    /// Runs a stored project now and waits for its end.
    pub fn run(
        &self,
        name: &str,
        dry_run: bool,
        observer: &mut dyn Observer,
    ) -> Result<RunOutcome> {
        match self {
            Backend::Local(s) => {
                // SIGTERM / Ctrl-C stop at a batch boundary: recorded as interrupted,
                // resumed by the next run.
                let mut request =
                    weir_host::service::RunRequest::new(weir_host::store::Trigger::Manual);
                request.stop = Some(crate::stop_flag());
                request.dry_run = dry_run;
                let (id, _report) = s.run_with(name, &mut request, observer)?;
                self.outcome(recorded(s, id)?, None)
            }
            Backend::Daemon(d) => {
                let path = project_path(name, if dry_run { "/run?dry_run=true" } else { "/run" });
                let started: Started = d.send(reqwest::Method::POST, &path, None)?;
                self.outcome(d.wait(started.execution)?, None)
            }
        }
    }

    /// Re-runs an execution (all of it, or its failed records) and waits for its end.
    pub fn rerun(
        &self,
        id: ExecutionId,
        failed_only: bool,
        observer: &mut dyn Observer,
    ) -> Result<RunOutcome> {
        match self {
            Backend::Local(s) => {
                let (new_id, _report, skipped) = s.rerun(id, failed_only, observer)?;
                self.outcome(recorded(s, new_id)?, Some(skipped))
            }
            Backend::Daemon(d) => {
                // Counted as the service counts them, from the same stored errors.
                let without_copy = if failed_only {
                    self.without_copy(id)?
                } else {
                    0
                };
                let body = serde_json::json!({ "failed_only": failed_only });
                let started: Started = d.send(
                    reqwest::Method::POST,
                    &format!("/api/v1/executions/{id}/rerun"),
                    Some(&body),
                )?;
                self.outcome(d.wait(started.execution)?, Some(without_copy))
            }
        }
    }

    /// How many of an execution's record errors have no stored copy to re-send (they
    /// failed while being read).
    fn without_copy(&self, id: ExecutionId) -> Result<u64> {
        const PAGE: u64 = 1000;
        let (mut offset, mut count) = (0, 0);
        loop {
            let (page, total) = self.page::<StoredRecordError>(id, offset, PAGE)?;
            offset += page.len() as u64;
            count += page.iter().filter(|e| e.record.is_empty()).count() as u64;
            if page.is_empty() || offset >= total {
                return Ok(count);
            }
        }
    }

    /// A finished execution with its first record errors.
    fn outcome(&self, execution: Execution, without_copy: Option<u64>) -> Result<RunOutcome> {
        let first_errors = if execution.record_errors > 0 {
            self.page::<StoredRecordError>(execution.id, 0, FIRST_ERRORS)?
                .0
        } else {
            Vec::new()
        };
        Ok(RunOutcome {
            execution,
            without_copy,
            first_errors,
        })
    }

    pub fn prune(&self, retention: &Retention, dry_run: bool) -> Result<PruneOutcome> {
        match self {
            Backend::Local(s) => {
                let now = now_millis();
                let going = s.store.prune_candidates(retention, now)?;
                let deleted = if dry_run {
                    0
                } else {
                    s.store.prune(retention, now)?
                };
                Ok(PruneOutcome {
                    rule: retention.to_string(),
                    going,
                    deleted,
                })
            }
            Backend::Daemon(d) => {
                let body = serde_json::json!({
                    "days": retention.max_age_days,
                    "keep_last": retention.keep_last,
                    "dry_run": dry_run,
                });
                let p: PrunedAnswer = d.send(
                    reqwest::Method::POST,
                    "/api/v1/executions/prune",
                    Some(&body),
                )?;
                Ok(PruneOutcome {
                    rule: p.rule,
                    going: p.executions,
                    deleted: p.deleted,
                })
            }
        }
    }

    pub fn plugins(&self) -> Result<Vec<InstalledPlugin>> {
        match self {
            Backend::Local(s) => Ok(s.store.plugins()?),
            Backend::Daemon(d) => Ok(d.get::<Items<_>>("/api/v1/plugins")?.items),
        }
    }

    pub fn install_plugin(&self, file: &Path, data_dir: &Path) -> Result<InstalledPlugin> {
        match self {
            Backend::Local(s) => Ok(s.install_plugin(file, &data_dir.join("plugins"))?),
            Backend::Daemon(d) => {
                let file = std::path::absolute(file)?;
                let body = serde_json::json!({ "file": file });
                d.send(reqwest::Method::POST, "/api/v1/plugins", Some(&body))
            }
        }
    }
}

/// Reads one page of an execution's items from the store, and their total.
type Fetch<T> = fn(
    &weir_host::store::Store,
    ExecutionId,
    u64,
    u64,
) -> Result<(Vec<T>, u64), weir_host::store::StoreError>;

/// What an execution keeps page by page: record errors, staged records.
pub trait Paged: DeserializeOwned + Sized + 'static {
    /// The last segment of its API path (`/api/v1/executions/{id}/…`).
    const API_PATH: &'static str;
    const FETCH: Fetch<Self>;
    /// The record copy it carries.
    fn record(&mut self) -> &mut Vec<(String, serde_json::Value)>;
}

impl Paged for StoredRecordError {
    const API_PATH: &'static str = "errors";
    const FETCH: Fetch<Self> = weir_host::store::Store::record_errors;
    fn record(&mut self) -> &mut Vec<(String, serde_json::Value)> {
        &mut self.record
    }
}

impl Paged for StagedRecord {
    const API_PATH: &'static str = "staging";
    const FETCH: Fetch<Self> = weir_host::store::Store::staged;
    fn record(&mut self) -> &mut Vec<(String, serde_json::Value)> {
        &mut self.record
    }
}

/// The execution a local run recorded.
fn recorded(service: &Service, id: ExecutionId) -> Result<Execution> {
    service
        .store
        .execution(id)?
        .with_context(|| format!("execution {id} was not recorded"))
}

fn conn_path(name: &str, rest: &str) -> String {
    format!("/api/v1/connections/{}{rest}", segment(name))
}

fn project_path(name: &str, rest: &str) -> String {
    format!("/api/v1/projects/{}{rest}", segment(name))
}

/// A name as one URL path segment (names are restricted, but never trust that here).
fn segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The daemon's API, as a local command reaches it.
pub struct DaemonClient {
    pub access: LocalAccess,
    http: reqwest::blocking::Client,
}

/// How long a local command waits for the daemon to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `run`/`rerun` look at the execution they wait for.
const POLL: Duration = Duration::from_millis(200);

/// An error answer of the API (`{code, message}`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiAnswerError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl DaemonClient {
    /// The daemon holding `data_dir`, when its local-access file names one that answers.
    pub fn find(data_dir: &Path) -> Option<DaemonClient> {
        let access = match LocalAccess::find(data_dir) {
            Ok(Found::Live(access)) => access,
            Ok(Found::Stale { access, why }) => {
                tracing::debug!(
                    pid = access.pid,
                    ?why,
                    "stale daemon file: opening the store"
                );
                return None;
            }
            Ok(Found::None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable daemon file: opening the store");
                return None;
            }
        };
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // Validation and connection checks call plugins: no overall deadline.
            .timeout(None)
            .build()
            .ok()?;
        Some(DaemonClient { access, http })
    }

    fn url(&self, path: &str) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://{}{path}", self.access.address))
            .expect("an address and an absolute path make a URL")
    }

    fn request<T: DeserializeOwned>(&self, req: reqwest::blocking::RequestBuilder) -> Result<T> {
        let response = req
            .bearer_auth(&self.access.token)
            .send()
            .with_context(|| format!("asking the daemon at {}", self.access.address))?;
        let status = response.status();
        if status.is_success() {
            if status == reqwest::StatusCode::NO_CONTENT {
                return serde_json::from_value(serde_json::Value::Null)
                    .context("the daemon's answer");
            }
            return response.json().context("reading the daemon's answer");
        }
        let body: serde_json::Value = response.json().unwrap_or_default();
        Err(ApiAnswerError {
            status: status.as_u16(),
            code: body["code"].as_str().unwrap_or("").to_owned(),
            message: body["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("the daemon answered {status}")),
        }
        .into())
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.request(self.http.get(self.url(path)))
    }

    /// A GET whose 404 means "none".
    fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        match self.get(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.request(req)
    }

    /// A DELETE: false when there was nothing to delete (404).
    fn delete(&self, path: &str) -> Result<bool> {
        match self.request::<Option<serde_json::Value>>(self.http.delete(self.url(path))) {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn page<T: DeserializeOwned>(
        &self,
        id: ExecutionId,
        what: &str,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<T>, u64)> {
        let page: PageAnswer<T> = self.get(&format!(
            "/api/v1/executions/{id}/{what}?offset={offset}&limit={limit}"
        ))?;
        Ok((page.items, page.total))
    }

    /// The executions `filter` selects, newest first: pages of the API's list, cut at
    /// `since` (the API filters by day only) and at `limit`.
    fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        const PAGE: usize = 1000;
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let mut url = self.url("/api/v1/executions");
            {
                let mut q = url.query_pairs_mut();
                if let Some(p) = &filter.project {
                    q.append_pair("project", p);
                }
                if let Some(s) = filter.status {
                    q.append_pair("status", &s.to_string());
                }
                q.append_pair("limit", &PAGE.to_string());
                q.append_pair("offset", &offset.to_string());
            }
            let page: PageAnswer<ExecutionSummary> = self.request(self.http.get(url))?;
            let n = page.items.len();
            for e in page.items {
                if filter.since.is_some_and(|s| e.started_at < s)
                    || filter.until.is_some_and(|u| e.started_at >= u)
                {
                    continue;
                }
                out.push(e);
                if filter.limit > 0 && out.len() >= filter.limit {
                    return Ok(out);
                }
            }
            offset += n;
            if n < PAGE || offset as u64 >= page.total {
                return Ok(out);
            }
        }
    }

    /// Waits until execution `id` has ended, and returns it as recorded.
    fn wait(&self, id: ExecutionId) -> Result<Execution> {
        loop {
            let e: Execution = self.get(&format!("/api/v1/executions/{id}"))?;
            if e.status != ExecStatus::Running {
                return Ok(e);
            }
            std::thread::sleep(POLL);
        }
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiAnswerError>()
        .is_some_and(|a| a.status == 404)
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Deserialize)]
struct PageAnswer<T> {
    total: u64,
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Started {
    execution: ExecutionId,
}

#[derive(Deserialize)]
struct AppliedAnswer {
    name: String,
    version: u32,
    changed: bool,
}

#[derive(Deserialize)]
struct PrunedAnswer {
    rule: String,
    executions: Vec<ExecutionSummary>,
    deleted: usize,
}

/// A connection as the API shows it (secret names only).
#[derive(Deserialize)]
struct ConnectionAnswer {
    #[serde(default)]
    plugin: String,
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    directory: Option<std::path::PathBuf>,
    #[serde(default)]
    http_hosts: Vec<String>,
    #[serde(default)]
    http_internal: bool,
    state: ConnectionState,
    #[serde(default)]
    updated_at: i64,
}

/// A validation report as the API sends it.
#[derive(Deserialize)]
struct ReportAnswer {
    project: String,
    valid: bool,
    problems: Vec<ProblemAnswer>,
    #[serde(default)]
    skipped: Vec<SkippedAnswer>,
    /// Absent from a daemon older than the drift check.
    #[serde(default)]
    schema_changes: Vec<weir_host::engine::TaskDrift>,
}

#[derive(Deserialize)]
struct SkippedAnswer {
    task: Option<String>,
    checks: String,
    because: String,
}

#[derive(Deserialize)]
struct ProblemAnswer {
    severity: String,
    code: String,
    task: Option<String>,
    field: Option<String>,
    message: String,
    hint: Option<String>,
    place: Option<String>,
}

impl ReportAnswer {
    /// The engine's report, so it prints exactly as a local validation does.
    fn into_report(self) -> ValidationReport {
        ValidationReport {
            project: self.project,
            valid: self.valid,
            schema_changes: self.schema_changes,
            skipped: self
                .skipped
                .into_iter()
                .map(|s| SkippedCheck {
                    task: s.task,
                    checks: s.checks,
                    because: Box::leak(s.because.into_boxed_str()),
                })
                .collect(),
            problems: self
                .problems
                .into_iter()
                .map(|p| Problem {
                    severity: if p.severity == "warning" {
                        Severity::Warning
                    } else {
                        Severity::Error
                    },
                    // The engine's codes are static strings; this process prints one
                    // report and exits, so keeping them for its life costs nothing.
                    code: Box::leak(p.code.into_boxed_str()),
                    task: p.task,
                    field: p.field,
                    message: p.message,
                    hint: p.hint,
                    place: p.place,
                })
                .collect(),
        }
    }
}

/// `weir status`'s answer: who holds the data directory.
pub enum Holder {
    /// A daemon answers for it.
    Daemon(LocalAccess),
    /// No daemon: commands open the store themselves; `stale` when a dead daemon left
    /// its file behind.
    Cli { stale: Option<LocalAccess> },
}

pub fn holder(data_dir: &Path) -> Result<Holder> {
    Ok(match LocalAccess::find(data_dir).map_err(|e| anyhow!(e))? {
        Found::Live(a) => Holder::Daemon(a),
        Found::Stale { access, .. } => Holder::Cli {
            stale: Some(access),
        },
        Found::None => Holder::Cli { stale: None },
    })
}
