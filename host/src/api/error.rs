//! The API's one error type: a status, a stable code and a message meant for people.
//! Internal failures (the store, a panicked task) are logged with their detail and
//! answered with a generic message: a response never carries internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::daemon::DaemonError;
use crate::engine::EngineError;
use crate::service::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra JSON for the client (a validation report).
    pub details: Option<serde_json::Value>,
}

/// An error answer: a stable `code` for programs, a `message` for people, and
/// `details` where there is more (a validation report).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(super) struct Body<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    details: &'a Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    pub fn not_found(what: &str, name: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {what} named `{name}`"),
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized")
    }

    /// An internal failure: logged in full, answered in general.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the daemon could not complete the request; its log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            code: self.code,
            message: &self.message,
            details: &self.details,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        match e {
            ServiceError::NotFound { what, name } => ApiError::not_found(what, &name),
            ServiceError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", m),
            ServiceError::Project(p) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-project", p.to_string())
            }
            ServiceError::Engine(EngineError::Invalid(report)) => ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "validation-failed",
                message: format!("project `{}` is invalid; nothing was run", report.project),
                details: serde_json::to_value(&*report).ok(),
            },
            ServiceError::Failed(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "execution-failed", m)
            }
            ServiceError::Engine(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "engine", e.to_string())
            }
            ServiceError::Store(crate::store::StoreError::NotFound { what, name }) => {
                ApiError::not_found(what, &name)
            }
            ServiceError::Store(crate::store::StoreError::NoSecretKey) => ApiError::new(
                StatusCode::CONFLICT,
                "no-secret-key",
                "the daemon has no secret key, so it cannot store secrets (set WEIR_SECRET_KEY or --key-file)",
            ),
            ServiceError::Store(crate::store::StoreError::Invalid { what, reason }) => {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("{what}: {reason}"),
                )
            }
            ServiceError::Store(other) => ApiError::internal(other),
        }
    }
}

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> ApiError {
        match e {
            DaemonError::Service(s) => s.into(),
            DaemonError::AlreadyRunning { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already-running", e.to_string())
            }
            DaemonError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting-down",
                e.to_string(),
            ),
            DaemonError::Failed(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "run-failed", m)
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ServiceError::from(e).into()
    }
}
