//! The hostile behaviours the host's sandbox tests provoke, selected by the
//! `mode` option. Shared with `testkit-transform` (included there by path), so
//! both plugins misbehave the same way.
//!
//! Each behaviour must survive the optimiser: an infinite loop with no effect, an
//! allocation never read, or a recursion in tail position could be removed or
//! turned into something harmless, and the test would pass for the wrong reason.
//! `std::hint::black_box` keeps them real.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};

use weir_sdk::{Config, Error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ok,
    Loop,
    Alloc,
    Recurse,
    Panic,
    Open,
    WriteOutside,
    LogFlood,
    Busy,
    Hold,
    RecurseTo,
    PanicAfter,
    Env,
    Clock,
    Connect,
    Resolve,
    StderrFlood,
    HugeError,
    Snoop,
}

pub const MODES: &str = "ok, loop, alloc, recurse, panic, open, write-outside, log-flood, busy, hold, recurse-to, panic-after, env, clock, connect, resolve, stderr-flood, huge-error, snoop";

impl Mode {
    pub fn from_config(config: &Config) -> Result<Mode, Error> {
        let text = config.get_or("mode", "ok");
        Ok(match text.trim() {
            "ok" => Mode::Ok,
            "loop" => Mode::Loop,
            "alloc" => Mode::Alloc,
            "recurse" => Mode::Recurse,
            "panic" => Mode::Panic,
            "open" => Mode::Open,
            "write-outside" => Mode::WriteOutside,
            "log-flood" => Mode::LogFlood,
            "busy" => Mode::Busy,
            "hold" => Mode::Hold,
            "recurse-to" => Mode::RecurseTo,
            "panic-after" => Mode::PanicAfter,
            "env" => Mode::Env,
            "clock" => Mode::Clock,
            "connect" => Mode::Connect,
            "resolve" => Mode::Resolve,
            "stderr-flood" => Mode::StderrFlood,
            "huge-error" => Mode::HugeError,
            "snoop" => Mode::Snoop,
            _ => {
                return Err(Error::config(format!(
                    "option `mode`: unknown mode `{text}` (one of: {MODES})"
                )));
            }
        })
    }
}

/// Acts out `mode`. Returns `Ok` for the modes that then behave normally (`ok`,
/// `log-flood`), an error for the file modes, and never for the others.
pub fn act(mode: Mode, config: &Config) -> Result<(), Error> {
    match mode {
        Mode::Ok => Ok(()),
        Mode::Loop => spin(),
        Mode::Alloc => hoard(),
        Mode::Recurse => {
            let depth = recurse(black_box(0));
            Err(Error::internal(format!(
                "recursion returned at depth {depth}"
            )))
        }
        Mode::Panic => panic!("testkit panics on purpose"),
        Mode::Open => {
            let path = path(config, "open")?;
            Err(open(path))
        }
        Mode::WriteOutside => {
            let path = path(config, "write-outside")?;
            Err(write(path))
        }
        Mode::LogFlood => {
            flood();
            Ok(())
        }
        Mode::Busy => {
            busy(config.parse_or("iterations", 100_000_000)?);
            Ok(())
        }
        Mode::Hold => hold(config.parse_or("mb", 1)?),
        Mode::RecurseTo => {
            let target: u64 = config.parse_or("depth", 1_000)?;
            let reached = recurse_to(black_box(0), target);
            black_box(reached);
            Ok(())
        }
        Mode::PanicAfter => {
            let after: u32 = config.parse_or("after", 1)?;
            let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
            if calls > after {
                panic!("testkit panics on purpose at call {calls}");
            }
            Ok(())
        }
        Mode::Env => Err(env()),
        Mode::Clock => Err(clock()),
        Mode::Connect => Err(connect(config.get_or("addr", "127.0.0.1:9"))),
        Mode::Resolve => Err(resolve(config.get_or("host", "localhost"))),
        Mode::StderrFlood => {
            stderr_flood(config.parse_or("mb", 10)?);
            panic!("testkit panics after flooding stderr");
        }
        Mode::HugeError => {
            let mb: usize = config.parse_or("mb", 16)?;
            Err(Error::internal("e".repeat(mb << 20)))
        }
        Mode::Snoop => {
            snoop(config);
            Ok(())
        }
    }
}

