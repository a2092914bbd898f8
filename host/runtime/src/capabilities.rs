//! Every capability check in one place: what a plugin instance may touch.
//!
//! Deny by default. A [`Grants`] value is built from a connection's configuration
//! and is the only way a plugin gets a directory or an outgoing HTTP host. No
//! environment variables, arguments, stdin, real clocks or sockets are ever given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime_wasi::{FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

/// The guest path at which a granted directory appears.
pub const GUEST_DATA_DIR: &str = "/data";

/// What one connection (or transform step) grants its plugin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// A host directory the plugin sees as [`GUEST_DATA_DIR`], read-write.
    pub directory: Option<PathBuf>,
    /// What the plugin may call through the `http` import: `api.example.com`
    /// (any port), `api.example.com:8443` (that port only), optionally followed by
    /// a path prefix (`api.example.com/v2/`). Empty: no HTTP at all.
    ///
    /// A host granted by *name* may reach public addresses only: the addresses
    /// it resolves to are checked when the host connects (loopback, private,
    /// link-local, CGNAT, ... are refused), unless [`Grants::http_internal`] is
    /// set. A host granted as an IP literal (`10.0.0.5`, `127.0.0.1:8080`,
    /// `[::1]:9000`) is an explicit choice and is reached whatever it is.
    pub http_hosts: Vec<String>,
    /// Lets hosts granted by name resolve to internal addresses (loopback,
    /// private, link-local, ...), for on-premise systems. Default `false`.
    pub http_internal: bool,
    /// Credentials the host adds to the plugin's requests (the plugin never sees
    /// them).
    pub http_auth: Option<HttpAuth>,
    /// Timeouts and size caps of the plugin's requests.
    pub http_limits: HttpLimits,
    /// The one PostgreSQL database the plugin may use through the
    /// `weir:sql/postgres` import. `None`: every call of it is denied.
    pub postgres: Option<PostgresGrant>,
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
            ..Grants::default()
        }
    }

    /// The secret values in these grants, to scrub from any text shown or logged.
    pub fn secrets(&self) -> Vec<&str> {
        let mut secrets = self
            .http_auth
            .as_ref()
            .map_or_else(Vec::new, HttpAuth::secrets);
        if let Some(password) = self.postgres.as_ref().and_then(|p| p.password.as_ref()) {
            secrets.push(password.expose());
        }
        secrets
    }

    /// A redactor for these grants' secrets, with the forms they travel in too
    /// (Basic auth's `base64(username:password)`), since a server may echo the
    /// header it received.
    pub fn redactor(&self) -> crate::redact::Redactor {
        use base64::Engine as _;
        let mut r = crate::redact::Redactor::new();
        r.extend(self.secrets());
        if let Some(HttpAuth::Basic { username, password }) = &self.http_auth {
            r.add(
                &base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose())),
            );
        }
        r
    }
}

/// The scope of a plugin's key-index tables (`weir:kv/index`): its connection's
/// granted directory, so a table describes files the plugin may write and no
/// other connection's. No directory grant, no tables.
pub(crate) fn check_kv(grants: &Grants) -> Result<&Path, String> {
    grants.directory.as_deref().ok_or_else(|| {
        "this connection is granted no directory, so it keeps no key index".to_owned()
    })
}

/// The PostgreSQL database a connection's plugin may reach: the host connects
/// here and nowhere else, with these credentials; the plugin names no address
/// and never sees the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresGrant {
    /// A host name or IP address (or, starting with `/`, a Unix socket
    /// directory).
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// The database the connection may use (the only one).
    pub dbname: String,
    /// The role the host logs in as.
    pub user: String,
    /// Its password; `None` for trust or peer authentication.
    pub password: Option<Secret>,
}

impl PostgresGrant {
    /// `host:port/dbname`, for messages (no user, no password).
    pub fn address(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }

