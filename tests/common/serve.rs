//! Reading a started `weir serve`'s address: its first stdout line is
//! `weir serve: listening on http://ADDR` (scripts and tests rely on it).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Waits for the first line of `child` (spawned with a piped stdout) and returns the
/// address it listens on, `host:port`.
pub fn listening_address(child: &mut Child) -> String {
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut first)
        .expect("read weir serve's first line");
    first
        .trim()
        .strip_prefix("weir serve: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned()
}
