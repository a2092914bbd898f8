//! The store-backed operations of weir: stored connections (with encrypted
//! secrets), versioned projects, and executions recorded with their history,
//! record errors and staging data — including resume after a crash and re-runs.
//!
//! What it is: the layer the CLI (and later the daemon's API) calls; it joins the
//! `engine` and the `store`. What it is not: argument parsing or printing, and it
//! names neither wasmtime nor sled types.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::dispatch::{Dispatch, Job, RunFailure, RunHere};

use crate::engine::{
    self, Engine, EngineError, ExecutionReport, Observer, RecordCopy, Recorder, RunOptions, Status,
    TaskStop,
};
use crate::project::{Connection, EnvPolicy, PluginRef, PluginSource, Project, ProjectError};
use crate::runtime::{Grants, Limits, Runtime};
use crate::schema_history;
use crate::store::{
    self, ConnectionState, ExecStatus, ExecutionId, InstalledPlugin, NewExecution, RerunKind,
    Retention, Store, StoreError, StoredConnection, StoredRecordError, Trigger,
};

/// Batches between checkpoints of a recorded execution.
pub const CHECKPOINT_BATCHES: usize = 10;

/// Why a store-backed operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no {what} named `{name}`")]
    NotFound { what: &'static str, name: String },
    #[error("{0}")]
    Invalid(String),
    /// An execution that could not start (its project did not validate), with
    /// the engine's text scrubbed of secret values.
    #[error("{0}")]
    Failed(String),
}

/// The replacement for secret values in logs, messages and output.
pub use crate::redact::REDACTED;
use crate::redact::Redactor;

/// Field names whose values are redacted when records are shown.
pub fn is_sensitive_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "ssn",
        "card_number",
        "iban",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// A record for display: sensitive-looking fields redacted.