/// Everything this instance can see — its config (keys and values), environment,
/// arguments, and every file name and file text under `/` it can list and read
/// (at most 64 KiB each) — appended to `/data/seen.txt`, then the call goes on
/// normally. The host proves with it that a plugin sees its own connection's
/// secrets and no other's.
fn snoop(config: &Config) {
    use std::fmt::Write as _;
    let mut seen = String::new();
    for (k, v) in config.entries() {
        let _ = writeln!(seen, "config {k}={v}");
    }
    for (k, v) in std::env::vars_os() {
        let _ = writeln!(seen, "env {k:?}={v:?}");
    }
    for a in std::env::args_os() {
        let _ = writeln!(seen, "arg {a:?}");
    }
    fn walk(dir: &std::path::Path, depth: u32, seen: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.ends_with("seen.txt") {
                continue;
            }
            let _ = writeln!(seen, "file {}", path.display());
            if path.is_dir() && depth < 4 {
                walk(&path, depth + 1, seen);
            } else if let Ok(bytes) = std::fs::read(&path) {
                seen.push_str(&String::from_utf8_lossy(
                    &bytes[..bytes.len().min(64 << 10)],
                ));
                seen.push('\n');
            }
        }
    }
    // `/` itself cannot be listed without a preopen for it; try it anyway.
    walk(std::path::Path::new("/"), 0, &mut seen);
    walk(std::path::Path::new("/data"), 0, &mut seen);
    walk(std::path::Path::new("/data/.."), 0, &mut seen);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/data/seen.txt")
        .expect("snoop writes to /data/seen.txt");
    std::io::Write::write_all(&mut file, seen.as_bytes()).expect("write /data/seen.txt");
}

/// Calls of [`Mode::PanicAfter`] so far in this instance (a fresh instance starts
/// at zero: its memory is new).
static CALLS: AtomicU32 = AtomicU32::new(0);

/// Busy work of a known size, then a normal answer: the obeyed half of a time
/// limit pair (the same work under a shorter limit is the violated half).
pub fn busy(iterations: u64) {
    let mut acc = 0u64;
    for i in 0..iterations {
        acc = black_box(acc.wrapping_add(i));
    }
    black_box(acc);
}

/// Allocates `mb` MiB, touches every page, then answers normally; an allocation
/// the limit refuses aborts (Rust's allocation failure), which the host reports
/// as its memory limit.
fn hold(mb: usize) -> Result<(), Error> {
    let held = vec![0x5au8; mb << 20];
    black_box(&held);
    Ok(())
}

/// Recurses exactly `target` frames: the obeyed half of the stack pair.
#[inline(never)]
fn recurse_to(depth: u64, target: u64) -> u64 {
    if black_box(depth) >= target {
        return depth;
    }
    let below = recurse_to(depth + 1, target);
    below.wrapping_mul(31).wrapping_add(depth)
}

/// What the environment shows: variable names (never values) and arguments.
/// Always an error; `Internal` if anything was visible.
pub fn env() -> Error {
    let names: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    let args = std::env::args_os().count();
    let cwd = std::env::current_dir().map(|p| p.display().to_string());
    let text = format!(
        "env: {} variables [{}], {args} arguments, cwd {cwd:?}",
        names.len(),
        names.join(",")
    );
    if names.is_empty() && args == 0 {
        Error::config(text)
    } else {
        Error::internal(text)
    }
}

/// What the clocks say: seconds since the Unix epoch, and how far the monotonic
/// clock moved over some busy work. Always an error, with both numbers.
pub fn clock() -> Error {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let start = std::time::Instant::now();
    busy(10_000_000);
    let moved = start.elapsed().as_nanos();
    Error::config(format!(
        "clock: wall {wall} s since the epoch, monotonic moved {moved} ns"
    ))
}

/// Opens a TCP connection to `addr`. Always an error: `Internal` if it connected.
pub fn connect(addr: &str) -> Error {
    match std::net::TcpStream::connect(addr) {
        Ok(_) => Error::internal(format!("connected to {addr}")),
        Err(err) => Error::config(format!("cannot connect to {addr}: {err}")),
    }
}

/// Resolves `host` by DNS. Always an error: `Internal` if it resolved.
pub fn resolve(host: &str) -> Error {
    use std::net::ToSocketAddrs;
    match (host, 80).to_socket_addrs() {
        Ok(addrs) => Error::internal(format!("resolved {host}: {:?}", addrs.collect::<Vec<_>>())),
        Err(err) => Error::config(format!("cannot resolve {host}: {err}")),
    }
}