    /// Checks the grant's values (for project validation).
    pub fn validate(&self) -> Result<(), String> {
        for (what, value) in [
            ("host", &self.host),
            ("dbname", &self.dbname),
            ("user", &self.user),
        ] {
            if value.trim().is_empty() || value.contains('\0') {
                return Err(format!("postgres.{what}: must not be empty"));
            }
        }
        if self.host.contains(char::is_whitespace) {
            return Err(format!("postgres.host: `{}` is not a host name", self.host));
        }
        if self.port == 0 {
            return Err("postgres.port: must be 1 to 65535".to_owned());
        }
        Ok(())
    }
}

/// Decides whether a plugin may use the `weir:sql/postgres` import: only with a
/// grant, and then only the granted database. `Err` names the reason; nothing
/// is sent then.
pub(crate) fn check_postgres(grants: &Grants) -> Result<&PostgresGrant, String> {
    grants.postgres.as_ref().ok_or_else(|| {
        "denied: this connection grants no PostgreSQL database (grants.postgres)".to_owned()
    })
}

/// A credential value (a token, a password): held in a `secrecy::SecretString`, so it is
/// zeroed when dropped and never printed (`Debug` shows `Secret(..)`); handed out only by
/// [`Secret::expose`] to the code that sends it.
pub struct Secret(secrecy::SecretString);

impl Secret {
    /// Wraps a credential value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(secrecy::SecretString::from(value.into()))
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        use secrecy::ExposeSecret;
        self.0.expose_secret()
    }
}

// A copy is another zeroed-on-drop box, not a shared one.
impl Clone for Secret {
    fn clone(&self) -> Secret {
        Secret::new(self.expose())
    }
}

// Grants are compared (config reloads, tests); the value is compared, never printed.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Credentials the host injects into every request a connection's plugin sends
/// to a granted host (and drops when a redirect leaves the request's origin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpAuth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// `Authorization: Basic base64(username:password)`.
    Basic {
        /// The user name (not secret).
        username: String,
        /// The password.
        password: Secret,
    },
    /// `<header>: <key>` (e.g. `X-API-Key`).
    ApiKey {
        /// The header's name.
        header: String,
        /// Its value.
        key: Secret,
    },
    /// OAuth2 client credentials: the host fetches a token from `token_url`
    /// (which must be granted too), caches it until it expires and sends it as a
    /// bearer token.
    OAuth2ClientCredentials {
        /// Where tokens are requested (`grant_type=client_credentials`).
        token_url: String,
        /// The client's id.
        client_id: String,
        /// The client's secret.
        client_secret: Secret,
        /// The scope asked for, if any.
        scope: Option<String>,
    },
}

impl HttpAuth {
    /// The secret values, to scrub from text.
    pub fn secrets(&self) -> Vec<&str> {
        match self {
            HttpAuth::Bearer { token } => vec![token.expose()],
            HttpAuth::Basic { password, .. } => vec![password.expose()],
            HttpAuth::ApiKey { key, .. } => vec![key.expose()],
            HttpAuth::OAuth2ClientCredentials { client_secret, .. } => {
                vec![client_secret.expose()]
            }
        }
    }

    /// What kind of credential it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpAuth::Bearer { .. } => "bearer",
            HttpAuth::Basic { .. } => "basic",
            HttpAuth::ApiKey { .. } => "api_key",
            HttpAuth::OAuth2ClientCredentials { .. } => "oauth2_client_credentials",
        }
    }
}