pub fn redact_record(record: &[(String, serde_json::Value)]) -> Vec<(String, serde_json::Value)> {
    record
        .iter()
        .map(|(k, v)| {
            if is_sensitive_field(k) && !v.is_null() {
                (k.clone(), serde_json::Value::String(REDACTED.to_owned()))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

/// A stored connection as the engine wants it (secrets merged into the config).
pub fn to_connection(c: &StoredConnection) -> Connection {
    let mut conn = Connection::new(&c.name, PluginRef::parse(&c.plugin, Path::new(".")));
    // `auth.*` options are the host's HTTP credentials and `postgres.*` its
    // database grant: never handed to the plugin.
    for (k, v) in c.config.iter().chain(&c.secrets) {
        if !k.starts_with(crate::project::STORED_AUTH_PREFIX)
            && !k.starts_with(crate::project::STORED_POSTGRES_PREFIX)
        {
            conn.config.set(k, v);
        }
    }
    // Stored secrets reach the plugin as options: validation lets these through.
    conn.secret_options = c.secrets.iter().map(|(k, _)| k.clone()).collect();
    let http_auth =
        crate::project::http_auth_from_stored(&c.config, &c.secrets).unwrap_or_else(|reason| {
            tracing::warn!(connection = %c.name, %reason, "HTTP credentials ignored");
            None
        });
    let postgres = crate::project::postgres_grant_from_stored(&c.config, &c.secrets)
        .unwrap_or_else(|reason| {
            tracing::warn!(connection = %c.name, %reason, "PostgreSQL grant ignored");
            None
        });
    conn.grants = Grants {
        directory: c.directory.clone(),
        http_hosts: c.http_hosts.clone(),
        http_internal: c.http_internal,
        http_auth,
        postgres,
        ..Grants::none()
    };
    conn.limits = Limits::default();
    conn
}

/// A project file read with the store (see [`Service::load_file`]).
pub struct LoadedFile {
    pub project: Project,
    /// Every secret value the project knows, stored ones included.
    pub secrets: Redactor,
}

/// weir with its store.
/// What applying a project file did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedProject {
    /// The project's name, as the file gives it.
    pub name: String,
    /// Its latest version.
    pub version: u32,
    /// Whether that version was created now (false: the file equals the latest).
    pub created: bool,
}

pub struct Service {
    pub store: Store,
    engine: Engine,
    /// Which environment variables stored projects may name (the administrator's).
    env: EnvPolicy,
    /// Where a begun execution runs: here ([`RunHere`], the default) or on
    /// `weir worker`s (`cluster::HandToWorkers`).
    dispatch: Arc<dyn Dispatch>,
}

impl Service {
    pub fn new(store: Store, runtime: &Runtime) -> Service {
        Service {
            store,
            engine: Engine::new(runtime),
            env: EnvPolicy::default(),
            dispatch: Arc::new(RunHere),
        }
    }

    /// Sets where executions run (see [`Dispatch`]). Without it they run in
    /// this process, as they always have.
    pub fn with_dispatch(mut self, dispatch: Arc<dyn Dispatch>) -> Service {
        self.dispatch = dispatch;
        self
    }

    /// Which environment variables stored projects may name.
    pub fn env_policy(&self) -> &EnvPolicy {
        &self.env
    }

    /// Sets which environment variables stored projects may read (`*_env`).
    pub fn with_env_policy(mut self, env: EnvPolicy) -> Service {
        self.env = env;
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn known_connections(&self) -> Result<(BTreeMap<String, Connection>, Redactor), ServiceError> {
        let mut known = BTreeMap::new();
        let mut secrets = Redactor::new();
        for summary in self.store.connections()? {
            if let Some(c) = self.store.connection(&summary.name)? {
                secrets.extend(c.secrets.iter().map(|(_, v)| v.as_str()));
                known.insert(c.name.clone(), to_connection(&c));
            }
        }
        Ok((known, secrets))
    }

    /// The names of the options a plugin declares `secret` (empty when it cannot
    /// be described: then nothing is known to be secret beyond the grants).
    /// Asked once per loaded plugin (the engine's registry keeps the answer).
    pub fn declared_secrets(&self, plugin: &PluginRef) -> Vec<String> {
        self.engine.registry().secret_options(plugin)
    }

    /// Every secret value a run of `project` knows: its connections' grants
    /// (credentials read from the environment or the store), their stored
    /// secrets and the values of options their plugins declare secret.
    /// Remembered process-wide, so the library's log lines are scrubbed of them.
    pub fn redactor_for(&self, project: &Project) -> Redactor {
        let r = self.engine.redactor(project);
        r.remember();
        r
    }

    /// The secret option names among `config`'s keys: the credentials of the host's
    /// HTTP capability (`auth.*` but the plain `auth.kind`, `auth.username`,
    /// `auth.header`, `auth.token_url`, `auth.client_id`, `auth.scope`), the
    /// PostgreSQL password, and whatever the plugin declares `secret`.
    pub fn secret_options<'a>(
        &self,
        plugin: &str,
        config: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut plugin_ref = PluginRef::parse(plugin, Path::new("."));
        let declared = match self.resolve_installed(&mut plugin_ref) {
            Ok(()) => self.declared_secrets(&plugin_ref),
            Err(_) => Vec::new(),
        };
        config
            .into_iter()
            .filter(|k| {
                crate::project::is_stored_secret_option(k) || declared.iter().any(|d| d == k)
            })
            .map(str::to_owned)
            .collect()
    }

    /// Stores (creates or replaces) a connection after refusing a secret given as
    /// a plain option: plain options are stored in clear and shown by the API, so
    /// a credential there is refused, never stored, and the caller is told to give
    /// it as a secret.
    pub fn put_connection(&self, conn: &StoredConnection) -> Result<(), ServiceError> {
        let secret = self.secret_options(&conn.plugin, conn.config.iter().map(|(k, _)| k.as_str()));
        if !secret.is_empty() {
            let list = secret
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ServiceError::Invalid(format!(
                "connection `{}`: {list} {} a secret: give it as one (`--secret KEY=…` on the command line, `secrets` through the API), not as a plain option; nothing was stored",
                conn.name,
                if secret.len() == 1 { "is" } else { "are" }
            )));
        }
        self.store.put_connection(conn)?;
        Ok(())
    }

    /// Checks a stored connection with its plugin and records the outcome.
    pub fn check_connection(&self, name: &str) -> Result<ConnectionState, ServiceError> {
        let stored = self
            .store
            .connection(name)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "connection",
                name: name.to_owned(),
            })?;
        let conn = to_connection(&stored);
        let mut secrets = conn.grants.redactor();
        secrets.extend(stored.secrets.iter().map(|(_, v)| v.as_str()));
        secrets.remember();
        // Credentials that cannot be used make the connection need fixing: checked
        // without them, it would show Connected against a server that lets
        // anonymous requests through.
        let unusable = crate::project::http_auth_from_stored(&stored.config, &stored.secrets)
            .err()
            .or_else(|| {
                crate::project::postgres_grant_from_stored(&stored.config, &stored.secrets).err()
            });
        let result = match unusable {
            Some(reason) => Err(reason),
            None => self.check(&conn),
        };
        let state = match result {
            Ok(()) => ConnectionState::Connected,
            Err(reason) => ConnectionState::NeedsFixing {
                reason: secrets.scrub(&reason),
            },
        };
        self.store.set_connection_state(name, state.clone())?;
        Ok(state)
    }

    fn check(&self, conn: &Connection) -> Result<(), String> {
        let plugin = self
            .engine
            .registry()
            .get(&conn.plugin)
            .map_err(|e| e.to_string())?;
        let mut grants = conn.grants.clone();
        if let Some(dir) = &grants.directory {
            grants.directory = Some(
                crate::runtime::capabilities::resolve_directory(dir)
                    .map_err(|e| format!("granted directory {}: {e}", dir.display()))?,
            );
        }
        let mut instance = plugin
            .connector(grants, conn.limits.clone())
            .map_err(|e| e.to_string())?;
        instance.check(&conn.config).map_err(|e| e.to_string())
    }

    /// Stores (creates or replaces) the project in `file`, as a new version when it
    /// changed. The file is validated as a project first.
    pub fn apply_project(&self, file: &Path) -> Result<AppliedProject, ServiceError> {
        let text = std::fs::read_to_string(file).map_err(|source| ProjectError::Read {
            path: file.to_owned(),
            source,
        })?;
        let base = std::path::absolute(
            file.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )
        .map_err(|e| ServiceError::Invalid(format!("{}: {e}", file.display())))?;
        self.apply_project_text(file, &text, &base, &self.env)
    }

    /// Stores a project from its text. `label` names it in errors (a file name);
    /// relative paths in it resolve against `base_dir`; `env` says which
    /// environment variables it may name (the API passes [`EnvPolicy::none`]).
    pub fn apply_project_text(
        &self,
        label: &Path,
        text: &str,
        base_dir: &Path,
        env: &EnvPolicy,
    ) -> Result<AppliedProject, ServiceError> {
        let (known, _) = self.known_connections()?;
        let project = Project::parse_with_env(label, text, &known, env)?;
        // A path that can never be a plugin (a FIFO, a device, a directory, a
        // file over the cap) is refused now rather than stored, so it never
        // reaches a scheduled run; a missing file is stored, as before, and
        // reported when it is loaded (it may be installed later).
        let plugins = [&project.source.plugin, &project.destination.plugin]
            .into_iter()
            .chain(
                project
                    .tasks
                    .iter()
                    .flat_map(|t| t.transforms.iter().map(|s| &s.plugin)),
            );
        for plugin in plugins {
            if let crate::project::PluginSource::File(path) = &plugin.source {
                crate::runtime::check_plugin_file(&base_dir.join(path))
                    .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            }
        }
        let applied = self.store.apply_project(&project.name, text, base_dir)?;
        Ok(AppliedProject {
            name: project.name,
            version: applied.version,
            created: applied.created,
        })
    }

    /// Installs a plugin: loads it (validating it and filling the compiled-component
    /// cache), asks its name and version, copies it into `plugins_dir` and records
    /// it. Versions install side by side; projects pick one with `name@version`.
    pub fn install_plugin(
        &self,
        file: &Path,
        plugins_dir: &Path,
    ) -> Result<InstalledPlugin, ServiceError> {
        let runtime = self.engine.registry().runtime();
        // Read once (bounded, regular files only) and install exactly the bytes
        // that were validated: copying the path again could copy something else.
        let bytes = crate::runtime::read_plugin_file(file)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let label = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let plugin = runtime
            .load_bytes(&label, &bytes)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let info = match plugin.kind() {
            crate::runtime::PluginKind::Connector => plugin
                .connector(Grants::none(), Limits::default())
                .and_then(|mut c| c.describe()),
            crate::runtime::PluginKind::Transform => plugin
                .transform(Limits::default())
                .and_then(|mut t| t.describe()),
        }
        .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        std::fs::create_dir_all(plugins_dir)
            .map_err(|e| ServiceError::Invalid(format!("{}: {e}", plugins_dir.display())))?;
        let target = plugins_dir.join(format!(
            "{}-{}-{}.wasm",
            info.name,
            info.version,
            &plugin.digest()[..12]
        ));
        std::fs::write(&target, &bytes)
            .map_err(|e| ServiceError::Invalid(format!("copy to {}: {e}", target.display())))?;
        let installed = InstalledPlugin {
            name: info.name,
            version: info.version,
            kind: format!("{:?}", plugin.kind()).to_lowercase(),
            sha256: plugin.digest().to_owned(),
            path: std::path::absolute(&target).unwrap_or(target),
            installed_at: store::now_millis(),
        };
        self.store.put_plugin(&installed)?;
        Ok(installed)
    }

    /// Points plugin names (`csv`, `items@0.2.0`) at installed plugins when the
    /// store has them; a pinned version that is not installed is an error.
    fn resolve_installed(&self, plugin: &mut PluginRef) -> Result<(), ServiceError> {
        let PluginSource::Bundled(text) = &plugin.source else {
            return Ok(());
        };
        let (name, version) = match text.split_once('@') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (text.clone(), None),
        };
        let found = match &version {
            Some(req) => self.store.plugin_matching(&name, req)?,
            None => self.store.plugin(&name, None)?,
        };
        match found {
            Some(p) => plugin.source = PluginSource::File(p.path),
            None if version.is_some() => {
                let installed: Vec<String> = self
                    .store
                    .plugins()?
                    .into_iter()
                    .filter(|p| p.name == name)
                    .map(|p| p.version)
                    .collect();
                return Err(ServiceError::Invalid(format!(
                    "{}plugin `{text}`: no installed version matches (installed versions of `{name}`: {}; versions are Cargo-style requirements: `1.2`, `^1.2`, `~1.2.3`, `=1.2.3`)",
                    plugin
                        .place
                        .as_ref()
                        .map(|p| format!("{p}: "))
                        .unwrap_or_default(),
                    if installed.is_empty() {
                        "none".to_owned()
                    } else {
                        installed.join(", ")
                    }
                )));
            }
            None => {}
        }
        Ok(())
    }

    /// The project `name` at `version` (latest when `None`), ready to run.
    pub fn load_project(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<(Project, u32, Redactor), ServiceError> {
        let stored = self
            .store
            .project(name, version)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "project",
                name: name.to_owned(),
            })?;
        let (project, secrets) = self.project_from_text(name, &stored.text, &stored.base_dir)?;
        Ok((project, stored.version, secrets))
    }

    /// A stored project's text as [`Service::load_project`] reads it (stored
    /// connections, installed plugins, the service's environment policy): for a
    /// candidate version validated before it is stored. Writes nothing.
    pub fn project_from_text(
        &self,
        name: &str,
        text: &str,
        base_dir: &Path,
    ) -> Result<(Project, Redactor), ServiceError> {
        let (known, mut secrets) = self.known_connections()?;
        let path: PathBuf = base_dir.join(format!("{name}.toml"));
        let mut project = Project::parse_with_env(&path, text, &known, &self.env)?;
        self.resolve_plugins(&mut project)?;
        secrets.merge(&self.redactor_for(&project));
        Ok((project, secrets))
    }

    /// Every plugin name of `project` pointed at the installed plugin it means.
    fn resolve_plugins(&self, project: &mut Project) -> Result<(), ServiceError> {
        self.resolve_installed(&mut project.source.plugin)?;
        self.resolve_installed(&mut project.destination.plugin)?;
        for task in &mut project.tasks {
            for step in &mut task.transforms {
                self.resolve_installed(&mut step.plugin)?;
            }
        }
        Ok(())
    }

    /// A project file read with what the store holds: `connection = "name"`
    /// entries are the stored connections, `plugin = "name@1.2"` the installed
    /// plugins. Nothing is recorded (this is `weir run FILE`/`weir validate FILE`).
    pub fn load_file(&self, path: &Path) -> Result<LoadedFile, ServiceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProjectError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (known, mut secrets) = self.known_connections()?;
        let mut project = Project::parse_with_env(path, &text, &known, &self.env)?;
        self.resolve_plugins(&mut project)?;
        secrets.merge(&self.redactor_for(&project));
        Ok(LoadedFile { project, secrets })
    }

    /// Validates the stored project `name` at `version` (latest when `None`),
    /// writing nothing: no execution is recorded, no directory created (an
    /// engine whose runtime has `cache_writes: false` writes no cache either).
    pub fn validate_project(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<engine::validate::ValidationReport, ServiceError> {
        let (project, _, secrets) = self.load_project(name, version)?;
        self.validate_loaded(&project, &secrets)
    }

    /// Validates a project file with what the store holds (see [`Service::load_file`]),
    /// writing nothing.
    pub fn validate_file(
        &self,
        path: &Path,
    ) -> Result<engine::validate::ValidationReport, ServiceError> {
        let loaded = self.load_file(path)?;
        self.validate_loaded(&loaded.project, &loaded.secrets)
    }

    fn validate_loaded(
        &self,
        project: &Project,
        secrets: &Redactor,
    ) -> Result<engine::validate::ValidationReport, ServiceError> {
        secrets.remember();
        let baseline = self.schema_baseline(&project.name)?;
        let report = self.engine.validate_against(project, baseline.as_ref())?;
        Ok(report)
    }

    /// The schemas recorded at project `name`'s last successful validation of a run,
    /// for the drift check (`None` before its first run).
    pub fn schema_baseline(
        &self,
        name: &str,
    ) -> Result<Option<engine::SchemaSnapshot>, ServiceError> {
        Ok(self
            .store
            .schema_baseline(name)?
            .map(|s| schema_history::engine_schemas(&s)))
    }

    /// Runs the latest version of project `name` as a recorded execution. If the
    /// project's last execution was interrupted, each task resumes from its
    /// committed cursor.
    pub fn run(
        &self,
        name: &str,
        trigger: Trigger,
        observer: &mut dyn Observer,
    ) -> Result<(ExecutionId, ExecutionReport), ServiceError> {
        let mut request = RunRequest::new(trigger);
        self.run_with(name, &mut request, observer)
    }

    /// [`Service::run`] with the daemon's extras (see [`RunRequest`]). A `Scheduled`
    /// run after an execution that ended in Error is recorded as a `Retry` of it.
    pub fn run_with(
        &self,
        name: &str,
        request: &mut RunRequest,
        observer: &mut dyn Observer,
    ) -> Result<(ExecutionId, ExecutionReport), ServiceError> {
        let (project, version, secrets) = self.load_project(name, None)?;
        let mut options = RunOptions {
            checkpoint_every: CHECKPOINT_BATCHES,
            capture: true,
            stop: request.stop.clone(),
            dry_run: request.dry_run,
            ..RunOptions::default()
        };
        let mut parent = None;
        let mut trigger = request.trigger;
        request.previous = self.last_outcome(name)?;
        // Incremental tasks start where the newest recorded cursor stopped: a cursor is
        // only recorded once the destination committed what came before it, so this
        // holds after an Error too (a run that failed at validation recorded none).
        if project.tasks.iter().any(|t| t.incremental) {
            let recent = self.store.executions(&store::ExecutionFilter {
                project: Some(name.to_owned()),
                limit: 50,
                ..Default::default()
            })?;
            for summary in recent.iter().filter(|e| {
                !e.dry_run && !matches!(e.status, ExecStatus::Skipped | ExecStatus::Running)
            }) {
                let Some(e) = self.store.execution(summary.id)? else {
                    continue;
                };
                for task in project.tasks.iter().filter(|t| t.incremental) {
                    if options.resume.contains_key(&task.name) {
                        continue;
                    }
                    if let Some(c) = e
                        .tasks
                        .iter()
                        .find(|t| t.name == task.name)
                        .and_then(|t| t.cursor.clone())
                    {
                        options.resume.insert(task.name.clone(), c);
                    }
                }
                if project
                    .tasks
                    .iter()
                    .filter(|t| t.incremental)
                    .all(|t| options.resume.contains_key(&t.name))
                {
                    break;
                }
            }
        }
        if let Some((last_id, ExecStatus::Error)) = request.previous {
            let last = self.store.execution(last_id)?;
            if let Some(last) = last.filter(|l| l.interrupted) {
                parent = Some(last.id);
                for t in &last.tasks {
                    if let Some(c) = &t.cursor {
                        options.resume.insert(t.name.clone(), c.clone());
                    }
                }
            }
            if trigger == Trigger::Scheduled && !request.dry_run {
                trigger = Trigger::Retry;
                parent = Some(last_id);
            }
        }
        request.trigger = trigger;
        self.execute(
            &project,
            version,
            trigger,
            parent,
            &options,
            observer,
            &secrets,
            &mut *request.started,
        )
    }

    /// The newest finished (not skipped) execution of a project and its status. Dry
    /// runs are passed over: they wrote nothing, so nothing resumes or retries them.
    pub fn last_outcome(
        &self,
        project: &str,
    ) -> Result<Option<(ExecutionId, ExecStatus)>, ServiceError> {
        let recent = self.store.executions(&store::ExecutionFilter {
            project: Some(project.to_owned()),
            limit: 50,
            ..Default::default()
        })?;
        Ok(recent
            .iter()
            .find(|e| !e.dry_run && !matches!(e.status, ExecStatus::Skipped | ExecStatus::Running))
            .map(|e| (e.id, e.status)))
    }

    /// Runs execution `id`'s project again (latest version) as a new execution
    /// linked to it. With `failed_only`, only the records that failed in `id` are
    /// sent again, from their stored copies, without reading the source.
    pub fn rerun(
        &self,
        id: ExecutionId,
        failed_only: bool,
        observer: &mut dyn Observer,
    ) -> Result<(ExecutionId, ExecutionReport, u64), ServiceError> {
        self.rerun_observed(id, failed_only, observer, &mut |_| {})
    }

    /// [`Service::rerun`] telling `started` the new execution's id before it runs.
    pub fn rerun_with(
        &self,
        id: ExecutionId,
        failed_only: bool,
        started: &mut dyn FnMut(ExecutionId),
    ) -> Result<(ExecutionId, ExecutionReport, u64), ServiceError> {
        self.rerun_observed(id, failed_only, &mut engine::Quiet, started)
    }

    fn rerun_observed(
        &self,
        id: ExecutionId,
        failed_only: bool,
        observer: &mut dyn Observer,
        started: &mut dyn FnMut(ExecutionId),
    ) -> Result<(ExecutionId, ExecutionReport, u64), ServiceError> {
        let old = self
            .store
            .execution(id)?
            .ok_or_else(|| ServiceError::NotFound {
                what: "execution",
                name: id.to_string(),
            })?;
        if old.dry_run {
            return Err(ServiceError::Invalid(format!(
                "execution {id} was a dry run: it wrote nothing, so there is nothing to re-run; run the project instead"
            )));
        }
        let (project, version, secrets) = self.load_project(&old.project, None)?;
        let mut options = RunOptions {
            checkpoint_every: CHECKPOINT_BATCHES,
            capture: true,
            ..RunOptions::default()
        };
        let mut not_resendable = 0;
        if failed_only {
            let mut by_task: HashMap<String, Vec<RecordCopy>> = HashMap::new();
            let mut offset = 0;
            loop {
                let (page, total) = self.store.record_errors(id, offset, 1_000)?;
                offset += page.len() as u64;
                for e in page {
                    if e.record.is_empty() {
                        not_resendable += 1;
                    } else {
                        by_task.entry(e.task).or_default().push(e.record);
                    }
                }
                if offset >= total {
                    break;
                }
            }
            if old.record_errors_dropped > 0 {
                return Err(ServiceError::Invalid(format!(
                    "execution {id} dropped {} record errors over the store's limit; re-run it whole",
                    old.record_errors_dropped
                )));
            }
            options.records = Some(by_task);
        }
        let (new_id, report) = self.execute(
            &project,
            version,
            Trigger::Rerun,
            Some(id),
            &options,
            observer,
            &secrets,
            started,
        )?;
        Ok((new_id, report, not_resendable))
    }

    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        project: &Project,
        version: u32,
        trigger: Trigger,
        parent: Option<ExecutionId>,
        options: &RunOptions,
        observer: &mut dyn Observer,
        secrets: &Redactor,
        started: &mut dyn FnMut(ExecutionId),
    ) -> Result<(ExecutionId, ExecutionReport), ServiceError> {
        let rerun = (trigger == Trigger::Rerun).then(|| {
            if options.records.is_some() {
                RerunKind::FailedOnly
            } else {
                RerunKind::AllRecords
            }
        });
        let new = NewExecution {
            project: project.name.clone(),
            project_version: version,
            trigger,
            parent,
            rerun,
            tasks: project.tasks.iter().map(|t| t.name.clone()).collect(),
        };
        let id = if options.dry_run {
            self.store.begin_dry_run(new)?
        } else {
            self.store.begin_execution(new)?
        };
        started(id);
        let options = &RunOptions {
            holder: Some(format!("execution {id} of project `{}`", project.name)),
            schema_baseline: self.schema_baseline(&project.name)?,
            ..options.clone()
        };
        let mut recorder = StoreRecorder {
            store: &self.store,
            id,
            secrets,
        };
        if let Some(p) = parent {
            let _ = recorder.checkpoint(engine::Checkpoint {
                log: vec![format!("info linked to execution {p} ({trigger:?})")],
                ..Default::default()
            });
        }
        let result = self.dispatch.run(
            Job {
                service: self,
                id,
                project,
                version,
                options,
                secrets,
            },
            observer,
        );
        let recorded = self.record_end(id, project, options, secrets, result);
        // Only now may a worker let go of the execution (ack its message): the
        // end is in the store, or recording it failed and the coordinator says so.
        self.dispatch.recorded(id, recorded.is_ok());
        recorded.map(|report| (id, report))
    }

    /// Records how a begun execution ended, whichever [`Dispatch`] ran it.
    fn record_end(
        &self,
        id: ExecutionId,
        project: &Project,
        options: &RunOptions,
        secrets: &Redactor,
        result: Result<ExecutionReport, RunFailure>,
    ) -> Result<ExecutionReport, ServiceError> {
        let report = match result {
            Ok(r) => r,
            Err(RunFailure::Engine(e)) => {
                if let EngineError::Invalid(r) = &e {
                    // A removed mapped field fails validation: the difference that
                    // explains it is kept on the execution.
                    let drifts = r.schema_changes.iter().map(schema_history::stored_drift);
                    self.store.record_schema_changes(id, drifts.collect())?;
                }
                let message = secrets.scrub(&e.to_string());
                self.store
                    .finish_execution(id, ExecStatus::Error, Some(message.clone()))?;
                // The engine's error can quote a plugin that quoted a server that
                // echoed a credential: what leaves is the scrubbed text.
                return Err(match e {
                    EngineError::Invalid(_) => ServiceError::Failed(message),
                    other => other.into(),
                });
            }
            Err(RunFailure::Remote {
                message,
                schema_changes,
            }) => {
                let drifts = schema_changes.iter().map(schema_history::stored_drift);
                self.store.record_schema_changes(id, drifts.collect())?;
                let message = secrets.scrub(&message);
                self.store
                    .finish_execution(id, ExecStatus::Error, Some(message.clone()))?;
                return Err(ServiceError::Failed(message));
            }
        };
        let status = match report.status {
            Status::Completed => ExecStatus::Completed,
            Status::Warning => ExecStatus::Warning,
            Status::Error => ExecStatus::Error,
        };
        let error = report
            .tasks
            .iter()
            .find_map(|t| t.error.as_ref())
            .map(|e| secrets.scrub(e));
        self.store
            .record_plugin_costs(id, report.plugins.iter().map(stored_cost).collect())?;
        self.record_schemas(id, project, &report, options.dry_run)?;
        // Stopped at a committed batch boundary: whatever was upserted, the execution did
        // not finish; recorded as interrupted (Error), so the next run resumes from its
        // cursors.
        // A dry run is never resumed: it wrote nothing and kept no cursor.
        match report
            .tasks
            .iter()
            .find(|t| t.interrupted && !options.dry_run)
        {
            Some(t) => self.store.finish_interrupted(
                id,
                secrets.scrub(t.error.as_deref().unwrap_or("interrupted")),
            )?,
            None => self.store.finish_execution(id, status, error)?,
        }
        crate::metrics::ExecutionFinished {
            id,
            report: &report,
        }
        .emit();
        self.store
            .prune(&Retention::default(), store::now_millis())?;
        self.store.flush()?;
        Ok(report)
    }
}

