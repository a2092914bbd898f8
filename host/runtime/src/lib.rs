//! The sandboxed component runtime: loads plugins and calls them under limits.
//!
//! What it is: the only part of weir that knows wasmtime. It compiles (or loads
//! from the on-disk cache) components, links the contract's imports and a
//! deny-everything WASI, and hands out [`ConnectorInstance`]s and
//! [`TransformInstance`]s whose every call runs with a memory cap and a time
//! limit. A trap, a time-out or a memory overrun becomes a [`CallError`] for that
//! call; the instance is discarded and the host goes on.
//!
//! What it is not: the pipeline (that is `weir-engine`), nor an HTTP API, nor storage.
//! Nothing outside this crate names a wasmtime type.
//!
//! Cargo features: `postgres` (off by default) serves the `weir:sql/postgres` import
//! with a PostgreSQL client in the host; without it that import refuses every call.

#![deny(missing_docs)]

mod bindings;
pub mod bounds;
mod cache;
pub mod capabilities;
mod contract;
mod convert;
mod cost;
mod host;
mod http;
mod instance;
mod kv;
pub use kv::{DEFAULT_INDEX_MEMORY_MB, IndexBudget};
mod limits;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(not(feature = "postgres"))]
#[path = "postgres_absent.rs"]
mod postgres;
pub mod redact;
mod since_v0_1_0;
mod stderr;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use bounds::{MAX_CURSOR_BYTES, MAX_ERROR_MESSAGE_BYTES, MAX_KEY_BYTES};
pub use cache::CacheOutcome;
pub use capabilities::{Grants, HttpAuth, HttpLimits, PostgresGrant, Secret};
pub use cost::{PluginCost, TrapCounts};
pub use host::{PluginLogLine, PluginLogs};
pub use http::{check_webhook_literal, internal_address_refusal, webhook_resolver};
pub use instance::{CallError, ConnectorInstance, TransformInstance, TrapKind, WriterHandle};
pub use limits::Limits;

pub use contract::ContractVersion;

use bindings::since_v0_2_0::{CONNECTOR_EXPORT, TRANSFORM_EXPORT};
use host::HostState;

/// The contract versions this host accepts, newest first.
pub const SUPPORTED_CONTRACTS: &[&str] = &["0.2.0", "0.1.0"];

/// How often the epoch ticks; call time limits are rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How a [`Runtime`] is set up. The default: no component cache, pooling
/// allocator when the machine allows it.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Whether the cache is written (a compiled component stored, a corrupted
    /// entry removed). Off for work that promises to write nothing, such as
    /// validation: it still reads what earlier runs cached.
    pub cache_writes: bool,
    /// Use the pooling instance allocator (falls back to on-demand allocation if
    /// the pool cannot be reserved).
    pub pooling: bool,
    /// Instances the pool holds at once.
    pub pool_instances: u32,
    /// Where the key indexes of the `weir:kv/index` import are kept (one
    /// embedded store, opened at its first use); `None` keeps none, and
    /// plugins fall back to their own.
    pub index_dir: Option<PathBuf>,
    /// The memory the key index store may hold, in MiB, whatever the number of
    /// keys ([`kv::IndexBudget::of_mb`]; default [`kv::DEFAULT_INDEX_MEMORY_MB`]).
    pub index_memory_mb: u32,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            cache_dir: None,
            cache_writes: true,
            pooling: true,
            pool_instances: 128,
            index_dir: None,
            index_memory_mb: kv::DEFAULT_INDEX_MEMORY_MB,
        }
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the configuration (the reason it gave).
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
}

