//! The host side of the `http` import: outgoing requests on a plugin's behalf.
//!
//! Exactly what happens to one `http.send`:
//!
//! 1. **Checks, before any packet leaves.** The method must be one of `GET`,
//!    `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`; header names and values must be
//!    valid, and the framing and hop-by-hop headers (`host`, `content-length`,
//!    `transfer-encoding`, `connection`, ...) are the host's, not the plugin's
//!    (`invalid-request`). The URL must pass [`capabilities::check_http`]: `http`
//!    or `https`, a granted host (and port and path prefix, if the grant names
//!    them), no credentials in the URL (`denied`, starting "host not in
//!    allow-list" or "path not in allow-list").
//!
//!    **Addresses, at connect time.** A host granted by *name* may reach public
//!    addresses only. The client resolves names through [`PublicOnly`], which
//!    refuses the connection when the name resolves to any internal address
//!    (loopback, private, link-local with the cloud metadata address,
//!    unspecified, CGNAT, multicast, broadcast, reserved, and the IPv6 forms
//!    carrying one of these: [`capabilities::internal_address`]): `denied`,
//!    "`localhost` resolves to 127.0.0.1, an internal (loopback) address; ...",
//!    and nothing is sent. The check is on the very addresses the connection
//!    then uses, not on an earlier look-up, so a name that answers differently
//!    between a check and the connection (DNS rebinding) cannot slip through;
//!    a connection kept in the pool was checked when it was made. A host
//!    granted as an IP literal (`10.0.0.5`, `127.0.0.1:8080`, `[::1]:9000`) is
//!    an explicit choice: literals are not resolved and not checked. A
//!    connection with `http_internal` ([`Grants::http_internal`], for
//!    on-premise systems) resolves names with the system resolver as is: the
//!    runtime keeps one client of each kind, and each call takes the one its
//!    grants say.
//! 2. **Credentials** come from the connection's grants ([`HttpAuth`]), never
//!    from the plugin: a bearer token, basic auth, an API key header, or an
//!    OAuth2 client-credentials token. A header the plugin set with the same name
//!    (`authorization`, or the API key header) is replaced. The OAuth2 token is
//!    fetched by the host from the token URL (which must be granted too), cached
//!    per runtime until shortly before it expires (a tenth of its lifetime, at
//!    most 30 s, early), and fetched again once if the API answers 401 to a
//!    cached token. Credentials are sent on redirects only while the hop stays on
//!    the first request's origin (scheme, host, port).
//! 3. **Time.** Each request (connect, send, read the whole body) is bounded by
//!    [`HttpLimits::timeout`] and by what is left of the plugin call's own time
//!    limit, minus a small margin so the plugin still gets `timeout` back and can
//!    answer before its deadline stops it (the epoch deadline keeps ticking while
//!    the host blocks). Connecting alone is bounded by 10 s.
//! 4. **Redirects** (301, 302, 303, 307, 308) are followed by the host, at most
//!    [`HttpLimits::max_redirects`] hops; every hop passes the same allow-list
//!    check, and a hop outside it ends the request with `denied` (nothing is sent
//!    to it). 303, and 301/302 after a `POST`, continue as a `GET` without a body.
//! 5. **Size.** The body is read as a stream and reading stops at
//!    [`HttpLimits::max_response_bytes`] (a `Content-Length` above it is refused
//!    without reading): `too-large(limit)`.
//! 6. **Retries.** The host retries by itself only when the server said when to:
//!    a `429` or `503` with `Retry-After` (seconds or an HTTP date) of at most
//!    30 s is retried after that wait, at most 3 times per `send`, and only if
//!    the wait and another attempt fit in the call's remaining time. Otherwise the
//!    response (429, 5xx, anything) is handed to the plugin, which decides:
//!    `weir_sdk::http` turns 429 and 5xx into a *transient* error, which the
//!    engine retries with the project's retry policy. Connect failures, TLS
//!    failures and timeouts are not retried by the host (the request may have
//!    been processed): they come back as `transport` ("host unreachable: ...",
//!    "TLS failure: ...") or `timeout`, both retryable for the plugin;
//!    `denied`, `invalid-request` and `too-large` are not.
//! 7. **Proxies.** The system's proxy settings (`HTTPS_PROXY`, `NO_PROXY`, ...)
//!    are honoured; the allow-list applies to the URL, whatever the route. The
//!    address check of point 1 cannot: through a proxy, the *proxy* resolves
//!    the granted name, so a name that resolves internally there is not seen
//!    by the host (keep internal names out of the proxy's reach, or in
//!    `NO_PROXY`). The proxies' own names (from `HTTP_PROXY`, `HTTPS_PROXY`,
//!    `ALL_PROXY` and their lowercase forms) are exempt from the check: the
//!    operator chose them, and they often resolve to a private address.
//! 8. **Redaction.** Logs name the method, the URL without its query, the status,
//!    the size and the time; never a header value. Every error text has the
//!    connection's secrets (and the current OAuth2 token) scrubbed out.
//!
//! The client is reqwest's *blocking* client, one per [`super::Runtime`] and
//! kind of name resolution (connection pooling across calls and instances):
//! plugin calls are synchronous and run on plain threads (or tokio's blocking
//! pool), never on an async task, so blocking the calling thread is what the
//! call does anyway; an async client would need a runtime handle to block on,
//! for no gain.

