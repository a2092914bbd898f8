//! The batch loop of one entity task: read → map → transform → upsert, with
//! checkpoints.
//!
//! A checkpoint first makes the destination durable (the writer's `finish`), then
//! hands the task states (counts, the cursor after the last committed batch), new
//! log lines, record failures and staged records to a [`Recorder`] — which the
//! store persists in one transaction. So after a crash the committed cursor and
//! the destination agree: the next run resumes from the cursor, and records after
//! it were never committed downstream, so nothing is lost or counted twice.

use std::collections::HashMap;

use weir_types::{
    Batch, BatchBuilder, EntitySchema, FieldType, ReadPage, ReadRequest, UpsertOutcome, Value,
    WriteRequest,
};

use super::drift::Discard;
use super::keys::{self, ReadKeys};
use super::mapping::CompiledMappings;
use super::retry::with_retry;
use super::{Counts, MAX_KEPT_FAILURES, Observer, RecordFailure, Stage, TaskReport};
use super::{conform, lock, transform_check};
use crate::project::{EntityTask, Project};
use crate::runtime::redact::Redactor;
use crate::runtime::{CallError, ConnectorInstance, PluginLogs, TransformInstance, WriterHandle};

/// A record as stored for drill-down and re-runs: `(field, value)` pairs.
pub type RecordCopy = Vec<(String, serde_json::Value)>;

/// How to run an execution beyond the project itself.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Where each task starts reading (by task name): resuming an interrupted run.
    pub resume: HashMap<String, String>,
    /// Source records to send instead of reading the source (by task name): a re-run
    /// of failed records only. Tasks not named are skipped.
    pub records: Option<HashMap<String, Vec<RecordCopy>>>,
    /// Commit the destination and checkpoint every this many batches (0: only at
    /// the end of each task).
    pub checkpoint_every: usize,
    /// Keep source copies of failed records and the staged records for the
    /// recorder (costs a copy of each batch).
    pub capture: bool,
    /// A stop request (the daemon shutting down): each task finishes the batch in
    /// hand, commits, and ends [`TaskStop::Interrupted`] (its report says
    /// `interrupted`), so the next run resumes from the committed cursor.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Who this run is, in the destination lock's words (`execution 12 of project
    /// crm-sync`): what a run that waits for the same destination is told. `None`:
    /// the project's name.
    pub holder: Option<String>,
    /// How long a task waits for its destination while another execution writes
    /// it (`None`: [`super::lock::DEFAULT_DESTINATION_WAIT`]).
    pub destination_wait: Option<std::time::Duration>,
    /// A dry run: every source record goes through the same read, map, transform and
    /// key checks as a run, but the destination stage predicts instead of writing
    /// (insert when its key is not in the destination entity, update when it is). No
    /// writer is opened, no lock taken, no directory created, and no cursor is handed
    /// to the recorder, so the next run starts where it would have anyway. Counts are
    /// the predictions; failures the destination itself would report (its own
    /// refusals at upsert) cannot be predicted.
    pub dry_run: bool,
    /// The schemas recorded at the project's last successful validation, to compare
    /// with what validation discovers now (`drift`). `None`: no drift check (an
    /// embedder without a store; the first run).
    pub schema_baseline: Option<crate::drift::SchemaSnapshot>,
}

/// Why a task stopped before its last record. A type, so that whether the next run
/// resumes never depends on an error's wording.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskStop {
    /// Something failed (a plugin call, the destination, recording): the task ends in
    /// Error and the next run starts where the last *successful* execution left off.
    Failed(String),
    /// Stopped at a batch boundary with everything before it committed and recorded
    /// (a stop request, a store out of room): the next run resumes from here.
    Interrupted(String),
    /// More records failed than the task's `stop_on_failures` allows. Ends in Error,
    /// and like [`TaskStop::Interrupted`] at a batch boundary with everything before it
    /// committed (the batch that crossed the threshold included: its successes were
    /// upserted and its failures counted, so committing it keeps counts, destination
    /// and kept failures in agreement): the next run resumes after it, and the failed
    /// records are kept for `rerun --failed-only`. Fix the cause, run again, and
    /// nothing is lost.
    FailureThreshold(crate::project::ThresholdCrossed),
}

impl TaskStop {
    /// The text for people.
    pub fn message(&self) -> String {
        match self {
            TaskStop::Failed(m) | TaskStop::Interrupted(m) => m.clone(),
            TaskStop::FailureThreshold(crossed) => crossed.to_string(),
        }
    }

    /// Whether everything before the stop is committed and recorded, so the next
    /// run resumes from the committed cursor (the report's `interrupted`).
    pub fn resumable(&self) -> bool {
        matches!(
            self,
            TaskStop::Interrupted(_) | TaskStop::FailureThreshold(_)
        )
    }
}

