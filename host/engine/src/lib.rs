//! weir-engine: what to run and how it runs — projects, their mappings and validation,
//! and the execution of their entity tasks.
//!
//! What it is: [`project`] (connections, a connection set, entity tasks, read from a
//! project file or built in code), and the pipeline pull → map → transform → upsert, in
//! batches, with per-record failures collected by stage, checkpoints handed to a
//! [`Recorder`], and an execution status computed from the counts. The plugins shipped
//! with weir are in [`bundled`]. What it is not: a scheduler, a store, an HTTP API or a
//! mailer; it knows plugins only through `weir-runtime`'s instance types (re-exported
//! as [`runtime`]) and names no wasmtime type. An application embeds weir with this
//! crate alone (see `examples/embed`).
//!
//! Failure policy: a bad record fails that record; a failed or trapping plugin
//! call fails the entity task (status Error) and the execution goes on to the
//! next task; the host process always goes on.
//!
//! Cargo features: `postgres` (off by default) turns on `weir-runtime/postgres`, so the
//! bundled `postgres` connector can reach a database.
//!
//! ```no_run
//! use weir_engine::{Engine, Quiet, project::Project, runtime::{Runtime, RuntimeConfig}};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let project = Project::load("examples/contacts/project.toml".as_ref())?;
//! let report = Engine::new(&runtime).run(&project, &mut Quiet)?;
//! println!("{}", report.status);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bundled;
pub mod project;

/// The runtime this engine runs plugins on, so an embedder needs one dependency.
pub use weir_runtime as runtime;
/// Re-exported so embedders need not depend on `weir-types` directly.
pub use weir_types::{Batch, BatchBuilder, Config, FieldType, Value};

use weir_names as names;

mod conform;
pub mod drift;
mod execute;
pub mod keys;
pub mod lock;
pub mod mapping;
mod preview;
mod report;
mod retry;
mod secrets;
pub mod transform_check;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

pub use drift::{
    ChangeKind, DriftOutcome, SchemaChange, SchemaPolicy, SchemaSide, SchemaSnapshot, TaskDrift,
};
pub use execute::{
    Checkpoint, FailedRecord, NoRecorder, READ_AHEAD_PAGES, RecordCopy, Recorder, RunOptions,
    StagedCopy, TaskProgress, TaskStop,
};
pub use mapping::{CompiledMappings, MappingError};
pub use preview::{Prediction, PreviewRecord, PreviewReport};
pub use report::{
    Counts, ExecutionReport, PluginRole, PluginUsage, RecordFailure, Stage, Status, TaskReport,
};
pub use secrets::SECRET_AS_OPTION;
pub use validate::{Problem, Severity, ValidationReport};

use crate::project::{Connection, Place, PluginRef, PluginSource, Project};
use crate::runtime::redact::Redactor;
use crate::runtime::{
    ConnectorInstance, Limits, LoadError, Plugin, PluginCost, PluginKind, Runtime,
    TransformInstance, capabilities,
};

/// Record failures kept per task in a report (all are counted).
pub const MAX_KEPT_FAILURES: usize = 1_000;

/// Why a project could not start executing.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}plugin {source_name}: {error}", place_prefix(.place))]
    Plugin {
        place: Option<Place>,
        source_name: String,
        error: LoadError,
    },
    #[error("{}unknown bundled plugin `{name}` (bundled: {}); to use a file, give a path ending in .wasm", place_prefix(.place), bundled::plugin_names().join(", "))]
    UnknownBundled { place: Option<Place>, name: String },
    #[error("{}plugin {source_name} is a {found:?} plugin; {role} needs a {expected:?} plugin", place_prefix(.place))]
    WrongKind {
        place: Option<Place>,
        source_name: String,
        role: String,
        found: PluginKind,
        expected: PluginKind,
    },
    #[error("project `{}` is invalid; nothing was run.\n{}", .0.project, .0)]
    Invalid(Box<ValidationReport>),
    #[error("connection `{connection}`: granted directory {}: {reason}", .directory.display())]
    Directory {
        connection: String,
        directory: PathBuf,
        reason: String,
    },
}

fn place_prefix(place: &Option<Place>) -> String {
    place.as_ref().map(|p| format!("{p}: ")).unwrap_or_default()
}

/// Loads plugins by reference, once each: bundled ones from the binary, files
/// from disk (through the runtime's compiled-component cache).
pub struct PluginRegistry {
    runtime: Runtime,
    loaded: Mutex<HashMap<PluginSource, Plugin>>,
}