use std::collections::HashMap;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Url;
use reqwest::blocking::Client;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::capabilities::{self, Grants, HttpAuth, Secret};

/// How long connecting alone may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time kept back from the call's deadline, so the plugin can answer a timeout.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);
/// The longest `Retry-After` the host waits out itself.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Retries after `Retry-After` per `send`.
const RETRY_AFTER_ATTEMPTS: u32 = 3;
/// The largest token endpoint answer read.
const MAX_TOKEN_RESPONSE: u64 = 64 << 10;
/// Headers the host sets (framing, hop-by-hop, routing); a plugin may not.
const HOST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// A request as the plugin sent it.
#[derive(Clone, Debug)]
pub(crate) struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A response handed to the plugin.
#[derive(Clone, Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a request failed (the WIT `http-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HttpFailure {
    Denied(String),
    InvalidRequest(String),
    Timeout,
    Transport(String),
    TooLarge(u64),
}

struct CachedToken {
    token: Secret,
    expires: Instant,
}

/// The runtime's HTTP clients and OAuth2 token cache, shared by every instance.
pub(crate) struct HttpClient {
    /// Names resolved through [`PublicOnly`]: for connections without
    /// `http_internal`.
    public_only: OnceLock<Result<Client, String>>,
    /// Names resolved by the system resolver as is: for connections with
    /// `http_internal`. Separate, so that no pooled connection to an internal
    /// address serves a connection that may not reach it.
    internal: OnceLock<Result<Client, String>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl HttpClient {
    pub fn new() -> HttpClient {
        HttpClient {
            public_only: OnceLock::new(),
            internal: OnceLock::new(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The client for grants that do (`http_internal`) or do not allow internal
    /// addresses, built on first use (a runtime that never sends HTTP never
    /// starts reqwest's background thread).
    fn client(&self, http_internal: bool) -> Result<&Client, HttpFailure> {
        let cell = if http_internal {
            &self.internal
        } else {
            &self.public_only
        };
        cell.get_or_init(|| {
            let mut builder = Client::builder()
                // Redirects are followed in `send`, each hop checked against the
                // connection's allow-list: one shared client cannot know it.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(None)
                .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")));
            if !http_internal {
                builder = builder.dns_resolver(Arc::new(PublicOnly {
                    proxies: proxy_hosts(|var| std::env::var(var).ok()),
                    by: capabilities::AddressUse::PluginHttp,
                }));
            }
            builder
                .build()
                .map_err(|e| format!("cannot start the HTTP client: {e}"))
        })
        .as_ref()
        .map_err(|e| HttpFailure::Transport(e.clone()))
    }

    /// Sends `request` for `plugin` under `grants`, finishing before `deadline`
    /// (see the module documentation for the exact behaviour).
    pub fn send(
        &self,
        plugin: &str,
        grants: &Grants,
        deadline: Instant,
        request: HttpRequest,
    ) -> Result<HttpResponse, HttpFailure> {
        let mut call = Call {
            http: self,
            plugin,
            grants,
            deadline,
            token: None,
        };
        let result = call.send(request);
        result.map_err(|failure| {
            let failure = call.scrub_failure(failure);
            if matches!(failure, HttpFailure::Timeout | HttpFailure::Transport(_)) {
                tracing::warn!(plugin = %plugin, error = ?failure, "HTTP request failed");
            }
            failure
        })
    }
}

/// The system resolver with every answer checked
/// ([`capabilities::check_public`]): a name that resolves to an internal
/// address fails to resolve, with an [`InternalAddress`] error, and so is
/// never connected to. reqwest does not resolve IP literals, so they pass as
/// they are.
struct PublicOnly {
    /// The configured proxies' names (lowercase), exempt from the check.
    proxies: Vec<String>,
    /// Whose request it is, for the refusal's advice.
    by: capabilities::AddressUse,
}

/// The resolver webhooks use: the same check as plugin HTTP
/// ([`capabilities::check_public`]) on the addresses the connection will use.
pub fn webhook_resolver() -> Arc<impl reqwest::dns::Resolve + use<>> {
    Arc::new(PublicOnly {
        proxies: proxy_hosts(|var| std::env::var(var).ok()),
        by: capabilities::AddressUse::Webhook,
    })
}

/// A webhook address whose host is an IP literal, which no resolver sees:
/// refused when internal.
pub fn check_webhook_literal(url: &str) -> Result<(), String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Ok(());
    };
    let host = parsed.host_str().unwrap_or_default();
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    capabilities::check_public(&ip.to_string(), &[ip], capabilities::AddressUse::Webhook)
}

/// The refusal of an internal address somewhere in `e`'s sources, if that is why
/// it failed.
pub fn internal_address_refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(internal) = err.downcast_ref::<InternalAddress>() {
            return Some(internal.0.clone());
        }
        source = err.source();
    }
    None
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_ascii_lowercase();
        let exempt = self.proxies.contains(&name);
        let by = self.by;
        Box::pin(async move {
            // getaddrinfo on tokio's blocking pool, as reqwest's own resolver does.
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !exempt {
                let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
                capabilities::check_public(&name, &ips, by).map_err(InternalAddress)?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                Box::new(addrs.into_iter()) as reqwest::dns::Addrs
            )
        })
    }
}

