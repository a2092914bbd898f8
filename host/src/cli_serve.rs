//! `weir serve`: wires the store, the daemon, notifications and the HTTP API
//! together, and turns SIGTERM / Ctrl-C into a graceful shutdown.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use weir_host::api::{ApiState, router};
use weir_host::cluster::HandToWorkers;
use weir_host::daemon::config::ServeConfig;
use weir_host::daemon::local_access::LocalAccess;
use weir_host::daemon::{Alerter, Daemon};
use weir_host::notify::Notifier;
use weir_host::service::Service;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// The daemon's configuration file (TOML: concurrency, SMTP, alerts).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A file holding the administrator's API token (else WEIR_ADMIN_TOKEN; else one
    /// is generated into <data-dir>/admin-token).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The NATS server the coordinator uses (its `[cluster] nats`).
    #[arg(long)]
    nats: String,
    /// This worker's name in the history and the API (default: host name and pid).
    #[arg(long)]
    name: Option<String>,
    /// Executions at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
}

/// `weir worker`: pulls executions until SIGTERM / Ctrl-C, then lets the ones in
/// hand stop at their next checkpoint. Only the compiled-plugin cache is written
/// (under `<data-dir>/cache`); no store is opened.
pub fn worker(data_dir: &Path, args: WorkerArgs) -> Result<ExitCode> {
    let name = match args.name {
        Some(n) => n,
        None => format!(
            "{}-{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "worker".into()),
            std::process::id()
        ),
    };
    let concurrency = args.concurrency.clamp(1, 256);
    let runtime = weir_host::runtime::Runtime::new(weir_host::runtime::RuntimeConfig {
        cache_dir: Some(data_dir.join("cache")),
        // A worker keeps the key indexes of the destinations it writes, like a
        // daemon; another worker's later run on the same file is caught by the
        // file's fingerprint and rebuilt (derived data, never trusted blindly).
        index_dir: Some(data_dir.join("index")),
        index_memory_mb: crate::index_memory_mb(),
        pool_instances: weir_host::daemon::DaemonSettings {
            concurrency,
            ..Default::default()
        }
        .pool_instances(),
        ..weir_host::runtime::RuntimeConfig::default()
    })?;
    let engine = Arc::new(weir_host::engine::Engine::new(&runtime));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let settings = weir_host::cluster::worker::WorkerSettings {
            nats: args.nats,
            name: name.clone(),
            concurrency,
            key: weir_host::cluster::TransitKey::from_env()?,
            plugin_cache: data_dir.join("plugins").join("by-hash"),
        };
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            eprintln!("weir worker: stopping (executions in hand stop at their next checkpoint)");
            on_signal.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        println!("weir worker: {name} started");
        std::io::stdout().flush()?;
        weir_host::cluster::worker::run(settings, engine, stop).await?;
        eprintln!("weir worker: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The administrator token: given, or generated once and kept (mode 0600).
fn admin_token(data_dir: &Path, token_file: Option<&Path>) -> Result<String> {
    if let Some(f) = token_file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("reading the token file {}", f.display()))?;
        return checked(t.trim(), &f.display().to_string());
    }
    if let Ok(t) = std::env::var("WEIR_ADMIN_TOKEN") {
        return checked(t.trim(), "WEIR_ADMIN_TOKEN");
    }
    let path = ensure_admin_token_file(data_dir)?;
    let t = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    checked(t.trim(), &path.display().to_string())
}

/// `<data-dir>/admin-token`, generated (random, mode 0600) when it does not exist yet.
pub fn ensure_admin_token_file(data_dir: &Path) -> Result<PathBuf> {
    let path = data_dir.join("admin-token");
    if path.exists() {
        return Ok(path);
    }
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).context("reading random bytes for a token")?;
    let token = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{token}")?;
    eprintln!(
        "weir: generated an administrator token in {} (keep it secret)",
        path.display()
    );
    Ok(path)
}

fn checked(token: &str, origin: &str) -> Result<String> {
    if token.len() < 16 {
        anyhow::bail!(
            "the administrator token from {origin} is too short: use at least 16 characters"
        );
    }
    Ok(token.to_owned())
}

