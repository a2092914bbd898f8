//! Plugin instances: one store each, every call under the limits, traps turned
//! into [`CallError`]s.
//!
//! Guest-visible errors (the WIT `error` a plugin returns) and traps are kept
//! apart: the first is [`CallError::Plugin`] and leaves the instance usable; a
//! trap poisons the instance, so it is dropped and the next call instantiates a
//! fresh one from the pre-instantiated component.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;
use wasmtime::{Store as WasmStore, Trap};
use weir_types::{
    Batch, Config, EntitySchema, FieldSchema, Organization, PluginError, PluginInfo, ReadPage,
    ReadRequest, RecordError, Transformed, UpsertOutcome, WriteRequest,
};

use super::bindings::connector_api as wc;
use super::capabilities::Grants;
use super::contract::{Connector, ConnectorPre, Transform, TransformPre};
use super::convert;
use super::cost::{PluginCost, thread_cpu_time};
use super::host::{HostState, PluginLogLine, PluginLogs};
use super::http::HttpClient;
use super::kv::IndexHome;
use super::limits::Limits;
use super::{EPOCH_TICK, PluginKind};

pub(crate) enum Pre {
    Connector(ConnectorPre),
    Transform(TransformPre),
}

/// How a call was stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrapKind {
    /// The call ran past its time limit.
    Timeout(Duration),
    /// The plugin asked for more memory than its limit.
    OutOfMemory {
        /// The memory limit, in bytes.
        limit: usize,
        /// The size the plugin asked to grow to, in bytes.
        wanted: usize,
    },
    /// The plugin's call stack overflowed.
    StackOverflow,
    /// The plugin panicked or aborted; the text is what it printed.
    Panic(String),
    /// Any other trap.
    Other(String),
}

impl std::fmt::Display for TrapKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrapKind::Timeout(limit) => {
                write!(f, "ran past its time limit of {limit:?} and was stopped")
            }
            TrapKind::OutOfMemory { limit, wanted } => write!(
                f,
                "exceeded its memory limit of {} MiB (it asked for {} MiB) and was stopped",
                limit >> 20,
                wanted.div_ceil(1 << 20)
            ),
            TrapKind::StackOverflow => write!(f, "overflowed its stack and was stopped"),
            TrapKind::Panic(msg) if msg.is_empty() => write!(f, "aborted"),
            TrapKind::Panic(msg) => write!(f, "panicked: {msg}"),
            TrapKind::Other(msg) => write!(f, "trapped: {msg}"),
        }
    }
}

/// Why a plugin call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallError {
    /// The plugin returned a typed error (the WIT `error`).
    #[error("plugin `{plugin}`: {error}")]
    Plugin {
        /// The plugin's label.
        plugin: String,
        /// The error it returned.
        error: PluginError,
    },
    /// The call trapped, timed out or ran out of memory; the instance is gone.
    #[error("plugin `{plugin}` {trap}")]
    Trap {
        /// The plugin's label.
        plugin: String,
        /// What stopped it.
        trap: TrapKind,
    },
    /// The plugin answered something the contract forbids (a malformed batch,
    /// the wrong number of outcomes).
    #[error("plugin `{plugin}` broke the contract: {message}")]
    Contract {
        /// The plugin's label.
        plugin: String,
        /// What it broke.
        message: String,
    },
    /// The host could not run the call (instantiation failed, a lost writer).
    #[error("plugin `{plugin}`: {message}")]
    Host {
        /// The plugin's label.
        plugin: String,
        /// What went wrong on the host's side.
        message: String,
    },
    /// A connector was used as a transform or the other way round.
    #[error("plugin `{plugin}` is not a {expected:?} plugin")]
    WrongKind {
        /// The plugin's label.
        plugin: String,
        /// The kind the caller needed.
        expected: PluginKind,
    },
}

impl CallError {
    /// Whether retrying later may succeed (a transient connection failure).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CallError::Plugin {
                error: PluginError::Connection {
                    transient: true,
                    ..
                },
                ..
            }
        )
    }
}

/// A store and the bindings of one live instance.
struct Live<B> {
    store: WasmStore<HostState>,
    bindings: B,
}

