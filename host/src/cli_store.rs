//! The store-backed commands: connections, projects, executions. Parsing and
//! printing only; the work is in `weir_host::service`, reached through a
//! [`Backend`]: the store opened here, or the daemon holding it (`cli_remote`).
//! Each answer is printed here, once, whichever side gave it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use weir_host::engine::{Observer, ValidationReport};
use weir_host::redact::scrub_known;
use weir_host::store::{
    ConnectionState, ExecStatus, ExecutionFilter, Retention, SecretKey, Store, StoreLimits,
    StoredConnection, now_millis,
};

use crate::cli_remote::{Backend, RunOutcome};

#[derive(Subcommand)]
pub enum ConnectionCmd {
    /// Store a connection (replacing one of the same name) and check it.
    Add {
        /// The connection's name, as project files and the API name it.
        name: String,
        /// A bundled plugin name or a path to a .wasm file.
        #[arg(long)]
        plugin: String,
        /// An option, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// A credential (repeatable): encrypted at rest, never shown. `KEY=-` reads
        /// the value from stdin, `KEY=@FILE` from a file: prefer those, a value on
        /// the command line is visible to every user in `ps`.
        #[arg(long = "secret", value_name = "KEY=VALUE")]
        secret: Vec<String>,
        /// The directory the plugin may use (seen as /data).
        #[arg(long)]
        directory: Option<PathBuf>,
        /// A host the plugin may reach over HTTP (repeatable).
        #[arg(long = "http-host")]
        http_hosts: Vec<String>,
        /// Let hosts granted by name resolve to internal addresses (loopback,
        /// private, link-local): for systems on the company network.
        #[arg(long)]
        http_internal: bool,
    },
    /// List connections and their state (secret names only).
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a connection: Connected, or what needs fixing.
    Check {
        /// The connection's name.
        name: String,
    },
    /// Replace a connection's credentials, then check it again.
    UpdateCredentials {
        /// The connection's name.
        name: String,
        /// As for `add`: `KEY=-` (stdin) or `KEY=@FILE` rather than the value.
        #[arg(long = "secret", value_name = "KEY=VALUE", required = true)]
        secret: Vec<String>,
    },
    /// Delete a connection.
    Delete {
        /// The connection's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ProjectCmd {
    /// Create or update a project from its file (a new version when it changed).
    Apply {
        /// The project file (TOML); its relative paths resolve against its folder.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List projects with their latest version.
    List,
    /// Show a project's file (latest version, or --version N).
    Show {
        /// The project's name.
        name: String,
        /// A version number (see `project list`); default the latest.
        #[arg(long)]
        version: Option<u32>,
    },
    /// Delete a project (its executions stay in the history).
    Delete {
        /// The project's name.
        name: String,
    },
    /// Pause a project's schedule (`weir serve` skips it until resumed). With a daemon
    /// running on the data directory, it applies at once (through the daemon).
    Pause {
        /// The project's name.
        name: String,
        /// Why, shown with the project's state.
        #[arg(long, default_value = "paused by an administrator")]
        reason: String,
    },
    /// Resume a paused project's schedule.
    Resume {
        /// The project's name.
        name: String,
    },
}

#[derive(Subcommand)]
pub enum ExecutionsCmd {
    /// Executions, newest first.
    List {
        /// Only this project's executions.
        #[arg(long)]
        project: Option<String>,
        /// running, completed, warning or error.
        #[arg(long)]
        status: Option<String>,
        /// Only since: a date (2026-11-01), an RFC 3339 time, or an age (30m, 12h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// An execution: summary, counts per entity task, log.
    Show {
        /// The execution's id.
        id: u64,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// An execution's record errors (paged).
    Errors {
        /// The execution's id.
        id: u64,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The records an execution sent to the destination (paged).
    Staging {
        /// The execution's id.
        id: u64,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run an execution's project again, linked to it; --failed-only re-sends only
    /// the records that failed, from their stored copies.
    Rerun {
        /// The execution's id.
        id: u64,
        /// Re-send only the records that failed: their stored copies, as they were
        /// read then (a value fixed at the source since is not seen; see --reread).
        #[arg(long)]
        failed_only: bool,
        /// With --failed-only: read the failed records' keys from the source again
        /// instead of re-sending the stored copies, where the source connector can.
        #[arg(long, requires = "failed_only")]
        reread: bool,
    },
    /// Delete old executions with their logs, record errors and staging data (never
    /// running ones).
    ///
    /// The rule: an execution is kept if ANY rule given keeps it — it is among the newest
    /// N of its project (--keep-last N), or it started less than D days ago (--days D) —
    /// and deleted only when every rule given lets it go. A running execution is never
    /// deleted. With neither option, --days 45 (what `weir serve` applies after each run).
    #[command(verbatim_doc_comment)]
    Prune {
        /// Keep executions that started less than this many days ago.
        #[arg(long, value_name = "D")]
        days: Option<u32>,
        /// Keep the newest N executions of each project, whatever their age.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// List what would be deleted, and delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Free space (MiB) the store keeps on its disk; default 64.
pub const MIN_FREE_ENV: &str = "WEIR_MIN_FREE_MB";

pub fn open_store(data_dir: &Path, key_file: Option<&Path>) -> Result<Store> {
    let key = SecretKey::from_env_or_file(key_file)?;
    let mut limits = StoreLimits::default();
    if let Ok(mb) = std::env::var(MIN_FREE_ENV) {
        let mb: u64 = mb.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "{MIN_FREE_ENV}=`{mb}`: expected a whole number of MiB (0 turns the check off)"
            )
        })?;
        limits.min_free_bytes = mb.saturating_mul(1 << 20);
    }
    let store = Store::open_with(&data_dir.join("store"), key, limits)
        .with_context(|| format!("open the store in {}", data_dir.display()))?;
    for id in store.interrupted_on_open() {
        eprintln!("note: execution {id} was interrupted (the process stopped); marked Error");
    }
    Ok(store)
}

fn pairs(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => bail!(
                "--{what} `{}`: expected KEY=VALUE",
                s.split('=').next().unwrap_or("")
            ),
        })
        .collect()
}

/// `--secret` values: `KEY=VALUE`, `KEY=-` (the value is stdin, once, without
/// its final newline) or `KEY=@PATH` (a file's content, without its final
/// newline), so the value need not appear in the process list.
fn secret_pairs(items: &[String]) -> Result<Vec<(String, String)>> {
    let mut stdin_used = false;
    let mut out = Vec::new();
    for (key, value) in pairs(items, "secret")? {
        let value = if value == "-" {
            if stdin_used {
                bail!("--secret {key}=-: only one secret can come from stdin");
            }
            stdin_used = true;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .with_context(|| format!("--secret {key}=-: reading stdin"))?;
            trim_newline(text)
        } else if let Some(path) = value.strip_prefix('@') {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--secret {key}=@{path}: reading the file"))?;
            trim_newline(text)
        } else {
            value
        };
        if value.is_empty() {
            bail!("--secret {key}: the value is empty");
        }
        out.push((key, value));
    }
    Ok(out)
}

fn trim_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

pub fn when(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| millis.to_string())
}

fn state_text(s: &ConnectionState) -> String {
    match s {
        ConnectionState::Unchecked => "unchecked".to_owned(),
        ConnectionState::Connected => "Connected".to_owned(),
        ConnectionState::NeedsFixing { reason } => format!("needs fixing: {reason}"),
    }
}

/// What `rerun --failed-only` re-sends, said before it starts, so an administrator
/// who fixed bad values at the source knows they are not read again; `--reread` is
/// refused, clearly, while no connector can read single records by key.
fn print_failed_only_note(
    id: u64,
    reread: bool,
    execution: &Option<weir_host::store::Execution>,
) -> Result<()> {
    let project = execution.as_ref().map_or("?", |e| e.project.as_str());
    if reread {
        bail!(
            "--reread: the source connector of project `{project}` cannot re-read single records: \
             the plugin contract (weir:plugin@0.1.0) has no read by key, so no connector can yet. \
             Nothing was run. To read the source again, re-run everything: `weir executions rerun {id}` \
             (records already written are updated by key, not duplicated)"
        );
    }
    println!(
        "note: re-sending the stored copies of the records that failed in execution {id}, as they were read then; \
         values fixed at the source since are not read again (re-run everything to read them: `weir executions rerun {id}`)"
    );
    Ok(())
}

/// A connection's state after a check, and the exit code: 1 unless Connected, so a
/// script that adds or checks a connection with a wrong password sees it fail.
fn print_checked(name: &str, state: &ConnectionState) -> ExitCode {
    println!("connection {name}: {}", state_text(state));
    if *state == ConnectionState::Connected {
        return ExitCode::SUCCESS;
    }
    println!(
        "fix it with `weir connection update-credentials {name} --secret KEY=VALUE` (or add it again), then `weir connection check {name}`"
    );
    ExitCode::from(1)
}

fn parse_since(text: &str) -> Result<i64> {
    weir_host::since::parse_since(text, now_millis())
        .with_context(|| format!("--since `{text}`: use {}", weir_host::since::SINCE_FORMS))
}

pub fn connection(backend: &Backend, cmd: ConnectionCmd) -> Result<ExitCode> {
    match cmd {
        ConnectionCmd::Add {
            name,
            plugin,
            config,
            secret,
            directory,
            http_hosts,
            http_internal,
        } => {
            let directory = directory
                .map(|d| {
                    std::path::absolute(&d).with_context(|| format!("directory {}", d.display()))
                })
                .transpose()?;
            let conn = StoredConnection {
                name: name.clone(),
                plugin,
                config: pairs(&config, "config")?,
                secrets: secret_pairs(&secret)?,
                directory,
                http_hosts,
                http_internal,
                state: ConnectionState::Unchecked,
                updated_at: now_millis(),
            };
            let state = backend.put_connection(&conn)?;
            if state != ConnectionState::Connected {
                println!("connection {name} is stored, but its check failed:");
            }
            Ok(print_checked(&name, &state))
        }
        ConnectionCmd::List { json } => {
            let list = backend.connections()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for c in list {
                    let secrets = if c.secret_names.is_empty() {
                        String::new()
                    } else {
                        format!("  secrets: {} (hidden)", c.secret_names.join(", "))
                    };
                    println!(
                        "{:<20} {:<12} {}{secrets}",
                        c.name,
                        c.plugin,
                        state_text(&c.state)
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectionCmd::Check { name } => {
            let state = backend.check_connection(&name)?;
            Ok(print_checked(&name, &state))
        }
        ConnectionCmd::UpdateCredentials { name, secret } => {
            let state = backend
                .update_credentials(&name, secret_pairs(&secret)?)?
                .with_context(|| format!("no connection named `{name}`"))?;
            println!(
                "connection {name}: credentials updated; {}",
                state_text(&state)
            );
            Ok(ExitCode::SUCCESS)
        }
        ConnectionCmd::Delete { name } => {
            if !backend.delete_connection(&name)? {
                bail!("no connection named `{name}`");
            }
            println!("connection {name}: deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn project(backend: &Backend, cmd: ProjectCmd) -> Result<ExitCode> {
    match cmd {
        ProjectCmd::Apply { file } => {
            let weir_host::service::AppliedProject {
                name,
                version,
                created: changed,
            } = backend.apply_project(&file)?;
            println!(
                "project {name}: version {version}{}",
                if changed { "" } else { " (unchanged)" }
            );
        }
        ProjectCmd::List => {
            for p in backend.projects()? {
                println!(
                    "{:<24} version {:<4} updated {}",
                    p.name,
                    p.latest_version,
                    when(p.updated_at)
                );
            }
        }
        ProjectCmd::Show { name, version } => {
            let p = backend
                .project(&name, version)?
                .with_context(|| format!("no project named `{name}`"))?;
            println!(
                "# project {} version {} ({}), paths relative to {}",
                p.name,
                p.version,
                when(p.created_at),
                p.base_dir.display()
            );
            print!("{}", p.text);
        }
        ProjectCmd::Delete { name } => {
            if !backend.delete_project(&name)? {
                bail!("no project named `{name}`");
            }
            println!("project {name}: deleted (its executions stay in the history)");
        }
        ProjectCmd::Pause { name, reason } => {
            backend.set_paused(&name, Some(reason))?;
            println!("project {name}: schedule paused");
        }
        ProjectCmd::Resume { name } => {
            backend.set_paused(&name, None)?;
            println!("project {name}: schedule resumed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `weir run NAME`: runs a stored project, waits for its end and prints the
/// execution as recorded.
pub fn run_named(
    backend: &Backend,
    name: &str,
    json: bool,
    dry_run: bool,
    observer: &mut dyn Observer,
) -> Result<ExitCode> {
    let outcome = backend.run(name, dry_run, observer)?;
    print_run(&outcome, json, None)?;
    Ok(exit_code(outcome.execution.status))
}

/// A finished run as the store recorded it, as JSON (`{execution, report}`: the report
/// keeps the engine report's field names for the fields it has) or as text.
fn print_run(outcome: &RunOutcome, json: bool, rerun: Option<RerunOf>) -> Result<()> {
    let e = &outcome.execution;
    let duration_ms = e.finished_at.unwrap_or(e.updated_at) - e.started_at;
    if json {
        let report = RunReport {
            project: &e.project,
            project_version: e.project_version,
            status: e.status,
            error: e.error.as_deref(),
            duration_ms,
            record_errors: e.record_errors,
            tasks: e
                .tasks
                .iter()
                .map(|t| RunTask {
                    name: &t.name,
                    counts: RunCounts {
                        read: t.read,
                        inserted: t.inserted,
                        updated: t.updated,
                        unchanged: t.unchanged,
                        failed: t.failed,
                        skipped: t.skipped,
                    },
                    cursor: t.cursor.as_deref(),
                    error: t.error.as_deref(),
                })
                .collect(),
        };
        let out = RunJson {
            execution: e.id,
            parent: e.parent,
            dry_run: e.dry_run,
            report,
        };
        println!("{}", scrub_known(&serde_json::to_string_pretty(&out)?));
        return Ok(());
    }
    let sum = |f: fn(&weir_host::store::TaskState) -> u64| e.tasks.iter().map(f).sum::<u64>();
    let mut text = format!("project:  {}\nstatus:   {}\n", e.project, e.status);
    if e.dry_run {
        text.push_str(DRY_RUN_LINE);
    }
    text.push_str(&format!(
        "records:  read {}, inserted {}, updated {}, unchanged {}, failed {}  ({:.2} s)\n",
        sum(|t| t.read),
        sum(|t| t.inserted),
        sum(|t| t.updated),
        sum(|t| t.unchanged),
        sum(|t| t.failed),
        duration_ms as f64 / 1000.0
    ));
    for t in &e.tasks {
        if e.tasks.len() > 1 {
            text.push_str(&format!(
                "  {}: read {}, inserted {}, updated {}, unchanged {}, failed {}\n",
                t.name, t.read, t.inserted, t.updated, t.unchanged, t.failed
            ));
        }
        if let Some(err) = &t.error {
            text.push_str(&format!("  error in task `{}`: {err}\n", t.name));
        }
    }
    if let Some(err) = &e.error {
        text.push_str(&format!("error:    {err}\n"));
    }
    for failure in &outcome.first_errors {
        text.push_str(&format!("  record error {}\n", error_line(failure)));
    }
    let more = e
        .record_errors
        .saturating_sub(outcome.first_errors.len() as u64);
    if more > 0 {
        text.push_str(&format!(
            "  … and {more} more record errors (weir executions errors {})\n",
            e.id
        ));
    }
    // Stored texts were scrubbed by the service; printing scrubs again what this
    // process has seen.
    print!("{}", scrub_known(&text));
    match rerun {
        None => println!("execution: {}  (weir executions show {})", e.id, e.id),
        Some(RerunOf {
            parent,
            failed_only,
        }) => println!(
            "execution: {} (re-run of {parent}{})",
            e.id,
            if failed_only {
                ", failed records only"
            } else {
                ""
            }
        ),
    }
    if let Some(n) = outcome.without_copy.filter(|n| *n > 0) {
        println!(
            "note: {n} records failed while being read and have no stored copy; run the project again to re-read them"
        );
    }
    Ok(())
}

/// What `run --dry-run` and `executions show` say of a dry run.
const DRY_RUN_LINE: &str = "dry run:  predicted counts; nothing was written to the destination\n";

/// A record error in one line: stage, task, key, place, field, message.
fn error_line(e: &weir_host::store::StoredRecordError) -> String {
    format!(
        "[{}] task {} key {}{}{}: {}",
        e.stage,
        e.task,
        e.key.as_deref().unwrap_or("-"),
        e.position
            .as_ref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default(),
        e.field
            .as_ref()
            .map(|f| format!(" field `{f}`"))
            .unwrap_or_default(),
        e.message
    )
}

/// What a re-run printed is a re-run of.
#[derive(Clone, Copy)]
struct RerunOf {
    parent: u64,
    failed_only: bool,
}

/// `weir run NAME --json`.
#[derive(serde::Serialize)]
struct RunJson<'a> {
    execution: u64,
    parent: Option<u64>,
    /// The counts are predictions; nothing was written.
    dry_run: bool,
    report: RunReport<'a>,
}

#[derive(serde::Serialize)]
struct RunReport<'a> {
    project: &'a str,
    project_version: u32,
    status: ExecStatus,
    error: Option<&'a str>,
    duration_ms: i64,
    record_errors: u64,
    tasks: Vec<RunTask<'a>>,
}

#[derive(serde::Serialize)]
struct RunTask<'a> {
    name: &'a str,
    counts: RunCounts,
    cursor: Option<&'a str>,
    error: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct RunCounts {
    read: u64,
    inserted: u64,
    updated: u64,
    unchanged: u64,
    failed: u64,
    skipped: u64,
}

/// Completed → 0, Warning → 1, Error → 3 (2 is for errors before any run); a run that
/// did not start (Skipped) is 1.
fn exit_code(status: ExecStatus) -> ExitCode {
    match status {
        ExecStatus::Completed => ExitCode::SUCCESS,
        ExecStatus::Warning | ExecStatus::Skipped => ExitCode::from(1),
        ExecStatus::Error | ExecStatus::Running => ExitCode::from(3),
    }
}

/// `weir validate`: a validation report, from a file or a stored project (here or
/// through the daemon), printed one way. Valid → 0, invalid → 1.
pub fn print_validation(report: &ValidationReport, json: bool) -> Result<ExitCode> {
    if json {
        println!("{}", scrub_known(&serde_json::to_string_pretty(report)?));
    } else {
        print!("{}", scrub_known(&report.to_string()));
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints one page of a paged listing, as text lines or as JSON.
/// A stored record as people read it: `field=value` pairs in the record's order; a
/// text is bare unless it is empty or holds spaces, quotes or `=` (then JSON-quoted),
/// other values are JSON. `--json` prints the records for programs.
fn fields_line(record: &[(String, serde_json::Value)]) -> String {
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::String(t)
            if !t.is_empty()
                && !t.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\')
                }) =>
        {
            t.clone()
        }
        other => other.to_string(),
    };
    record
        .iter()
        .map(|(k, v)| format!("{k}={}", value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_page<T: serde::Serialize>(
    title: &str,
    field: &str,
    offset: u64,
    total: u64,
    items: &[T],
    json: bool,
    line: impl Fn(&T) -> Result<String>,
) -> Result<()> {
    if json {
        let mut out = serde_json::json!({ "total": total, "offset": offset });
        out[field] = serde_json::to_value(items)?;
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let first = if items.is_empty() { offset } else { offset + 1 };
    println!("{title} {first}–{} of {total}", offset + items.len() as u64);
    for item in items {
        println!("{}", line(item)?);
    }
    Ok(())
}

pub fn executions(
    backend: &Backend,
    cmd: ExecutionsCmd,
    observer: &mut dyn Observer,
) -> Result<ExitCode> {
    match cmd {
        ExecutionsCmd::List {
            project,
            status,
            since,
            limit,
            json,
        } => {
            let status = status
                .map(|s| match s.to_ascii_lowercase().as_str() {
                    "running" => Ok(ExecStatus::Running),
                    "completed" => Ok(ExecStatus::Completed),
                    "warning" => Ok(ExecStatus::Warning),
                    "error" => Ok(ExecStatus::Error),
                    "skipped" => Ok(ExecStatus::Skipped),
                    other => Err(anyhow::anyhow!(
                        "--status `{other}`: use running, completed, warning, error or skipped"
                    )),
                })
                .transpose()?;
            let since = since.as_deref().map(parse_since).transpose()?;
            let list = backend.executions(&ExecutionFilter {
                project,
                status,
                since,
                until: None,
                limit,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for e in list {
                    println!(
                        "{:>6}  {}  {:<20} v{:<3} {:<9} {:<9} read {} ins {} upd {} same {} failed {}{}{}{}",
                        e.id,
                        when(e.started_at),
                        e.project,
                        e.project_version,
                        format!("{:?}", e.trigger).to_lowercase(),
                        e.status,
                        e.read,
                        e.inserted,
                        e.updated,
                        e.unchanged,
                        e.failed,
                        if e.dry_run { "  dry run" } else { "" },
                        e.parent
                            .map(|p| format!("  re-run of {p}{}", rerun_text(e.rerun)))
                            .unwrap_or_default(),
                        e.error.map(|m| format!("  ({m})")).unwrap_or_default()
                    );
                }
            }
        }
        ExecutionsCmd::Show { id, json } => {
            let e = backend
                .execution(id)?
                .with_context(|| format!("no execution {id}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!(
                    "execution {}: project {} version {}, {:?}",
                    e.id, e.project, e.project_version, e.trigger
                );
                if let Some(p) = e.parent {
                    println!("parent:   execution {p}{}", rerun_text(e.rerun));
                }
                println!(
                    "status:   {}{}",
                    e.status,
                    e.error
                        .as_ref()
                        .map(|m| format!(" — {m}"))
                        .unwrap_or_default()
                );
                if e.dry_run {
                    print!("{DRY_RUN_LINE}");
                }
                if let Some(w) = &e.worker {
                    println!("worker:   {w}");
                }
                println!(
                    "started:  {}   updated: {}   finished: {}",
                    when(e.started_at),
                    when(e.updated_at),
                    e.finished_at.map(when).unwrap_or_else(|| "-".into())
                );
                for t in &e.tasks {
                    println!(
                        "task {}: read {}, inserted {}, updated {}, unchanged {}, failed {}, skipped {}; cursor {}",
                        t.name,
                        t.read,
                        t.inserted,
                        t.updated,
                        t.unchanged,
                        t.failed,
                        t.skipped,
                        t.cursor.as_deref().unwrap_or("-")
                    );
                }
                println!(
                    "record errors: {} (weir executions errors {id}); staged records: {}",
                    e.record_errors, e.staged
                );
                print_plugin_costs(&e.plugins);
                print_schema_changes(&e.schema_changes);
                println!("log:");
                for line in &e.log {
                    println!("  {line}");
                }
            }
        }
        ExecutionsCmd::Errors {
            id,
            offset,
            limit,
            json,
        } => {
            let (page, total) =
                backend.page::<weir_host::store::StoredRecordError>(id, offset, limit)?;
            print_page("record errors", "errors", offset, total, &page, json, |e| {
                let mut line = error_line(e);
                if !e.record.is_empty() {
                    line.push_str(&format!("\n    record: {}", fields_line(&e.record)));
                }
                Ok(line)
            })?;
        }
        ExecutionsCmd::Staging {
            id,
            offset,
            limit,
            json,
        } => {
            let (page, total) =
                backend.page::<weir_host::store::StagedRecord>(id, offset, limit)?;
            print_page(
                "staged records",
                "records",
                offset,
                total,
                &page,
                json,
                |s| {
                    Ok(format!(
                        "{} {}: {}",
                        s.task,
                        s.key.as_deref().unwrap_or("-"),
                        fields_line(&s.record)
                    ))
                },
            )?;
        }
        ExecutionsCmd::Rerun {
            id,
            failed_only,
            reread,
        } => {
            if failed_only {
                print_failed_only_note(id, reread, &backend.execution(id)?)?;
            }
            let outcome = backend.rerun(id, failed_only, observer)?;
            print_run(
                &outcome,
                false,
                Some(RerunOf {
                    parent: id,
                    failed_only,
                }),
            )?;
            return Ok(exit_code(outcome.execution.status));
        }
        ExecutionsCmd::Prune {
            days,
            keep_last,
            dry_run,
        } => {
            let retention = Retention {
                max_age_days: days.or(keep_last.is_none().then_some(45)),
                keep_last,
            };
            let outcome = backend.prune(&retention, dry_run)?;
            println!("rule: {}", outcome.rule);
            if dry_run {
                for s in &outcome.going {
                    println!(
                        "would delete execution {} of {} ({:?}, started {})",
                        s.id,
                        s.project,
                        s.status,
                        when(s.started_at)
                    );
                }
                println!(
                    "would prune {} executions (dry run: nothing deleted)",
                    outcome.going.len()
                );
            } else {
                println!("pruned {} executions", outcome.deleted);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What a re-run sent again, as the dashboard says it.
fn rerun_text(kind: Option<weir_host::store::RerunKind>) -> &'static str {
    match kind {
        Some(weir_host::store::RerunKind::FailedOnly) => " (failed records only)",
        Some(weir_host::store::RerunKind::AllRecords) => " (all records)",
        None => "",
    }
}

/// The schema differences of `executions show`, in the words of `weir validate`.
fn print_schema_changes(drifts: &[weir_host::store::StoredTaskDrift]) {
    if drifts.is_empty() {
        return;
    }
    println!("schema changes since the last successful validation:");
    for d in drifts {
        for line in d.to_string().lines() {
            println!("  {line}");
        }
    }
}

/// The plugins' cost table of `executions show`: which plugin was slow or greedy, beside
/// its limits.
fn print_plugin_costs(plugins: &[weir_host::store::StoredPluginCost]) {
    if plugins.is_empty() {
        return;
    }
    let secs = |micros: u64| micros as f64 / 1e6;
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    println!("plugins:");
    for p in plugins {
        println!(
            "  {} ({}): {} calls, {:.3} s inside ({:.3} s CPU); slowest call {:.3} s (limit {:.0} s)",
            p.plugin,
            p.role,
            p.calls,
            secs(p.wall_micros),
            secs(p.cpu_micros),
            secs(p.slowest_call_micros),
            secs(p.call_timeout_micros),
        );
        let traps = if p.traps > 0 {
            format!("; {} traps, {} instances", p.traps, p.instantiations)
        } else {
            String::new()
        };
        println!(
            "    memory high-water {:.1} MiB (limit {:.0} MiB); records in {} / out {}; bytes in {} / out {}; HTTP {} requests ({} B sent, {} B received){traps}",
            mib(p.memory_high_water_bytes),
            mib(p.memory_limit_bytes),
            p.records_in,
            p.records_out,
            p.bytes_in,
            p.bytes_out,
            p.http_requests,
            p.http_bytes_sent,
            p.http_bytes_received,
        );
    }
}
