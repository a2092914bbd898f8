//! The daemon's HTTP API and dashboard (axum): JSON for everything the CLI does, an
//! OpenAPI description at `/api/v1/openapi.json`, and the dashboard page at `/`.
//!
//! Every route but `GET /health` needs the administrator's token: header
//! `Authorization: Bearer TOKEN`, or the `weir_session` cookie the login form sets
//! (HttpOnly, SameSite=Strict, so another site cannot ride on it). A missing or
//! wrong token is a bare 401. Errors are JSON `{code, message}` ([`ApiError`]),
//! requests the router cannot read included (`extract.rs`, the fallbacks).
//! Secret values never leave: connections show secret *names* only, and logs and
//! record copies are scrubbed by `service` before they are stored.
//!
//! Web hardening, every route: a request whose `Host` is a name other than
//! `localhost` or one the administrator listed (`[web] allowed_hosts`) is
//! refused with 421 — a page on an attacker's name that resolves to 127.0.0.1
//! (DNS rebinding) gets nothing; IP literals pass (rebinding needs a name).
//! Every response carries `Content-Security-Policy` (scripts: only the
//! dashboard's own, by hash), `X-Frame-Options: DENY`, `X-Content-Type-Options:
//! nosniff`, `Referrer-Policy: no-referrer`. Wrong tokens (login form or bearer)
//! are counted per client address: past `login_attempts_per_minute` within a
//! minute, 429 with `Retry-After`. Sessions end after `session_idle` unused and
//! `session_max` after login.
//!
//! What it is not: scheduling or running (that is `daemon` and `service`). Use
//! [`router`] to test the API without a socket (serve it with
//! `into_make_service_with_connect_info::<SocketAddr>()` so failures are counted
//! per client address; without it all clients share one count).

mod error;
mod extract;
mod login_return;
mod metrics;
mod openapi;
mod project_page;
mod store_commands;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Json, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;
use extract::{Form, JsonBody, Query, TextBody, UrlPath};

use crate::daemon::config::WebSettings;
use crate::daemon::{Daemon, ProjectView, SchedulerStats};
use crate::service::redact_record;
use crate::store::{
    ConnectionState, ConnectionSummary, ExecStatus, ExecutionFilter, ExecutionId, ExecutionSummary,
    StagedRecord, StoredConnection, StoredRecordError,
};

const COOKIE: &str = "weir_session";
const DASHBOARD: &str = include_str!("dashboard.html");
const LOGIN: &str = include_str!("login.html");

/// What every handler sees.
#[derive(Clone)]
pub struct ApiState {
    pub daemon: Daemon,
    token: Arc<str>,
    /// The token of `<data-dir>/daemon.json` (`daemon::local_access`), accepted like the
    /// administrator's: how `weir` commands on the same data directory reach the daemon.
    local_token: Option<Arc<str>>,
    /// Dashboard sessions: random ids handed out by the login form, so the cookie never
    /// holds the token itself. In memory: a restart logs everyone out.
    sessions: Arc<std::sync::Mutex<HashMap<String, Session>>>,
    /// Recent wrong tokens per client address.
    failures: Arc<std::sync::Mutex<HashMap<IpAddr, VecDeque<Instant>>>>,
    web: Arc<WebSettings>,
    /// Where relative paths of projects applied through the API resolve by default.
    pub base_dir: PathBuf,
    /// The coordinator's view of its workers (`None`: no cluster configured).
    workers: Option<crate::cluster::HandToWorkers>,
}

/// A dashboard session's age and last use.
#[derive(Clone, Copy)]
struct Session {
    opened: Instant,
    used: Instant,
}

impl ApiState {
    pub fn new(daemon: Daemon, token: &str, base_dir: PathBuf) -> ApiState {
        ApiState::with_web(daemon, token, base_dir, WebSettings::default())
    }

    /// With the administrator's web settings (`[web]` of `weir serve --config`).
    pub fn with_web(daemon: Daemon, token: &str, base_dir: PathBuf, web: WebSettings) -> ApiState {
        ApiState {
            daemon,
            token: Arc::from(token),
            local_token: None,
            sessions: Default::default(),
            failures: Default::default(),
            web: Arc::new(web),
            base_dir,
            workers: None,
        }
    }

    /// With a cluster: `GET /api/v1/workers` lists the coordinator's workers.
    pub fn with_workers(mut self, workers: crate::cluster::HandToWorkers) -> ApiState {
        self.workers = Some(workers);
        self
    }

    /// Also accepts `token` as a bearer token (the local-access file's).
    pub fn with_local_token(mut self, token: &str) -> ApiState {
        self.local_token = Some(Arc::from(token));
        self
    }
}

/// The window wrong tokens are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses remembered at most (a flood of sources cannot grow it).
const FAILURE_CLIENTS: usize = 10_000;

/// The whole HTTP surface.
pub fn router(state: ApiState) -> Router {
    let (api, _) = token_routes().split_for_parts();
    let api = api
        // Before the token layer, so a wrong method needs the token too.
        .method_not_allowed_fallback(method_not_allowed)
        // Inside the token layer: only an authorized caller learns what a route takes.
        .route_layer(middleware::from_fn(extract::known_query))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let (login_route, _) = login_routes().split_for_parts();
    let login_route = login_route.route_layer(middleware::from_fn_with_state(
        state.clone(),
        count_failures,
    ));
    let (open, _) = open_routes().split_for_parts();
    open.method_not_allowed_fallback(method_not_allowed)
        .merge(login_route)
        .merge(api)
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

// The routes, in three groups by who may call them. `routes!` takes a handler only
// together with its `#[utoipa::path]`, and both [`router`] and [`openapi_document`]
// are built from these lists: a route cannot be served undocumented, nor documented
// unserved.

/// Routes anyone may call.
fn open_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(dashboard))
}