/// What every instance kind shares: identity, grants, limits, the live instance
/// (if any), the log lines collected so far.
struct Slot<B> {
    plugin: String,
    grants: Grants,
    limits: Limits,
    /// The runtime's HTTP client; only connectors get one.
    http: Option<Arc<HttpClient>>,
    /// The runtime's key indexes; only connectors get them.
    index: Arc<IndexHome>,
    live: Option<Live<B>>,
    /// Bumped whenever the live instance is dropped, so resources of a dead
    /// instance (writers) are recognised.
    generation: u64,
    logs: Vec<PluginLogLine>,
    logs_dropped: usize,
    /// What this instance cost so far, over every store it had.
    cost: PluginCost,
}

impl<B> Slot<B> {
    fn new(
        plugin: String,
        grants: Grants,
        limits: Limits,
        http: Option<Arc<HttpClient>>,
        index: Arc<IndexHome>,
    ) -> Slot<B> {
        Slot {
            plugin,
            grants,
            limits,
            http,
            index,
            live: None,
            generation: 0,
            logs: Vec::new(),
            logs_dropped: 0,
            cost: PluginCost::default(),
        }
    }

    fn host_err(&self, message: impl Into<String>) -> CallError {
        CallError::Host {
            plugin: self.plugin.clone(),
            message: message.into(),
        }
    }

    fn ensure_live(
        &mut self,
        instantiate: impl FnOnce(&mut WasmStore<HostState>) -> wasmtime::Result<B>,
        engine: &wasmtime::Engine,
    ) -> Result<(), CallError> {
        if self.live.is_some() {
            return Ok(());
        }
        let state = HostState::new(
            &self.plugin,
            &self.grants,
            &self.limits,
            self.http.clone(),
            self.index.clone(),
        )
        .map_err(|e| self.host_err(e.to_string()))?;
        let mut store = WasmStore::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks());
        let bindings = match instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => {
                let trap = classify(&e, store.data(), &self.limits);
                return Err(match trap {
                    Some(trap) => CallError::Trap {
                        plugin: self.plugin.clone(),
                        trap,
                    },
                    None => {
                        let text = format!("{e:#}");
                        if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                            .is_some()
                        {
                            // Not this plugin's fault, nor its configuration's.
                            self.host_err(format!(
                                "cannot instantiate: every slot of the host's instance pool is in use ({text}); too many executions, checks or validations at once"
                            ))
                        } else {
                            self.host_err(format!("cannot instantiate: {text}"))
                        }
                    }
                });
            }
        };
        self.cost.instantiations += 1;
        self.live = Some(Live { store, bindings });
        Ok(())
    }

    fn deadline_ticks(&self) -> u64 {
        (self.limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
    }

    /// Runs one call on the live instance under a fresh time budget.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut WasmStore<HostState>, &B) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let ticks = self.deadline_ticks();
        let live = self.live.as_mut().expect("ensure_live ran");
        live.store.set_epoch_deadline(ticks);
        live.store.data_mut().call_deadline = Some(Instant::now() + self.limits.call_timeout);
        let (started, cpu_before) = (Instant::now(), thread_cpu_time());
        let result = f(&mut live.store, &live.bindings);
        self.cost.count_call(
            started.elapsed(),
            thread_cpu_time().saturating_sub(cpu_before),
        );
        let state = live.store.data_mut();
        self.logs.append(&mut state.log_lines);
        self.logs_dropped += std::mem::take(&mut state.log_dropped);
        let imports = std::mem::take(&mut state.imports);
        self.cost.http_requests += imports.http_requests;
        self.cost.http_bytes_sent += imports.http_bytes_sent;
        self.cost.http_bytes_received += imports.http_bytes_received;
        self.cost.memory_high_water_bytes = self
            .cost
            .memory_high_water_bytes
            .max(state.limiter.high_water as u64);
        match result {
            Ok(r) => Ok(r),
            Err(e) => {
                let trap = classify(&e, live.store.data(), &self.limits)
                    .unwrap_or_else(|| TrapKind::Other(format!("{e:#}")));
                self.cost.traps += 1;
                self.cost.traps_by_kind.count(&trap);
                // The trap can quote the plugin's stderr or panic text, which can
                // quote a secret: scrubbed at the source (`redact`).
                let shown = crate::redact::scrub_known_owned(trap.to_string());
                tracing::warn!(plugin = %self.plugin, trap = %shown, "plugin call failed; discarding the instance");
                // A trapped instance must never be entered again.
                self.live = None;
                self.generation += 1;
                Err(CallError::Trap {
                    plugin: self.plugin.clone(),
                    trap,
                })
            }
        }
    }

    fn plugin_err(&self, e: super::bindings::types::Error) -> CallError {
        CallError::Plugin {
            plugin: self.plugin.clone(),
            error: convert::error_from_wit(e),
        }
    }

    fn checked_batch(&self, batch: Batch) -> Result<Batch, CallError> {
        batch.validate().map_err(|e| CallError::Contract {
            plugin: self.plugin.clone(),
            message: format!("malformed batch: {e}"),
        })?;
        Ok(batch)
    }

    fn count_in(&mut self, batch: &Batch) {
        self.cost.records_in += batch.len() as u64;
        self.cost.bytes_in += batch.byte_size() as u64;
    }

    fn count_out(&mut self, batch: &Batch) {
        self.cost.records_out += batch.len() as u64;
        self.cost.bytes_out += batch.byte_size() as u64;
    }

    fn take_logs(&mut self) -> PluginLogs {
        PluginLogs {
            lines: std::mem::take(&mut self.logs),
            dropped: std::mem::take(&mut self.logs_dropped),
        }
    }
}