impl Service {
    /// After a run that validated: its schema differences on the execution, the next
    /// baseline on the project, and the project paused when a `pause` policy stopped
    /// a task (the daemon reads the pause back and alerts). A dry run records what it
    /// found on itself only: it changes neither the baseline nor the project's state.
    fn record_schemas(
        &self,
        id: ExecutionId,
        project: &Project,
        report: &ExecutionReport,
        dry_run: bool,
    ) -> Result<(), ServiceError> {
        let drifts: Vec<_> = report
            .schema_changes
            .iter()
            .map(schema_history::stored_drift)
            .collect();
        if !drifts.is_empty() {
            self.store.record_schema_changes(id, drifts.clone())?;
        }
        if dry_run {
            return Ok(());
        }
        if let Some(next) = &report.schema_baseline {
            let stored = schema_history::stored_schemas(next, Some(id));
            self.store.set_schema_baseline(&project.name, &stored)?;
        }
        if let Some(reason) = schema_history::pause_reason(id, &drifts) {
            tracing::warn!(project = %project.name, execution = id, "{reason}");
            self.store
                .set_project_state(&project.name, true, Some(reason))?;
        }
        Ok(())
    }
}

/// The history's copy of what the engine measured for one plugin instance.
fn stored_cost(usage: &engine::PluginUsage) -> store::StoredPluginCost {
    let c = &usage.cost;
    store::StoredPluginCost {
        plugin: usage.plugin.clone(),
        role: match &usage.role {
            engine::PluginRole::Source => store::PluginRole::Source,
            engine::PluginRole::Destination => store::PluginRole::Destination,
            engine::PluginRole::Transform { task, step } => store::PluginRole::Transform {
                task: task.clone(),
                step: *step,
            },
        },
        calls: c.calls,
        wall_micros: c.wall_micros,
        cpu_micros: c.cpu_micros,
        slowest_call_micros: c.slowest_call_micros,
        call_timeout_micros: usage.call_timeout_micros,
        memory_high_water_bytes: c.memory_high_water_bytes,
        memory_limit_bytes: usage.memory_limit_bytes,
        instantiations: c.instantiations,
        traps: c.traps,
        records_in: c.records_in,
        records_out: c.records_out,
        bytes_in: c.bytes_in,
        bytes_out: c.bytes_out,
        http_requests: c.http_requests,
        http_bytes_sent: c.http_bytes_sent,
        http_bytes_received: c.http_bytes_received,
    }
}

