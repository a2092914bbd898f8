//! Prometheus metrics: what `weir serve` answers at `GET /metrics` (behind the API token).
//!
//! Every metric moves through a typed event of this module ([`ExecutionFinished`],
//! [`CheckpointWritten`], [`ScheduleLag`], [`AlertDelivery`]) whose `emit` both counts and
//! logs (at debug: the places that emit them already log what an administrator reads), as
//! in Vector's internal events: one place says what is counted, under which name and
//! labels. The registry is process-wide because the service emits from both the CLI and
//! the daemon; only the daemon serves it. Encoding is `prometheus-client`'s, never
//! hand-written text.
//!
//! Not here: per-record metrics (a label per record key would be unbounded). Label values
//! are bounded by what the administrator configured: project names, plugin labels,
//! statuses, channels.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::{ExecutionReport, PluginUsage};

/// An execution's final status, as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum StatusLabel {
    /// Every record read was upserted.
    completed,
    /// Some records failed.
    warning,
    /// None upserted, or the execution stopped.
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    project: String,
    status: StatusLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectLabels {
    project: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    role: String,
}

/// What stopped a plugin call, as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum TrapLabel {
    timeout,
    out_of_memory,
    stack_overflow,
    panic,
    other,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrapLabels {
    plugin: String,
    kind: TrapLabel,
}

/// A notification channel, as a label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ChannelLabel {
    /// An alert mail.
    email,
    /// A webhook POST.
    webhook,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    channel: ChannelLabel,
    outcome: AlertOutcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum AlertOutcome {
    delivered,
    failed,
}

/// The registry and every metric in it.
struct Metrics {
    registry: Registry,
    executions: Family<ExecutionLabels, Counter>,
    records_read: Family<ProjectLabels, Counter>,
    records_inserted: Family<ProjectLabels, Counter>,
    records_updated: Family<ProjectLabels, Counter>,
    records_unchanged: Family<ProjectLabels, Counter>,
    records_failed: Family<ProjectLabels, Counter>,
    execution_seconds: Family<ProjectLabels, Histogram>,
    schedule_lag_seconds: Histogram,
    running: Gauge,
    plugin_calls: Family<PluginLabels, Counter>,
    plugin_call_seconds: Family<PluginLabels, Counter<f64>>,
    plugin_traps: Family<TrapLabels, Counter>,
    store_write_seconds: Histogram,
    alerts: Family<AlertLabels, Counter>,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to ~9 h in factors of 4: executions, lags and store writes all fit.
    Histogram::new(exponential_buckets(0.001, 4.0, 13))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("weir");
    let m = Metrics {
        executions: Family::default(),
        records_read: Family::default(),
        records_inserted: Family::default(),
        records_updated: Family::default(),
        records_unchanged: Family::default(),
        records_failed: Family::default(),
        execution_seconds: Family::new_with_constructor(seconds_histogram),
        schedule_lag_seconds: seconds_histogram(),
        running: Gauge::default(),
        plugin_calls: Family::default(),
        plugin_call_seconds: Family::default(),
        plugin_traps: Family::default(),
        store_write_seconds: seconds_histogram(),
        alerts: Family::default(),
        registry: Registry::default(),
    };
    registry.register(
        "executions",
        "Executions finished, by project and status",
        m.executions.clone(),
    );
    registry.register(
        "records_read",
        "Records read from sources",
        m.records_read.clone(),
    );
    registry.register(
        "records_inserted",
        "Records inserted into destinations",
        m.records_inserted.clone(),
    );
    registry.register(
        "records_updated",
        "Records updated in destinations",
        m.records_updated.clone(),
    );
    registry.register(
        "records_unchanged",
        "Records upserted with the values the destination already held (nothing written)",
        m.records_unchanged.clone(),
    );
    registry.register(
        "records_failed",
        "Records that failed (record errors)",
        m.records_failed.clone(),
    );
    registry.register(
        "execution_duration_seconds",
        "How long executions took",
        m.execution_seconds.clone(),
    );
    registry.register(
        "schedule_lag_seconds",
        "How late scheduled executions started",
        m.schedule_lag_seconds.clone(),
    );
    registry.register(
        "executions_running",
        "Executions started and not finished",
        m.running.clone(),
    );
    registry.register(
        "plugin_calls",
        "Calls into plugins, by plugin and role",
        m.plugin_calls.clone(),
    );
    registry.register(
        "plugin_call_seconds",
        "Wall time inside plugin calls, by plugin and role",
        m.plugin_call_seconds.clone(),
    );
    registry.register(
        "plugin_traps",
        "Plugin calls stopped by a trap, by plugin and kind",
        m.plugin_traps.clone(),
    );
    registry.register(
        "store_write_seconds",
        "How long checkpoint writes to the store took",
        m.store_write_seconds.clone(),
    );
    registry.register(
        "alert_deliveries",
        "Alert deliveries, by channel and outcome",
        m.alerts.clone(),
    );
    Metrics { registry, ..m }
});

