//! The `weir` command: a thin layer over the `weir_host` library.
//!
//! Parsing arguments, drawing progress and printing results live here; every
//! decision about projects, plugins and executions lives in the library, so the
//! daemon and embedders get the same behaviour.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cli_plugin;
mod cli_remote;
mod cli_serve;
mod cli_status;
mod cli_store;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use weir_host::bundled;
use weir_host::engine::{Counts, Engine, ExecutionReport, Observer, Status};
use weir_host::project::Project;
use weir_host::redact::scrub_known;
use weir_host::runtime::{Runtime, RuntimeConfig};

const DEFAULT_DATA_DIR: &str = "weir-data";

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Move records between systems through sandboxed WebAssembly plugins"
)]
struct Cli {
    /// weir's data directory: the store (connections, projects, execution history,
    /// plugins) and the compiled-component cache. `weir demo` uses <dir>/weir-data.
    #[arg(
        long,
        global = true,
        default_value = DEFAULT_DATA_DIR,
        env = "WEIR_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// A file holding the key that encrypts stored secrets (else WEIR_SECRET_KEY).
    #[arg(long, global = true, env = "WEIR_SECRET_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The memory the key index store under <data-dir>/index may hold, in MiB,
    /// whatever the number of records (half block cache, half write buffers).
    #[arg(
        long,
        global = true,
        env = "WEIR_INDEX_MEMORY_MB",
        default_value_t = weir_host::runtime::DEFAULT_INDEX_MEMORY_MB,
        value_parser = clap::value_parser!(u32).range(4..=65536)
    )]
    index_memory_mb: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a project once and print the execution summary: a project file (not
    /// recorded), or the name of a stored project (recorded in the history).
    Run {
        /// A project file (ends in .toml) or a stored project's name.
        project: String,
        /// Print the execution report as JSON.
        #[arg(long)]
        json: bool,
        /// Run the whole execution without writing: every source record is read,
        /// mapped, transformed and checked, and the counts are predicted inserts
        /// (key not in the destination), updates and rejections. Nothing is written
        /// to the destination and no cursor is kept; a stored project's dry run is
        /// recorded in the history as a dry run.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the bundled sample project (5,000 CRM contacts → JSON Lines), recorded in
    /// the demo's own history, and print the command that shows it on the dashboard.
    Demo {
        /// Where to write the sample project, its data and its output.
        #[arg(long, default_value = "weir-demo")]
        dir: PathBuf,
    },
    /// Validate a project: connections, organizations, entities, mappings, keys,
    /// transforms. Every problem at once; nothing is written.
    Validate {
        /// A project file (an existing file), or the name of a stored project.
        project: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what a run would do with the first source records: the staged
    /// destination records and insert/update/reject per record. Nothing is written.
    Preview {
        /// The project file (TOML).
        project: PathBuf,
        /// Records to pull per entity task.
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Print the preview as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stored connections (secrets encrypted at rest).
    #[command(subcommand)]
    Connection(cli_store::ConnectionCmd),
    /// Stored, versioned projects.
    #[command(subcommand)]
    Project(cli_store::ProjectCmd),
    /// The execution history: list, drill down, re-run.
    #[command(subcommand)]
    Executions(cli_store::ExecutionsCmd),
    /// The plugin authors' kit: scaffold, inspect, conformance test.
    #[command(subcommand)]
    Plugin(cli_plugin::PluginCmd),
    /// List the bundled plugins.
    Plugins,
    /// Run the daemon: schedules, HTTP API and dashboard, alerts. Stops gracefully
    /// on SIGTERM or Ctrl-C. While it runs, `weir` commands on its data directory go
    /// through it.
    Serve(cli_serve::ServeArgs),
    /// Run executions a `weir serve` with a `[cluster]` hands out through NATS
    /// JetStream. Stateless: it keeps no store; the coordinator records everything.
    /// Stops at the next checkpoint on SIGTERM or Ctrl-C.
    Worker(cli_serve::WorkerArgs),
    /// Say who holds the data directory: a daemon (its address, pid, since when), or
    /// nobody (commands open the store themselves).
    Status,
}

/// The log level without `WEIR_LOG`: what an administrator must see. A command
/// prints its own outcome (a failed check, record errors, a report), so its log
/// shows errors only — a warning there (a refused HTTP request, a retried call)
/// would only repeat the outcome. `weir serve` prints no outcome, so it logs
/// warnings too (alerts that could not be sent, automatic pauses, retries).
fn default_log_level(command: &Command) -> &'static str {
    match command {
        Command::Serve(_) | Command::Worker(_) => "warn",
        _ => "error",
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`weir executions list | head`), like other
    // Unix tools, instead of panicking on the next print.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let _ = INDEX_MEMORY_MB.set(cli.index_memory_mb);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| default_log_level(&cli.command).into()),
        )
        // Every line passes the secret values the process has seen (`redact`).
        .with_writer(weir_host::redact::ScrubbingWriter)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", scrub_known(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run {
            project,
            json,
            dry_run,
        } if !is_file(&project) => {
            let backend = cli_remote::Backend::open(&cli.data_dir, cli.key_file.as_deref())?;
            let mut observer = Progress::new(!json);
            let code = cli_store::run_named(&backend, &project, json, dry_run, &mut observer);
            observer.bar.finish_and_clear();
            code
        }
        Command::Status => cli_status::status(&cli.data_dir),
        Command::Plugin(cmd) => cli_plugin::plugin(
            &runtime(&cli.data_dir)?,
            &cli.data_dir,
            cli.key_file.as_deref(),
            cmd,
        ),
        Command::Connection(cmd) => with_backend(&cli.data_dir, cli.key_file.as_deref(), |b| {
            cli_store::connection(b, cmd)
        }),
        Command::Project(cmd) => with_backend(&cli.data_dir, cli.key_file.as_deref(), |b| {
            cli_store::project(b, cmd)
        }),
        Command::Executions(cmd) => with_backend(&cli.data_dir, cli.key_file.as_deref(), |b| {
            let mut observer = Progress::new(true);
            cli_store::executions(b, cmd, &mut observer)
        }),
        Command::Run {
            project,
            json,
            dry_run,
        } => {
            let report = match file_service(&cli.data_dir, cli.key_file.as_deref(), true)? {
                // With a store, the file may name stored connections and
                // installed plugins.
                Some(service) => {
                    let loaded = service.load_file(Path::new(&project))?;
                    loaded.secrets.remember();
                    let mut observer = Progress::new(!json);
                    let report = run_until_stopped(
                        service.engine(),
                        &loaded.project,
                        dry_run,
                        &mut observer,
                    )?;
                    observer.bar.finish_and_clear();
                    report
                }
                None => execute(&cli.data_dir, &load(Path::new(&project))?, dry_run, !json)?,
            };
            if json {
                println!("{}", scrub_known(&serde_json::to_string_pretty(&report)?));
            } else {
                print!("{}", scrub_known(&report.to_string()));
            }
            Ok(exit_code(report.status))
        }
        Command::Demo { dir } => demo(&dir, &cli.data_dir, cli.key_file.as_deref()),
        // An existing file is a file; anything else names a stored project.
        Command::Validate { project, json } if Path::new(&project).is_file() => {
            // Writes nothing: the compiled-component cache is read, not written,
            // and no directory or store entry is created.
            let path = Path::new(&project);
            let report = match file_service(&cli.data_dir, cli.key_file.as_deref(), false)? {
                Some(service) => service.validate_file(path)?,
                None => {
                    let runtime = Runtime::new(RuntimeConfig {
                        cache_writes: false,
                        ..runtime_config(&cli.data_dir)
                    })?;
                    Engine::new(&runtime).validate(&load(path)?)?
                }
            };
            cli_store::print_validation(&report, json)
        }
        Command::Validate { project, json } => {
            with_backend(&cli.data_dir, cli.key_file.as_deref(), |b| {
                cli_store::print_validation(&b.validate(&project)?, json)
            })
        }
        Command::Preview {
            project,
            limit,
            json,
        } => {
            let project = load(&project)?;
            let runtime = runtime(&cli.data_dir)?;
            let report = Engine::new(&runtime).preview(&project, limit.clamp(1, 10_000))?;
            if json {
                println!("{}", scrub_known(&serde_json::to_string_pretty(&report)?));
            } else {
                print!("{}", scrub_known(&report.to_string()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => cli_serve::serve(&cli.data_dir, cli.key_file.as_deref(), args),
        Command::Worker(args) => cli_serve::worker(&cli.data_dir, args),
        Command::Plugins => {
            let runtime = Runtime::new(RuntimeConfig::default())?;
            for name in bundled::plugin_names() {
                let plugin = runtime.load_bytes(name, bundled::plugin(name).unwrap())?;
                println!("{name:<10} {:?}", plugin.kind());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads a project file and remembers its credentials (read from the environment),
/// so every line printed or logged about it is scrubbed of them: the engine's
/// report can quote a server that echoed one.
fn load(path: &Path) -> Result<Project> {
    let project = Project::load(path)?;
    for conn in [&project.source, &project.destination] {
        conn.grants.redactor().remember();
    }
    Ok(project)
}

fn is_file(target: &str) -> bool {
    target.ends_with(".toml") || Path::new(target).is_file()
}

/// Runs a store command against the daemon holding `data_dir`, or the store itself.
fn with_backend(
    data_dir: &Path,
    key_file: Option<&Path>,
    f: impl FnOnce(&cli_remote::Backend) -> Result<ExitCode>,
) -> Result<ExitCode> {
    f(&cli_remote::Backend::open(data_dir, key_file)?)
}

/// Completed → 0, Warning → 1, Error → 3 (2 is for errors before any run).
fn exit_code(status: Status) -> ExitCode {
    match status {
        Status::Completed => ExitCode::SUCCESS,
        Status::Warning => ExitCode::from(1),
        Status::Error => ExitCode::from(3),
    }
}

/// Draws a progress line on a terminal; silent otherwise.
struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new(show: bool) -> Progress {
        let bar = if show && std::io::stderr().is_terminal() {
            indicatif::ProgressBar::new_spinner()
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .expect("valid template"),
        );
        Progress { bar }
    }
}

impl Observer for Progress {
    fn batch_done(&mut self, task: &str, c: &Counts) {
        self.bar.set_message(format!(
            "{task}: read {} · inserted {} · updated {} · unchanged {} · failed {}",
            c.read, c.inserted, c.updated, c.unchanged, c.failed
        ));
        self.bar.tick();
    }
}

fn runtime_config(data_dir: &Path) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(data_dir.join("cache")),
        index_dir: Some(data_dir.join("index")),
        index_memory_mb: index_memory_mb(),
        ..RuntimeConfig::default()
    }
}

/// `--index-memory-mb`, set once from the command line before any runtime is
/// built: every runtime this process builds (run, serve, worker, validation)
/// shares the one index store under the data directory, so one budget.
static INDEX_MEMORY_MB: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

pub(crate) fn index_memory_mb() -> u32 {
    *INDEX_MEMORY_MB
        .get()
        .unwrap_or(&weir_host::runtime::DEFAULT_INDEX_MEMORY_MB)
}

fn runtime(data_dir: &Path) -> Result<Runtime> {
    Ok(Runtime::new(runtime_config(data_dir))?)
}

/// The service a project file is read with when the data directory holds a
/// store (`None`: no store, and none is created for a file). `writes`: whether
/// the runtime may write its compiled-component cache (not for validation).
fn file_service(
    data_dir: &Path,
    key_file: Option<&Path>,
    writes: bool,
) -> Result<Option<weir_host::service::Service>> {
    if !data_dir.join("store").is_dir() {
        return Ok(None);
    }
    let runtime = Runtime::new(RuntimeConfig {
        cache_writes: writes,
        ..runtime_config(data_dir)
    })?;
    let store = cli_store::open_store(data_dir, key_file)?;
    Ok(Some(weir_host::service::Service::new(store, &runtime)))
}

fn execute(
    data_dir: &Path,
    project: &Project,
    dry_run: bool,
    progress: bool,
) -> Result<ExecutionReport> {
    let runtime = runtime(data_dir)?;
    let engine = Engine::new(&runtime);
    let mut observer = Progress::new(progress);
    let report = run_until_stopped(&engine, project, dry_run, &mut observer)?;
    observer.bar.finish_and_clear();
    Ok(report)
}

/// Runs `project`, stopping at the next batch boundary on SIGTERM or Ctrl-C (see
/// [`stop_flag`]): what was upserted is committed and the destination keeps no
/// half-written files.
fn run_until_stopped(
    engine: &Engine,
    project: &Project,
    dry_run: bool,
    observer: &mut dyn Observer,
) -> Result<ExecutionReport> {
    let options = weir_host::engine::RunOptions {
        stop: Some(stop_flag()),
        dry_run,
        ..Default::default()
    };
    Ok(engine.execute(
        project,
        &options,
        observer,
        &mut weir_host::engine::NoRecorder,
    )?)
}

/// Set by the first SIGTERM or SIGINT: a run finishes the batch in hand, commits it and
/// ends interrupted (the next recorded run resumes from its cursor). A second signal
/// exits at once, as an impatient Ctrl-C expects.
pub(crate) fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, OnceLock};
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            // Registered in this order, the exit is armed only once the flag is set.
            let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone());
            let _ = signal_hook::flag::register(signal, flag.clone());
        }
        flag
    })
    .clone()
}

