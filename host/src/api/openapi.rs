//! The parts of the OpenAPI document that belong to no one handler: what the API is,
//! how it is authenticated, its tags. The paths and schemas come from the handlers'
//! `#[utoipa::path]` attributes and their types (see `mod.rs`, [`super::openapi_document`]).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "weir daemon API",
        version = "1.0.0",
        description = "The HTTP API of `weir serve`: everything the CLI does. Every path except /health needs the administrator token (`Authorization: Bearer TOKEN`, or the `weir_session` cookie set by the dashboard's login form). A missing or wrong token is 401 with no details; after `login_attempts_per_minute` wrong tokens (login form or bearer, default 5) from one client address within a minute, every attempt from it is 429 `too-many-attempts` with `Retry-After`. A `Host` that names anything but an IP address, `localhost` or a name in the daemon's `[web] allowed_hosts` is 421 `wrong-host` (DNS rebinding). Dashboard sessions end after `session_idle_secs` unused (default 30 min) and `session_max_secs` after login (default 12 h). Projects sent with PUT read no environment variable (`*_env` options are refused: store credentials on a connection), and a connection's credentials (`auth.token`, `auth.password`, `auth.key`, `auth.client_secret`, `postgres.password`, options the plugin declares secret) are refused in `config`: give them in `secrets`. Errors are JSON {code, message}, requests the router cannot read included: 400 `malformed-body` (not JSON, not UTF-8), `bad-query`, `bad-path`; 413 `too-large` (bodies over 2 MiB); 415 `unsupported-media-type`; 422 `invalid-body` (JSON of the wrong shape); 404 `not-found` (no such route); 405 `method-not-allowed` (with `Allow`). Times are unix milliseconds. Secret values are write-only: responses show secret names only."
    ),
    servers((url = "http://127.0.0.1:8080")),
    // Either scheme: the bearer token, or the dashboard's session cookie.
    security(("bearer" = []), ("cookie" = [])),
    modifiers(&Schemes),
    tags(
        (name = "system", description = "Health, this document, the scheduler"),
        (name = "dashboard", description = "The dashboard page and its login form"),
        (name = "projects", description = "Project files, their schedules and runs"),
        (name = "executions", description = "Execution history, errors, staging data, logs"),
        (name = "connections", description = "Connections (secrets are write-only)")
    )
)]
struct Base;

/// The security schemes the `security` lists name.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer TOKEN`: the administrator's token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::COOKIE,
                "the session the dashboard's login form opens (HttpOnly, SameSite=Strict)",
            ))),
        );
    }
}

/// The document's frame, before the routes add their paths and schemas.
pub(super) fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}
