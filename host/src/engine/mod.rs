//! The engine: runs a project's entity tasks as one execution.
//!
//! What it is: the pipeline pull → map → transform → upsert, in batches, with
//! per-record failures collected by stage and an execution status computed from
//! the counts. What it is not: a scheduler, a store or an API; it knows plugins
//! only through `runtime`'s instance types and names no wasmtime type.
//!
//! Failure policy: a bad record fails that record; a failed or trapping plugin
//! call fails the entity task (status Error) and the execution goes on to the
//! next task; the host process always goes on.

pub mod mapping;
mod preview;
mod report;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use weir_types::{ReadRequest, Row, UpsertOutcome, WriteRequest};

pub use mapping::{CompiledMappings, MappingError};
pub use preview::{Prediction, PreviewRecord, PreviewReport};
pub use report::{Counts, ExecutionReport, RecordFailure, Stage, Status, TaskReport};
pub use validate::{Problem, Severity, ValidationReport};

use crate::bundled;
use crate::project::{Connection, EntityTask, Place, PluginRef, PluginSource, Project};
use crate::runtime::{
    CallError, ConnectorInstance, LoadError, Plugin, PluginKind, Runtime, TransformInstance,
    capabilities,
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
pub struct PluginRegistry<'r> {
    runtime: &'r Runtime,
    loaded: Mutex<HashMap<PluginSource, Plugin>>,
}