impl From<String> for TaskStop {
    fn from(message: String) -> TaskStop {
        TaskStop::Failed(message)
    }
}

impl std::fmt::Display for TaskStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl RunOptions {
    fn stop_requested(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// One task's state at a checkpoint.
#[derive(Clone, Debug)]
pub struct TaskProgress {
    pub name: String,
    pub counts: Counts,
    pub cursor: Option<String>,
    pub error: Option<String>,
}

/// What a checkpoint persists.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// Every task run so far, with its current state.
    pub tasks: Vec<TaskProgress>,
    /// Log lines since the previous checkpoint.
    pub log: Vec<String>,
    /// Record failures since the previous checkpoint, with the source record when
    /// it is known (not for pull failures).
    pub failures: Vec<FailedRecord>,
    /// Records sent to the destination since the previous checkpoint.
    pub staged: Vec<StagedCopy>,
}

/// A record that failed, as a checkpoint hands it to the recorder.
#[derive(Clone, Debug)]
pub struct FailedRecord {
    /// The entity task it belongs to.
    pub task: String,
    /// Where and why it failed.
    pub failure: RecordFailure,
    /// The source record, when it is known (not for pull failures).
    pub source: Option<RecordCopy>,
}

/// A record sent to the destination, as a checkpoint hands it to the recorder
/// (staging data).
#[derive(Clone, Debug)]
pub struct StagedCopy {
    /// The entity task it belongs to.
    pub task: String,
    /// Its destination key, when it has one.
    pub key: Option<String>,
    /// The record as it was sent.
    pub record: RecordCopy,
}

/// Persists checkpoints (the store does; tests may count them).
pub trait Recorder {
    /// `Err` stops the task: progress that cannot be recorded must not go on
    /// ([`TaskStop::Interrupted`] when the next run can resume from the last checkpoint
    /// that was recorded, e.g. a store out of room).
    fn checkpoint(&mut self, checkpoint: Checkpoint) -> Result<(), TaskStop>;
}

/// A recorder that keeps nothing.
pub struct NoRecorder;
impl Recorder for NoRecorder {
    fn checkpoint(&mut self, _: Checkpoint) -> Result<(), TaskStop> {
        Ok(())
    }
}

/// Everything one execution accumulates between checkpoints.
pub(crate) struct Progress<'r> {
    pub tasks: Vec<TaskProgress>,
    pub pending: Checkpoint,
    pub recorder: &'r mut dyn Recorder,
    /// The execution's secret values: scrubbed from every line logged and every
    /// checkpoint before the recorder sees it.
    pub secrets: &'r Redactor,
}

impl Progress<'_> {
    pub fn log(&mut self, line: String) {
        self.pending.log.push(self.secrets.scrub_owned(line));
    }

    pub fn commit(&mut self) -> Result<(), TaskStop> {
        let mut cp = std::mem::take(&mut self.pending);
        cp.tasks = self.tasks.clone();
        if !self.secrets.is_empty() {
            let s = self.secrets;
            for t in &mut cp.tasks {
                t.error = t.error.take().map(|e| s.scrub_owned(e));
            }
            for r in &mut cp.failures {
                scrub_failure(&mut r.failure, s);
                for (_, value) in r.source.iter_mut().flatten() {
                    s.scrub_json(value);
                }
            }
            for c in &mut cp.staged {
                c.key = c.key.take().map(|k| s.scrub_owned(k));
                for (_, value) in c.record.iter_mut() {
                    s.scrub_json(value);
                }
            }
        }
        self.recorder.checkpoint(cp)
    }
}

fn scrub_failure(f: &mut RecordFailure, secrets: &Redactor) {
    f.message = secrets.scrub_owned(std::mem::take(&mut f.message));
    f.key = f.key.take().map(|k| secrets.scrub_owned(k));
}

/// A finished task's report with `secrets` scrubbed from its texts (its error
/// and record failures can quote a server that echoed a credential).
pub(crate) fn scrub_task(report: &mut TaskReport, secrets: &Redactor) {
    if secrets.is_empty() {
        return;
    }
    report.error = report.error.take().map(|e| secrets.scrub_owned(e));
    for f in &mut report.failures {
        scrub_failure(f, secrets);
    }
}

/// Moves plugin log lines into the execution log.
pub(crate) fn collect_logs(progress: &mut Progress<'_>, plugin: &str, logs: PluginLogs) {
    let PluginLogs { lines, dropped } = logs;
    for l in lines {
        let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        progress.log(
            format!("{} {plugin}: {} {}", l.level, l.message, fields.join(" "))
                .trim_end()
                .to_owned(),
        );
    }
    if dropped > 0 {
        progress.log(format!(
            "warn {plugin}: {dropped} log lines dropped (over the per-call limit)"
        ));
    }
}