/// The metrics in Prometheus' text format, with `running` executions as of now.
pub fn encode(running: usize) -> String {
    METRICS
        .running
        .set(i64::try_from(running).unwrap_or(i64::MAX));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &METRICS.registry)
        .expect("writing to a String cannot fail");
    out
}

/// The media type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An execution ended (recorded in the history), with its report.
pub struct ExecutionFinished<'a> {
    /// The execution's id.
    pub id: u64,
    /// What the engine reported.
    pub report: &'a ExecutionReport,
}

impl ExecutionFinished<'_> {
    /// Counts it (executions, records, duration, plugin calls and traps) and logs it.
    pub fn emit(&self) {
        let r = self.report;
        // The metrics count what moved: a dry run's counts are predictions.
        if r.dry_run {
            tracing::debug!(execution = self.id, project = %r.project, "metrics: a dry run is not counted");
            return;
        }
        let project = ProjectLabels {
            project: r.project.clone(),
        };
        let status = match r.status {
            crate::engine::Status::Completed => StatusLabel::completed,
            crate::engine::Status::Warning => StatusLabel::warning,
            crate::engine::Status::Error => StatusLabel::error,
        };
        let m = &*METRICS;
        m.executions
            .get_or_create(&ExecutionLabels {
                project: r.project.clone(),
                status,
            })
            .inc();
        let t = r.totals();
        m.records_read.get_or_create(&project).inc_by(t.read);
        m.records_inserted
            .get_or_create(&project)
            .inc_by(t.inserted);
        m.records_updated.get_or_create(&project).inc_by(t.updated);
        m.records_unchanged
            .get_or_create(&project)
            .inc_by(t.unchanged);
        m.records_failed.get_or_create(&project).inc_by(t.failed);
        m.execution_seconds
            .get_or_create(&project)
            .observe(Duration::from_millis(r.duration_ms).as_secs_f64());
        for usage in &r.plugins {
            plugin_usage(m, usage);
        }
        tracing::debug!(execution = self.id, project = %r.project, status = ?status, "metrics: execution counted");
    }
}

fn plugin_usage(m: &Metrics, usage: &PluginUsage) {
    let labels = PluginLabels {
        plugin: usage.plugin.clone(),
        role: match &usage.role {
            crate::engine::PluginRole::Transform { .. } => "transform".to_owned(),
            other => other.to_string(),
        },
    };
    let c = &usage.cost;
    m.plugin_calls.get_or_create(&labels).inc_by(c.calls);
    m.plugin_call_seconds
        .get_or_create(&labels)
        .inc_by(Duration::from_micros(c.wall_micros).as_secs_f64());
    let traps = &c.traps_by_kind;
    for (kind, n) in [
        (TrapLabel::timeout, traps.timeout),
        (TrapLabel::out_of_memory, traps.out_of_memory),
        (TrapLabel::stack_overflow, traps.stack_overflow),
        (TrapLabel::panic, traps.panic),
        (TrapLabel::other, traps.other),
    ] {
        if n > 0 {
            m.plugin_traps
                .get_or_create(&TrapLabels {
                    plugin: usage.plugin.clone(),
                    kind,
                })
                .inc_by(n);
        }
    }
}

/// A checkpoint was written to the store (one transaction), taking `took`.
pub struct CheckpointWritten {
    /// How long the write took, flush included.
    pub took: Duration,
}

impl CheckpointWritten {
    /// Counts it and logs it.
    pub fn emit(&self) {
        METRICS.store_write_seconds.observe(self.took.as_secs_f64());
        tracing::trace!(
            took_ms = self.took.as_millis() as u64,
            "metrics: checkpoint written"
        );
    }
}

/// A scheduled execution started `lag` after it was due.
pub struct ScheduleLag {
    /// How late it started.
    pub lag: Duration,
}

impl ScheduleLag {
    /// Counts it and logs it.
    pub fn emit(&self) {
        METRICS.schedule_lag_seconds.observe(self.lag.as_secs_f64());
        tracing::trace!(
            lag_ms = self.lag.as_millis() as u64,
            "metrics: schedule lag"
        );
    }
}

/// An alert was delivered, or given up on.
pub struct AlertDelivery {
    /// Mail or webhook.
    pub channel: ChannelLabel,
    /// Whether it reached its recipient.
    pub delivered: bool,
}

impl AlertDelivery {
    /// Counts it and logs it.
    pub fn emit(&self) {
        let outcome = if self.delivered {
            AlertOutcome::delivered
        } else {
            AlertOutcome::failed
        };
        METRICS
            .alerts
            .get_or_create(&AlertLabels {
                channel: self.channel,
                outcome,
            })
            .inc();
        tracing::debug!(channel = ?self.channel, delivered = self.delivered, "metrics: alert delivery");
    }
}