impl<'r> PluginRegistry<'r> {
    pub fn new(runtime: &'r Runtime) -> PluginRegistry<'r> {
        PluginRegistry {
            runtime,
            loaded: Mutex::new(HashMap::new()),
        }
    }

    pub fn runtime(&self) -> &Runtime {
        self.runtime
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
pub(crate) struct Prepared {
    source: ConnectorInstance,
    destination: ConnectorInstance,
    /// Per task, its transform instances.
    transforms: Vec<Vec<TransformInstance>>,
}

/// Runs projects.
pub struct Engine<'r> {
    registry: PluginRegistry<'r>,
}

impl<'r> Engine<'r> {
    pub fn new(runtime: &'r Runtime) -> Engine<'r> {
        Engine {
            registry: PluginRegistry::new(runtime),
        }
    }

    pub fn registry(&self) -> &PluginRegistry<'r> {
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

    fn prepare(&self, project: &Project) -> Result<Prepared, EngineError> {
        let source = self.connector(&project.source, "source", false)?;
        let destination = self.connector(&project.destination, "destination", true)?;
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
        Ok(Prepared {
            source,
            destination,
            transforms,
        })
    }

    /// Validates `project`: connections, organizations, entities, mappings,
    /// keys, transforms. Every problem at once; nothing is written.
    pub fn validate(&self, project: &Project) -> Result<ValidationReport, EngineError> {
        let mut prepared = self.prepare(project)?;
        Ok(validate::validate(project, &mut prepared).report)
    }

    /// Pulls up to `limit` source records of each task, maps and transforms
    /// them, and predicts what the destination would do — writing nothing.
    pub fn preview(&self, project: &Project, limit: u32) -> Result<PreviewReport, EngineError> {
        let mut prepared = self.prepare(project)?;
        let validated = validate::validate(project, &mut prepared);
        if !validated.report.valid {
            return Err(EngineError::Invalid(Box::new(validated.report)));
        }
        Ok(preview::preview(
            project,
            &mut prepared,
            validated.mappings,
            limit,
        ))
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
        let started = Instant::now();
        let mut prepared = self.prepare(project)?;
        let validated = validate::validate(project, &mut prepared);
        if !validated.report.valid {
            return Err(EngineError::Invalid(Box::new(validated.report)));
        }
        let mut compiled = validated.mappings;
        let mut log: Vec<String> = validated
            .report
            .problems
            .iter()
            .map(|p| format!("warn validation [{}]: {}", p.code, p.message))
            .collect();
        tracing::info!(project = %project.name, tasks = project.tasks.len(), "execution started");
        let mut tasks = Vec::new();
        for (i, task) in project.tasks.iter().enumerate() {
            let mut transforms = std::mem::take(&mut prepared.transforms[i]);
            let mappings = compiled[i].take().expect("valid projects compile");
            let report = run_task(
                project,
                task,
                &mappings,
                &mut prepared.source,
                &mut prepared.destination,
                &mut transforms,
                observer,
                &mut log,
            );
            tracing::info!(
                project = %project.name, task = %task.name,
                read = report.counts.read, inserted = report.counts.inserted,
                updated = report.counts.updated, failed = report.counts.failed,
                error = report.error.as_deref().unwrap_or(""),
                "entity task finished"
            );
            tasks.push(report);
        }
        let status = ExecutionReport::status_of(&tasks);
        tracing::info!(project = %project.name, %status, "execution finished");
        Ok(ExecutionReport {
            project: project.name.clone(),
            status,
            tasks,
            duration_ms: started.elapsed().as_millis() as u64,
            log,
        })
    }
}

/// Moves plugin log lines into the execution log.
fn collect_logs(
    log: &mut Vec<String>,
    plugin: &str,
    lines: (Vec<crate::runtime::PluginLogLine>, usize),
) {
    const MAX_LOG_LINES: usize = 10_000;
    let (lines, dropped) = lines;
    for l in lines {
        if log.len() < MAX_LOG_LINES {
            let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            log.push(
                format!("{} {plugin}: {} {}", l.level, l.message, fields.join(" "))
                    .trim_end()
                    .to_owned(),
            );
        }
    }
    if dropped > 0 && log.len() < MAX_LOG_LINES {
        log.push(format!(
            "warn {plugin}: {dropped} log lines dropped (over the per-call limit)"
        ));
    }
}

struct TaskRun<'a> {
    report: TaskReport,
    key: &'a [String],
}

impl TaskRun<'_> {
    fn fail(&mut self, failure: RecordFailure) {
        self.report.counts.failed += 1;
        if self.report.failures.len() < MAX_KEPT_FAILURES {
            self.report.failures.push(failure);
        }
    }

    fn key_of(&self, row: &Row<'_>) -> Option<String> {
        let key = row.key(self.key);
        (!key.is_empty()).then_some(key)
    }
}

fn run_task(
    project: &Project,
    task: &EntityTask,
    mappings: &CompiledMappings,
    source: &mut ConnectorInstance,
    destination: &mut ConnectorInstance,
    transforms: &mut [TransformInstance],
    observer: &mut dyn Observer,
    log: &mut Vec<String>,
) -> TaskReport {
    let mut run = TaskRun {
        report: TaskReport {
            name: task.name.clone(),
            source_entity: task.source_entity.clone(),
            destination_entity: task.destination_entity.clone(),
            counts: Counts::default(),
            failures: Vec::new(),
            error: None,
            cursor: None,
        },
        key: &task.key,
    };
    let result = pump(
        project,
        task,
        mappings,
        source,
        destination,
        transforms,
        observer,
        &mut run,
    );
    let lines = source.take_logs();
    collect_logs(log, source.plugin(), lines);
    let lines = destination.take_logs();
    collect_logs(log, destination.plugin(), lines);
    for t in transforms.iter_mut() {
        let lines = t.take_logs();
        collect_logs(log, t.plugin(), lines);
    }
    if let Err(e) = result {
        log.push(format!("error task {}: {e}", task.name));
        run.report.error = Some(e);
    }
    run.report
}

/// The batch loop of one task. `Err` is the task's error, in words.
#[allow(clippy::too_many_arguments)]
fn pump(
    project: &Project,
    task: &EntityTask,
    mappings: &CompiledMappings,
    source: &mut ConnectorInstance,
    destination: &mut ConnectorInstance,
    transforms: &mut [TransformInstance],
    observer: &mut dyn Observer,
    run: &mut TaskRun<'_>,
) -> Result<(), String> {
    let text = |e: CallError| e.to_string();
    let org = project.organization.as_ref();
    let step_configs: Vec<_> = task.transforms.iter().map(|s| &s.config).collect();
    let writer = destination
        .open_writer(
            &project.destination.config,
            &WriteRequest {
                entity: task.destination_entity.clone(),
                organization: org.map(|o| o.destination.clone()),
                key_fields: task.key.clone(),
            },
        )
        .map_err(text)?;

    let mut cursor: Option<String> = None;
    loop {
        let page = source
            .read(
                &project.source.config,
                &ReadRequest {
                    entity: task.source_entity.clone(),
                    organization: org.map(|o| o.source.clone()),
                    cursor: cursor.clone(),
                    max_records: project.batch_size,
                },
            )
            .map_err(text)?;
        if page.records.len() > project.batch_size as usize {
            return Err(format!(
                "source plugin `{}` returned {} records for a page of at most {}",
                source.plugin(),
                page.records.len(),
                project.batch_size
            ));
        }
        run.report.counts.read += (page.records.len() + page.rejected.len()) as u64;
        for r in page.rejected {
            run.fail(RecordFailure {
                stage: Stage::Pull,
                key: r.key,
                position: Some(r.position),
                field: r.error.field,
                message: r.error.message,
            });
        }
        if !page.done && page.records.is_empty() && page.next_cursor == cursor {
            return Err(format!(
                "source plugin `{}` returned an empty page that is not the last without moving its cursor",
                source.plugin()
            ));
        }

        let mapped = mappings.apply(page.records).map_err(|e| e.to_string())?;
        let mut batch = mapped.batch;
        if !mapped.failures.is_empty() {
            let mut keep = vec![true; batch.len()];
            for f in mapped.failures {
                keep[f.record] = false;
                let key = run.key_of(&batch.row(f.record));
                run.fail(RecordFailure {
                    stage: Stage::Map,
                    key,
                    position: None,
                    field: Some(f.destination),
                    message: f.message,
                });
            }
            batch = batch.filter(&keep);
        }
        for (step, t) in transforms.iter_mut().enumerate() {
            if batch.is_empty() {
                break;
            }
            let out = t.transform(step_configs[step], batch).map_err(text)?;
            if out.failures.is_empty() {
                batch = out.records;
                continue;
            }
            let mut keep = vec![true; out.records.len()];
            for (index, error) in out.failures {
                let i = index as usize;
                if !keep[i] {
                    continue;
                }
                keep[i] = false;
                let key = run.key_of(&out.records.row(i));
                run.fail(RecordFailure {
                    stage: Stage::Transform,
                    key,
                    position: None,
                    field: error.field,
                    message: format!("{}: {}", t.plugin(), error.message),
                });
            }
            batch = out.records.filter(&keep);
        }

        if !batch.is_empty() {
            let keys: Vec<Option<String>> = batch.rows().map(|r| run.key_of(&r)).collect();
            let outcomes = destination.upsert(&writer, batch).map_err(text)?;
            for (outcome, key) in outcomes.into_iter().zip(keys) {
                match outcome {
                    UpsertOutcome::Inserted => run.report.counts.inserted += 1,
                    UpsertOutcome::Updated => run.report.counts.updated += 1,
                    UpsertOutcome::Failed(e) => run.fail(RecordFailure {
                        stage: Stage::Upsert,
                        key,
                        position: None,
                        field: e.field,
                        message: e.message,
                    }),
                }
            }
        }
        cursor = page.next_cursor;
        run.report.cursor = cursor.clone();
        observer.batch_done(&task.name, &run.report.counts);
        if page.done {
            break;
        }
    }
    destination.finish(writer).map_err(text)?;
    Ok(())
}