/// The login form: it takes the token, so its wrong tokens are counted.
fn login_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(login))
}

/// Routes that need the administrator's token.
fn token_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(openapi))
        .routes(routes!(summary))
        .routes(routes!(scheduler_stats))
        .routes(routes!(list_workers))
        .routes(routes!(list_projects))
        .routes(routes!(get_project, put_project, delete_project))
        .routes(routes!(pause_project))
        .routes(routes!(resume_project))
        .routes(routes!(run_project))
        .routes(routes!(validate_project))
        .routes(routes!(preview_project))
        .routes(routes!(list_executions))
        .routes(routes!(get_execution))
        .routes(routes!(execution_errors))
        .routes(routes!(execution_staging))
        .routes(routes!(execution_log))
        .routes(routes!(rerun_execution))
        .routes(routes!(list_connections))
        .routes(routes!(get_connection, put_connection, delete_connection))
        .routes(routes!(check_connection))
        .routes(routes!(metrics::metrics))
        .merge(store_commands::routes())
        .merge(project_page::routes())
}

/// The OpenAPI document of [`router`], generated from the handlers' attributes and
/// their types; served at `GET /api/v1/openapi.json`.
pub fn openapi_document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = openapi::base();
        for part in [open_routes(), login_routes(), token_routes()] {
            doc.merge(part.into_openapi());
        }
        doc
    })
}

/// `GET /health`'s answer.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// Liveness; no token needed.
#[utoipa::path(get, path = "/health", tag = "system", security(()),
    responses((status = 200, description = "the daemon answers", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The client's address, when the server was started with connect info.
fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

/// How long `ip` must wait before its next try, if it used up its wrong tokens.
fn locked_out(state: &ApiState, ip: IpAddr) -> Option<Duration> {
    let mut failures = state.failures.lock().unwrap();
    let now = Instant::now();
    let recent = failures.get_mut(&ip)?;
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= FAILURE_WINDOW)
    {
        recent.pop_front();
    }
    if recent.len() < state.web.login_attempts_per_minute as usize {
        return None;
    }
    let oldest = *recent.front()?;
    Some(FAILURE_WINDOW.saturating_sub(now.duration_since(oldest)))
}

fn record_failure(state: &ApiState, ip: IpAddr) {
    let mut failures = state.failures.lock().unwrap();
    if failures.len() >= FAILURE_CLIENTS && !failures.contains_key(&ip) {
        let now = Instant::now();
        failures.retain(|_, r| {
            r.back()
                .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
        });
        if failures.len() >= FAILURE_CLIENTS {
            // Still full of live entries: forget the lot rather than grow.
            failures.clear();
        }
    }
    let recent = failures.entry(ip).or_default();
    recent.push_back(Instant::now());
    let cap = state.web.login_attempts_per_minute as usize + 1;
    while recent.len() > cap {
        recent.pop_front();
    }
}

fn too_many(wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-attempts",
        format!("too many wrong tokens from this address; try again in {secs} s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, secs.max(1).into());
    response
}

/// Counts the 401s a route answers per client address and refuses with 429 past
/// the limit, so the token cannot be guessed at network speed.
async fn count_failures(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let ip = client_ip(&request);
    if let Some(wait) = locked_out(&state, ip) {
        return too_many(wait);
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        record_failure(&state, ip);
    }
    response
}

/// Refuses requests for a `Host` this server does not answer to (DNS rebinding).
async fn check_host(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}").to_owned())
        .or_else(|| request.uri().host().map(str::to_owned));
    // No Host at all: not a browser (browsers always send one), so no rebinding.
    if let Some(host) = host
        && !host_allowed(&host, &state.web.allowed_hosts)
    {
        let shown: String = host.chars().take(100).collect();
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong-host",
            format!(
                "this server does not answer for host {shown:?}; use its address, `localhost`, or a name in `[web] allowed_hosts`"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// `host` (with or without port): an IP literal, `localhost`, or an allowed name.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<IpAddr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(n, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                n
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok() || name == "localhost" || allowed.iter().any(|a| *a == name)
}

/// The dashboard's inline script, allowed by its hash (and nothing else inline):
/// an injected `<script>` or `onclick=` does not run.
fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        // The dashboard's script and the login form's (which carries the page's
        // fragment through the login).
        let hash = |page: &str| {
            let script = page
                .split_once("<script>")
                .and_then(|(_, rest)| rest.split_once("</script>"))
                .map_or("", |(body, _)| body);
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script))
        };
        let (dashboard, login) = (hash(DASHBOARD), hash(LOGIN));
        // Styles: the pages' `<style>` blocks and the `style` attributes the dashboard
        // sets; CSS runs no code, and every value the dashboard shows goes in as text.
        format!(
            "default-src 'self'; script-src 'sha256-{dashboard}' 'sha256-{login}'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'"
        )
    })
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(content_security_policy()),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An unknown path (404), as JSON like every other error.
async fn no_route(method: Method, uri: Uri) -> ApiError {
    let message = format!("no route for {method} {}", shown_path(&uri));
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        message + " (GET /api/v1/openapi.json lists them)",
    )
}

/// A known path with a method it does not take (405; axum adds `Allow`).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let message = format!("{} does not take {method}", shown_path(&uri));
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        message + " (see the `Allow` header)",
    )
}

/// The request's path, as much as an error message repeats.
fn shown_path(uri: &Uri) -> String {
    uri.path().chars().take(200).collect()
}