/// Writes `mb` MiB to stderr, 64 KiB at a time.
fn stderr_flood(mb: usize) {
    use std::io::Write;
    let chunk = vec![b'e'; 64 << 10];
    let mut err = std::io::stderr();
    for _ in 0..(mb * 16) {
        let _ = err.write_all(&chunk);
    }
}

fn path<'a>(config: &'a Config, mode: &str) -> Result<&'a str, Error> {
    config
        .get("path")
        .ok_or_else(|| Error::config(format!("mode `{mode}` needs the option `path`")))
}

/// Reads `path`. Either way the call fails, with a message that tells the test
/// whether the sandbox let the read through.
pub fn open(path: &str) -> Error {
    match std::fs::read(path) {
        Ok(bytes) => Error::internal(format!("read {} bytes from {path}", bytes.len())),
        Err(err) => Error::config(format!("cannot open {path}: {err}")),
    }
}

/// Writes `path`, reporting like [`open`].
pub fn write(path: &str) -> Error {
    match std::fs::write(path, b"escaped") {
        Ok(()) => Error::internal(format!("wrote 7 bytes to {path}")),
        Err(err) => Error::config(format!("cannot write {path}: {err}")),
    }
}

/// Burns CPU forever: the host's fuel or epoch deadline must stop it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks forever, filling each with a non-zero byte so the pages
/// are really touched (a zeroed allocation could come from untouched memory). The
/// host's memory limit must stop it.
fn hoard() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(vec![0x5a; 1 << 20]);
        black_box(&chunks);
    }
}

/// Recurses without end: each frame adds to the result after the call returns,
/// so it is not a tail call and cannot become a loop. The host's wasm stack limit
/// must stop it ("call stack exhausted"). Frames keep their state in wasm locals,
/// not in linear memory: a buffer per frame would overflow Rust's shadow stack
/// first and trap as an out-of-bounds access instead, never reaching the limit the
/// test is about. The impossible exit keeps the compiler from flagging (or
/// exploiting) an unconditional recursion.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    let below = recurse(depth.wrapping_add(1));
    below.wrapping_mul(31).wrapping_add(depth)
}

/// Logs 100 000 lines of 1 KiB: the host must bound what it keeps.
fn flood() {
    let message = "x".repeat(1024);
    for _ in 0..100_000 {
        weir_sdk::log::info(&message, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::from_config(&Config::default()).unwrap(), Mode::Ok);
        assert_eq!(
            Mode::from_config(&config(&[("mode", "write-outside")])).unwrap(),
            Mode::WriteOutside
        );
        assert_eq!(
            Mode::from_config(&config(&[("mode", "log-flood")])).unwrap(),
            Mode::LogFlood
        );
        let err = Mode::from_config(&config(&[("mode", "explode")])).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig(m) if m.contains("`explode`")),
            "{err}"
        );
        assert_eq!(act(Mode::Ok, &Config::default()), Ok(()));
    }

    #[test]
    fn file_modes_report_what_happened() {
        let dir = std::env::temp_dir().join(format!(
            "weir-testkit-{}-{}",
            env!("CARGO_PKG_NAME"),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f.txt");
        let file = file.to_str().unwrap();
        assert_eq!(
            act(Mode::WriteOutside, &config(&[("path", file)])),
            Err(Error::internal(format!("wrote 7 bytes to {file}")))
        );
        assert_eq!(
            act(Mode::Open, &config(&[("path", file)])),
            Err(Error::internal(format!("read 7 bytes from {file}")))
        );
        let missing = format!("{file}.missing");
        assert!(matches!(
            act(Mode::Open, &config(&[("path", &missing)])),
            Err(Error::InvalidConfig(m)) if m.starts_with(&format!("cannot open {missing}: "))
        ));
        let nowhere = format!("{file}.missing/x");
        assert!(matches!(
            act(Mode::WriteOutside, &config(&[("path", &nowhere)])),
            Err(Error::InvalidConfig(m)) if m.starts_with(&format!("cannot write {nowhere}: "))
        ));
        assert_eq!(
            act(Mode::Open, &Config::default()),
            Err(Error::config("mode `open` needs the option `path`"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[should_panic(expected = "testkit panics on purpose")]
    fn panic_mode_panics() {
        let _ = act(Mode::Panic, &Config::default());
    }
}