/// What the daemon adds to a run: a stop flag (shutdown), the execution id as soon as
/// it exists (to answer "run now" at once), and what came before.
pub struct RunRequest {
    /// `Scheduled` becomes `Retry` after an execution that ended in Error; read it
    /// back after the run for the trigger recorded.
    pub trigger: Trigger,
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Called once with the new execution's id, before anything runs.
    pub started: Box<dyn FnMut(ExecutionId) + Send>,
    /// Set by the run: the project's previous finished execution and its status.
    pub previous: Option<(ExecutionId, ExecStatus)>,
    /// A dry run ([`engine::RunOptions::dry_run`]): it starts where a run would
    /// (resume and incremental cursors), predicts, writes nothing, and is recorded
    /// as a dry run.
    pub dry_run: bool,
}

impl RunRequest {
    pub fn new(trigger: Trigger) -> RunRequest {
        RunRequest {
            trigger,
            stop: None,
            started: Box::new(|_| {}),
            previous: None,
            dry_run: false,
        }
    }
}

/// Persists engine checkpoints into the store, scrubbing secret values.
pub(crate) struct StoreRecorder<'a> {
    pub(crate) store: &'a Store,
    pub(crate) id: ExecutionId,
    pub(crate) secrets: &'a Redactor,
}

/// A record copy with secret values scrubbed from its text (a mapping or a
/// transform can put a credential into a field).
fn scrub_record(secrets: &Redactor, mut record: RecordCopy) -> RecordCopy {
    if !secrets.is_empty() {
        for (_, value) in &mut record {
            secrets.scrub_json(value);
        }
    }
    record
}