/// The largest plugin file weir reads (64 MiB): the bundled plugins are a few
/// MiB; a file past this is refused before its contents are read.
pub const MAX_PLUGIN_FILE_BYTES: u64 = 64 << 20;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The path names a directory, FIFO, device or socket: refused without reading it.
    #[error("plugin file {path} is {kind}, not a regular file; a plugin is a `.wasm` file")]
    NotAFile {
        /// The plugin path.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO"...).
        kind: &'static str,
    },
    #[error(
        "plugin file {path} is {size} bytes; plugins are at most {MAX_PLUGIN_FILE_BYTES} bytes (64 MiB)"
    )]
    /// Larger than [`MAX_PLUGIN_FILE_BYTES`]: refused before its contents are read.
    TooLarge {
        /// The plugin file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// The bytes are not a component (a core module, another format, or malformed).
    #[error("plugin `{plugin}` is not a WebAssembly component: {reason}")]
    NotAComponent {
        /// The plugin's label.
        plugin: String,
        /// What the parser found.
        reason: String,
    },
    #[error(
        "plugin `{plugin}` was built against contract weir:plugin@{found}; this host accepts weir:plugin@{}",
        SUPPORTED_CONTRACTS.join(", weir:plugin@")
    )]
    /// Built against a contract version this host does not accept.
    UnsupportedContract {
        /// The plugin's label.
        plugin: String,
        /// The contract version it exports.
        found: String,
    },
    #[error(
        "plugin `{plugin}` exports no weir plugin interface (it exports: {exports}); expected {CONNECTOR_EXPORT} or {TRANSFORM_EXPORT}"
    )]
    /// A component, but it exports neither the connector nor the transform interface.
    NoContract {
        /// The plugin's label.
        plugin: String,
        /// The interfaces it does export, comma-separated.
        exports: String,
    },
    /// It imports something the host does not provide (or with another type).
    #[error("plugin `{plugin}` cannot be linked: {reason}")]
    Link {
        /// The plugin's label.
        plugin: String,
        /// wasmtime's reason.
        reason: String,
    },
}

/// Reads a plugin file, refusing anything that is not a plausible plugin before
/// reading much of it: a FIFO would block the reading thread forever (an API
/// worker, or the daemon at start), `/dev/zero` would fill memory, and a huge
/// file would be read whole before its first 8 bytes said it is no plugin.
///
/// So: opened with `O_NONBLOCK` (opening a FIFO does not wait for a writer),
/// the descriptor's own metadata checked (no stat-then-open race), refused
/// unless a regular file of at most [`MAX_PLUGIN_FILE_BYTES`], its 8-byte
/// WebAssembly header checked, and only then the rest read — never more than
/// the cap, even if the file grows meanwhile.
pub fn read_plugin_file(path: &Path) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let (file, meta) = open_plugin_file(path)?;
    let mut limited = file.take(MAX_PLUGIN_FILE_BYTES + 1);
    let mut header = [0u8; 8];
    let mut got = 0;
    while got < header.len() {
        match limited.read(&mut header[got..]).map_err(read_err)? {
            0 => break,
            n => got += n,
        }
    }
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if !wasmparser::Parser::is_component(&header[..got])
        && !wasmparser::Parser::is_core_wasm(&header[..got])
    {
        return Err(LoadError::NotAComponent {
            plugin: label,
            reason: "it does not start with the WebAssembly magic bytes".to_owned(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    bytes.extend_from_slice(&header[..got]);
    limited.read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > MAX_PLUGIN_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

/// Opens a plugin file without blocking and checks its type and size on the
/// descriptor (see [`read_plugin_file`]).
fn open_plugin_file(path: &Path) -> Result<(std::fs::File, std::fs::Metadata), LoadError> {
    let read_err = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile {
            path: path.to_owned(),
            kind: file_kind(&meta.file_type()),
        });
    }
    if meta.len() > MAX_PLUGIN_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            size: meta.len(),
        });
    }
    Ok((file, meta))
}

/// Refuses, without reading it, a path that can never be a plugin: one that is
/// not a regular file or is over the size cap. A file that cannot be opened
/// (missing, not yet installed, no permission) passes: loading reports it, as
/// it always has, when the plugin is used.
pub fn check_plugin_file(path: &Path) -> Result<(), LoadError> {
    match open_plugin_file(path) {
        Err(e @ (LoadError::NotAFile { .. } | LoadError::TooLarge { .. })) => Err(e),
        _ => Ok(()),
    }
}