/// Compares without stopping at the first different byte, so response time does not
/// tell how much of a guessed token was right (the length may show; it is no secret).
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(COOKIE)
        .map(|c| c.value().to_owned())
}

/// The session cookie as the login form sets it (`max_age` zero: as logout clears
/// it). HttpOnly: no script reads it; SameSite=Strict: another site's page cannot
/// send it.
fn session_set_cookie(value: String, max_age: Duration) -> Cookie<'static> {
    Cookie::build((COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
}

/// The bearer token, or a session the login form opened.
fn authorized(state: &ApiState, headers: &HeaderMap) -> bool {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").is_some_and(|t| {
            same(t.trim(), &state.token)
                || state
                    .local_token
                    .as_ref()
                    .is_some_and(|l| same(t.trim(), l))
        });
    }
    session_cookie(headers).is_some_and(|id| {
        let mut sessions = state.sessions.lock().unwrap();
        let now = Instant::now();
        let web = &state.web;
        sessions.retain(|_, s| {
            now.duration_since(s.opened) < web.session_max
                && now.duration_since(s.used) < web.session_idle
        });
        let found = sessions.iter_mut().find(|(s, _)| same(s, &id));
        match found {
            Some((_, session)) => {
                session.used = now;
                true
            }
            None => false,
        }
    })
}

fn new_session_id() -> Result<String, ApiError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(hex::encode(bytes))
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    // A bearer token is a guess like the login form's: counted the same way.
    let ip = client_ip(&request);
    if let Some(wait) = locked_out(&state, ip) {
        return too_many(wait);
    }
    if authorized(&state, request.headers()) {
        next.run(request).await
    } else {
        if request.headers().contains_key(header::AUTHORIZATION) {
            record_failure(&state, ip);
        }
        ApiError::unauthorized().into_response()
    }
}

fn login_page(message: Option<&str>, next: Option<&str>) -> Response {
    let page = LOGIN
        .replace(
            "<!--MESSAGE-->",
            &message.map_or(String::new(), |m| {
                format!("<p class=\"login-error\" role=\"alert\">{m}</p>")
            }),
        )
        // `next` passed `login_return::fragment`: no quote or markup character.
        .replace(
            "value=\"\" data-next",
            &format!("value=\"{}\" data-next", next.unwrap_or("")),
        );
    (StatusCode::UNAUTHORIZED, Html(page)).into_response()
}

/// The dashboard page, or the login form without a session.
#[utoipa::path(get, path = "/", tag = "dashboard", security((), ("bearer" = []), ("cookie" = [])),
    responses(
        (status = 200, description = "the dashboard (HTML)", content_type = "text/html", body = String),
        (status = 401, description = "the login form (HTML)", content_type = "text/html", body = String)))]
async fn dashboard(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if authorized(&state, &headers) {
        Html(DASHBOARD).into_response()
    } else {
        login_page(None, None)
    }
}

#[derive(Deserialize, ToSchema)]
struct LoginForm {
    /// The administrator's token.
    token: String,
    /// The dashboard page to open after login: its URL fragment (`#/executions/12`),
    /// which the browser never sends and the form's script copies here. Anything but
    /// a dashboard fragment is ignored (no redirect elsewhere).
    #[serde(default)]
    next: Option<String>,
}

/// The dashboard's login form: a right token opens a session (cookie `weir_session`,
/// HttpOnly, SameSite=Strict, Max-Age the session's longest life) and redirects to
/// the dashboard. Wrong tokens are counted per client address.
#[utoipa::path(post, path = "/login", tag = "dashboard", security(()),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "logged in: `Set-Cookie` with the session, redirect to `/` (with the form's `next` fragment when it is a dashboard page)"),
        (status = 401, description = "the login form again, saying the token is wrong (HTML)", content_type = "text/html", body = String),
        (status = 429, description = "too many wrong tokens from this address (`Retry-After`)", body = error::Body)))]