/// Tells what stopped a call, if it was a limit or a trap.
fn classify(e: &wasmtime::Error, state: &HostState, limits: &Limits) -> Option<TrapKind> {
    let oom = state
        .limiter
        .refused_growth_to
        .map(|wanted| TrapKind::OutOfMemory {
            limit: limits.memory_bytes,
            wanted,
        });
    let trap = e.downcast_ref::<Trap>()?;
    Some(match trap {
        Trap::Interrupt => TrapKind::Timeout(limits.call_timeout),
        Trap::StackOverflow => TrapKind::StackOverflow,
        _ if oom.is_some() => oom.unwrap(),
        Trap::UnreachableCodeReached => TrapKind::Panic(state.stderr_tail()),
        // A Rust guest's shadow stack lives in linear memory: deep recursion
        // usually shows up as an out-of-bounds access below the data segment.
        Trap::MemoryOutOfBounds => TrapKind::Other(format!(
            "{trap} (a stack overflow in the guest looks like this too){}",
            stderr_suffix(state)
        )),
        other => TrapKind::Other(format!("{other}{}", stderr_suffix(state))),
    })
}

fn stderr_suffix(state: &HostState) -> String {
    let tail = state.stderr_tail();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {tail}")
    }
}

/// A write session opened on a connector instance.
#[derive(Debug)]
pub struct WriterHandle {
    resource: ResourceAny,
    generation: u64,
}

/// A connector plugin instance with its connection's grants.
pub struct ConnectorInstance {
    pre: ConnectorPre,
    slot: Slot<Connector>,
}

impl ConnectorInstance {
    pub(crate) fn new(
        plugin: String,
        pre: ConnectorPre,
        grants: Grants,
        limits: Limits,
        http: Arc<HttpClient>,
        index: Arc<IndexHome>,
    ) -> ConnectorInstance {
        ConnectorInstance {
            pre,
            slot: Slot::new(plugin, grants, limits, Some(http), index),
        }
    }

    /// The plugin's label.
    pub fn plugin(&self) -> &str {
        &self.slot.plugin
    }

    /// Instantiates eagerly (otherwise the first call does), e.g. to measure it.
    pub fn warm_up(&mut self) -> Result<(), CallError> {
        let pre = self.pre.clone();
        let engine = pre.engine().clone();
        self.slot.ensure_live(|s| pre.instantiate(s), &engine)
    }

    /// Lines the plugin logged since the last call of this method, and how many
    /// were dropped for exceeding the limits.
    pub fn take_logs(&mut self) -> PluginLogs {
        self.slot.take_logs()
    }