/// A granted name resolved to an internal address: the reason, for `denied`.
#[derive(Debug)]
struct InternalAddress(String);

impl std::fmt::Display for InternalAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InternalAddress {}

/// The host names of the proxies reqwest takes from the environment
/// (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, upper or lower case), lowercase;
/// `var` reads one variable.
fn proxy_hosts(var: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut hosts: Vec<String> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .filter_map(|name| {
        let value = var(name)?;
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        // A proxy without a scheme is an http one, as reqwest reads it.
        let url = if value.contains("://") {
            Url::parse(value)
        } else {
            Url::parse(&format!("http://{value}"))
        };
        Some(url.ok()?.host_str()?.to_ascii_lowercase())
    })
    .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// One `send`: its grants, deadline and the token in use.
struct Call<'a> {
    http: &'a HttpClient,
    plugin: &'a str,
    grants: &'a Grants,
    deadline: Instant,
    /// The OAuth2 token of this call and whether it came from the cache.
    token: Option<(Secret, bool)>,
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_ascii_lowercase),
        url.port_or_known_default(),
    )
}

/// The URL without its query or fragment, for logs.
fn loggable(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

impl Call<'_> {
    fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpFailure> {
        let method = parse_method(&request.method)?;
        let mut headers = parse_headers(&request.headers)?;
        let mut url = capabilities::check_http(self.grants, &request.url).map_err(|reason| {
            tracing::warn!(plugin = %self.plugin, %reason, "HTTP request denied");
            HttpFailure::Denied(reason)
        })?;
        if let Some(auth) = &self.grants.http_auth {
            // The host's credential replaces whatever the plugin put there.
            headers.remove(reqwest::header::AUTHORIZATION);
            if let HttpAuth::ApiKey { header, .. } = auth {
                if let Ok(name) = HeaderName::from_bytes(header.as_bytes()) {
                    headers.remove(name);
                }
            }
        }
        let first_origin = origin(&url);
        let mut method = method;
        let mut body = request.body;
        let mut hops = 0u32;
        let mut waits = 0u32;
        let mut refreshed = false;
        loop {
            let with_auth = origin(&url) == first_origin;
            let response = self
                .attempt(&method, &url, &headers, &body, with_auth)
                .map_err(|failure| match failure {
                    HttpFailure::Denied(reason) if hops > 0 => {
                        HttpFailure::Denied(format!("redirect refused: {reason}"))
                    }
                    other => other,
                })?;
            let status = response.status().as_u16();
            if is_redirect(status) {
                let Some(location) = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                else {
                    return self.read(response, &url);
                };
                hops += 1;
                if hops > self.grants.http_limits.max_redirects {
                    return Err(HttpFailure::Transport(format!(
                        "too many redirects (more than {})",
                        self.grants.http_limits.max_redirects
                    )));
                }
                let next = url.join(location).map_err(|e| {
                    HttpFailure::Transport(format!("redirect to an invalid URL `{location}`: {e}"))
                })?;
                url = capabilities::check_http(self.grants, next.as_str()).map_err(|reason| {
                    tracing::warn!(plugin = %self.plugin, %reason, "HTTP redirect denied");
                    HttpFailure::Denied(format!("redirect refused: {reason}"))
                })?;
                if status == 303 || (matches!(status, 301 | 302) && method == reqwest::Method::POST)
                {
                    method = reqwest::Method::GET;
                    body = Vec::new();
                    headers.remove(reqwest::header::CONTENT_TYPE);
                }
                continue;
            }
            if matches!(status, 429 | 503) && waits < RETRY_AFTER_ATTEMPTS {
                if let Some(wait) = retry_after(response.headers()) {
                    let fits = Instant::now() + wait + DEADLINE_MARGIN * 2 < self.deadline;
                    if wait <= MAX_RETRY_AFTER && fits {
                        waits += 1;
                        tracing::info!(plugin = %self.plugin, status, wait_ms = wait.as_millis() as u64, url = %loggable(&url), "HTTP Retry-After honoured; retrying");
                        drop(response);
                        std::thread::sleep(wait);
                        continue;
                    }
                }
            }
            if status == 401 && !refreshed && with_auth {
                if let Some((_, true)) = &self.token {
                    // A cached OAuth2 token the server no longer takes: fetch anew once.
                    refreshed = true;
                    self.drop_cached_token();
                    continue;
                }
            }
            return self.read(response, &url);
        }
    }

    /// The time a request may take now, or `Timeout` if none is left.
    fn budget(&self) -> Result<Duration, HttpFailure> {
        let left = self
            .deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(DEADLINE_MARGIN);
        if left < Duration::from_millis(10) {
            return Err(HttpFailure::Timeout);
        }
        Ok(left.min(self.grants.http_limits.timeout))
    }

    fn attempt(
        &mut self,
        method: &reqwest::Method,
        url: &Url,
        headers: &HeaderMap,
        body: &[u8],
        with_auth: bool,
    ) -> Result<reqwest::blocking::Response, HttpFailure> {
        let client = self.http.client(self.grants.http_internal)?;
        let mut builder = client
            .request(method.clone(), url.clone())
            .headers(headers.clone());
        if with_auth {
            if let Some(auth) = &self.grants.http_auth {
                builder = match auth {
                    HttpAuth::Bearer { token } => builder.bearer_auth(token.expose()),
                    HttpAuth::Basic { username, password } => {
                        builder.basic_auth(username, Some(password.expose()))
                    }
                    HttpAuth::ApiKey { header, key } => {
                        let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
                            HttpFailure::InvalidRequest(
                                "the connection's API key is not a valid header value".into(),
                            )
                        })?;
                        value.set_sensitive(true);
                        builder.header(header.as_str(), value)
                    }
                    HttpAuth::OAuth2ClientCredentials { .. } => {
                        let token = self.oauth2_token()?;
                        builder.bearer_auth(token.expose())
                    }
                };
            }
        }
        if !body.is_empty() {
            builder = builder.body(body.to_vec());
        }
        let budget = self.budget()?;
        let started = Instant::now();
        let result = builder.timeout(budget).send();
        match result {
            Ok(response) => {
                tracing::debug!(plugin = %self.plugin, %method, url = %loggable(url), status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "HTTP request");
                Ok(response)
            }
            Err(e) => {
                let failure = classify(&e);
                if let HttpFailure::Denied(reason) = &failure {
                    tracing::warn!(plugin = %self.plugin, url = %loggable(url), %reason, "HTTP request denied");
                }
                // Other failures are logged by `HttpClient::send`, once scrubbed.
                Err(failure)
            }
        }
    }

    /// Reads the body as a stream, stopping at the cap.
    fn read(
        &self,
        response: reqwest::blocking::Response,
        url: &Url,
    ) -> Result<HttpResponse, HttpFailure> {
        let cap = self.grants.http_limits.max_response_bytes;
        let too_large = || {
            tracing::warn!(plugin = %self.plugin, url = %loggable(url), limit = cap, "HTTP response larger than the limit; cut off");
            HttpFailure::TooLarge(cap)
        };
        if response.content_length().is_some_and(|n| n > cap) {
            return Err(too_large());
        }
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        response
            .take(cap.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| classify_io(&e))?;
        if body.len() as u64 > cap {
            return Err(too_large());
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    fn token_key(
        token_url: &str,
        client_id: &str,
        client_secret: &Secret,
        scope: Option<&str>,
    ) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(client_secret.expose().as_bytes());
        let hex = hex::encode(digest);
        format!("{token_url}\n{client_id}\n{}\n{hex}", scope.unwrap_or(""))
    }

    fn oauth2_key(&self) -> Option<String> {
        match &self.grants.http_auth {
            Some(HttpAuth::OAuth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            }) => Some(Call::token_key(
                token_url,
                client_id,
                client_secret,
                scope.as_deref(),
            )),
            _ => None,
        }
    }

    fn drop_cached_token(&mut self) {
        if let Some(key) = self.oauth2_key() {
            self.http
                .tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        self.token = None;
    }

    /// The OAuth2 token for this connection: this call's, the cached one while it
    /// is valid, or a new one from the token endpoint.
    fn oauth2_token(&mut self) -> Result<Secret, HttpFailure> {
        if let Some((token, _)) = &self.token {
            return Ok(token.clone());
        }
        let Some(HttpAuth::OAuth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        }) = &self.grants.http_auth
        else {
            unreachable!("oauth2_token is only called for OAuth2 grants");
        };
        let key = self.oauth2_key().expect("an OAuth2 grant");
        {
            let tokens = self.http.tokens.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = tokens.get(&key).filter(|t| t.expires > Instant::now()) {
                self.token = Some((cached.token.clone(), true));
                return Ok(cached.token.clone());
            }
        }
        let url = capabilities::check_http(self.grants, token_url).map_err(|reason| {
            HttpFailure::Denied(format!("the OAuth2 token URL is refused: {reason}"))
        })?;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope.as_str()));
        }
        let budget = self.budget()?;
        let response = self
            .http
            .client(self.grants.http_internal)?
            .post(url.clone())
            .basic_auth(client_id, Some(client_secret.expose()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .timeout(budget)
            .send()
            .map_err(|e| match classify(&e) {
                HttpFailure::Denied(reason) => {
                    HttpFailure::Denied(format!("the OAuth2 token URL is refused: {reason}"))
                }
                other => other,
            })?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        response
            .take(MAX_TOKEN_RESPONSE)
            .read_to_end(&mut body)
            .map_err(|e| classify_io(&e))?;
        if !(200..300).contains(&status) {
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            let what = if matches!(status, 400 | 401 | 403) {
                "authentication refused"
            } else {
                "OAuth2 token endpoint unavailable"
            };
            tracing::warn!(plugin = %self.plugin, url = %loggable(&url), status, "OAuth2 token request failed");
            return Err(HttpFailure::Transport(format!(
                "{what}: the OAuth2 token endpoint answered HTTP {status}{detail}"
            )));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
            HttpFailure::Transport("the OAuth2 token endpoint answered no JSON".into())
        })?;
        let Some(token) = parsed.get("access_token").and_then(|t| t.as_str()) else {
            return Err(HttpFailure::Transport(
                "the OAuth2 token endpoint answered no access_token".into(),
            ));
        };
        if let Some(kind) = parsed.get("token_type").and_then(|t| t.as_str()) {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(HttpFailure::Transport(format!(
                    "the OAuth2 token endpoint answered a `{kind}` token; only bearer tokens are supported"
                )));
            }
        }
        let lifetime = parsed
            .get("expires_in")
            .and_then(|e| e.as_f64().or_else(|| e.as_str()?.parse().ok()))
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(Duration::from_secs(3600), |s| {
                Duration::from_secs_f64(s.min(86_400.0 * 365.0))
            });
        let early = (lifetime / 10).min(Duration::from_secs(30));
        let token = Secret::new(token);
        tracing::debug!(plugin = %self.plugin, url = %loggable(&url), lifetime_s = lifetime.as_secs_f64(), "OAuth2 token fetched");
        self.http
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key,
                CachedToken {
                    token: token.clone(),
                    expires: Instant::now() + lifetime - early,
                },
            );
        self.token = Some((token.clone(), false));
        Ok(token)
    }

    /// Removes every secret (and the current token) from an error's text.
    fn scrub_failure(&self, failure: HttpFailure) -> HttpFailure {
        let mut secrets: Vec<&str> = self.grants.secrets();
        if let Some((token, _)) = &self.token {
            secrets.push(token.expose());
        }
        let clean = |text: String| scrub(&text, &secrets);
        match failure {
            HttpFailure::Denied(t) => HttpFailure::Denied(clean(t)),
            HttpFailure::InvalidRequest(t) => HttpFailure::InvalidRequest(clean(t)),
            HttpFailure::Transport(t) => HttpFailure::Transport(clean(t)),
            other => other,
        }
    }
}

