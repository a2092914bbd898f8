//! The host state of one plugin instance and the host side of the contract's
//! imports (`log`, `http`, and `weir:sql/postgres`).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{http, log, postgres as sql, types};
use super::capabilities::{self, Grants};
use super::cost::ImportCounts;
use super::http::{HttpClient, HttpFailure, HttpRequest};
use super::limits::{Limiter, Limits};
use super::postgres::{PgCall, PgSession};
use super::stderr::TailPipe;

/// A line a plugin logged, kept for the execution's detailed log.
/// What a plugin logged since the last time its instance was asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginLogs {
    /// The lines kept, in order.
    pub lines: Vec<PluginLogLine>,
    /// Lines dropped for exceeding the per-call limits (counted, not kept).
    pub dropped: usize,
}

/// One line a plugin logged through the `log` import, as the execution log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginLogLine {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message, bounded and scrubbed of the connection's secrets.
    pub message: String,
    /// Structured fields, name and value.
    pub fields: Vec<(String, String)>,
}

/// Everything the host keeps per instance. `Store<HostState>`.
pub(crate) struct HostState {
    pub plugin: String,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub limits: Limits,
    pub grants: Grants,
    /// The last `limits.stderr_bytes` the plugin wrote to stderr.
    pub stderr: TailPipe,
    /// Lines logged during the current call (bounded by the limits).
    pub log_lines: Vec<PluginLogLine>,
    /// Lines dropped during the current call.
    pub log_dropped: usize,
    /// The runtime's HTTP client (`None`: this instance cannot send HTTP).
    pub http: Option<Arc<HttpClient>>,
    /// The runtime's key indexes (`weir:kv/index`).
    pub index: Arc<crate::kv::IndexHome>,
    /// When the current call's time limit runs out (set by each call), so a
    /// blocking host function can stop in time.
    pub call_deadline: Option<Instant>,
    /// The instance's PostgreSQL session (opened on first use, if granted).
    pub postgres: PgSession,
    /// What the imports counted during the current call (taken after each call).
    pub imports: ImportCounts,
}

impl HostState {
    pub fn new(
        plugin: &str,
        grants: &Grants,
        limits: &Limits,
        http: Option<Arc<HttpClient>>,
        index: Arc<crate::kv::IndexHome>,
    ) -> std::io::Result<HostState> {
        let stderr = TailPipe::new(limits.stderr_bytes);
        Ok(HostState {
            plugin: plugin.to_owned(),
            wasi: capabilities::wasi_ctx(grants, &stderr)?,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: limits.memory_bytes,
                refused_growth_to: None,
                high_water: 0,
            },
            limits: limits.clone(),
            grants: grants.clone(),
            stderr,
            log_lines: Vec::new(),
            log_dropped: 0,
            http,
            index,
            call_deadline: None,
            postgres: PgSession::default(),
            imports: ImportCounts::default(),
        })
    }

    /// One call of the `weir:sql/postgres` import, bounded by the call's deadline.
    fn pg_call(&mut self) -> PgCall<'_> {
        PgCall {
            plugin: &self.plugin,
            grants: &self.grants,
            deadline: self
                .call_deadline
                .unwrap_or_else(|| Instant::now() + self.limits.call_timeout),
            session: &mut self.postgres,
        }
    }

    /// The tail of what the plugin wrote to stderr (a panic message, usually),
    /// at most 2,000 bytes, saying how many bytes before it are not shown.
    pub fn stderr_tail(&self) -> String {
        self.stderr.tail_text(2000)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("… (truncated)");
    }
    s
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        if self.log_lines.len() >= self.limits.log_lines_per_call {
            self.log_dropped += 1;
            return;
        }
        let max = self.limits.log_line_bytes;
        // A plugin may log what a server echoed (a credential): scrubbed here, at
        // the source, of every secret the process knows (the engine remembers a
        // project's before any call), so no subscriber ever sees one.
        let scrub = crate::redact::scrub_known_owned;
        let message = scrub(truncate(message, max));
        let fields: Vec<(String, String)> = fields
            .into_iter()
            .take(32)
            .map(|(k, v)| (scrub(truncate(k, 128)), scrub(truncate(v, max))))
            .collect();
        let rendered: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let plugin = self.plugin.as_str();
        let level_name = match level {
            log::Level::Trace => {
                tracing::trace!(plugin, fields = %rendered, "{message}");
                "trace"
            }
            log::Level::Debug => {
                tracing::debug!(plugin, fields = %rendered, "{message}");
                "debug"
            }
            log::Level::Info => {
                tracing::info!(plugin, fields = %rendered, "{message}");
                "info"
            }
            log::Level::Warn => {
                tracing::warn!(plugin, fields = %rendered, "{message}");
                "warn"
            }
            log::Level::Error => {
                tracing::error!(plugin, fields = %rendered, "{message}");
                "error"
            }
        };
        self.log_lines.push(PluginLogLine {
            level: level_name,
            message,
            fields,
        });
    }
}

impl http::Host for HostState {
    fn send(&mut self, request: http::Request) -> Result<http::Response, http::HttpError> {
        let deadline = self
            .call_deadline
            .unwrap_or_else(|| Instant::now() + self.limits.call_timeout);
        self.imports.http_requests += 1;
        self.imports.http_bytes_sent += request.body.len() as u64;
        let request = HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        };
        let result = match &self.http {
            Some(client) => client.send(&self.plugin, &self.grants, deadline, request),
            None => capabilities::check_http(&self.grants, &request.url)
                .map_err(HttpFailure::Denied)
                .and_then(|_| {
                    Err(HttpFailure::Transport(
                        "outgoing HTTP is not available to this plugin".to_owned(),
                    ))
                }),
        };
        if let Ok(r) = &result {
            self.imports.http_bytes_received += r.body.len() as u64;
        }
        match result {
            Ok(r) => Ok(http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
            Err(HttpFailure::Denied(m)) => Err(http::HttpError::Denied(m)),
            Err(HttpFailure::InvalidRequest(m)) => Err(http::HttpError::InvalidRequest(m)),
            Err(HttpFailure::Timeout) => Err(http::HttpError::Timeout),
            Err(HttpFailure::Transport(m)) => Err(http::HttpError::Transport(m)),
            Err(HttpFailure::TooLarge(n)) => Err(http::HttpError::TooLarge(n)),
        }
    }
}

impl sql::Host for HostState {
    fn query(
        &mut self,
        statement: String,
        params: Vec<sql::DbValue>,
    ) -> Result<sql::RowSet, sql::Error> {
        self.pg_call().query(&statement, params)
    }

    fn execute(&mut self, statement: String, params: Vec<sql::DbValue>) -> Result<u64, sql::Error> {
        self.pg_call().execute(&statement, params)
    }

    fn execute_each(
        &mut self,
        statement: String,
        rows: Vec<Vec<sql::DbValue>>,
    ) -> Result<Vec<sql::RowOutcome>, sql::Error> {
        self.pg_call().execute_each(&statement, rows)
    }
}
