//! Every capability check in one place: what a plugin instance may touch.
//!
//! Deny by default. A [`Grants`] value is built from a connection's configuration
//! and is the only way a plugin gets a directory or an outgoing HTTP host. No
//! environment variables, arguments, stdin, real clocks or sockets are ever given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// The guest path at which a granted directory appears.
pub const GUEST_DATA_DIR: &str = "/data";

/// What one connection (or transform step) grants its plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// A host directory the plugin sees as [`GUEST_DATA_DIR`], read-write.
    pub directory: Option<PathBuf>,
    /// Hosts (`api.example.com`, optionally `host:port`) the plugin may call through
    /// the `http` import. Empty: no HTTP at all.
    pub http_hosts: Vec<String>,
}

impl Grants {
    /// Grants nothing.
    pub fn none() -> Grants {
        Grants::default()
    }

    /// Grants one directory.
    pub fn directory(dir: impl Into<PathBuf>) -> Grants {
        Grants {
            directory: Some(dir.into()),
            http_hosts: Vec::new(),
        }
    }
}

/// A clock frozen at the Unix epoch: plugins get no time source, so a plugin
/// cannot time side channels or behave differently by date.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Builds the WASI context for one instance: the granted directory (if any),
/// stderr captured into a bounded buffer, and nothing else.
pub(crate) fn wasi_ctx(
    grants: &Grants,
    stderr: &MemoryOutputPipe,
) -> Result<WasiCtx, std::io::Error> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stderr(stderr.clone())
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        // File I/O runs on the calling thread: calls are synchronous already, and
        // handing each read to a blocking pool costs more than the read.
        .allow_blocking_current_thread(true);
    if let Some(dir) = &grants.directory {
        builder
            .preopened_dir(dir, GUEST_DATA_DIR, FsPerms::ReadWrite)
            .map_err(|e| {
                std::io::Error::other(format!("cannot grant directory {}: {e}", dir.display()))
            })?;
    }
    Ok(builder.build())
}

/// Decides whether a plugin may send a request to `url`. `Err` names the reason;
/// nothing is sent then.
pub(crate) fn check_http(grants: &Grants, url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return Err(format!("`{url}` is not an http(s) URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("`{url}`: credentials in URLs are refused"));
    }
    let host = authority.to_ascii_lowercase();
    let host_only = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let granted = grants
        .http_hosts
        .iter()
        .any(|g| g.eq_ignore_ascii_case(&host) || g.eq_ignore_ascii_case(host_only));
    if granted {
        Ok(())
    } else if grants.http_hosts.is_empty() {
        Err("this connection grants no HTTP access".to_owned())
    } else {
        Err(format!(
            "host `{host}` is not granted to this connection (granted: {})",
            grants.http_hosts.join(", ")
        ))
    }
}

/// Canonicalizes a directory grant, refusing a missing path or a file.
pub fn resolve_directory(dir: &Path) -> Result<PathBuf, std::io::Error> {
    let canonical = dir.canonicalize()?;
    if !canonical.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_denied_without_a_grant_and_allowed_with_one() {
        let none = Grants::none();
        assert!(check_http(&none, "https://api.example.com/x").is_err());
        let grants = Grants {
            directory: None,
            http_hosts: vec!["api.example.com".into()],
        };
        assert!(check_http(&grants, "https://api.example.com/v1/items?x=1").is_ok());
        assert!(check_http(&grants, "https://API.example.com:443/").is_ok());
        let err = check_http(&grants, "https://evil.example.com/").unwrap_err();
        assert!(err.contains("evil.example.com"), "{err}");
        // A userinfo trick must not pass as the granted host.
        assert!(check_http(&grants, "https://api.example.com@evil.com/").is_err());
        assert!(check_http(&grants, "file:///etc/passwd").is_err());
    }
}
