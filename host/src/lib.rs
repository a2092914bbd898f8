//! weir-host: the service, the daemon and the `weir` binary, over weir's libraries.
//!
//! weir is an embeddable WebAssembly plugin host for data integration: records move from
//! a source to a destination through plugins — WebAssembly components implementing the
//! WIT contract `weir:plugin@0.1.0` — run sandboxed in-process by wasmtime. The work is
//! split into crates with one job each (see ARCHITECTURE.md), re-exported here under
//! the module names the binary and the tests use:
//!
//! - [`runtime`] (`weir-runtime`) loads plugins and calls them under limits (the only
//!   crate that knows wasmtime); [`redact`] scrubs secret values from texts;
//! - [`project`], [`engine`] and [`bundled`] (`weir-engine`) are what to run and how:
//!   connections, tasks, mappings, validation, execution with checkpoints;
//! - [`store`] (`weir-store`) keeps connections (secrets encrypted), versioned projects
//!   and the execution history in an embedded sled database (no engine, no wasmtime);
//! - [`names`] (`weir-names`) is the rule for names people give things.
//!
//! This crate adds what a running installation needs, and is what an embedder does *not*
//! need (an application that only runs projects depends on `weir-engine`):
//!
//! - [`service`] joins engine and store: recorded runs, resume, re-runs;
//! - [`daemon`] schedules projects (cron, retries, auto-pause, alerts) for `weir serve`;
//! - [`notify`] sends alerts by mail (SMTP, lettre) and webhooks, grouped and retried;
//! - [`metrics`] counts executions, records, plugin calls, store writes and alerts for
//!   Prometheus (`GET /metrics` of `weir serve`);
//! - [`api`] is the daemon's HTTP API and dashboard (axum; the only module that
//!   knows HTTP serving);
//! - [`conformance`] and [`scaffold`] are `weir plugin test` and `weir plugin new`.

pub mod api;
pub mod cluster;
pub mod conformance;
mod conformance_cases;
pub mod conformance_sample;
pub mod daemon;
pub mod dispatch;
pub mod metrics;
pub mod notify;
pub mod scaffold;
pub mod schema_history;
pub mod service;
pub mod since;

pub use weir_engine as engine;
pub use weir_engine::{bundled, project};
pub use weir_names as names;
pub use weir_runtime as runtime;
pub use weir_runtime::redact;
pub use weir_store as store;

/// Re-exported so embedders need not depend on `weir-types` directly.
pub use weir_types::{Batch, BatchBuilder, Config, FieldType, Value};