/// Replaces every secret value in `text` (see [`crate::redact`]).
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    crate::redact::scrub(text, secrets.iter().copied())
}

fn parse_method(method: &str) -> Result<reqwest::Method, HttpFailure> {
    let upper = method.to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" => {
            Ok(reqwest::Method::from_bytes(upper.as_bytes()).expect("a standard method"))
        }
        _ => Err(HttpFailure::InvalidRequest(format!(
            "method `{method}` is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
        ))),
    }
}

fn parse_headers(pairs: &[(String, String)]) -> Result<HeaderMap, HttpFailure> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpFailure::InvalidRequest(format!("`{name}` is not a header name")))?;
        if HOST_HEADERS.contains(&header.as_str()) {
            return Err(HttpFailure::InvalidRequest(format!(
                "header `{name}` is set by the host, not by plugins"
            )));
        }
        // The value is not echoed: it may be a credential.
        let value = HeaderValue::from_str(value).map_err(|_| {
            HttpFailure::InvalidRequest(format!("header `{name}` has an invalid value"))
        })?;
        headers.append(header, value);
    }
    Ok(headers)
}

/// `Retry-After` as a wait: delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(when.timestamp()).ok()?);
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The text of an error and its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn classify(e: &reqwest::Error) -> HttpFailure {
    // A granted name that resolved to an internal address ([`PublicOnly`]).
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(internal) = err.downcast_ref::<InternalAddress>() {
            return HttpFailure::Denied(internal.0.clone());
        }
        source = err.source();
    }
    if e.is_timeout() {
        return HttpFailure::Timeout;
    }
    let text = chain(e);
    let lower = text.to_ascii_lowercase();
    // rustls reports a failed handshake as an io::Error of kind InvalidData (a
    // certificate refused, or no TLS coming back at all: "received corrupt message").
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut invalid_data = false;
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            invalid_data |= io.kind() == std::io::ErrorKind::InvalidData;
        }
        source = err.source();
    }
    if invalid_data
        || lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("corrupt message")
    {
        HttpFailure::Transport(format!("TLS failure: {text}"))
    } else if e.is_connect() {
        HttpFailure::Transport(format!("host unreachable: {text}"))
    } else {
        HttpFailure::Transport(text)
    }
}