/// Names a file type for a refusal ("a FIFO", "a directory", …).
fn file_kind(ty: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ty.is_char_device() {
            return "a character device";
        }
        if ty.is_block_device() {
            return "a block device";
        }
        if ty.is_socket() {
            return "a socket";
        }
    }
    if ty.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// What kind of plugin a component is, from the interface it exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Exports `weir:plugin/connector`: reads and writes a system's entities.
    Connector,
    /// Exports `weir:plugin/transform`: turns a batch of records into another.
    Transform,
}

/// Stops the epoch thread when the last clone of the runtime is dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let engine = engine.clone();
        // A dedicated thread, not a tokio task: a synchronous plugin call would
        // starve a task on the same worker, and the deadline would never fire.
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The wasmtime configuration. Everything weir does not use is off: each
/// disabled proposal is attack surface removed (see ARCHITECTURE.md).
fn engine_config(pooling: Option<u32>) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        // Threads, GC and exceptions are also compiled out (cargo features off).
        .wasm_gc(false)
        .wasm_stack_switching(false)
        // No component-model async is used, so the cheaper call path is safe.
        .concurrency_support(false)
        .parallel_compilation(true);
    // A profiling aid, not a setting: `perf record` then names each plugin function
    // instead of "[unknown]" (the map goes to /tmp/perf-<pid>.map).
    if std::env::var_os("WEIR_PERF_MAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(instances) = pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .max_core_instances_per_component(64)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(1 << 30);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Loads and runs plugins; `Send + Sync`.
///
/// A handle: cloning it is cheap and every clone shares one engine, linker, component
/// cache, HTTP client and epoch ticker, so the daemon, its service and its executions
/// share one runtime without borrowing it (like `wasmtime::Engine` itself).
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: Arc<cache::ComponentCache>,
    pooling: bool,
    /// One HTTP client (connection pool, OAuth2 token cache) for every plugin.
    http: Arc<http::HttpClient>,
    /// The key indexes plugins keep through `weir:kv/index`.
    index: Arc<kv::IndexHome>,
    _ticker: Arc<EpochTicker>,
}