/// Bounds on one outgoing request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// The longest one request (connect, send, read the whole body) may take
    /// (default 30 s). Never longer than what is left of the plugin call's own
    /// time limit.
    pub timeout: Duration,
    /// The largest response body accepted (default 16 MiB); a larger one is cut
    /// off and reported as `too-large`.
    pub max_response_bytes: u64,
    /// Redirects followed per request (default 5); each hop is checked against
    /// the allow-list.
    pub max_redirects: u32,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            timeout: Duration::from_secs(30),
            max_response_bytes: 16 << 20,
            max_redirects: 5,
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
/// stderr captured into a bounded buffer (its tail), and nothing else.
pub(crate) fn wasi_ctx(
    grants: &Grants,
    stderr: &super::stderr::TailPipe,
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

/// One parsed `http_hosts` entry: `host[:port][/path-prefix]`.
struct HostGrant {
    host: String,
    port: Option<u16>,
    /// Starts with `/`; `None` allows every path.
    path: Option<String>,
}

fn parse_host_grant(grant: &str) -> Result<HostGrant, String> {
    let bad = |why: &str| Err(format!("http host grant `{grant}`: {why}"));
    if grant.contains("://") {
        return bad("write the host without a scheme (`api.example.com/v2/`)");
    }
    if grant.contains(['@', '?', '#', ' ']) {
        return bad("only `host[:port][/path-prefix]` is allowed");
    }
    let (authority, path) = match grant.find('/') {
        Some(i) => (&grant[..i], Some(grant[i..].to_owned())),
        None => (grant, None),
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]:8080`.
        let Some((h, tail)) = rest.split_once(']') else {
            return bad("unclosed `[`");
        };
        (format!("[{h}]"), tail.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return bad("no host");
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(p) => Some(p),
            Err(_) => return bad("the port is not a number"),
        },
    };
    if path.as_deref().is_some_and(|p| p.contains("..")) {
        return bad("a path prefix cannot contain `..`");
    }
    Ok(HostGrant {
        host: host.to_ascii_lowercase(),
        port,
        path,
    })
}

/// Checks an `http_hosts` entry's syntax (for project validation).
pub fn validate_host_grant(grant: &str) -> Result<(), String> {
    parse_host_grant(grant).map(drop)
}

fn path_allowed(prefix: &str, path: &str) -> bool {
    let bare = prefix.trim_end_matches('/');
    if bare.is_empty() {
        return true;
    }
    path == bare || path.starts_with(&format!("{bare}/"))
}

/// Decides whether a plugin may send a request to `url` (also every redirect
/// hop and the OAuth2 token URL). `Err` names the reason; nothing is sent then.
///
/// The URL is parsed and normalised (WHATWG rules: case, default ports, `.` and
/// `..` segments, also percent-encoded ones) before it is compared, so the host
/// and path checked are the ones the request goes to. Only `http` and `https`
/// pass; a URL with credentials is refused; with a path-prefix grant, a path with
/// an encoded `/` or `\` is refused (a server could decode it into `..`).
/// Names are not resolved here: the addresses a granted name resolves to are
/// checked when the request connects (by [`check_public`]), so that a name
/// whose answer changes between a check and the connection (DNS rebinding)
/// cannot slip through.
pub(crate) fn check_http(grants: &Grants, url: &str) -> Result<reqwest::Url, String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("`{url}`: credentials in URLs are refused"));
    }
    let Some(host) = parsed.host_str().map(str::to_ascii_lowercase) else {
        return Err(format!("`{url}` names no host"));
    };
    let port = parsed.port_or_known_default();
    let path = parsed.path();
    if grants.http_hosts.is_empty() {
        return Err("host not in allow-list: this connection grants no HTTP access".to_owned());
    }
    let mut host_matched = false;
    for grant in &grants.http_hosts {
        let Ok(g) = parse_host_grant(grant) else {
            continue;
        };
        if g.host != host || g.port.is_some_and(|p| Some(p) != port) {
            continue;
        }
        host_matched = true;
        match &g.path {
            None => return Ok(parsed),
            Some(prefix) => {
                let lower = path.to_ascii_lowercase();
                if !lower.contains("%2f") && !lower.contains("%5c") && path_allowed(prefix, path) {
                    return Ok(parsed);
                }
            }
        }
    }
    let granted = grants.http_hosts.join(", ");
    let shown = match port {
        Some(p) if Some(p) != default_port(parsed.scheme()) => format!("{host}:{p}"),
        _ => host,
    };
    if host_matched {
        Err(format!(
            "path not in allow-list: `{shown}{path}` is outside the paths granted to this connection (granted: {granted})"
        ))
    } else {
        Err(format!(
            "host not in allow-list: `{shown}` is not granted to this connection (granted: {granted})"
        ))
    }
}

/// What kind of internal address `ip` is (`"loopback"`, `"private"`,
/// `"link-local"`, ...), or `None` for a public one.
///
/// Internal: loopback (127/8, `::1`), private (10/8, 172.16/12, 192.168/16,
/// `fc00::/7`, the deprecated site-local `fec0::/10`), link-local (169.254/16
/// with the cloud metadata address 169.254.169.254, `fe80::/10`), unspecified
/// (0/8, `::`), shared CGNAT space (100.64/10), multicast, broadcast and the
/// reserved 240/4. An IPv6 address that carries an IPv4 one (mapped
/// `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16`) is judged by the IPv4 address in it.
pub(crate) fn internal_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("link-local, cloud metadata")
    } else if a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("shared CGNAT")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64).
    if (s[..5] == [0; 5] && matches!(s[5], 0 | 0xffff)) || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return internal_v4(embedded(s[6], s[7]));
    }
    // 6to4: 2002:aabb:ccdd::/48 carries a.b.c.d.
    if s[0] == 0x2002 {
        return internal_v4(embedded(s[1], s[2]));
    }
    if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
        Some("private")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// [`check_public`] for plugin HTTP, as the tests call it.
#[cfg(test)]
fn check_resolved(name: &str, addresses: &[IpAddr]) -> Result<(), String> {
    check_public(name, addresses, AddressUse::PluginHttp)
}

/// Who asks to reach an address, for the reason given when it is internal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddressUse {
    /// A plugin's request to a host granted by name.
    PluginHttp,
    /// A project's webhook (name or IP literal alike: the project's author is
    /// not the administrator, so a literal is no explicit choice here).
    Webhook,
}

/// Decides whether a host may be connected to at the addresses it resolved to
/// (a plugin's host granted by name when the grants do not allow internal
/// addresses, [`Grants::http_internal`]; a webhook unless the administrator
/// allows internal ones): every one must be public. `Err` names the host, the
/// first internal address and how to allow it; nothing is sent then.
pub(crate) fn check_public(name: &str, addresses: &[IpAddr], by: AddressUse) -> Result<(), String> {
    let Some((ip, kind)) = addresses
        .iter()
        .find_map(|ip| internal_address(*ip).map(|kind| (ip, kind)))
    else {
        return Ok(());
    };
    let resolves = if name.parse::<IpAddr>().is_ok() {
        format!("{ip} is")
    } else {
        format!("`{name}` resolves to {ip},")
    };
    Err(match by {
        AddressUse::PluginHttp => format!(
            "{resolves} an internal ({kind}) address; a host granted by name \
             may reach public addresses only: to allow internal ones, set \
             `http_internal = true` in the connection's grants (project file; \
             `--http-internal` for a stored connection), or grant and use the address itself"
        ),
        AddressUse::Webhook => format!(
            "webhook refused: {resolves} an internal ({kind}) address; webhooks go to public \
             addresses only unless the administrator sets `allow_internal_webhooks = true` \
             in `[notify]` of `weir serve --config`"
        ),
    })
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
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
            http_hosts: vec!["api.example.com".into()],
            ..Grants::none()
        };
        assert!(check_http(&grants, "https://api.example.com/v1/items?x=1").is_ok());
        assert!(check_http(&grants, "https://API.example.com:443/").is_ok());
        let err = check_http(&grants, "https://evil.example.com/").unwrap_err();
        assert!(err.contains("evil.example.com"), "{err}");
        assert!(err.starts_with("host not in allow-list"), "{err}");
        // A userinfo trick must not pass as the granted host.
        assert!(check_http(&grants, "https://api.example.com@evil.com/").is_err());
        assert!(check_http(&grants, "https://evil.com#@api.example.com/").is_err());
        assert!(check_http(&grants, "https://evil.com\\@api.example.com/").is_err());
        assert!(check_http(&grants, "file:///etc/passwd").is_err());
        assert!(check_http(&grants, "ftp://api.example.com/").is_err());
    }

    #[test]
    fn ports_and_path_prefixes_narrow_a_grant() {
        let grants = Grants {
            http_hosts: vec!["api.example.com/v2/".into(), "127.0.0.1:8080".into()],
            ..Grants::none()
        };
        assert!(check_http(&grants, "https://api.example.com/v2/items").is_ok());
        assert!(check_http(&grants, "https://api.example.com/v2").is_ok());
        for refused in [
            "https://api.example.com/v2admin",
            "https://api.example.com/admin",
            "https://api.example.com/v2/../admin",
            "https://api.example.com/v2/%2e%2e/admin",
            "https://api.example.com/v2/..%2Fadmin",
        ] {
            let err = check_http(&grants, refused).unwrap_err();
            assert!(
                err.starts_with("path not in allow-list"),
                "{refused}: {err}"
            );
        }
        assert!(check_http(&grants, "http://127.0.0.1:8080/x").is_ok());
        assert!(check_http(&grants, "http://127.0.0.1:8081/x").is_err());
        assert!(check_http(&grants, "http://127.0.0.1/x").is_err());
        assert!(validate_host_grant("https://api.example.com").is_err());
        assert!(validate_host_grant("api.example.com:x").is_err());
        assert!(validate_host_grant("[::1]:80/a/").is_ok());
    }

    #[test]
    fn internal_addresses_are_classified_by_range() {
        let kind = |ip: &str| internal_address(ip.parse().unwrap());
        for (ip, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("::1", "loopback"),
            ("10.0.0.5", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("fc00::1", "private"),
            ("fd12:3456::1", "private"),
            ("fec0::1", "private"),
            ("169.254.1.1", "link-local"),
            ("169.254.169.254", "link-local, cloud metadata"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("100.64.0.1", "shared CGNAT"),
            ("100.127.255.255", "shared CGNAT"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            // IPv6 forms that carry an IPv4 address are judged by it.
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("::ffff:169.254.169.254", "link-local, cloud metadata"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::192.168.0.1", "private"),
            ("2002:7f00:1::", "loopback"),
        ] {
            assert_eq!(kind(ip), Some(expected), "{ip}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "1.0.0.1",
            "223.255.255.255",
            "::ffff:93.184.216.34",
            "64:ff9b::93.184.216.34",
            "2002:5db8:d822::1",
            "2606:2800:220:1:248:1893:25c8:1946",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(kind(public), None, "{public}");
        }
    }

    #[test]
    fn a_name_resolving_to_an_internal_address_is_refused() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert!(check_resolved("api.example.com", &[ip("93.184.216.34")]).is_ok());
        let err = check_resolved("localhost", &[ip("127.0.0.1")]).unwrap_err();
        assert!(
            err.starts_with("`localhost` resolves to 127.0.0.1, an internal (loopback) address"),
            "{err}"
        );
        assert!(err.contains("`http_internal = true`"), "{err}");
        // One internal address among public ones is enough to refuse.
        let err = check_resolved(
            "mixed.example.com",
            &[ip("93.184.216.34"), ip("::ffff:169.254.169.254")],
        )
        .unwrap_err();
        assert!(
            err.contains(
                "resolves to ::ffff:169.254.169.254, an internal (link-local, cloud metadata)"
            ),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let grants = Grants {
            http_auth: Some(HttpAuth::Basic {
                username: "u".into(),
                password: Secret::new("hunter2-secret"),
            }),
            ..Grants::none()
        };
        assert!(!format!("{grants:?}").contains("hunter2"));
        assert_eq!(grants.secrets(), vec!["hunter2-secret"]);
    }

    #[test]
    fn postgres_is_denied_without_a_grant_and_its_password_is_a_secret() {
        assert!(
            check_postgres(&Grants::none())
                .unwrap_err()
                .starts_with("denied")
        );
        let grant = PostgresGrant {
            host: "127.0.0.1".into(),
            port: 5432,
            dbname: "crm".into(),
            user: "weir".into(),
            password: Some(Secret::new("pg-password-1")),
        };
        let grants = Grants {
            postgres: Some(grant.clone()),
            ..Grants::none()
        };
        assert_eq!(
            check_postgres(&grants).unwrap().address(),
            "127.0.0.1:5432/crm"
        );
        assert!(!format!("{grants:?}").contains("pg-password-1"));
        assert_eq!(grants.secrets(), vec!["pg-password-1"]);
        assert!(grant.validate().is_ok());
        let empty = PostgresGrant {
            dbname: " ".into(),
            ..grant
        };
        assert!(empty.validate().unwrap_err().starts_with("postgres.dbname"));
    }
}