impl PluginRegistry {
    pub fn new(runtime: &Runtime) -> PluginRegistry {
        PluginRegistry {
            runtime: runtime.clone(),
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The plugin a reference names, loading it on first use.
    pub fn get(&self, plugin: &PluginRef) -> Result<Plugin, EngineError> {
        if let Some(p) = self.loaded.lock().unwrap().get(&plugin.source) {
            return Ok(p.clone());
        }
        let loaded = match &plugin.source {
            PluginSource::Bundled(name) => {
                let bytes = bundled::plugin(name).ok_or_else(|| EngineError::UnknownBundled {
                    place: plugin.place.clone(),
                    name: name.clone(),
                })?;
                self.runtime.load_bytes(name, bytes)
            }
            PluginSource::File(path) => self.runtime.load_file(path),
        }
        .map_err(|error| EngineError::Plugin {
            place: plugin.place.clone(),
            source_name: plugin.source.to_string(),
            error,
        })?;
        self.loaded
            .lock()
            .unwrap()
            .insert(plugin.source.clone(), loaded.clone());
        Ok(loaded)
    }

    fn get_kind(
        &self,
        plugin: &PluginRef,
        role: &str,
        expected: PluginKind,
    ) -> Result<Plugin, EngineError> {
        let p = self.get(plugin)?;
        if p.kind() != expected {
            return Err(EngineError::WrongKind {
                place: plugin.place.clone(),
                source_name: plugin.source.to_string(),
                role: role.to_owned(),
                found: p.kind(),
                expected,
            });
        }
        Ok(p)
    }
}

/// Told about progress while an execution runs (the CLI draws a progress bar).
pub trait Observer {
    /// A batch of `task` was upserted; `counts` are the task's totals so far.
    fn batch_done(&mut self, task: &str, counts: &Counts) {
        let _ = (task, counts);
    }
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// Plugins of one execution, instantiated with their grants.
pub(crate) struct ExecutionPlugins {
    source: ConnectorInstance,
    destination: ConnectorInstance,
    /// Per task, its transform instances.
    transforms: Vec<Vec<TransformInstance>>,
}

impl ExecutionPlugins {
    /// What each instance cost so far, with its limits.
    fn usage(&self, project: &Project) -> Vec<PluginUsage> {
        fn usage(plugin: &str, role: PluginRole, cost: PluginCost, limits: &Limits) -> PluginUsage {
            PluginUsage {
                plugin: plugin.to_owned(),
                role,
                cost,
                memory_limit_bytes: limits.memory_bytes as u64,
                call_timeout_micros: u64::try_from(limits.call_timeout.as_micros())
                    .unwrap_or(u64::MAX),
            }
        }
        let mut out = vec![
            usage(
                self.source.plugin(),
                PluginRole::Source,
                self.source.cost(),
                self.source.limits(),
            ),
            usage(
                self.destination.plugin(),
                PluginRole::Destination,
                self.destination.cost(),
                self.destination.limits(),
            ),
        ];
        for (task, steps) in project.tasks.iter().zip(&self.transforms) {
            for (step, t) in steps.iter().enumerate() {
                let role = PluginRole::Transform {
                    task: task.name.clone(),
                    step,
                };
                out.push(usage(t.plugin(), role, t.cost(), t.limits()));
            }
        }
        out
    }
}

/// Runs projects.
pub struct Engine {
    registry: PluginRegistry,
}

impl Engine {
    /// An engine on `runtime` (a clone of the handle: the runtime is shared, not copied).
    pub fn new(runtime: &Runtime) -> Engine {
        Engine {
            registry: PluginRegistry::new(runtime),
        }
    }

    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    fn connector(
        &self,
        conn: &Connection,
        role: &str,
        create_dir: bool,
    ) -> Result<ConnectorInstance, EngineError> {
        let plugin = self.registry.get_kind(
            &conn.plugin,
            &format!("connection `{}` ({role})", conn.name),
            PluginKind::Connector,
        )?;
        let mut grants = conn.grants.clone();
        if !create_dir && grants.directory.as_ref().is_some_and(|d| !d.exists()) {
            // Validation and preview write nothing, so a directory a run would
            // create is not created; validation reports it and calls nothing
            // that would look into it.
            grants.directory = None;
        }
        if let Some(dir) = &grants.directory {
            if create_dir && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| EngineError::Directory {
                    connection: conn.name.clone(),
                    directory: dir.clone(),
                    reason: e.to_string(),
                })?;
            }
            grants.directory =
                Some(
                    capabilities::resolve_directory(dir).map_err(|e| EngineError::Directory {
                        connection: conn.name.clone(),
                        directory: dir.clone(),
                        reason: e.to_string(),
                    })?,
                );
        }
        Ok(plugin
            .connector(grants, conn.limits.clone())
            .expect("kind checked above"))
    }

    /// Instantiates the project's plugins. `writes`: a run, which creates the
    /// destination's directory; validation and preview create nothing.
    fn prepare(&self, project: &Project, writes: bool) -> Result<ExecutionPlugins, EngineError> {
        let source = self.connector(&project.source, "source", false)?;
        let destination = self.connector(&project.destination, "destination", writes)?;
        let mut transforms = Vec::new();
        for task in &project.tasks {
            let mut steps = Vec::new();
            for step in &task.transforms {
                let plugin = self.registry.get_kind(
                    &step.plugin,
                    &format!("a transform of task `{}`", task.name),
                    PluginKind::Transform,
                )?;
                steps.push(
                    plugin
                        .transform(step.limits.clone())
                        .expect("kind checked above"),
                );
            }
            transforms.push(steps);
        }
        Ok(ExecutionPlugins {
            source,
            destination,
            transforms,
        })
    }

    /// Validates `project`: connections, organizations, entities, mappings,
    /// keys, transforms. Every problem at once; nothing is written.
    pub fn validate(&self, project: &Project) -> Result<ValidationReport, EngineError> {
        self.validate_against(project, None)
    }

    /// [`Engine::validate`], also comparing the discovered schemas with `baseline`
    /// (the ones recorded at the last successful validation of a run):
    /// [`ValidationReport::schema_changes`] says what a run's policies would do.
    pub fn validate_against(
        &self,
        project: &Project,
        baseline: Option<&SchemaSnapshot>,
    ) -> Result<ValidationReport, EngineError> {
        let mut prepared = self.prepare(project, false)?;
        let secrets = match self.secrets(project) {
            Ok(r) => r,
            Err(EngineError::Invalid(report)) => return Ok(*report),
            Err(e) => return Err(e),
        };
        let validated = validate::validate(project, &mut prepared, None);
        let now = drift::snapshot(project, &validated.sources, &validated.destinations);
        let mut report = validated.report;
        report.schema_changes = drift::check(project, baseline, &now);
        secrets::scrub_report(&mut report, &secrets);
        Ok(report)
    }

    /// Every secret value a run of `project` knows (its credentials, stored
    /// secrets, options its plugins declare secret), for scrubbing text.
    pub fn redactor(&self, project: &Project) -> Redactor {
        secrets::redactor(&self.registry, project)
    }

    /// The project's secrets, remembered process-wide so the runtime's log lines
    /// (a plugin's, a trap's) are scrubbed of them too; `Invalid` when a secret is
    /// given as a plain option. Asked after [`Engine::prepare`] (which loads the
    /// plugins, refusing one that does not load, and calls none) and before any
    /// call: no plugin sees a refused secret.
    fn secrets(&self, project: &Project) -> Result<Redactor, EngineError> {
        let r = self.redactor(project);
        r.remember();
        let problems = secrets::plain_secrets(&self.registry, project);
        if !problems.is_empty() {
            return Err(EngineError::Invalid(Box::new(ValidationReport {
                project: project.name.clone(),
                valid: false,
                problems,
                skipped: Vec::new(),
                schema_changes: Vec::new(),
            })));
        }
        Ok(r)
    }

    /// Pulls up to `limit` source records of each task, maps and transforms
    /// them, and predicts what the destination would do — writing nothing.
    pub fn preview(&self, project: &Project, limit: u32) -> Result<PreviewReport, EngineError> {
        let mut prepared = self.prepare(project, false)?;
        let secrets = self.secrets(project)?;
        let validated = validate::validate(project, &mut prepared, None);
        if !validated.report.valid {
            let e = EngineError::Invalid(Box::new(validated.report));
            return Err(secrets::scrub_error(e, &secrets));
        }
        let mut report = preview::preview(project, &mut prepared, validated.mappings, limit);
        if !secrets.is_empty() {
            for r in &mut report.records {
                r.reason = r.reason.as_deref().map(|t| secrets.scrub(t));
            }
            for e in &mut report.errors {
                *e = secrets.scrub(e);
            }
        }
        Ok(report)
    }

    /// Validates, then runs every entity task of `project` once. `Err` when the
    /// project cannot start (invalid, a plugin that does not load, a missing
    /// directory); anything that goes wrong while running is in the report, with
    /// status Error.
    pub fn run(
        &self,
        project: &Project,
        observer: &mut dyn Observer,
    ) -> Result<ExecutionReport, EngineError> {
        self.execute(project, &RunOptions::default(), observer, &mut NoRecorder)
    }

    /// [`Engine::run`] with options (resume cursors, re-sending stored records,
    /// checkpoints) and a recorder that persists each checkpoint.
    pub fn execute(
        &self,
        project: &Project,
        options: &RunOptions,
        observer: &mut dyn Observer,
        recorder: &mut dyn Recorder,
    ) -> Result<ExecutionReport, EngineError> {
        let started = Instant::now();
        // A dry run creates nothing, not even the destination's directory.
        let mut prepared = self.prepare(project, !options.dry_run)?;
        let secrets = self.secrets(project)?;
        let validated = validate::validate(project, &mut prepared, options.stop.as_deref());
        let mut progress = execute::Progress {
            tasks: Vec::new(),
            pending: Checkpoint::default(),
            recorder,
            secrets: &secrets,
        };
        for note in &validated.notes {
            progress.log(note.clone());
        }
        let discovered = drift::snapshot(project, &validated.sources, &validated.destinations);
        let drifts = drift::check(project, options.schema_baseline.as_ref(), &discovered);
        for d in &drifts {
            for c in &d.changes {
                progress.log(format!(
                    "warn task {}: schema change since the last successful validation: {c} (policy {}: {})",
                    d.task, d.policy, d.outcome
                ));
            }
        }
        let mut validated = validated;
        validated.report.schema_changes = drifts.clone();
        if !validated.report.valid {
            // Keep the retry notes: they explain how long the run tried.
            if !validated.notes.is_empty() {
                let _ = progress.commit();
            }
            let e = EngineError::Invalid(Box::new(validated.report));
            return Err(secrets::scrub_error(e, &secrets));
        }
        let mut compiled = validated.mappings;
        for p in &validated.report.problems {
            progress.log(format!("warn validation [{}]: {}", p.code, p.message));
        }
        tracing::info!(project = %project.name, tasks = project.tasks.len(), dry_run = options.dry_run, "execution started");
        if options.dry_run {
            progress.log(
                "info dry run: records are read, mapped and checked; the destination is only read, nothing is written"
                    .to_owned(),
            );
        }
        let mut tasks = Vec::new();
        for (i, task) in project.tasks.iter().enumerate() {
            if options
                .records
                .as_ref()
                .is_some_and(|r| !r.contains_key(&task.name))
            {
                continue;
            }
            let drift = drifts.iter().find(|d| d.task == task.name);
            if let Some(message) = drift.and_then(drift::TaskDrift::stop_message) {
                // Stopped by its schema policy before a record moves (no writer
                // opened, no lock taken).
                let mut report = execute::stopped_task(task, options, &mut progress, message);
                execute::scrub_task(&mut report, &secrets);
                tasks.push(report);
                continue;
            }
            let discard = drift::Discard::of(task, drift);
            let mut transforms = std::mem::take(&mut prepared.transforms[i]);
            let mappings = compiled[i].take().expect("valid projects compile");
            let mut plugins = execute::Plugins {
                source: &mut prepared.source,
                destination: &mut prepared.destination,
                transforms: &mut transforms,
            };
            let mut report = execute::run_task(
                project,
                task,
                &mappings,
                validated.sources[i].as_ref(),
                discard.as_ref(),
                &mut plugins,
                options,
                observer,
                &mut progress,
            );
            // Put back for the execution's cost accounting (`ExecutionPlugins::usage`).
            prepared.transforms[i] = transforms;
            execute::scrub_task(&mut report, &secrets);
            tracing::info!(
                project = %project.name, task = %task.name,
                read = report.counts.read, inserted = report.counts.inserted,
                updated = report.counts.updated, unchanged = report.counts.unchanged,
                failed = report.counts.failed,
                error = report.error.as_deref().unwrap_or(""),
                "entity task finished"
            );
            tasks.push(report);
        }
        let status = ExecutionReport::status_of(&tasks);
        tracing::info!(project = %project.name, %status, "execution finished");
        progress.log(format!("info execution finished: {status}"));
        let log: Vec<String> = progress.pending.log.clone();
        if let Err(e) = progress.commit() {
            tracing::error!(project = %project.name, error = %e, "the last checkpoint could not be recorded");
        }
        Ok(ExecutionReport {
            project: project.name.clone(),
            status,
            tasks,
            duration_ms: started.elapsed().as_millis() as u64,
            log,
            plugins: prepared.usage(project),
            dry_run: options.dry_run,
            schema_baseline: Some(drift::next_baseline(
                options.schema_baseline.as_ref(),
                &discovered,
                project,
                &drifts,
            )),
            schema_changes: drifts,
        })
    }
}