pub(crate) struct Plugins<'a> {
    pub source: &'a mut ConnectorInstance,
    pub destination: &'a mut ConnectorInstance,
    pub transforms: &'a mut [TransformInstance],
}

struct TaskRun<'a, 'p, 'r> {
    project: &'a Project,
    task: &'a EntityTask,
    index: usize,
    report: TaskReport,
    /// The counts at the last checkpoint: what the destination has made durable.
    committed: Counts,
    progress: &'p mut Progress<'r>,
    capture: bool,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// A dry run's destination stage: predicts instead of writing.
    predict: Option<Predictor>,
}

/// What a dry run knows of the destination entity: its keys, when it could read
/// them (bounded: a key set, not records, so memory does not grow with the number
/// of source records; see [`super::preview::MAX_DESTINATION_KEYS`]).
struct Predictor {
    /// `None`: the destination cannot be read, so an upsert is counted as an insert
    /// (and the log says so).
    existing: Option<std::collections::HashSet<String>>,
}

fn copy_row(batch: &Batch, i: usize) -> RecordCopy {
    batch
        .row(i)
        .values()
        .map(|(k, v)| {
            (
                k.to_owned(),
                serde_json::to_value(&v).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

impl TaskRun<'_, '_, '_> {
    fn fail(&mut self, failure: RecordFailure, record: Option<RecordCopy>) {
        self.report.counts.failed += 1;
        if self.report.failures.len() < MAX_KEPT_FAILURES {
            self.report.failures.push(failure.clone());
        }
        if self.capture {
            self.progress.pending.failures.push(FailedRecord {
                task: self.task.name.clone(),
                failure,
                source: record,
            });
        }
    }

    /// Copies the task's state into the progress; the cursor only when the
    /// destination has just committed (`committed`), so a recorded cursor never
    /// runs ahead of what the destination holds.
    fn sync(&mut self, committed: bool) {
        let p = &mut self.progress.tasks[self.index];
        p.counts = self.report.counts;
        p.error = self.report.error.clone();
        if committed {
            p.cursor = self.report.cursor.clone();
        }
    }

    /// A dry run's destination stage: counts each record that reached it as an
    /// insert or an update, by its key, and sends nothing.
    fn predict(&mut self, prepared: MappedPage) {
        for (failure, record) in prepared.failures {
            self.fail(failure, record);
        }
        let existing = self.predict.as_ref().and_then(|p| p.existing.as_ref());
        for row in prepared.batch.rows() {
            match existing {
                Some(keys) if keys.contains(&row.key(&self.task.key)) => {
                    self.report.counts.updated += 1
                }
                _ => self.report.counts.inserted += 1,
            }
        }
    }

    /// A commit point of the loop: a checkpoint in a run (the writer reopened when
    /// `reopen`), in a dry run only the counts, failures and log handed to the
    /// recorder (no cursor: nothing was written).
    fn commit_point(
        &mut self,
        destination: &mut ConnectorInstance,
        writer: &mut Option<WriterHandle>,
        reopen: bool,
    ) -> Result<(), TaskStop> {
        if self.predict.is_some() {
            self.committed = self.report.counts;
            self.sync(false);
            return self.progress.commit();
        }
        let open = writer.take().expect("a writer is open between checkpoints");
        *writer = self.checkpoint(destination, open, reopen)?;
        Ok(())
    }

    /// Makes the destination durable and records a checkpoint; reopens the writer
    /// when more batches follow.
    fn checkpoint(
        &mut self,
        destination: &mut ConnectorInstance,
        writer: WriterHandle,
        reopen: bool,
    ) -> Result<Option<WriterHandle>, TaskStop> {
        destination.finish(writer).map_err(|e| e.to_string())?;
        self.committed = self.report.counts;
        self.sync(true);
        self.progress.commit()?;
        if reopen {
            Ok(Some(self.open(destination)?))
        } else {
            Ok(None)
        }
    }

    fn open(&mut self, destination: &mut ConnectorInstance) -> Result<WriterHandle, String> {
        let request = WriteRequest {
            entity: self.task.destination_entity.clone(),
            organization: self
                .project
                .organization
                .as_ref()
                .map(|o| o.destination.clone()),
            key_fields: self.task.key.clone(),
        };
        let (project, stop) = (self.project, self.stop.clone());
        let progress = &mut *self.progress;
        with_retry(
            &project.retry,
            stop.as_deref(),
            &format!("destination `{}` open-writer", project.destination.name),
            |line| progress.log(line),
            || destination.open_writer(&project.destination.config, &request),
        )
        .map_err(|e| e.to_string())
    }

    /// Applies a prepared page's map and transform failures, then upserts its batch.
    fn upsert(
        &mut self,
        prepared: MappedPage,
        destination: &mut ConnectorInstance,
        writer: &WriterHandle,
    ) -> Result<(), String> {
        for (failure, record) in prepared.failures {
            self.fail(failure, record);
        }
        let batch = prepared.batch;
        if batch.is_empty() {
            return Ok(());
        }
        let source_copy = prepared.source_copy;
        let origin = prepared.origin;
        let source_row = |origin: usize| source_copy.as_ref().map(|b| copy_row(b, origin));
        let staged: Option<Vec<RecordCopy>> = self
            .capture
            .then(|| (0..batch.len()).map(|i| copy_row(&batch, i)).collect());
        // Upserts are by key, so sending a batch again after a transient failure
        // (the plugin said retrying may succeed) gives the same destination state.
        let (project, stop) = (self.project, self.stop.clone());
        let progress = &mut *self.progress;
        let outcomes = with_retry(
            &project.retry,
            stop.as_deref(),
            &format!("destination `{}` upsert", project.destination.name),
            |line| progress.log(line),
            || destination.upsert(writer, batch.clone()),
        )
        .map_err(|e| e.to_string())?;
        // Keys are text built per record: only for failures and staged copies.
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                UpsertOutcome::Inserted => self.report.counts.inserted += 1,
                UpsertOutcome::Updated => self.report.counts.updated += 1,
                UpsertOutcome::Unchanged => self.report.counts.unchanged += 1,
                UpsertOutcome::Failed(e) => {
                    let record = source_row(origin[i]);
                    self.fail(
                        RecordFailure {
                            stage: Stage::Upsert,
                            key: key_of(&self.task.key, &batch, i),
                            position: None,
                            field: e.field,
                            message: e.message,
                        },
                        record,
                    );
                    continue;
                }
            }
            if let Some(staged) = &staged {
                let key = key_of(&self.task.key, &batch, i);
                self.progress.pending.staged.push(StagedCopy {
                    task: self.task.name.clone(),
                    key,
                    record: staged[i].clone(),
                });
            }
        }
        Ok(())
    }
}

fn key_of(key: &[String], batch: &Batch, i: usize) -> Option<String> {
    let key = batch.row(i).key(key);
    (!key.is_empty()).then(|| keys::cut(key))
}

/// A page mapped and transformed, ready to upsert: the stage between reading and
/// writing, run on its own thread so the three overlap.
pub(crate) struct MappedPage {
    batch: Batch,
    /// For each row of `batch`, its row in the source page.
    origin: Vec<usize>,
    /// The source page, when failures need their source records.
    source_copy: Option<Batch>,
    /// Map and transform failures, with their source records.
    failures: Vec<(RecordFailure, Option<RecordCopy>)>,
}

/// Maps and transforms one page (no state of the run is touched: failures travel
/// with the result).
fn prepare(
    task: &EntityTask,
    page_records: Batch,
    mappings: &CompiledMappings,
    transforms: &mut [TransformInstance],
    capture: bool,
    keys: &mut ReadKeys,
) -> Result<MappedPage, String> {
    let page_len = page_records.len();
    let source_copy = capture.then(|| page_records.clone());
    let source_row = |origin: usize| source_copy.as_ref().map(|b| copy_row(b, origin));
    let mut failures = Vec::new();
    let mapped = mappings.apply(page_records).map_err(|e| e.to_string())?;
    let mut batch = mapped.batch;
    let mut origin: Vec<usize> = (0..batch.len()).collect();
    if !mapped.failures.is_empty() {
        let mut keep = vec![true; batch.len()];
        for f in mapped.failures {
            keep[f.record] = false;
            failures.push((
                RecordFailure {
                    stage: Stage::Map,
                    key: key_of(&task.key, &batch, f.record),
                    position: None,
                    field: Some(f.destination),
                    message: f.message,
                },
                source_row(f.record),
            ));
        }
        batch = batch.filter(&keep);
        origin = origin
            .into_iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(o, _)| o)
            .collect();
    }
    for (step, t) in transforms.iter_mut().enumerate() {
        if batch.is_empty() {
            break;
        }
        let config = &task.transforms[step].config;
        let keys_before = transform_check::KeysBefore::new(&task.key, &batch);
        let mut out = t.transform(config, batch).map_err(|e| e.to_string())?;
        let failed: Vec<u32> = out.failures.iter().map(|(i, _)| *i).collect();
        out.failures
            .extend(keys_before.failures(&out.records, config, &failed));
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
            failures.push((
                RecordFailure {
                    stage: Stage::Transform,
                    key: key_of(&task.key, &out.records, i),
                    position: None,
                    field: error.field,
                    message: format!("{}: {}", t.plugin(), error.message),
                },
                source_row(origin[i]),
            ));
        }
        batch = out.records.filter(&keep);
        origin = origin
            .into_iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(o, _)| o)
            .collect();
    }
    // Keys as the destination will see them: after mappings and transforms.
    let refused = keys.check(&task.key, &batch, &origin, page_len);
    if !refused.is_empty() {
        let mut keep = vec![true; batch.len()];
        for (i, problem) in refused {
            keep[i] = false;
            failures.push((
                RecordFailure {
                    stage: Stage::Map,
                    key: key_of(&task.key, &batch, i),
                    position: None,
                    field: Some(problem.field(&task.key)),
                    message: problem.to_string(),
                },
                source_row(origin[i]),
            ));
        }
        batch = batch.filter(&keep);
        origin = origin
            .into_iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(o, _)| o)
            .collect();
    }
    Ok(MappedPage {
        batch,
        origin,
        source_copy,
        failures,
    })
}