    /// What this instance has cost so far (see [`PluginCost`]).
    pub fn cost(&self) -> PluginCost {
        self.slot.cost
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> &Limits {
        &self.slot.limits
    }

    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut WasmStore<HostState>, &Connector) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.warm_up()?;
        self.slot.call(f)
    }

    /// The plugin's self-description: name, version, options, capabilities.
    pub fn describe(&mut self) -> Result<PluginInfo, CallError> {
        let info = self.run(|s, b| b.describe(s))?;
        Ok(convert::info_from_wit(info))
    }

    /// Asks the plugin whether `config` lets it reach its system (connection health).
    pub fn check(&mut self, config: &Config) -> Result<(), CallError> {
        self.run(|s, b| b.check(s, config.pairs()))?
            .map_err(|e| self.slot.plugin_err(e))
    }

    /// The organizations (legal entities, business units, schemas) the system holds.
    pub fn organizations(&mut self, config: &Config) -> Result<Vec<Organization>, CallError> {
        let orgs = self
            .run(|s, b| b.list_organizations(s, config.pairs()))?
            .map_err(|e| self.slot.plugin_err(e))?;
        Ok(orgs
            .into_iter()
            .map(convert::organization_from_wit)
            .collect())
    }

    /// The entities of one organization, with their fields and keys.
    pub fn discover(
        &mut self,
        config: &Config,
        organization: Option<&str>,
    ) -> Result<Vec<EntitySchema>, CallError> {
        let entities = self
            .run(|s, b| b.discover(s, config.pairs(), organization))?
            .map_err(|e| self.slot.plugin_err(e))?;
        Ok(entities.into_iter().map(convert::entity_from_wit).collect())
    }

    /// One page of records after `request`'s cursor (bounded and checked by the host).
    pub fn read(&mut self, config: &Config, request: &ReadRequest) -> Result<ReadPage, CallError> {
        let req = wc::ReadRequest {
            entity: request.entity.clone(),
            organization: request.organization.clone(),
            cursor: request.cursor.clone(),
            max_records: request.max_records,
        };
        let page = self
            .run(|s, b| b.read(s, config.pairs(), &req))?
            .map_err(|e| self.slot.plugin_err(e))?;
        // Checked before anything is converted: a page is bounded by what was
        // asked for, and the cursor by MAX_CURSOR_BYTES, or a plugin could fill
        // the store one page at a time.
        super::bounds::check_page(
            u64::from(page.records.len),
            page.rejected.len() as u64,
            request.max_records,
            page.next_cursor.as_deref(),
        )
        .map_err(|message| CallError::Contract {
            plugin: self.slot.plugin.clone(),
            message,
        })?;
        let records = self
            .slot
            .checked_batch(convert::batch_from_wit(page.records))?;
        self.slot.count_out(&records);
        Ok(ReadPage {
            records,
            rejected: page
                .rejected
                .into_iter()
                .map(convert::rejected_from_wit)
                .collect(),
            next_cursor: page.next_cursor,
            done: page.done,
        })
    }

    /// Opens a writer for one entity; records are then upserted through the handle.
    pub fn open_writer(
        &mut self,
        config: &Config,
        request: &WriteRequest,
    ) -> Result<WriterHandle, CallError> {
        let req = wc::WriteRequest {
            entity: request.entity.clone(),
            organization: request.organization.clone(),
            key_fields: request.key_fields.clone(),
        };
        let resource = self
            .run(|s, b| b.open_writer(s, config.pairs(), &req))?
            .map_err(|e| self.slot.plugin_err(e))?;
        Ok(WriterHandle {
            resource,
            generation: self.slot.generation,
        })
    }

    fn check_writer(&self, writer: &WriterHandle) -> Result<(), CallError> {
        if writer.generation != self.slot.generation || self.slot.live.is_none() {
            return Err(self
                .slot
                .host_err("the writer was lost when the plugin instance was discarded"));
        }
        Ok(())
    }

    /// Upserts a batch; returns exactly one outcome per record.
    pub fn upsert(
        &mut self,
        writer: &WriterHandle,
        records: Batch,
    ) -> Result<Vec<UpsertOutcome>, CallError> {
        self.check_writer(writer)?;
        let len = records.len();
        self.slot.count_in(&records);
        let batch = convert::batch_to_wit(records);
        let outcomes = self
            .slot
            .call(|s, b| b.upsert(s, writer.resource, &batch))?
            .map_err(|e| self.slot.plugin_err(e))?;
        if outcomes.len() != len {
            return Err(CallError::Contract {
                plugin: self.slot.plugin.clone(),
                message: format!(
                    "upsert returned {} outcomes for {len} records",
                    outcomes.len()
                ),
            });
        }
        Ok(outcomes
            .into_iter()
            .map(convert::outcome_from_wit)
            .collect())
    }

    /// Commits and closes a write session.
    pub fn finish(&mut self, writer: WriterHandle) -> Result<(), CallError> {
        self.check_writer(&writer)?;
        let result = self.slot.call(|s, b| b.finish(s, writer.resource))?;
        if let Some(live) = self.slot.live.as_mut() {
            // Free the guest resource; a failure here only leaks within the store.
            let _ = writer.resource.resource_drop(&mut live.store);
        }
        result.map_err(|e| self.slot.plugin_err(e))
    }
}