/// Writes the sample project beside its data, stores it in the demo's own data
/// directory and runs it there, so the execution is in a history that `weir serve`
/// can show: the demo ends with the one command that opens the dashboard on it.
fn demo(dir: &Path, data_dir: &Path, key_file: Option<&Path>) -> Result<ExitCode> {
    let input = dir.join("crm-export");
    std::fs::create_dir_all(&input).with_context(|| format!("create {}", input.display()))?;
    let csv = input.join("contacts.csv");
    if !csv.exists() {
        std::fs::write(&csv, bundled::demo::CONTACTS_CSV)
            .with_context(|| format!("write {}", csv.display()))?;
    }
    let project_file = dir.join("project.toml");
    std::fs::write(&project_file, bundled::demo::PROJECT)
        .with_context(|| format!("write {}", project_file.display()))?;
    // The demo keeps its data (cache, store, history) inside its own folder unless told
    // otherwise, so it never touches an administrator's ./weir-data.
    let data_dir = if data_dir == Path::new(DEFAULT_DATA_DIR) {
        dir.join("weir-data")
    } else {
        data_dir.to_owned()
    };
    let runtime = runtime(&data_dir)?;
    let store = cli_store::open_store(&data_dir, key_file)?;
    let service = weir_host::service::Service::new(store, &runtime);
    let name = service.apply_project(&project_file)?.name;
    let mut observer = Progress::new(true);
    let (execution, report) =
        service.run(&name, weir_host::store::Trigger::Manual, &mut observer)?;
    observer.bar.finish_and_clear();
    service.store.flush()?;
    // Generated now (or reused), so the demo can say where it is before serve starts.
    let token_path = cli_serve::ensure_admin_token_file(&data_dir)?;
    print!("{report}");
    let show = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_owned())
            .display()
            .to_string()
    };
    println!("execution:   {execution}");
    println!();
    println!("project:     {}", show(&project_file));
    println!(
        "source:      {} ({} records)",
        show(&csv),
        bundled::demo::record_count()
    );
    println!(
        "destination: {}",
        show(&dir.join("marketing").join("contacts.jsonl"))
    );
    println!("history:     {}", show(&data_dir));
    println!("Run it again: records are updated, not duplicated.");
    println!();
    // Under `cargo run` the newcomer has no `weir` on the PATH yet: name what works.
    let weir = if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        "cargo run --release --"
    } else {
        "weir"
    };
    println!("See it on the dashboard:");
    println!("  {weir} serve --data-dir {}", data_dir.display());
    println!(
        "  then open http://127.0.0.1:8080/#/executions/{execution} and log in with the token in {}",
        token_path.display()
    );
    Ok(exit_code(report.status))
}