fn classify_io(e: &std::io::Error) -> HttpFailure {
    if e.kind() == std::io::ErrorKind::TimedOut {
        return HttpFailure::Timeout;
    }
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<reqwest::Error>()) {
        return classify(inner);
    }
    HttpFailure::Transport(format!("reading the response failed: {}", chain(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_and_odd_methods_are_refused() {
        assert!(parse_method("get").is_ok());
        assert!(matches!(
            parse_method("CONNECT"),
            Err(HttpFailure::InvalidRequest(_))
        ));
        assert!(parse_headers(&[("X-Trace".into(), "1".into())]).is_ok());
        for name in ["Host", "Content-Length", "Transfer-Encoding"] {
            assert!(matches!(
                parse_headers(&[(name.into(), "1".into())]),
                Err(HttpFailure::InvalidRequest(_))
            ));
        }
        let err = parse_headers(&[("X-Key".into(), "bad\nvalue-secret".into())]).unwrap_err();
        assert!(!format!("{err:?}").contains("secret"));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("soon"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn proxy_names_are_read_like_reqwest_reads_them() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            proxy_hosts(env(&[
                ("HTTPS_PROXY", "http://Proxy.Corp.example:3128"),
                ("http_proxy", "proxy.corp.example:3128"),
                ("ALL_PROXY", "socks5://10.0.0.9:1080"),
                ("all_proxy", "  "),
            ])),
            vec!["10.0.0.9", "proxy.corp.example"]
        );
        assert!(proxy_hosts(env(&[])).is_empty());
    }

    #[test]
    fn scrub_removes_secrets() {
        assert_eq!(
            scrub("token abcd1234 refused", &["abcd1234", "ab"]),
            "token [redacted] refused"
        );
    }
}