impl Runtime {
    /// A runtime with `config`'s engine settings, component cache and epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let (engine, pooling) = if config.pooling {
            match Engine::new(&engine_config(Some(config.pool_instances))) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                    (
                        Engine::new(&engine_config(None))
                            .map_err(|e| RuntimeError::Engine(e.to_string()))?,
                        false,
                    )
                }
            }
        } else {
            (
                Engine::new(&engine_config(None))
                    .map_err(|e| RuntimeError::Engine(e.to_string()))?,
                false,
            )
        };
        let mut linker = Linker::new(&engine);
        // Link the whole WASI p2 set: std (and other languages' runtimes) import it
        // even for pure libraries; the context behind it grants nothing (see
        // `capabilities`).
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        bindings::ConnectorPlugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        // The frozen 0.1.0 imports, for plugins built against it (they delegate to
        // the newest, see `since_v0_1_0`); its `types` holds no functions.
        {
            use bindings::since_v0_1_0::{TYPES_IMPORT, connector::weir::plugin as v0_1};
            v0_1::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
                .and_then(|()| v0_1::http::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
                .and_then(|()| linker.instance(TYPES_IMPORT).map(drop))
                .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        }
        // `weir:sql/postgres`: any plugin may import it; without a grant every
        // call is denied (see `capabilities::check_postgres`).
        bindings::PostgresClient::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        // `weir:kv/index`: any plugin may import it; a table needs a directory grant
        // and a runtime with an index directory (see `kv::IndexHome::open_table`).
        bindings::IndexClient::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        let cache = cache::ComponentCache::new(&engine, config.cache_dir, config.cache_writes);
        let ticker = EpochTicker::start(&engine);
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
            cache: Arc::new(cache),
            pooling,
            http: Arc::new(http::HttpClient::new()),
            index: Arc::new(kv::IndexHome::new(
                config.index_dir,
                kv::IndexBudget::of_mb(config.index_memory_mb),
            )),
            _ticker: Arc::new(ticker),
        })
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Loads a plugin from a `.wasm` file (read with [`read_plugin_file`]).
    pub fn load_file(&self, path: &Path) -> Result<Plugin, LoadError> {
        let bytes = read_plugin_file(path)?;
        // Messages name the file, not where it sits on the server: a call's error
        // ends up in the execution history, the API and alert mails, where the
        // host's directory layout is noise (and not the reader's business). Load
        // errors keep the full path: the engine reports them with the project's.
        let label = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.load_bytes(&label, &bytes)
    }

    /// Loads a plugin from its bytes; `label` names it in messages.
    pub fn load_bytes(&self, label: &str, bytes: &[u8]) -> Result<Plugin, LoadError> {
        let not_component = |reason: String| LoadError::NotAComponent {
            plugin: label.to_owned(),
            reason,
        };
        if !wasmparser::Parser::is_component(bytes) {
            let reason = if wasmparser::Parser::is_core_wasm(bytes) {
                "it is a core WebAssembly module; build it as a component (target wasm32-wasip2)"
                    .to_owned()
            } else {
                "it does not start with the WebAssembly magic bytes".to_owned()
            };
            return Err(not_component(reason));
        }
        if let Some(stamp) = contract_stamp(bytes) {
            if !SUPPORTED_CONTRACTS.contains(&stamp.as_str()) {
                return Err(LoadError::UnsupportedContract {
                    plugin: label.to_owned(),
                    found: stamp,
                });
            }
        }
        let digest = cache::sha256_hex(bytes);
        let (component, outcome) = self
            .cache
            .load(&self.engine, &digest, bytes)
            .map_err(|e| not_component(format!("{e:#}")))?;
        tracing::debug!(plugin = label, cache = ?outcome, "component loaded");
        let (kind, contract) = self.kind_of(label, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                plugin: label.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let link = |e: wasmtime::Error| LoadError::Link {
            plugin: label.to_owned(),
            reason: format!("{e:#}"),
        };
        use bindings::since_v0_1_0 as v0_1;
        use contract::{ConnectorPre, TransformPre};
        let pre = match (kind, contract) {
            (PluginKind::Connector, ContractVersion::V0_2_0) => instance::Pre::Connector(
                ConnectorPre::V0_2(bindings::ConnectorPluginPre::new(pre).map_err(link)?),
            ),
            (PluginKind::Connector, ContractVersion::V0_1_0) => instance::Pre::Connector(
                ConnectorPre::V0_1(v0_1::connector::ConnectorPluginPre::new(pre).map_err(link)?),
            ),
            (PluginKind::Transform, ContractVersion::V0_2_0) => instance::Pre::Transform(
                TransformPre::V0_2(bindings::TransformPluginPre::new(pre).map_err(link)?),
            ),
            (PluginKind::Transform, ContractVersion::V0_1_0) => instance::Pre::Transform(
                TransformPre::V0_1(v0_1::transform::TransformPluginPre::new(pre).map_err(link)?),
            ),
        };
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                label: label.to_owned(),
                digest,
                kind,
                contract,
                pre,
                cache: outcome,
                http: self.http.clone(),
                index: self.index.clone(),
                secret_options: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Reads the interface a component exports and checks its contract version
    /// before anything is instantiated.
    fn kind_of(
        &self,
        label: &str,
        component: &Component,
    ) -> Result<(PluginKind, ContractVersion), LoadError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_owned())
            .collect();
        for version in ContractVersion::ALL.into_iter().rev() {
            if exports.iter().any(|e| e == version.connector_export()) {
                return Ok((PluginKind::Connector, version));
            }
            if exports.iter().any(|e| e == version.transform_export()) {
                return Ok((PluginKind::Transform, version));
            }
        }
        for e in &exports {
            for iface in ["weir:plugin/connector@", "weir:plugin/transform@"] {
                if let Some(version) = e.strip_prefix(iface) {
                    return Err(LoadError::UnsupportedContract {
                        plugin: label.to_owned(),
                        found: version.to_owned(),
                    });
                }
            }
        }
        Err(LoadError::NoContract {
            plugin: label.to_owned(),
            exports: if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            },
        })
    }
}