fn read_page(
    project: &Project,
    task: &EntityTask,
    source: &mut ConnectorInstance,
    cursor: &Option<String>,
    stop: Option<&std::sync::atomic::AtomicBool>,
    note: impl FnMut(String),
) -> Result<ReadPage, String> {
    let request = ReadRequest {
        entity: task.source_entity.clone(),
        organization: project.organization.as_ref().map(|o| o.source.clone()),
        cursor: cursor.clone(),
        max_records: project.batch_size,
    };
    let page = with_retry(
        &project.retry,
        stop,
        &format!("source `{}` read", project.source.name),
        note,
        || source.read(&project.source.config, &request),
    )
    .map_err(|e: CallError| e.to_string())?;
    if page.records.len() > project.batch_size as usize {
        return Err(format!(
            "source plugin `{}` returned {} records for a page of at most {}",
            source.plugin(),
            page.records.len(),
            project.batch_size
        ));
    }
    if !page.done
        && page.records.is_empty()
        && page.rejected.is_empty()
        && &page.next_cursor == cursor
    {
        return Err(format!(
            "source plugin `{}` returned an empty page that is not the last without moving its cursor",
            source.plugin()
        ));
    }
    Ok(page)
}

/// Rebuilds source records (from stored copies) as batches, typed by the source
/// schema where it is known.
pub(crate) fn batches_from_copies(
    records: &[RecordCopy],
    schema: Option<&EntitySchema>,
    batch_size: usize,
) -> Result<Vec<Batch>, String> {
    let mut names: Vec<String> = Vec::new();
    for r in records {
        for (k, _) in r {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let ty_of = |name: &str| -> FieldType {
        if let Some(f) = schema.and_then(|s| s.fields.iter().find(|f| f.name == name)) {
            return f.field_type;
        }
        let sample = records.iter().find_map(|r| {
            r.iter()
                .find(|(k, v)| k == name && !v.is_null())
                .map(|(_, v)| v)
        });
        match sample {
            Some(serde_json::Value::Bool(_)) => FieldType::Boolean,
            Some(serde_json::Value::Number(n)) if n.is_i64() => FieldType::Integer,
            Some(serde_json::Value::Number(_)) => FieldType::Float,
            _ => FieldType::Text,
        }
    };
    let fields: Vec<(String, FieldType)> = names.iter().map(|n| (n.clone(), ty_of(n))).collect();
    let field_refs: Vec<(&str, FieldType)> = fields.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let mut out = Vec::new();
    for chunk in records.chunks(batch_size.max(1)) {
        let mut b = BatchBuilder::with_capacity(&field_refs, chunk.len());
        for r in chunk {
            let row: Vec<Value> = fields
                .iter()
                .map(|(name, ty)| {
                    let v = r.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                    json_to_value(v, *ty)
                })
                .collect();
            b.push_row(&row)
                .map_err(|e| format!("a stored record does not fit the source schema: {e}"))?;
        }
        out.push(b.finish());
    }
    Ok(out)
}

fn json_to_value(v: Option<&serde_json::Value>, ty: FieldType) -> Value {
    use serde_json::Value as J;
    match (v, ty) {
        (None | Some(J::Null), _) => Value::Null,
        (Some(J::Bool(b)), _) => Value::Boolean(*b),
        (Some(J::Number(n)), FieldType::Integer) => n.as_i64().map_or(Value::Null, Value::Integer),
        (Some(J::Number(n)), FieldType::Timestamp) => {
            n.as_i64().map_or(Value::Null, Value::Timestamp)
        }
        (Some(J::Number(n)), FieldType::Float) => n.as_f64().map_or(Value::Null, Value::Float),
        (Some(J::String(s)), FieldType::Decimal) => Value::Decimal(s.clone()),
        (Some(J::String(s)), _) => Value::Text(s.clone()),
        (Some(J::Array(a)), FieldType::Bytes) => Value::Bytes(
            a.iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u8)
                .collect(),
        ),
        (Some(other), _) => Value::Text(other.to_string()),
    }
}

/// The report of a task its schema policy stopped before it read anything: Error,
/// no counts, the cursor it would have started from kept.
pub(crate) fn stopped_task(
    task: &EntityTask,
    options: &RunOptions,
    progress: &mut Progress<'_>,
    message: String,
) -> TaskReport {
    let cursor = options.resume.get(&task.name).cloned();
    progress.log(format!("error task {}: {message}", task.name));
    progress.tasks.push(TaskProgress {
        name: task.name.clone(),
        counts: Counts::default(),
        cursor: cursor.clone(),
        error: Some(message.clone()),
    });
    TaskReport {
        name: task.name.clone(),
        source_entity: task.source_entity.clone(),
        destination_entity: task.destination_entity.clone(),
        counts: Counts::default(),
        failures: Vec::new(),
        error: Some(message),
        interrupted: false,
        cursor,
        read_ahead_peak: 0,
    }
}

/// Runs one entity task. The report's `error` is set when it stopped early.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_task(
    project: &Project,
    task: &EntityTask,
    mappings: &CompiledMappings,
    source_schema: Option<&EntitySchema>,
    discard: Option<&Discard>,
    plugins: &mut Plugins<'_>,
    options: &RunOptions,
    observer: &mut dyn Observer,
    progress: &mut Progress<'_>,
) -> TaskReport {
    let resume = options.resume.get(&task.name).cloned();
    progress.tasks.push(TaskProgress {
        name: task.name.clone(),
        counts: Counts::default(),
        // A dry run hands out no cursor: it wrote nothing for one to stand for.
        cursor: if options.dry_run {
            None
        } else {
            resume.clone()
        },
        error: None,
    });
    if let Some(cursor) = &resume {
        progress.log(format!(
            "info task {}: resuming from cursor {cursor}",
            task.name
        ));
    }
    let mut run = TaskRun {
        project,
        task,
        index: progress.tasks.len() - 1,
        report: TaskReport {
            name: task.name.clone(),
            source_entity: task.source_entity.clone(),
            destination_entity: task.destination_entity.clone(),
            counts: Counts::default(),
            failures: Vec::new(),
            error: None,
            interrupted: false,
            cursor: resume.clone(),
            read_ahead_peak: 0,
        },
        committed: Counts::default(),
        progress,
        capture: options.capture,
        stop: options.stop.clone(),
        predict: None,
    };
    let result = pump(
        &mut run,
        mappings,
        source_schema,
        discard,
        plugins,
        options,
        observer,
        resume,
    );
    let lines = plugins.source.take_logs();
    collect_logs(run.progress, plugins.source.plugin(), lines);
    let lines = plugins.destination.take_logs();
    collect_logs(run.progress, plugins.destination.plugin(), lines);
    for t in plugins.transforms.iter_mut() {
        let lines = t.take_logs();
        collect_logs(run.progress, t.plugin(), lines);
    }
    if let Err(e) = result {
        run.progress.log(format!("error task {}: {e}", task.name));
        // Records upserted since the last checkpoint were never made durable (the
        // writer did not finish): counting them would report data the destination
        // does not hold. They are sent again by the next run.
        let counts = &mut run.report.counts;
        let unconfirmed =
            (counts.inserted - run.committed.inserted) + (counts.updated - run.committed.updated);
        if unconfirmed > 0 {
            run.progress.log(format!(
                "warn task {}: {unconfirmed} records sent to the destination since the last checkpoint were not committed, so they are not counted as inserted or updated",
                task.name
            ));
            counts.inserted = run.committed.inserted;
            counts.updated = run.committed.updated;
        }
        run.report.interrupted = e.resumable();
        run.report.error = Some(e.message());
        run.sync(false);
    }
    run.report
}