/// A transform plugin instance.
pub struct TransformInstance {
    pre: TransformPre,
    slot: Slot<Transform>,
}

impl TransformInstance {
    pub(crate) fn new(plugin: String, pre: TransformPre, limits: Limits) -> TransformInstance {
        TransformInstance {
            pre,
            slot: Slot::new(plugin, Grants::none(), limits, None, Arc::default()),
        }
    }

    /// The plugin's label.
    pub fn plugin(&self) -> &str {
        &self.slot.plugin
    }

    /// Instantiates eagerly (otherwise the first call does), e.g. to measure it.
    pub fn warm_up(&mut self) -> Result<(), CallError> {
        let pre = self.pre.clone();
        let engine = pre.engine().clone();
        self.slot.ensure_live(|s| pre.instantiate(s), &engine)
    }

    /// Lines the plugin logged since the last call of this method, and how many
    /// were dropped for exceeding the limits.
    pub fn take_logs(&mut self) -> PluginLogs {
        self.slot.take_logs()
    }

    /// What this instance has cost so far (see [`PluginCost`]).
    pub fn cost(&self) -> PluginCost {
        self.slot.cost
    }

    /// The limits its calls run under.
    pub fn limits(&self) -> &Limits {
        &self.slot.limits
    }

    fn run<R>(
        &mut self,
        f: impl FnOnce(&mut WasmStore<HostState>, &Transform) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.warm_up()?;
        self.slot.call(f)
    }

    /// The plugin's self-description: name, version, options.
    pub fn describe(&mut self) -> Result<PluginInfo, CallError> {
        let info = self.run(|s, b| b.describe(s))?;
        Ok(convert::info_from_wit(info))
    }

    /// The fields the transform outputs for `input` under `config` (validation uses it).
    pub fn output_schema(
        &mut self,
        config: &Config,
        input: &[FieldSchema],
    ) -> Result<Vec<FieldSchema>, CallError> {
        let input: Vec<_> = input.iter().map(convert::field_to_wit).collect();
        let out = self
            .run(|s, b| b.output_schema(s, config.pairs(), &input))?
            .map_err(|e| self.slot.plugin_err(e))?;
        Ok(out.into_iter().map(convert::field_from_wit).collect())
    }

    /// Transforms a batch: one output record per input record.
    pub fn transform(&mut self, config: &Config, records: Batch) -> Result<Transformed, CallError> {
        let len = records.len();
        self.slot.count_in(&records);
        let batch = convert::batch_to_wit(records);
        let out = self
            .run(|s, b| b.transform(s, config.pairs(), &batch))?
            .map_err(|e| self.slot.plugin_err(e))?;
        let records = self
            .slot
            .checked_batch(convert::batch_from_wit(out.records))?;
        self.slot.count_out(&records);
        if records.len() != len {
            return Err(CallError::Contract {
                plugin: self.slot.plugin.clone(),
                message: format!("transform returned {} records for {len}", records.len()),
            });
        }
        // More failures than records can only repeat indices; refused before
        // the texts are converted, as a read's rejects are.
        super::bounds::check_failures(out.failures.len(), len).map_err(|message| {
            CallError::Contract {
                plugin: self.slot.plugin.clone(),
                message,
            }
        })?;
        let failures: Vec<(u32, RecordError)> = out
            .failures
            .into_iter()
            .map(convert::failure_from_wit)
            .collect();
        if let Some((i, _)) = failures.iter().find(|(i, _)| *i as usize >= len) {
            return Err(CallError::Contract {
                plugin: self.slot.plugin.clone(),
                message: format!("transform reported a failure for record {i} of {len}"),
            });
        }
        Ok(Transformed { records, failures })
    }
}