/// The contract version a plugin built with `weir-sdk` carries in its
/// `weir-contract` custom section (inside the component's core module), if any.
/// Plugins from other toolchains have none; their exported interface names carry
/// the version, which `kind_of` checks.
pub fn contract_stamp(bytes: &[u8]) -> Option<String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let Ok(wasmparser::Payload::CustomSection(reader)) = payload {
            if reader.name() == "weir-contract" {
                return Some(String::from_utf8_lossy(reader.data()).trim().to_owned());
            }
        }
    }
    None
}

struct PluginInner {
    label: String,
    digest: String,
    kind: PluginKind,
    contract: ContractVersion,
    pre: instance::Pre,
    cache: CacheOutcome,
    http: Arc<http::HttpClient>,
    index: Arc<kv::IndexHome>,
    /// The options it declares `secret`, asked once (a describe call).
    secret_options: std::sync::OnceLock<Vec<String>>,
}

/// A loaded plugin: compiled, linked, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("label", &self.inner.label)
            .field("kind", &self.inner.kind)
            .finish()
    }
}

impl Plugin {
    /// The name it was loaded under (a bundled name or a file path).
    /// The name the plugin is known by in messages (its bundled name or file path).
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    /// Connector or transform, from the interface the component exports.
    pub fn kind(&self) -> PluginKind {
        self.inner.kind
    }

    /// The contract version it was built against, from the interface it exports.
    pub fn contract(&self) -> ContractVersion {
        self.inner.contract
    }

    /// The SHA-256 of the plugin's bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Whether the compiled component came from the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.cache
    }

    /// The names of the options the plugin declares `secret` (its describe
    /// answer), asked once per loaded plugin. Empty when it cannot be described
    /// (then nothing is known to be secret beyond the host's own credentials);
    /// a failed describe (a full instance pool, a trap) is asked again next time.
    pub fn secret_options(&self) -> &[String] {
        if let Some(names) = self.inner.secret_options.get() {
            return names;
        }
        let info = match self.inner.kind {
            PluginKind::Connector => self
                .connector(Grants::none(), Limits::default())
                .and_then(|mut c| c.describe()),
            PluginKind::Transform => self
                .transform(Limits::default())
                .and_then(|mut t| t.describe()),
        };
        match info {
            Ok(info) => self.inner.secret_options.get_or_init(|| {
                info.config
                    .into_iter()
                    .filter(|f| f.secret)
                    .map(|f| f.name)
                    .collect()
            }),
            Err(_) => &[],
        }
    }

    /// A connector instance with the given grants and limits. Instances are
    /// created lazily, on the first call.
    pub fn connector(
        &self,
        grants: Grants,
        limits: Limits,
    ) -> Result<ConnectorInstance, CallError> {
        match &self.inner.pre {
            instance::Pre::Connector(pre) => Ok(ConnectorInstance::new(
                self.inner.label.clone(),
                pre.clone(),
                grants,
                limits,
                self.inner.http.clone(),
                self.inner.index.clone(),
            )),
            instance::Pre::Transform(_) => Err(CallError::WrongKind {
                plugin: self.inner.label.clone(),
                expected: PluginKind::Connector,
            }),
        }
    }

    /// A transform instance with the given limits. Transforms get no grants.
    pub fn transform(&self, limits: Limits) -> Result<TransformInstance, CallError> {
        match &self.inner.pre {
            instance::Pre::Transform(pre) => Ok(TransformInstance::new(
                self.inner.label.clone(),
                pre.clone(),
                limits,
            )),
            instance::Pre::Connector(_) => Err(CallError::WrongKind {
                plugin: self.inner.label.clone(),
                expected: PluginKind::Transform,
            }),
        }
    }
}