pub fn serve(data_dir: &Path, key_file: Option<&Path>, args: ServeArgs) -> Result<ExitCode> {
    let config = ServeConfig::load(args.config.as_deref(), args.listen.as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let token = admin_token(data_dir, args.token_file.as_deref())?;
    // One runtime for the daemon's life; the service (and through it every execution)
    // holds a clone of the handle.
    let runtime = weir_host::runtime::Runtime::new(weir_host::runtime::RuntimeConfig {
        cache_dir: Some(data_dir.join("cache")),
        index_dir: Some(data_dir.join("index")),
        index_memory_mb: crate::index_memory_mb(),
        pool_instances: config.daemon.pool_instances(),
        ..weir_host::runtime::RuntimeConfig::default()
    })?;
    let store = crate::cli_store::open_store(data_dir, key_file)?;
    for id in store.interrupted_on_open() {
        tracing::warn!(
            execution = id,
            "found interrupted at start; its next run resumes it"
        );
    }
    let service = Service::new(store, &runtime).with_env_policy(config.env.clone());
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        // With a cluster, executions go to workers; the store stays here.
        let cluster = match &config.cluster {
            None => None,
            Some(c) => {
                let client = weir_host::cluster::connect(&c.nats, "weir-coordinator").await?;
                let js = async_nats::jetstream::new(client.clone());
                weir_host::cluster::ensure_setup(&js, c.lease).await?;
                let key = weir_host::cluster::TransitKey::from_env()?;
                if key.is_none() {
                    tracing::warn!("no WEIR_CLUSTER_KEY: stored connections' secrets reach workers protected by NATS only (TLS, credentials)");
                }
                Some((HandToWorkers::new(client, key).await?, c.clone()))
            }
        };
        let service = match &cluster {
            Some((hand, _)) => service.with_dispatch(Arc::new(hand.clone())),
            None => service,
        };
        let notifier = Notifier::start(config.notify.clone());
        let alerter: Arc<dyn Alerter> = Arc::new(notifier.clone());
        let daemon = Daemon::new(service, config.daemon.clone(), Some(alerter))?;
        let worker_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some((hand, settings)) = &cluster {
            let (hand, d) = (hand.clone(), daemon.clone());
            tokio::spawn(async move {
                if let Err(error) = weir_host::cluster::coordinator::serve_requests(hand, d).await {
                    tracing::error!(%error, "answering workers stopped");
                }
            });
            if settings.coordinator_executes {
                let worker = weir_host::cluster::worker::WorkerSettings {
                    nats: settings.nats.clone(),
                    name: "coordinator".into(),
                    concurrency: config.daemon.concurrency,
                    key: weir_host::cluster::TransitKey::from_env()?,
                    plugin_cache: data_dir.join("plugins").join("by-hash"),
                };
                let engine = Arc::new(weir_host::engine::Engine::new(&runtime));
                let stop = worker_stop.clone();
                tokio::spawn(async move {
                    if let Err(error) = weir_host::cluster::worker::run(worker, engine, stop).await {
                        tracing::error!(%error, "the coordinator's own worker stopped");
                    }
                });
            }
        }
        let base_dir = std::path::absolute(data_dir)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // `weir` commands on this data directory reach the daemon through this file
        // (removed when `_access_file` drops, at a clean shutdown).
        let access = LocalAccess::new(local_address(addr))?;
        let _access_file = access.write(data_dir)?;
        let mut state = ApiState::with_web(daemon.clone(), &token, base_dir, config.web.clone())
            .with_local_token(&access.token);
        if let Some((hand, _)) = &cluster {
            state = state.with_workers(hand.clone());
        }
        let app = router(state);
        // Tests and scripts read the port from this first line.
        println!("weir serve: listening on http://{addr}");
        std::io::stdout().flush()?;
        tracing::info!(%addr, projects = daemon.projects()?.len(), "daemon started");
        let scheduler = daemon.start();
        let stopping = daemon.clone();
        // Connect info: wrong tokens are counted per client address.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                worker_stop.store(true, std::sync::atomic::Ordering::SeqCst);
                eprintln!("weir serve: stopping (no new runs; running executions stop after their current batch)");
                let left = stopping.shutdown(config.shutdown_grace).await;
                notifier.flush(std::time::Duration::from_secs(10)).await;
                if left > 0 {
                    eprintln!("weir serve: {left} executions still running at the deadline; they are marked interrupted at the next start");
                }
            })
            .await?;
        scheduler.abort();
        daemon.service().store.flush()?;
        eprintln!("weir serve: stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    // Blocking threads still inside a plugin call past the deadline are abandoned.
    std::process::exit(0)
}

/// The address a local command connects to: a daemon listening on every interface is
/// reached on loopback.
fn local_address(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
