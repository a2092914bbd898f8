//! weir-host: an embeddable WebAssembly plugin host for data integration.
//!
//! Records move from a source to a destination through plugins — WebAssembly
//! components implementing the WIT contract `weir:plugin@0.1.0` — run sandboxed
//! in-process by wasmtime. This crate is the host: the library that embedders
//! use, and the `weir` binary built on it.
//!
//! - [`runtime`] loads plugins and calls them under limits (the only module that
//!   knows wasmtime);
//! - [`project`] is what to run: connections, a connection set, entity tasks;
//! - [`engine`] runs a project as an execution: validate, then pull, map,
//!   transform, upsert, with checkpoints;
//! - [`store`] keeps connections (secrets encrypted), versioned projects and the
//!   execution history in an embedded sled database (knows no engine or wasmtime);
//! - [`service`] joins engine and store: recorded runs, resume, re-runs;
//! - [`daemon`] schedules projects (cron, retries, auto-pause, alerts) for `weir serve`;
//! - [`notify`] sends alerts by mail (SMTP, lettre) and webhooks, grouped and retried;
//! - [`api`] is the daemon's HTTP API and dashboard (axum; the only module that
//!   knows HTTP serving);
//! - [`bundled`] holds the plugins and demo files shipped inside the binary.
//!
//! ```no_run
//! use weir_host::{engine::{Engine, Quiet}, project::Project, runtime::{Runtime, RuntimeConfig}};
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let project = Project::load("examples/contacts/project.toml".as_ref())?;
//! let report = Engine::new(&runtime).run(&project, &mut Quiet)?;
//! println!("{}", report.status);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!

pub mod api;
pub mod bundled;
pub mod conformance;
mod conformance_cases;
pub mod conformance_sample;
pub mod daemon;
pub mod engine;
pub mod names;
pub mod notify;
pub mod project;
pub mod redact;
pub mod runtime;
pub mod scaffold;
pub mod service;
pub mod store;

/// Re-exported so embedders need not depend on `weir-types` directly.
pub use weir_types::{Batch, BatchBuilder, Config, FieldType, Value};