/// An engine checkpoint as the store keeps it, every text scrubbed of `secrets`.
/// Made where the engine runs (this process, or a `weir worker`, which sends it to
/// the coordinator), so secret values never travel inside a checkpoint.
pub fn stored_checkpoint(cp: engine::Checkpoint, secrets: &Redactor) -> store::StoredCheckpoint {
    let scrub = |t: &str| secrets.scrub(t);
    store::StoredCheckpoint {
        tasks: cp
            .tasks
            .iter()
            .map(|t| store::TaskState {
                name: t.name.clone(),
                read: t.counts.read,
                inserted: t.counts.inserted,
                updated: t.counts.updated,
                unchanged: t.counts.unchanged,
                failed: t.counts.failed,
                skipped: 0,
                cursor: t.cursor.clone(),
                error: t.error.as_deref().map(scrub),
            })
            .collect(),
        log: cp.log.iter().map(|l| scrub(l)).collect(),
        record_errors: cp
            .failures
            .into_iter()
            .map(|r| StoredRecordError {
                task: r.task,
                stage: r.failure.stage.to_string(),
                key: r.failure.key,
                position: r.failure.position,
                field: r.failure.field,
                message: scrub(&r.failure.message),
                record: scrub_record(secrets, r.source.unwrap_or_default()),
            })
            .collect(),
        staged: cp
            .staged
            .into_iter()
            .map(|s| store::StagedRecord {
                task: s.task,
                key: s.key.map(|k| scrub(&k)),
                record: scrub_record(secrets, s.record),
            })
            .collect(),
    }
}

