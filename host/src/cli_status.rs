//! `weir status`: who holds the data directory — a daemon (then every store command
//! goes through it) or nobody (commands open the store themselves). Exit code 0 either
//! way: both are normal states.
//!
//! What it is not: a health check of the daemon's work (the dashboard and
//! `GET /api/v1/summary` are).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::cli_remote::{Holder, holder};

pub fn status(data_dir: &Path) -> Result<ExitCode> {
    match holder(data_dir)? {
        Holder::Daemon(access) => {
            println!(
                "daemon: running, pid {}, listening on http://{}, since {}",
                access.pid,
                access.address,
                crate::cli_store::when(access.since)
            );
            println!("commands on {} go through the daemon", data_dir.display());
        }
        Holder::Cli { stale } => {
            println!("daemon: not running");
            if let Some(access) = stale {
                println!(
                    "note: a daemon file was left by pid {} (stopped without a clean shutdown); it is ignored",
                    access.pid
                );
            }
            println!(
                "commands on {} open the store themselves",
                data_dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
