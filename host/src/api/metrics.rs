//! `GET /metrics`: the daemon's Prometheus metrics (see [`crate::metrics`]), behind the
//! API token like every other answer about the installation (Prometheus sends it with
//! `authorization: { credentials_file: ... }` in its scrape config).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;
use super::error;

/// Prometheus metrics: executions by project and status, records, execution duration,
/// schedule lag, running executions, plugin calls and traps, store writes, alerts.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "missing or wrong token (no details)", body = error::Body)))]
pub(super) async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::encode(state.daemon.active()),
    )
}
