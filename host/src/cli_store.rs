//! The store-backed commands: connections, projects, executions. Parsing and
//! printing only; the work is in `weir_host::service`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use weir_host::engine::Observer;
use weir_host::redact::scrub_known;
use weir_host::service::{Service, redact_record};
use weir_host::store::{
    ConnectionState, ExecStatus, ExecutionFilter, Retention, SecretKey, Store, StoreLimits,
    StoredConnection, Trigger, now_millis,
};

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
    /// Pause a project's schedule (`weir serve` skips it until resumed). Applies to a
    /// running daemon at its next start; use the API to pause one that is running.
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
    /// Delete old executions (never running ones).
    /// Deletes old executions with their logs, record errors and staging data.
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

fn when(millis: i64) -> String {
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

pub fn connection(service: &Service, cmd: ConnectionCmd) -> Result<ExitCode> {
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
            service.put_connection(&conn)?;
            let state = service.check_connection(&name)?;
            if state != ConnectionState::Connected {
                println!("connection {name} is stored, but its check failed:");
            }
            Ok(print_checked(&name, &state))
        }
        ConnectionCmd::List { json } => {
            let list = service.store.connections()?;
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
            let state = service.check_connection(&name)?;
            Ok(print_checked(&name, &state))
        }
        ConnectionCmd::UpdateCredentials { name, secret } => {
            let mut conn = service
                .store
                .connection(&name)?
                .with_context(|| format!("no connection named `{name}`"))?;
            conn.secrets = secret_pairs(&secret)?;
            conn.updated_at = now_millis();
            service.put_connection(&conn)?;
            let state = service.check_connection(&name)?;
            println!(
                "connection {name}: credentials updated; {}",
                state_text(&state)
            );
            Ok(ExitCode::SUCCESS)
        }
        ConnectionCmd::Delete { name } => {
            if !service.store.delete_connection(&name)? {
                bail!("no connection named `{name}`");
            }
            println!("connection {name}: deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn project(service: &Service, cmd: ProjectCmd) -> Result<ExitCode> {
    match cmd {
        ProjectCmd::Apply { file } => {
            let weir_host::service::AppliedProject {
                name,
                version,
                created: changed,
            } = service.apply_project(&file)?;
            println!(
                "project {name}: version {version}{}",
                if changed { "" } else { " (unchanged)" }
            );
        }
        ProjectCmd::List => {
            for p in service.store.projects()? {
                println!(
                    "{:<24} version {:<4} updated {}",
                    p.name,
                    p.latest_version,
                    when(p.updated_at)
                );
            }
        }
        ProjectCmd::Show { name, version } => {
            let p = service
                .store
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
            if !service.store.delete_project(&name)? {
                bail!("no project named `{name}`");
            }
            println!("project {name}: deleted (its executions stay in the history)");
        }
        ProjectCmd::Pause { name, reason } => {
            service.store.set_project_state(&name, true, Some(reason))?;
            println!("project {name}: schedule paused");
        }
        ProjectCmd::Resume { name } => {
            service.store.set_project_state(&name, false, None)?;
            println!("project {name}: schedule resumed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_named(
    service: &Service,
    name: &str,
    json: bool,
    observer: &mut dyn Observer,
) -> Result<weir_host::engine::Status> {
    let (id, report) = service.run(name, Trigger::Manual, observer)?;
    if json {
        println!(
            "{}",
            scrub_known(&serde_json::to_string_pretty(
                &serde_json::json!({ "execution": id, "report": report })
            )?)
        );
    } else {
        // The report is the engine's: it can quote a server echoing a credential.
        print!("{}", scrub_known(&report.to_string()));
        println!("execution: {id}  (weir executions show {id})");
    }
    Ok(report.status)
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
    service: &Service,
    cmd: ExecutionsCmd,
    observer: &mut dyn Observer,
) -> Result<ExitCode> {
    let store = &service.store;
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
            let list = store.executions(&ExecutionFilter {
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
                        "{:>6}  {}  {:<20} v{:<3} {:<9} {:<9} read {} ins {} upd {} failed {}{}",
                        e.id,
                        when(e.started_at),
                        e.project,
                        e.project_version,
                        format!("{:?}", e.trigger).to_lowercase(),
                        e.status,
                        e.read,
                        e.inserted,
                        e.updated,
                        e.failed,
                        e.error.map(|m| format!("  ({m})")).unwrap_or_default()
                    );
                }
            }
        }
        ExecutionsCmd::Show { id, json } => {
            let e = store
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
                    println!("parent:   execution {p}");
                }
                println!(
                    "status:   {}{}",
                    e.status,
                    e.error
                        .as_ref()
                        .map(|m| format!(" — {m}"))
                        .unwrap_or_default()
                );
                println!(
                    "started:  {}   updated: {}   finished: {}",
                    when(e.started_at),
                    when(e.updated_at),
                    e.finished_at.map(when).unwrap_or_else(|| "-".into())
                );
                for t in &e.tasks {
                    println!(
                        "task {}: read {}, inserted {}, updated {}, failed {}, skipped {}; cursor {}",
                        t.name,
                        t.read,
                        t.inserted,
                        t.updated,
                        t.failed,
                        t.skipped,
                        t.cursor.as_deref().unwrap_or("-")
                    );
                }
                println!(
                    "record errors: {} (weir executions errors {id}); staged records: {}",
                    e.record_errors, e.staged
                );
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
            let (mut page, total) = store.record_errors(id, offset, limit)?;
            page.iter_mut()
                .for_each(|e| e.record = redact_record(&e.record));
            print_page("record errors", "errors", offset, total, &page, json, |e| {
                let mut line = format!(
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
                );
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
            let (mut page, total) = store.staged(id, offset, limit)?;
            page.iter_mut()
                .for_each(|s| s.record = redact_record(&s.record));
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
                print_failed_only_note(id, reread, &store.execution(id)?)?;
            }
            let (new_id, report, skipped) = service.rerun(id, failed_only, observer)?;
            print!("{}", scrub_known(&report.to_string()));
            println!(
                "execution: {new_id} (re-run of {id}{})",
                if failed_only {
                    ", failed records only"
                } else {
                    ""
                }
            );
            if skipped > 0 {
                println!(
                    "note: {skipped} records failed while being read and have no stored copy; run the project again to re-read them"
                );
            }
            return Ok(crate::exit_code(report.status));
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
            let now = now_millis();
            println!("rule: {retention}");
            if dry_run {
                let going = store.prune_candidates(&retention, now)?;
                for s in &going {
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
                    going.len()
                );
            } else {
                let n = store.prune(&retention, now)?;
                println!("pruned {n} executions");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