impl Recorder for StoreRecorder<'_> {
    fn checkpoint(&mut self, cp: engine::Checkpoint) -> Result<(), TaskStop> {
        commit_checkpoint(self.store, self.id, stored_checkpoint(cp, self.secrets))
    }
}

/// Commits one checkpoint of execution `id` in one store transaction (on disk
/// before it returns), and says how the task stops if it cannot.
pub(crate) fn commit_checkpoint(
    store: &Store,
    id: ExecutionId,
    checkpoint: store::StoredCheckpoint,
) -> Result<(), TaskStop> {
    // The engine reports the tasks run so far; keep the states of the others
    // as they were begun.
    let mut checkpoint = checkpoint;
    if let Some(current) = store.execution(id).map_err(|e| e.to_string())? {
        let mut merged = current.tasks;
        for t in checkpoint.tasks.drain(..) {
            match merged.iter_mut().find(|m| m.name == t.name) {
                Some(m) => *m = t,
                None => merged.push(t),
            }
        }
        checkpoint.tasks = merged;
    }
    let started = std::time::Instant::now();
    let written = store.checkpoint(id, checkpoint);
    crate::metrics::CheckpointWritten {
        took: started.elapsed(),
    }
    .emit();
    written.map_err(|e| match e {
        // Nothing went wrong with the data: the execution stops at this batch
        // boundary like a shutdown does, so the next run resumes from the last
        // recorded checkpoint instead of starting over.
        StoreError::LowSpace { .. } | StoreError::NotWritable { .. } => TaskStop::Interrupted(
            format!("interrupted: {e}; the next run resumes from the last checkpoint"),
        ),
        other => TaskStop::Failed(other.to_string()),
    })
}