/// A value with the log lines produced while getting it.
type Noted<T> = (Vec<String>, T);

/// Pages read ahead of the batch being written: the source reads the next page
/// while the destination upserts the current one, and never more than this many
/// wait, so memory stays flat in the number of records (back-pressure).
pub const READ_AHEAD_PAGES: usize = 2;

#[allow(clippy::too_many_arguments)]
fn pump(
    run: &mut TaskRun<'_, '_, '_>,
    mappings: &CompiledMappings,
    source_schema: Option<&EntitySchema>,
    discard: Option<&Discard>,
    plugins: &mut Plugins<'_>,
    options: &RunOptions,
    observer: &mut dyn Observer,
    resume: Option<String>,
) -> Result<(), TaskStop> {
    let source: &mut ConnectorInstance = plugins.source;
    let destination: &mut ConnectorInstance = plugins.destination;
    let transforms: &mut [TransformInstance] = plugins.transforms;
    let (project, task, capture) = (run.project, run.task, run.capture);
    // One writer per destination entity, across executions and processes: held
    // until the task ends, released by drop. A dry run writes nothing: no lock, no
    // writer; it reads the destination's keys once, before the source.
    let (_lock, mut writer) = if options.dry_run {
        let existing = super::preview::destination_keys(
            project,
            destination,
            &task.destination_entity,
            &task.key,
        );
        if existing.is_none() {
            run.progress.log(format!(
                "warn task {}: dry run: the destination's keys cannot be read, so inserts and updates are not told apart (each counted as an insert)",
                task.name
            ));
        }
        run.predict = Some(Predictor { existing });
        (None, None)
    } else {
        let lock = lock_destination_of(run, options)?;
        (lock, Some(run.open(destination)?))
    };
    if let Some(by_task) = &options.records {
        // A re-run of failed records sends stored copies instead of reading.
        let records = by_task
            .get(&run.task.name)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let batches = batches_from_copies(records, source_schema, run.project.batch_size as usize)?;
        let mut keys = ReadKeys::new(task.duplicate_check.bytes());
        let pages = batches.into_iter().map(move |records| {
            let mut page = ReadPage {
                records,
                rejected: Vec::new(),
                next_cursor: None,
                done: false,
            };
            // Re-sent copies are held to the frozen schema as a read would be.
            if let Some(d) = discard {
                d.apply(&mut page, source_schema.map_or(&[][..], |s| &s.key_fields));
            }
            (
                Vec::new(),
                prepare_page(task, page, mappings, transforms, capture, &mut keys),
            )
        });
        consume(
            run,
            destination,
            &mut writer,
            options,
            observer,
            pages,
            false,
        )?;
        run.commit_point(destination, &mut writer, false)?;
        return Ok(());
    }
    // Three stages on three threads, joined by bounded channels: the source reads,
    // mappings and transforms prepare, the destination upserts. They overlap, and no
    // more than READ_AHEAD_PAGES wait between two stages (back-pressure).
    let queued = std::sync::atomic::AtomicUsize::new(0);
    let peak = std::sync::atomic::AtomicUsize::new(0);
    let stop = options.stop.clone();
    let result = std::thread::scope(|scope| {
        // Each page travels with the retry notes its read produced, for the log.
        let (read_tx, read_rx) =
            std::sync::mpsc::sync_channel::<Noted<Result<ReadPage, String>>>(READ_AHEAD_PAGES);
        let (ready_tx, ready_rx) =
            std::sync::mpsc::sync_channel::<Noted<Result<PreparedPage, String>>>(READ_AHEAD_PAGES);
        let (queued, peak) = (&queued, &peak);
        scope.spawn(move || {
            let mut cursor = resume;
            loop {
                let mut notes = Vec::new();
                let mut page = read_page(project, task, source, &cursor, stop.as_deref(), |n| {
                    notes.push(n)
                });
                if let (Ok(p), Some(schema)) = (&mut page, source_schema) {
                    conform::conform_page(p, schema, source.plugin());
                }
                if let (Ok(p), Some(d)) = (&mut page, discard) {
                    d.apply(p, source_schema.map_or(&[][..], |s| &s.key_fields));
                }
                let stop = page.as_ref().map_or(true, |p| p.done);
                if let Ok(p) = &page {
                    cursor = p.next_cursor.clone();
                }
                let waiting = queued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                peak.fetch_max(waiting, std::sync::atomic::Ordering::SeqCst);
                // A closed channel means the next stage stopped (an error downstream).
                if read_tx.send((notes, page)).is_err() || stop {
                    break;
                }
            }
        });
        scope.spawn(move || {
            let mut keys = ReadKeys::new(task.duplicate_check.bytes());
            let mut said_saturated = false;
            for (mut notes, page) in read_rx {
                let ready = page
                    .and_then(|p| prepare_page(task, p, mappings, transforms, capture, &mut keys));
                if keys.saturated && !said_saturated {
                    said_saturated = true;
                    notes.push(keys.saturated_warning(&task.name));
                }
                let stop = ready.as_ref().map_or(true, |p| p.done);
                if ready_tx.send((notes, ready)).is_err() || stop {
                    break;
                }
            }
        });
        let pages = ready_rx.into_iter().inspect(|_| {
            queued.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
        consume(
            run,
            destination,
            &mut writer,
            options,
            observer,
            pages,
            true,
        )
    });
    run.report.read_ahead_peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    result?;
    run.commit_point(destination, &mut writer, false)?;
    Ok(())
}

/// Takes the destination lock of `run`'s task, and says in the log when it waited.
fn lock_destination_of(
    run: &mut TaskRun<'_, '_, '_>,
    options: &RunOptions,
) -> Result<Option<lock::DestinationLock>, String> {
    let Some(target) =
        lock::DestinationTarget::of(&run.project.destination, &run.task.destination_entity)
    else {
        return Ok(None);
    };
    let holder = format!(
        "{} (pid {})",
        options
            .holder
            .clone()
            .unwrap_or_else(|| format!("a run of project `{}`", run.project.name)),
        std::process::id()
    );
    let wait = options
        .destination_wait
        .unwrap_or(lock::DEFAULT_DESTINATION_WAIT);
    let held = lock::lock_destination(&target, &holder, wait, options.stop.as_deref())
        .map_err(|e| e.to_string())?;
    if let Some(other) = &held.waited_for {
        run.progress.log(format!(
            "info task {}: waited {:.1} s for {target}, which {other} was writing",
            run.task.name,
            held.waited.as_secs_f64()
        ));
    }
    Ok(Some(held))
}

/// A source page after the prepare stage.
pub(crate) struct PreparedPage {
    rejected: Vec<weir_types::Rejected>,
    records: usize,
    next_cursor: Option<String>,
    done: bool,
    prepared: Option<MappedPage>,
}

fn prepare_page(
    task: &EntityTask,
    page: ReadPage,
    mappings: &CompiledMappings,
    transforms: &mut [TransformInstance],
    capture: bool,
    keys: &mut ReadKeys,
) -> Result<PreparedPage, String> {
    let records = page.records.len();
    let prepared = if records > 0 {
        Some(prepare(
            task,
            page.records,
            mappings,
            transforms,
            capture,
            keys,
        )?)
    } else {
        None
    };
    Ok(PreparedPage {
        rejected: page.rejected,
        records,
        next_cursor: page.next_cursor,
        done: page.done,
        prepared,
    })
}

/// The loop over prepared pages: upsert, checkpoint.
fn consume(
    run: &mut TaskRun<'_, '_, '_>,
    destination: &mut ConnectorInstance,
    writer: &mut Option<WriterHandle>,
    options: &RunOptions,
    observer: &mut dyn Observer,
    pages: impl Iterator<Item = Noted<Result<PreparedPage, String>>>,
    track_cursor: bool,
) -> Result<(), TaskStop> {
    let mut since_checkpoint = 0usize;
    for (notes, page) in pages {
        for line in notes {
            run.progress.log(line);
        }
        let page = page?;
        for r in page.rejected {
            run.fail(
                RecordFailure {
                    stage: Stage::Pull,
                    key: r.key,
                    position: Some(r.position),
                    field: r.error.field,
                    message: r.error.message,
                },
                None,
            );
            run.report.counts.read += 1;
        }
        run.report.counts.read += page.records as u64;
        if let Some(prepared) = page.prepared {
            if run.predict.is_some() {
                run.predict(prepared);
            } else {
                let open = writer.as_ref().expect("a writer is open");
                run.upsert(prepared, destination, open)?;
            }
        }
        if track_cursor {
            run.report.cursor = page.next_cursor;
        }
        observer.batch_done(&run.task.name, &run.report.counts);
        // Judged per batch, after it was upserted (like a stop request): the batch
        // that crosses the threshold is committed with the rest, so what the history
        // counts and keeps is what the destination holds.
        let counts = run.report.counts;
        if let Some(crossed) = run
            .task
            .stop_on_failures
            .crossed(counts.failed, counts.read)
        {
            run.commit_point(destination, writer, false)?;
            return Err(TaskStop::FailureThreshold(crossed));
        }
        if page.done {
            break;
        }
        since_checkpoint += 1;
        if options.stop_requested() {
            // Commit what is done, so the next run resumes right after it.
            run.commit_point(destination, writer, false)?;
            return Err(TaskStop::Interrupted(format!(
                "interrupted: stopped on request after {} records; the next run resumes from the last checkpoint",
                run.report.counts.read
            )));
        }
        if options.checkpoint_every > 0 && since_checkpoint >= options.checkpoint_every {
            run.commit_point(destination, writer, true)?;
            since_checkpoint = 0;
        }
    }
    Ok(())
}
