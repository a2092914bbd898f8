//! Executions: the history — status, counts, cursors, log, record errors and staged records — and its retention.

use super::*;

impl Store {
    /// Records a new `Running` execution with zeroed tasks; returns its id.
    pub fn begin_execution(&self, new: NewExecution) -> Result<ExecutionId, StoreError> {
        self.begin(new, false)
    }

    /// [`Store::begin_execution`] for a dry run ([`Execution::dry_run`]): predicted
    /// counts, nothing written to the destination.
    pub fn begin_dry_run(&self, new: NewExecution) -> Result<ExecutionId, StoreError> {
        self.begin(new, true)
    }

    fn begin(&self, new: NewExecution, dry_run: bool) -> Result<ExecutionId, StoreError> {
        check_name("project name", &new.project)?;
        check_free_space(&self.dir, self.limits.min_free_bytes)?;
        // A plain counter, not sled's `generate_id`: that one jumps by a million
        // after each restart, and people type execution ids.
        let next = self
            .db
            .update_and_fetch(b"meta/next_execution_id", |old| {
                let n = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                Some(n.saturating_add(1).to_be_bytes().to_vec())
            })
            .map_err(db_err)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Database {
                reason: "cannot allocate an execution id".to_string(),
            })?;
        let id = next;
        let now = now_millis();
        let rec = ExecRecord {
            id,
            project: new.project,
            project_version: new.project_version,
            trigger: new.trigger,
            parent: new.parent,
            rerun: new.rerun,
            status: ExecStatus::Running,
            error: None,
            interrupted: false,
            started_at: now,
            updated_at: now,
            finished_at: None,
            tasks: new.tasks.into_iter().map(TaskState::new).collect(),
            log_stored: 0,
            log_dropped: 0,
            record_errors_stored: 0,
            record_errors_dropped: 0,
            record_error_bytes: 0,
            staged_stored: 0,
            staged_dropped: 0,
            plugins: Vec::new(),
            dry_run,
            schema_changes: Vec::new(),
            worker: None,
        };
        let marker = encode(&Marker {})?;
        (&self.executions, &self.exec_by_project, &self.exec_running)
            .transaction(|(executions, index, running)| {
                tx_put_exec(executions, index, &rec)?;
                running.insert(&id_key(id), marker.clone())?;
                Ok(())
            })
            .map_err(tx_err)?;
        Ok(id)
    }

    /// Saves an execution's progress atomically (one sled transaction): replaces the
    /// named tasks' states, appends log lines, record errors and staged records — past the
    /// limits they are counted as dropped, not stored — and bumps `updated_at`. A crash
    /// leaves the execution at its previous checkpoint or this one, never between; it
    /// returns only once the checkpoint is on disk.
    pub fn checkpoint(&self, id: ExecutionId, cp: StoredCheckpoint) -> Result<(), StoreError> {
        // The bulk of what the store writes comes through here (logs, record errors,
        // staged records), so this is where a filling disk is noticed in time.
        check_free_space(&self.dir, self.limits.min_free_bytes)?;
        // Encoded once, outside the transaction: sled may run the closure more than once.
        let log = cp
            .log
            .iter()
            .map(|line| encode(&LogLine { line: line.clone() }))
            .collect::<Result<Vec<_>, _>>()?;
        let errors = cp
            .record_errors
            .iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()?;
        let staged = cp
            .staged
            .iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()?;
        let limits = &self.limits;
        let now = now_millis();
        (
            &self.executions,
            &self.exec_by_project,
            &self.exec_log,
            &self.exec_errors,
            &self.exec_staged,
        )
            .transaction(|(executions, index, log_tree, errors_tree, staged_tree)| {
                let Some(mut rec) = tx_exec(executions, id)? else {
                    return abort(Err(StoreError::NotFound {
                        what: "execution",
                        name: id.to_string(),
                    }));
                };
                if rec.status != ExecStatus::Running {
                    return abort(Err(StoreError::NotRunning { id }));
                }
                for task in &cp.tasks {
                    match rec.tasks.iter_mut().find(|t| t.name == task.name) {
                        Some(t) => *t = task.clone(),
                        None => rec.tasks.push(task.clone()),
                    }
                }
                append(
                    log_tree,
                    id,
                    &log,
                    limits.max_log_lines,
                    &mut rec.log_stored,
                    &mut rec.log_dropped,
                )?;
                let errors = within_bytes(
                    &errors,
                    limits.max_record_error_bytes,
                    &mut rec.record_error_bytes,
                );
                rec.record_errors_dropped += (cp.record_errors.len() - errors.len()) as u64;
                append(
                    errors_tree,
                    id,
                    errors,
                    limits.max_record_errors,
                    &mut rec.record_errors_stored,
                    &mut rec.record_errors_dropped,
                )?;
                append(
                    staged_tree,
                    id,
                    &staged,
                    limits.max_staged_per_execution,
                    &mut rec.staged_stored,
                    &mut rec.staged_dropped,
                )?;
                rec.updated_at = now;
                tx_put_exec(executions, index, &rec)
            })
            .map_err(tx_err)?;
        // The destination has already made this batch durable; the cursor must be too,
        // or a crash within sled's half-second flush window would replay committed
        // records (harmless for upserts, but counts and the log would go back in time).
        self.flush()
    }

    /// Records what each plugin instance of a `Running` execution cost (replacing what
    /// was recorded before): called once, just before the execution finishes.
    pub fn record_plugin_costs(
        &self,
        id: ExecutionId,
        plugins: Vec<StoredPluginCost>,
    ) -> Result<(), StoreError> {
        (&self.executions, &self.exec_by_project)
            .transaction(|(executions, index)| {
                let Some(mut rec) = tx_exec(executions, id)? else {
                    return abort(Err(StoreError::NotFound {
                        what: "execution",
                        name: id.to_string(),
                    }));
                };
                if rec.status != ExecStatus::Running {
                    return abort(Err(StoreError::NotRunning { id }));
                }
                rec.plugins = plugins.clone();
                rec.updated_at = now_millis();
                tx_put_exec(executions, index, &rec)
            })
            .map_err(tx_err)
    }

    /// Records which `weir worker` runs a `Running` execution now (set again when
    /// another worker resumes it after the first one's lease ran out).
    pub fn record_worker(&self, id: ExecutionId, worker: &str) -> Result<(), StoreError> {
        (&self.executions, &self.exec_by_project)
            .transaction(|(executions, index)| {
                let Some(mut rec) = tx_exec(executions, id)? else {
                    return abort(Err(StoreError::NotFound {
                        what: "execution",
                        name: id.to_string(),
                    }));
                };
                if rec.status != ExecStatus::Running {
                    return abort(Err(StoreError::NotRunning { id }));
                }
                rec.worker = Some(worker.to_owned());
                rec.updated_at = now_millis();
                tx_put_exec(executions, index, &rec)
            })
            .map_err(tx_err)
    }

    /// Records the schema differences a `Running` execution found (replacing what was
    /// recorded before): called once, before it finishes.
    pub fn record_schema_changes(
        &self,
        id: ExecutionId,
        changes: Vec<StoredTaskDrift>,
    ) -> Result<(), StoreError> {
        (&self.executions, &self.exec_by_project)
            .transaction(|(executions, index)| {
                let Some(mut rec) = tx_exec(executions, id)? else {
                    return abort(Err(StoreError::NotFound {
                        what: "execution",
                        name: id.to_string(),
                    }));
                };
                if rec.status != ExecStatus::Running {
                    return abort(Err(StoreError::NotRunning { id }));
                }
                rec.schema_changes = changes.clone();
                rec.updated_at = now_millis();
                tx_put_exec(executions, index, &rec)
            })
            .map_err(tx_err)
    }

    /// Ends a `Running` execution with a final status (not `Running`).
    pub fn finish_execution(
        &self,
        id: ExecutionId,
        status: ExecStatus,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        self.finish(id, status, error, false)
    }

    /// Finishes an execution that stopped at a batch boundary with everything before it
    /// committed: status Error, [`Execution::interrupted`] set, so the next run of the
    /// project resumes from its cursors.
    pub fn finish_interrupted(&self, id: ExecutionId, error: String) -> Result<(), StoreError> {
        self.finish(id, ExecStatus::Error, Some(error), true)
    }

    fn finish(
        &self,
        id: ExecutionId,
        status: ExecStatus,
        error: Option<String>,
        interrupted: bool,
    ) -> Result<(), StoreError> {
        if status == ExecStatus::Running {
            return Err(StoreError::Invalid {
                what: "final status",
                reason: "an execution cannot finish as Running".to_string(),
            });
        }
        let now = now_millis();
        (&self.executions, &self.exec_by_project, &self.exec_running)
            .transaction(|(executions, index, running)| {
                let Some(mut rec) = tx_exec(executions, id)? else {
                    return abort(Err(StoreError::NotFound {
                        what: "execution",
                        name: id.to_string(),
                    }));
                };
                if rec.status != ExecStatus::Running {
                    return abort(Err(StoreError::NotRunning { id }));
                }
                rec.status = status;
                rec.error = error.clone();
                rec.interrupted = interrupted;
                rec.finished_at = Some(now);
                rec.updated_at = now;
                tx_put_exec(executions, index, &rec)?;
                running.remove(&id_key(id))?;
                Ok(())
            })
            .map_err(tx_err)
    }

    fn exec_record(&self, id: ExecutionId) -> Result<Option<ExecRecord>, StoreError> {
        match self.executions.get(id_key(id)).map_err(db_err)? {
            None => Ok(None),
            Some(b) => decode(|| format!("executions/{id}"), &b).map(Some),
        }
    }

    /// One execution with its log (not its record errors or staged records).
    pub fn execution(&self, id: ExecutionId) -> Result<Option<Execution>, StoreError> {
        let Some(rec) = self.exec_record(id)? else {
            return Ok(None);
        };
        let log = self
            .exec_log
            .scan_prefix(id_key(id))
            .map(|kv| {
                let (k, v) = kv.map_err(db_err)?;
                let line: LogLine = decode(|| seq_key_name("exec_log", &k), &v)?;
                Ok(line.line)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(rec.into_execution(log)))
    }

    /// Executions matching `filter`, newest first. One project's are one key range of the
    /// project index, read backwards until the limit; without a project filter the main
    /// tree is read backwards. Neither path loads logs, errors or staged records.
    pub fn executions(
        &self,
        filter: &ExecutionFilter,
    ) -> Result<Vec<ExecutionSummary>, StoreError> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        let wanted = |s: &ExecutionSummary| {
            filter.status.is_none_or(|st| s.status == st)
                && filter.since.is_none_or(|since| s.started_at >= since)
                && filter.until.is_none_or(|until| s.started_at < until)
        };
        // Ids grow with start time, so reading newest first can stop at the first
        // execution older than `since` (allowing a minute for clocks set back).
        let past = |s: &ExecutionSummary| {
            filter
                .since
                .is_some_and(|since| s.started_at < since.saturating_sub(60_000))
        };
        let mut out = Vec::new();
        if let Some(project) = &filter.project {
            check_name("project name", project)?;
            for kv in self.exec_by_project.scan_prefix(name_prefix(project)).rev() {
                let (k, v) = kv.map_err(db_err)?;
                let s: ExecutionSummary = decode(
                    || {
                        let id = id_from_key_tail("", &k).unwrap_or(0);
                        format!("exec_by_project/{project}/{id}")
                    },
                    &v,
                )?;
                if past(&s) {
                    break;
                }
                if wanted(&s) {
                    out.push(s);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        } else {
            for kv in self.executions.iter().rev() {
                let (k, v) = kv.map_err(db_err)?;
                let rec: ExecRecord = decode(
                    || format!("executions/{}", id_from_key_tail("", &k).unwrap_or(0)),
                    &v,
                )?;
                let s = rec.summary();
                if past(&s) {
                    break;
                }
                if wanted(&s) {
                    out.push(s);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// A page of an execution's stored record errors, and how many are stored in all.
    /// `limit` 0 = to the end.
    pub fn record_errors(
        &self,
        id: ExecutionId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<StoredRecordError>, u64), StoreError> {
        let rec = self.exec_record(id)?.ok_or_else(|| StoreError::NotFound {
            what: "execution",
            name: id.to_string(),
        })?;
        let total = rec.record_errors_stored;
        let page = page(&self.exec_errors, "exec_errors", id, offset, limit, total)?;
        Ok((page, total))
    }

    /// A page of an execution's stored staged records, and how many are stored in all.
    /// `limit` 0 = to the end.
    pub fn staged(
        &self,
        id: ExecutionId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<StagedRecord>, u64), StoreError> {
        let rec = self.exec_record(id)?.ok_or_else(|| StoreError::NotFound {
            what: "execution",
            name: id.to_string(),
        })?;
        let total = rec.staged_stored;
        let page = page(&self.exec_staged, "exec_staged", id, offset, limit, total)?;
        Ok((page, total))
    }

    /// Records a run that did not start, as a finished `Skipped` execution saying why.
    pub fn record_skipped(
        &self,
        new: NewExecution,
        reason: &str,
    ) -> Result<ExecutionId, StoreError> {
        let id = self.begin_execution(new)?;
        self.finish_execution(id, ExecStatus::Skipped, Some(reason.to_string()))?;
        Ok(id)
    }

    /// A project's schedule state (default: not paused).
    pub fn project_state(&self, name: &str) -> Result<ProjectState, StoreError> {
        match self.project_state.get(name.as_bytes()).map_err(db_err)? {
            None => Ok(ProjectState::default()),
            Some(b) => decode(|| format!("project_state/{name}"), &b),
        }
    }

    /// Pauses or resumes a project's schedule; `changed_at` is set to now. The project
    /// must exist.
    pub fn set_project_state(
        &self,
        name: &str,
        paused: bool,
        reason: Option<String>,
    ) -> Result<ProjectState, StoreError> {
        if self.project_head(name)?.is_none() {
            return Err(StoreError::NotFound {
                what: "project",
                name: name.to_string(),
            });
        }
        let state = ProjectState {
            paused,
            reason,
            changed_at: now_millis(),
        };
        self.project_state
            .insert(name.as_bytes(), encode(&state)?)
            .map_err(db_err)?;
        Ok(state)
    }

    /// The latest execution of `project` (any status), for resume/retry decisions.
    pub fn last_execution(&self, project: &str) -> Result<Option<Execution>, StoreError> {
        check_name("project name", project)?;
        let Some(kv) = self
            .exec_by_project
            .scan_prefix(name_prefix(project))
            .next_back()
        else {
            return Ok(None);
        };
        let (k, _) = kv.map_err(db_err)?;
        self.execution(id_from_key_tail("exec_by_project", &k)?)
    }

    /// Deletes the executions (with their log, errors and staging) that
    /// [`Store::prune_candidates`] names. Returns how many were deleted.
    pub fn prune(&self, retention: &Retention, now_millis: i64) -> Result<usize, StoreError> {
        let mut deleted = 0;
        for s in self.prune_candidates(retention, now_millis)? {
            if self.delete_execution(s.id)? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// The executions `retention` lets go at `now_millis`, oldest first; deletes
    /// nothing (a dry run). See [`Retention`] for the rule: kept if any rule given keeps
    /// it; never a `Running` execution.
    pub fn prune_candidates(
        &self,
        retention: &Retention,
        now_millis: i64,
    ) -> Result<Vec<ExecutionSummary>, StoreError> {
        if retention.keep_last.is_none() && retention.max_age_days.is_none() {
            return Ok(Vec::new());
        }
        let cutoff = retention
            .max_age_days
            .map(|d| now_millis.saturating_sub(i64::from(d).saturating_mul(MILLIS_PER_DAY)));
        // The project index is sorted by project then id: one pass sees each project's
        // executions together, oldest first.
        let mut by_project: HashMap<String, Vec<ExecutionSummary>> = HashMap::new();
        for kv in self.exec_by_project.iter() {
            let (k, v) = kv.map_err(db_err)?;
            let s: ExecutionSummary = decode(
                || format!("exec_by_project/{}", id_from_key_tail("", &k).unwrap_or(0)),
                &v,
            )?;
            by_project.entry(s.project.clone()).or_default().push(s);
        }
        let mut victims = Vec::new();
        for list in by_project.values_mut() {
            let n = list.len();
            for (i, s) in list.drain(..).enumerate() {
                let newer = n - 1 - i;
                // A rule not given keeps nothing, so it never stands in the way.
                let kept_by_count = retention.keep_last.is_some_and(|k| newer < k);
                let kept_by_age = cutoff.is_some_and(|c| s.started_at >= c);
                if !kept_by_count && !kept_by_age && s.status != ExecStatus::Running {
                    victims.push(s);
                }
            }
        }
        victims.sort_unstable_by_key(|s| s.id);
        Ok(victims)
    }

    /// Deletes one finished execution. Its log, errors and staging go first and the record
    /// last: a crash in between leaves a complete-looking old execution that the next
    /// prune deletes again, never orphaned rows that nothing points to.
    fn delete_execution(&self, id: ExecutionId) -> Result<bool, StoreError> {
        match self.exec_record(id)? {
            Some(rec) if rec.status != ExecStatus::Running => {}
            _ => return Ok(false),
        }
        for tree in [&self.exec_log, &self.exec_errors, &self.exec_staged] {
            let mut batch = sled::Batch::default();
            for k in tree.scan_prefix(id_key(id)).keys() {
                batch.remove(k.map_err(db_err)?);
            }
            tree.apply_batch(batch).map_err(db_err)?;
        }
        (&self.executions, &self.exec_by_project)
            .transaction(|(executions, index)| {
                let Some(rec) = tx_exec(executions, id)? else {
                    return Ok(false);
                };
                executions.remove(&id_key(id))?;
                index.remove(index_key(&rec.project, id))?;
                Ok(true)
            })
            .map_err(tx_err)
    }
}

/// Appends `items` under keys (id, stored…) while under `max`; counts the rest as dropped.
pub(super) fn append(
    tree: &TransactionalTree,
    id: ExecutionId,
    items: &[Vec<u8>],
    max: u64,
    stored: &mut u64,
    dropped: &mut u64,
) -> ConflictableTransactionResult<(), StoreError> {
    let room = max.saturating_sub(*stored);
    let take = (items.len() as u64).min(room) as usize;
    for item in &items[..take] {
        tree.insert(&seq_key(id, *stored), item.as_slice())?;
        *stored += 1;
    }
    *dropped += (items.len() - take) as u64;
    Ok(())
}

/// The leading `items` that fit in what is left of a byte budget (`used` of
/// `max`), counted into `used`; the rest are for the caller to count as dropped.
pub(super) fn within_bytes<'a>(items: &'a [Vec<u8>], max: u64, used: &mut u64) -> &'a [Vec<u8>] {
    let mut take = 0;
    for item in items {
        let next = *used + item.len() as u64;
        if next > max {
            break;
        }
        *used = next;
        take += 1;
    }
    &items[..take]
}

/// Reads items `offset..offset+limit` (capped at `total`) of one execution from a tree
/// keyed by (id, seq): seqs are dense, so a page is one key range.
pub(super) fn page<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &str,
    id: ExecutionId,
    offset: u64,
    limit: u64,
    total: u64,
) -> Result<Vec<T>, StoreError> {
    let end = if limit == 0 {
        total
    } else {
        offset.saturating_add(limit).min(total)
    };
    if offset >= end {
        return Ok(Vec::new());
    }
    let range: Range<[u8; 16]> = seq_key(id, offset)..seq_key(id, end);
    tree.range(range)
        .map(|kv| {
            let (k, v) = kv.map_err(db_err)?;
            decode(|| seq_key_name(name, &k), &v)
        })
        .collect()
}

/// A readable name for an (id, seq) key in errors.
pub(super) fn seq_key_name(tree: &str, key: &[u8]) -> String {
    if key.len() == 16 {
        let mut id = [0u8; 8];
        let mut seq = [0u8; 8];
        id.copy_from_slice(&key[..8]);
        seq.copy_from_slice(&key[8..]);
        format!(
            "{tree}/{}/{}",
            u64::from_be_bytes(id),
            u64::from_be_bytes(seq)
        )
    } else {
        format!("{tree}/{}", hex::encode(key))
    }
}