async fn login(State(state): State<ApiState>, Form(form): Form<LoginForm>) -> Response {
    if !same(form.token.trim(), &state.token) {
        tracing::warn!("dashboard login refused");
        let next = form.next.as_deref().and_then(login_return::fragment);
        return login_page(Some("That token is not the administrator's token."), next);
    }
    let id = match new_session_id() {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let now = Instant::now();
    state.sessions.lock().unwrap().insert(
        id.clone(),
        Session {
            opened: now,
            used: now,
        },
    );
    let jar = CookieJar::new().add(session_set_cookie(id, state.web.session_max));
    let to = login_return::target(form.next.as_deref());
    (jar, Redirect::to(&to)).into_response()
}

/// Ends the dashboard session and clears its cookie.
#[utoipa::path(post, path = "/logout", tag = "dashboard",
    responses((status = 303, description = "logged out: the cookie cleared, redirect to `/`"), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn logout(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.sessions.lock().unwrap().remove(&id);
    }
    let jar = CookieJar::new().add(session_set_cookie(String::new(), Duration::ZERO));
    (jar, Redirect::to("/")).into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "the OpenAPI document", body = Object), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn openapi() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

/// An error about a project's run, scrubbed of its secret values (a validation
/// report quotes plugins, which may quote a server echoing a credential).
fn scrubbed(mut e: ApiError, secrets: &crate::redact::Redactor) -> ApiError {
    e.message = secrets.scrub(&e.message);
    if let Some(d) = &mut e.details {
        secrets.scrub_json(d);
    }
    e
}

/// Runs blocking work (plugins, store scans) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

// ---------------------------------------------------------------------------------
// Summary

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SummaryQuery {
    /// Days back, default 14, at most 366.
    days: Option<u32>,
}

/// Executions per status (a tally for the dashboard; not `engine::Counts`, which counts records).
#[derive(Default, Serialize, Clone, ToSchema)]
struct StatusTally {
    #[serde(rename = "Completed")]
    completed: u64,
    #[serde(rename = "Warning")]
    warning: u64,
    #[serde(rename = "Error")]
    error: u64,
    #[serde(rename = "Running")]
    running: u64,
    #[serde(rename = "Skipped")]
    skipped: u64,
}

impl StatusTally {
    fn add(&mut self, s: ExecStatus) {
        match s {
            ExecStatus::Completed => self.completed += 1,
            ExecStatus::Warning => self.warning += 1,
            ExecStatus::Error => self.error += 1,
            ExecStatus::Running => self.running += 1,
            ExecStatus::Skipped => self.skipped += 1,
        }
    }
}

/// `GET /api/v1/summary`'s answer.
#[derive(Serialize, ToSchema)]
struct Summary {
    days_back: u32,
    totals: StatusTally,
    /// Every day of the range, oldest first, `YYYY-MM-DD` (UTC).
    days: Vec<DayTally>,
    /// Projects and days with executions.
    by_project: Vec<ProjectDayTally>,
}

#[derive(Serialize, ToSchema)]
struct DayTally {
    day: String,
    #[serde(flatten)]
    counts: StatusTally,
}

#[derive(Serialize, ToSchema)]
struct ProjectDayTally {
    project: String,
    day: String,
    #[serde(flatten)]
    counts: StatusTally,
}

fn day_of(millis: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// Executions per status: in all, per UTC day and per project and day, over the
/// last `days` days (default 14, at most 366).
#[utoipa::path(get, path = "/api/v1/summary", tag = "executions", params(SummaryQuery),
    responses((status = 200, description = "totals, per UTC day, per project and day", body = Summary), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn summary(
    State(state): State<ApiState>,
    Query(q): Query<SummaryQuery>,
) -> Result<Json<Summary>, ApiError> {
    let days = extract::in_range("days", q.days, 14, 1, 366)?;
    blocking(move || {
        let today = Utc::now().date_naive();
        let first = today - chrono::Days::new(u64::from(days) - 1);
        let since = first
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let list = state.daemon.service().store.executions(&ExecutionFilter {
            since: Some(since),
            ..Default::default()
        })?;
        let mut totals = StatusTally::default();
        let mut by_day: std::collections::BTreeMap<String, StatusTally> = (0..days)
            .map(|i| {
                let d = first + chrono::Days::new(u64::from(i));
                (d.format("%Y-%m-%d").to_string(), StatusTally::default())
            })
            .collect();
        let mut by_project: std::collections::BTreeMap<(String, String), StatusTally> =
            Default::default();
        for e in &list {
            let day = day_of(e.started_at);
            totals.add(e.status);
            by_day.entry(day.clone()).or_default().add(e.status);
            by_project
                .entry((e.project.clone(), day))
                .or_default()
                .add(e.status);
        }
        Ok(Json(Summary {
            days_back: days,
            totals,
            days: by_day
                .into_iter()
                .map(|(day, counts)| DayTally { day, counts })
                .collect(),
            by_project: by_project
                .into_iter()
                .map(|((project, day), counts)| ProjectDayTally {
                    project,
                    day,
                    counts,
                })
                .collect(),
        }))
    })
    .await
}

/// `GET /api/v1/workers`'s answer.
#[derive(Serialize, ToSchema)]
struct WorkersView {
    /// Whether a `[cluster]` is configured (without one, executions run in the
    /// daemon and there are no workers).
    cluster: bool,
    /// Every worker heard from since the daemon started, by name.
    workers: Vec<crate::cluster::coordinator::WorkerView>,
}

/// The `weir worker`s: name, alive, executions in hand, last heartbeat.
#[utoipa::path(get, path = "/api/v1/workers", tag = "system",
    responses((status = 200, description = "since the daemon started", body = WorkersView), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn list_workers(State(state): State<ApiState>) -> Json<WorkersView> {
    Json(WorkersView {
        cluster: state.workers.is_some(),
        workers: state
            .workers
            .as_ref()
            .map(|w| w.workers())
            .unwrap_or_default(),
    })
}

/// `GET /api/v1/scheduler`'s answer.
#[derive(Serialize, ToSchema)]
struct SchedulerView {
    stats: SchedulerStats,
    /// Executions started and not yet finished.
    active: usize,
}

/// Scheduler statistics: runs fired, skipped, started, lag p50/p99/max.
#[utoipa::path(get, path = "/api/v1/scheduler", tag = "system",
    responses((status = 200, description = "since the daemon started", body = SchedulerView), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn scheduler_stats(State(state): State<ApiState>) -> Json<SchedulerView> {
    Json(SchedulerView {
        stats: state.daemon.stats(),
        active: state.daemon.active(),
    })
}

// ---------------------------------------------------------------------------------
// Projects

/// A list answer.
#[derive(Serialize, ToSchema)]
struct Items<T> {
    items: Vec<T>,
}

/// Projects with schedule state and last execution.
#[utoipa::path(get, path = "/api/v1/projects", tag = "projects",
    responses((status = 200, description = "every project", body = Items<ProjectView>), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn list_projects(
    State(state): State<ApiState>,
) -> Result<Json<Items<ProjectView>>, ApiError> {
    blocking(move || {
        Ok(Json(Items {
            items: state.daemon.projects()?,
        }))
    })
    .await
}

/// `GET /api/v1/projects/{name}`'s answer: the scheduler's view and the file.
#[derive(Serialize, ToSchema)]
struct ProjectDetail {
    #[serde(flatten)]
    view: ProjectView,
    /// The project file's TOML, as applied.
    text: String,
    /// Where its relative paths resolve.
    #[schema(value_type = String)]
    base_dir: PathBuf,
}

/// One project, with its file text.
#[utoipa::path(get, path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path, description = "the project's name")),
    responses((status = 200, description = "the project", body = ProjectDetail), (status = 404, description = "no such project", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn get_project(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ProjectDetail>, ApiError> {
    blocking(move || {
        let view = state
            .daemon
            .project(&name)?
            .ok_or_else(|| ApiError::not_found("project", &name))?;
        let stored = state
            .daemon
            .service()
            .store
            .project(&name, None)?
            .ok_or_else(|| ApiError::not_found("project", &name))?;
        Ok(Json(ProjectDetail {
            view,
            text: stored.text,
            base_dir: stored.base_dir,
        }))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ApplyQuery {
    /// Absolute directory that relative paths resolve against (default: the daemon's
    /// data directory).
    #[param(value_type = Option<String>)]
    base_dir: Option<PathBuf>,
    /// The file's name as its author knows it, for the places in error messages
    /// (default: `<name>.toml`); `weir project apply` sends the path it was given.
    file_name: Option<String>,
}

/// `PUT /api/v1/projects/{name}`'s answer.
#[derive(Serialize, ToSchema)]
struct Applied {
    name: String,
    /// The version now stored.
    version: u32,
    /// Whether the file differed from the latest version (then a new version).
    changed: bool,
}

/// Applies a project file (TOML in the body). The name in the URL must be the
/// project's name.
#[utoipa::path(put, path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path, description = "the project's name"), ApplyQuery),
    request_body(content = String, content_type = "text/plain", description = "the project file (TOML); its `project.name` must be the URL's. It reads no environment variable: `*_env` options are refused"),
    responses(
        (status = 200, description = "unchanged", body = Applied),
        (status = 201, description = "new version stored", body = Applied),
        (status = 400, description = "the file does not parse or is invalid, or names another project", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn put_project(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<ApplyQuery>,
    TextBody(body): TextBody,
) -> Result<Response, ApiError> {
    let base = q.base_dir.unwrap_or_else(|| state.base_dir.clone());
    if !base.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "base_dir {}: give an absolute path",
            base.display()
        )));
    }
    blocking(move || {
        let label = PathBuf::from(q.file_name.unwrap_or_else(|| format!("{name}.toml")));
        let svc = state.daemon.service();
        // A file that does not parse gets its full error (with line) from the apply.
        let file_name = body
            .parse::<toml::Table>()
            .ok()
            .and_then(|t| t.get("project")?.get("name")?.as_str().map(str::to_owned));
        if let Some(file_name) = file_name
            && file_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the URL names project `{name}` but the file's project.name is `{file_name}`"
            )));
        }
        // The project's author is not the one who set the server's environment.
        let crate::service::AppliedProject {
            name,
            version,
            created: changed,
        } = svc.apply_project_text(&label, &body, &base, &crate::project::EnvPolicy::none())?;
        state.daemon.reload(&name)?;
        let status = if changed {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            Json(Applied {
                name,
                version,
                changed,
            }),
        )
            .into_response())
    })
    .await
}

/// Deletes a project (its executions stay).
#[utoipa::path(delete, path = "/api/v1/projects/{name}", tag = "projects", params(("name" = String, Path, description = "the project's name")),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such project", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn delete_project(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Response, ApiError> {
    blocking(move || {
        if !state.daemon.service().store.delete_project(&name)? {
            return Err(ApiError::not_found("project", &name));
        }
        state.daemon.reload(&name)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct PauseBody {
    /// Shown with the project (default: "paused by an administrator").
    reason: Option<String>,
}

/// Pauses the schedule.
#[utoipa::path(post, path = "/api/v1/projects/{name}/pause", tag = "projects", params(("name" = String, Path, description = "the project's name")),
    request_body(content = Option<PauseBody>, description = "optional"),
    responses((status = 200, description = "the project, paused", body = ProjectView), (status = 404, description = "no such project", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn pause_project(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    body: Option<JsonBody<PauseBody>>,
) -> Result<Json<Option<ProjectView>>, ApiError> {
    let reason = body
        .and_then(|b| b.0.reason)
        .unwrap_or_else(|| "paused by an administrator".to_owned());
    set_paused(state, name, Some(reason)).await
}

/// Resumes the schedule.
#[utoipa::path(post, path = "/api/v1/projects/{name}/resume", tag = "projects", params(("name" = String, Path, description = "the project's name")),
    responses((status = 200, description = "the project, resumed", body = ProjectView), (status = 404, description = "no such project", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn resume_project(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Option<ProjectView>>, ApiError> {
    set_paused(state, name, None).await
}

/// Pauses (with a reason) or resumes; answers with the project's new view.
async fn set_paused(
    state: ApiState,
    name: String,
    pause_reason: Option<String>,
) -> Result<Json<Option<ProjectView>>, ApiError> {
    blocking(move || {
        let paused = pause_reason.is_some();
        state.daemon.set_paused(&name, paused, pause_reason)?;
        Ok(Json(state.daemon.project(&name)?))
    })
    .await
}

/// A run's answer: the execution it recorded.
#[derive(Serialize, ToSchema)]
struct Started {
    execution: ExecutionId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    /// A dry run: every source record read and checked, inserts and updates
    /// predicted, nothing written, no cursor kept; recorded as a dry run.
    dry_run: Option<bool>,
}

/// Runs now; answers as soon as the execution is recorded.
#[utoipa::path(post, path = "/api/v1/projects/{name}/run", tag = "projects", params(("name" = String, Path, description = "the project's name"), RunQuery),
    responses(
        (status = 202, description = "started", body = Started),
        (status = 404, description = "no such project", body = error::Body),
        (status = 409, description = "already running", body = error::Body),
        (status = 503, description = "the daemon is shutting down", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn run_project(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<RunQuery>,
) -> Result<Response, ApiError> {
    let id = if q.dry_run == Some(true) {
        state.daemon.dry_run_now(&name).await?
    } else {
        state.daemon.run_now(&name).await?
    };
    Ok((StatusCode::ACCEPTED, Json(Started { execution: id })).into_response())
}

/// Validates with the plugins (connections, organizations, entities, mappings, keys).
#[utoipa::path(post, path = "/api/v1/projects/{name}/validate", tag = "projects", params(("name" = String, Path, description = "the project's name")),
    responses((status = 200, description = "the validation report: each check with its outcome (secret values scrubbed)", body = Object),
        (status = 404, description = "no such project", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn validate_project(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    blocking(move || {
        let svc = state.daemon.service();
        let (project, _, secrets) = svc.load_project(&name, None)?;
        // Compared with the recorded baseline, as `weir validate` does locally.
        let baseline = svc.schema_baseline(&name)?;
        let report = svc
            .engine()
            .validate_against(&project, baseline.as_ref())
            .map_err(|e| scrubbed(crate::service::ServiceError::from(e).into(), &secrets))?;
        // A check's message can quote a server that echoed a credential.
        let mut v = serde_json::to_value(report).map_err(ApiError::internal)?;
        secrets.scrub_json(&mut v);
        Ok(Json(v))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PreviewQuery {
    /// Records per entity, default 20, at most 1000.
    limit: Option<u32>,
}

/// Previews staged records: insert/update/reject, nothing written.
#[utoipa::path(get, path = "/api/v1/projects/{name}/preview", tag = "projects", params(("name" = String, Path, description = "the project's name"), PreviewQuery),
    responses((status = 200, description = "the preview report: records as they would be written, password-like values hidden", body = Object),
        (status = 404, description = "no such project", body = error::Body), (status = 422, description = "the project is invalid, or the preview failed", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn preview_project(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<PreviewQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = extract::in_range("limit", q.limit, 20, 1, 1000)?;
    blocking(move || {
        let svc = state.daemon.service();
        let (project, _, secrets) = svc.load_project(&name, None)?;
        let report = svc
            .engine()
            .preview(&project, limit)
            .map_err(|e| scrubbed(crate::service::ServiceError::from(e).into(), &secrets))?;
        let mut v = serde_json::to_value(&report).map_err(ApiError::internal)?;
        secrets.scrub_json(&mut v);
        // Same redaction as the CLI's: values of password-like fields are hidden.
        if let Some(records) = v["records"].as_array_mut() {
            for r in records {
                if let Some(fields) = r["fields"].as_array() {
                    let pairs: Vec<(String, serde_json::Value)> = fields
                        .iter()
                        .filter_map(|p| Some((p.get(0)?.as_str()?.to_owned(), p.get(1)?.clone())))
                        .collect();
                    r["fields"] = json!(redact_record(&pairs));
                }
            }
        }
        Ok(Json(v))
    })
    .await
}

// ---------------------------------------------------------------------------------
// Executions

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ExecutionsQuery {
    /// Only this project's.
    project: Option<String>,
    /// Running, Completed, Warning, Error or Skipped.
    status: Option<String>,
    /// A UTC day, `YYYY-MM-DD`.
    day: Option<String>,
    /// Only those started since: a date (`2026-11-01`, midnight UTC), an RFC 3339
    /// time, or an age counted back from now (`30m`, `12h`, `7d`) — as the CLI's
    /// `weir executions list --since`.
    since: Option<String>,
    /// 1 to 1000, default 50.
    limit: Option<usize>,
    /// How many of the newest to skip, default 0.
    offset: Option<usize>,
}

/// A page of a longer list.
#[derive(Serialize, ToSchema)]
struct Page<T> {
    /// How many there are in all.
    total: u64,
    items: Vec<T>,
}

fn parse_status(s: &str) -> Result<ExecStatus, ApiError> {
    match s.to_ascii_lowercase().as_str() {
        "running" => Ok(ExecStatus::Running),
        "completed" => Ok(ExecStatus::Completed),
        "warning" => Ok(ExecStatus::Warning),
        "error" => Ok(ExecStatus::Error),
        "skipped" => Ok(ExecStatus::Skipped),
        _ => Err(ApiError::bad_request(format!(
            "status `{s}`: use Running, Completed, Warning, Error or Skipped"
        ))),
    }
}

/// Execution history, newest first.
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions", params(ExecutionsQuery),
    responses((status = 200, description = "a page of executions", body = Page<ExecutionSummary>), (status = 400, description = "a status or day that does not parse", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn list_executions(
    State(state): State<ApiState>,
    Query(q): Query<ExecutionsQuery>,
) -> Result<Json<Page<ExecutionSummary>>, ApiError> {
    let status = q.status.as_deref().map(parse_status).transpose()?;
    let (since, until) = match &q.day {
        None => (None, None),
        Some(d) => {
            let day = NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| ApiError::bad_request(format!("day `{d}`: use YYYY-MM-DD")))?;
            let start = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
            let _ = start.year();
            (
                Some(start.timestamp_millis()),
                Some((start + chrono::Days::new(1)).timestamp_millis()),
            )
        }
    };
    let since = match q.since.as_deref() {
        None => since,
        Some(text) => {
            let at =
                crate::since::parse_since(text, crate::store::now_millis()).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad-query",
                        format!(
                            "`since` `{}` is not understood: use {}",
                            text.chars().take(60).collect::<String>(),
                            crate::since::SINCE_FORMS
                        ),
                    )
                })?;
            Some(since.map_or(at, |day_start: i64| day_start.max(at)))
        }
    };
    let limit = extract::in_range("limit", q.limit, 50, 1, 1000)?;
    let offset = q.offset.unwrap_or(0);
    blocking(move || {
        let all = state.daemon.service().store.executions(&ExecutionFilter {
            project: q.project,
            status,
            since,
            until,
            limit: 0,
        })?;
        let total = all.len() as u64;
        let items: Vec<_> = all.into_iter().skip(offset).take(limit).collect();
        Ok(Json(Page { total, items }))
    })
    .await
}

fn parse_id(id: &str) -> Result<ExecutionId, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("execution id `{id}`: not a number")))
}

fn load_execution(state: &ApiState, id: ExecutionId) -> Result<crate::store::Execution, ApiError> {
    state
        .daemon
        .service()
        .store
        .execution(id)?
        .ok_or_else(|| ApiError::not_found("execution", &id.to_string()))
}

/// One execution: tasks with counts and cursors, log.
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions", params(("id" = u64, Path, description = "the execution's id")),
    responses((status = 200, description = "the execution", body = crate::store::Execution), (status = 400, description = "an id that is not a number", body = error::Body), (status = 404, description = "no such execution", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn get_execution(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<crate::store::Execution>, ApiError> {
    let id = parse_id(&id)?;
    blocking(move || Ok(Json(load_execution(&state, id)?))).await
}

/// `GET /api/v1/executions/{id}/log`'s answer.
#[derive(Serialize, ToSchema)]
struct ExecutionLog {
    log: Vec<String>,
    /// Lines beyond the store's limit: counted, not kept.
    dropped: u64,
}

/// The execution's log lines.
#[utoipa::path(get, path = "/api/v1/executions/{id}/log", tag = "executions", params(("id" = u64, Path, description = "the execution's id")),
    responses((status = 200, description = "the log", body = ExecutionLog), (status = 404, description = "no such execution", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn execution_log(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<ExecutionLog>, ApiError> {
    let id = parse_id(&id)?;
    blocking(move || {
        let e = load_execution(&state, id)?;
        Ok(Json(ExecutionLog {
            log: e.log,
            dropped: e.log_dropped,
        }))
    })
    .await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// How many to skip, default 0.
    offset: Option<u64>,
    /// 1 to 1000, default 100.
    limit: Option<u64>,
}

/// One page of an execution's stored items (record errors or staged records), with
/// the password-like fields of their record copies redacted.
async fn execution_page<T: Serialize + Send + 'static>(
    state: ApiState,
    id: String,
    q: PageQuery,
    fetch: fn(
        &crate::store::Store,
        ExecutionId,
        u64,
        u64,
    ) -> Result<(Vec<T>, u64), crate::store::StoreError>,
    record: fn(&mut T) -> &mut Vec<(String, serde_json::Value)>,
) -> Result<Json<Page<T>>, ApiError> {
    let id = parse_id(&id)?;
    let limit = extract::in_range("limit", q.limit, 100, 1, 1000)?;
    blocking(move || {
        let store = &state.daemon.service().store;
        let (mut items, total) = fetch(store, id, q.offset.unwrap_or(0), limit)?;
        for item in &mut items {
            let r = record(item);
            *r = redact_record(r);
        }
        Ok(Json(Page { total, items }))
    })
    .await
}

/// Record errors: task, stage, key, field, message, source record.
#[utoipa::path(get, path = "/api/v1/executions/{id}/errors", tag = "executions", params(("id" = u64, Path, description = "the execution's id"), PageQuery),
    responses((status = 200, description = "a page of record errors, password-like fields redacted", body = Page<StoredRecordError>), (status = 404, description = "no such execution", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn execution_errors(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<StoredRecordError>>, ApiError> {
    execution_page(state, id, q, crate::store::Store::record_errors, |e| {
        &mut e.record
    })
    .await
}

/// Staging data: records as sent to the destination.
#[utoipa::path(get, path = "/api/v1/executions/{id}/staging", tag = "executions", params(("id" = u64, Path, description = "the execution's id"), PageQuery),
    responses((status = 200, description = "a page of staged records, password-like fields redacted", body = Page<StagedRecord>), (status = 404, description = "no such execution", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn execution_staging(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Page<StagedRecord>>, ApiError> {
    execution_page(state, id, q, crate::store::Store::staged, |s| &mut s.record).await
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RerunBody {
    /// Only the records that failed (default: everything).
    #[serde(default)]
    failed_only: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RerunQuery {
    /// The same as the body's `failed_only` (both may be given only if they agree).
    failed_only: Option<bool>,
}

/// Re-runs (all, or failed records only).
#[utoipa::path(post, path = "/api/v1/executions/{id}/rerun", tag = "executions", params(("id" = u64, Path, description = "the execution's id"), RerunQuery),
    request_body(content = Option<RerunBody>, description = "optional"),
    responses((status = 202, description = "started", body = Started), (status = 404, description = "no such execution", body = error::Body), (status = 409, description = "the project is running", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn rerun_execution(
    State(state): State<ApiState>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<RerunQuery>,
    body: Option<JsonBody<RerunBody>>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let in_body = body.and_then(|b| b.0.failed_only);
    let failed_only = match (q.failed_only, in_body) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(format!(
                "`failed_only` is {a} in the query and {b} in the body: give it once"
            )));
        }
        (a, b) => a.or(b).unwrap_or(false),
    };
    let new = state.daemon.rerun(id, failed_only).await?;
    Ok((StatusCode::ACCEPTED, Json(Started { execution: new })).into_response())
}

// ---------------------------------------------------------------------------------
// Connections

/// A connection as the API shows it: secret names, never their values.
#[derive(Serialize, ToSchema)]
#[schema(as = Connection)]
struct ConnectionView {
    name: String,
    plugin: String,
    config: std::collections::BTreeMap<String, String>,
    secret_names: Vec<String>,
    #[schema(value_type = Option<String>)]
    directory: Option<PathBuf>,
    http_hosts: Vec<String>,
    http_internal: bool,
    state: ConnectionState,
    updated_at: i64,
}

impl From<StoredConnection> for ConnectionView {
    fn from(c: StoredConnection) -> ConnectionView {
        ConnectionView {
            name: c.name,
            plugin: c.plugin,
            // Stores written before secret options were refused may hold one in
            // clear: never shown.
            config: c
                .config
                .into_iter()
                .map(|(k, v)| {
                    if crate::project::is_stored_secret_option(&k) {
                        (k, crate::redact::REDACTED.to_owned())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            secret_names: c.secrets.into_iter().map(|(n, _)| n).collect(),
            directory: c.directory,
            http_hosts: c.http_hosts,
            http_internal: c.http_internal,
            state: c.state,
            updated_at: c.updated_at,
        }
    }
}

/// Connections (secret names only).
#[utoipa::path(get, path = "/api/v1/connections", tag = "connections",
    responses((status = 200, description = "every connection", body = Items<ConnectionSummary>), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn list_connections(
    State(state): State<ApiState>,
) -> Result<Json<Items<ConnectionSummary>>, ApiError> {
    blocking(move || {
        Ok(Json(Items {
            items: state.daemon.service().store.connections()?,
        }))
    })
    .await
}

/// One connection (secret names only).
#[utoipa::path(get, path = "/api/v1/connections/{name}", tag = "connections", params(("name" = String, Path, description = "the connection's name")),
    responses((status = 200, description = "the connection", body = ConnectionView), (status = 404, description = "no such connection", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn get_connection(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    blocking(move || {
        let c = state
            .daemon
            .service()
            .store
            .connection(&name)?
            .ok_or_else(|| ApiError::not_found("connection", &name))?;
        Ok(Json(c.into()))
    })
    .await
}

/// `POST /api/v1/connections/{name}/check`'s answer.
#[derive(Serialize, ToSchema)]
struct ConnectionCheck {
    name: String,
    state: ConnectionState,
}

/// A connection to store: secrets are write-only.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ConnectionInput)]
struct ConnectionBody {
    plugin: String,
    /// Options; credentials (`auth.token`, `auth.password`, `auth.key`,
    /// `auth.client_secret`, `postgres.password`, options the plugin declares
    /// secret) are refused here: give them in `secrets`.
    #[serde(default)]
    config: std::collections::BTreeMap<String, String>,
    /// Write-only.
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, String>,
    /// Absolute.
    #[schema(value_type = Option<String>)]
    directory: Option<PathBuf>,
    #[serde(default)]
    http_hosts: Vec<String>,
    /// Hosts granted by name may resolve to internal (loopback, private, link-local)
    /// addresses; default false.
    #[serde(default)]
    http_internal: bool,
}

/// Creates or replaces a connection, then checks it (the answer carries the state).
#[utoipa::path(put, path = "/api/v1/connections/{name}", tag = "connections", params(("name" = String, Path, description = "the connection's name")),
    request_body(content = ConnectionBody),
    responses((status = 200, description = "the connection, checked", body = ConnectionView), (status = 400, description = "invalid connection", body = error::Body), (status = 409, description = "the daemon has no secret key to store secrets with", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn put_connection(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
    JsonBody(body): JsonBody<ConnectionBody>,
) -> Result<Json<ConnectionView>, ApiError> {
    if let Some(d) = &body.directory
        && !d.is_absolute()
    {
        return Err(ApiError::bad_request(format!(
            "directory {}: give an absolute path",
            d.display()
        )));
    }
    blocking(move || {
        let svc = state.daemon.service();
        svc.put_connection(&StoredConnection {
            name: name.clone(),
            plugin: body.plugin,
            config: body.config.into_iter().collect(),
            secrets: body.secrets.into_iter().collect(),
            directory: body.directory,
            http_hosts: body.http_hosts,
            http_internal: body.http_internal,
            state: ConnectionState::Unchecked,
            updated_at: 0,
        })?;
        svc.check_connection(&name)?;
        let c = svc
            .store
            .connection(&name)?
            .ok_or_else(|| ApiError::not_found("connection", &name))?;
        Ok(Json(c.into()))
    })
    .await
}

/// Deletes a connection.
#[utoipa::path(delete, path = "/api/v1/connections/{name}", tag = "connections", params(("name" = String, Path, description = "the connection's name")),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such connection", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn delete_connection(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    blocking(move || {
        if state.daemon.service().store.delete_connection(&name)? {
            Ok(StatusCode::NO_CONTENT)
        } else {
            Err(ApiError::not_found("connection", &name))
        }
    })
    .await
}

/// Checks a connection: Connected, or NeedsFixing with the reason.
#[utoipa::path(post, path = "/api/v1/connections/{name}/check", tag = "connections", params(("name" = String, Path, description = "the connection's name")),
    responses((status = 200, description = "the connection's state", body = ConnectionCheck), (status = 404, description = "no such connection", body = error::Body), (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
async fn check_connection(
    State(state): State<ApiState>,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<ConnectionCheck>, ApiError> {
    blocking(move || {
        let state = state.daemon.service().check_connection(&name)?;
        Ok(Json(ConnectionCheck { name, state }))
    })
    .await
}
