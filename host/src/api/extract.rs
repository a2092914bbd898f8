//! The API's extractors: axum's own (`Json`, `Query`, `Path`, `Form`, a text body),
//! rejecting with [`ApiError`] instead of axum's text/plain answers, so a request
//! the router cannot read is answered `{code, message}` like every other error.
//!
//! Codes: `malformed-body` (400: not JSON, not UTF-8, unreadable), `unknown-field`
//! (400: a body field the route does not take, named with the ones it does),
//! `invalid-body` (422: well-formed, but not what the route takes),
//! `unsupported-media-type` (415), `too-large` (413), `bad-query` and `bad-path`
//! (400). Messages name the problem (the field, the line and column) and never a
//! Rust type or a server path.
//!
//! Unknown query parameters: [`known_query`] checks every request to a token route
//! against the parameters its OpenAPI operation documents (generated from the same
//! `IntoParams` types the handlers extract), so a route that takes none refuses any,
//! and a misspelled or guessed parameter is a 400 `unknown-parameter` naming it and
//! the accepted names — never silently ignored. The query types also carry
//! `deny_unknown_fields`, so the two cannot drift apart unnoticed.

use axum::extract::rejection::{
    BytesRejection, FailedToBufferBody, FormRejection, JsonRejection, PathRejection,
    QueryRejection, StringRejection,
};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::OnceLock;

use super::ApiError;

/// The most a request body may hold.
pub(super) const BODY_LIMIT: usize = 2 << 20;

/// The most of a parser's message kept in an answer.
const DETAIL_BYTES: usize = 300;

/// A JSON body (`Content-Type: application/json`). As an `Option`, a request
/// with no content type and no body is `None`.
pub(super) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = <axum::Json<T> as FromRequest<S>>::from_request(req, state).await?;
        Ok(JsonBody(v))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let v = <axum::Json<T> as OptionalFromRequest<S>>::from_request(req, state).await?;
        Ok(v.map(|axum::Json(v)| JsonBody(v)))
    }
}

/// A body of UTF-8 text.
pub(super) struct TextBody(pub String);

impl<S: Send + Sync> FromRequest<S> for TextBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(TextBody(String::from_request(req, state).await?))
    }
}

/// A form body (`application/x-www-form-urlencoded`).
pub(super) struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Form(v) = axum::Form::from_request(req, state).await?;
        Ok(Form(v))
    }
}

/// The query string.
pub(super) struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(v) =
            axum::extract::Query::from_request_parts(parts, state).await?;
        Ok(Query(v))
    }
}

/// The parameters in the URL's path.
pub(super) struct UrlPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for UrlPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) = axum::extract::Path::from_request_parts(parts, state).await?;
        Ok(UrlPath(v))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        match r {
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-body",
                format!("the body is not valid JSON: {}", detail(&e)),
            ),
            JsonRejection::JsonDataError(e) if detail(&e).contains("unknown field `") => {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown-field",
                    format!("the JSON body does not fit this request: {}", detail(&e)),
                )
            }
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                format!("the JSON body does not fit this request: {}", detail(&e)),
            ),
            JsonRejection::MissingJsonContentType(_) => unsupported_media_type("application/json"),
            JsonRejection::BytesRejection(e) => e.into(),
            other => unexpected(other.status(), other),
        }
    }
}

impl From<FormRejection> for ApiError {
    fn from(r: FormRejection) -> ApiError {
        match r {
            FormRejection::FailedToDeserializeForm(e) => invalid_form(e.status(), &e),
            FormRejection::FailedToDeserializeFormBody(e) => invalid_form(e.status(), &e),
            FormRejection::InvalidFormContentType(_) => {
                unsupported_media_type("application/x-www-form-urlencoded")
            }
            FormRejection::BytesRejection(e) => e.into(),
            other => unexpected(other.status(), other),
        }
    }
}

impl From<StringRejection> for ApiError {
    fn from(r: StringRejection) -> ApiError {
        match r {
            StringRejection::InvalidUtf8(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-body",
                "the body is not UTF-8 text",
            ),
            StringRejection::FailedToBufferBody(e) => e.into(),
            other => unexpected(other.status(), other),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        match r {
            BytesRejection::FailedToBufferBody(e) => e.into(),
            other => unexpected(other.status(), other),
        }
    }
}

impl From<FailedToBufferBody> for ApiError {
    fn from(r: FailedToBufferBody) -> ApiError {
        match r {
            FailedToBufferBody::LengthLimitError(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                format!(
                    "the request body is larger than the limit of {} MiB",
                    BODY_LIMIT >> 20
                ),
            ),
            FailedToBufferBody::UnknownBodyError(e) => {
                tracing::debug!(error = %e, "request body not read");
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-body",
                    "the request body could not be read",
                )
            }
            other => unexpected(other.status(), other),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        match r {
            QueryRejection::FailedToDeserializeQueryString(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-query",
                format!("the query string is not valid: {}", detail(&e)),
            ),
            other => unexpected(other.status(), other),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        use axum::extract::path::ErrorKind;
        let PathRejection::FailedToDeserializePathParams(e) = r else {
            return unexpected(r.status(), r);
        };
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad-path", m);
        match e.kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => {
                bad(format!("the `{key}` in the URL is not UTF-8 once decoded"))
            }
            ErrorKind::ParseErrorAtKey { key, value, .. }
            | ErrorKind::DeserializeError { key, value, .. } => {
                bad(format!("`{}` is not a valid `{key}`", bounded(value)))
            }
            ErrorKind::ParseError { value, .. } | ErrorKind::ParseErrorAtIndex { value, .. } => {
                bad(format!("`{}` in the URL is not valid here", bounded(value)))
            }
            // The route and its extractor disagree: the server's mistake.
            _ => ApiError::internal(e.body_text()),
        }
    }
}

/// The query parameters each documented operation takes, by `(METHOD, path template)`.
fn documented_queries() -> &'static HashMap<(String, String), Vec<String>> {
    static MAP: OnceLock<HashMap<(String, String), Vec<String>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let doc = serde_json::to_value(super::openapi_document()).unwrap_or_default();
        let mut map = HashMap::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let names = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect();
                map.insert((method.to_ascii_uppercase(), path.clone()), names);
            }
        }
        map
    })
}

/// The documented operation a request is for: its method and a path template whose
/// `{param}` segments match any one segment. This layer sits on routes the router
/// has matched, and the router is built from the same documented list.
fn operation_of(
    method: &Method,
    path: &str,
) -> Option<(&'static (String, String), &'static [String])> {
    let segments: Vec<&str> = path.split('/').collect();
    // The most literal template wins (`/x/summary` over `/x/{name}`).
    let params = |t: &str| t.matches('{').count();
    let mut fitting: Vec<_> = documented_queries()
        .iter()
        .filter_map(|(key, names)| {
            let fits = key.0 == method.as_str() && {
                let template: Vec<&str> = key.1.split('/').collect();
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')))
            };
            fits.then_some((key, names.as_slice()))
        })
        .collect();
    fitting.sort_by_key(|((_, t), _)| params(t));
    fitting.into_iter().next()
}

/// Refuses a query parameter the route does not document (see the module's notes).
pub(super) async fn known_query(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query()
        && let Some(((method, path), accepted)) =
            operation_of(request.method(), request.uri().path())
    {
        let unknown = form_urlencoded::parse(query.as_bytes())
            .map(|(name, _)| name)
            .find(|name| !name.is_empty() && !accepted.iter().any(|a| a == name));
        if let Some(name) = unknown {
            return unknown_parameter(&name, method, path, accepted).into_response();
        }
    }
    next.run(request).await
}

fn unknown_parameter(name: &str, method: &str, path: &str, accepted: &[String]) -> ApiError {
    let takes = if accepted.is_empty() {
        "takes no query parameters".to_owned()
    } else {
        let names: Vec<String> = accepted.iter().map(|a| format!("`{a}`")).collect();
        format!("takes {}", names.join(", "))
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "unknown-parameter",
        format!(
            "unknown query parameter `{}`: {method} {path} {takes}",
            bounded(name)
        ),
    )
}

/// `value` if it lies in `lo..=hi`, else a 400 naming the parameter and the range.
pub(super) fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: Option<T>,
    default: T,
    lo: T,
    hi: T,
) -> Result<T, ApiError> {
    match value {
        None => Ok(default),
        Some(v) if v >= lo && v <= hi => Ok(v),
        Some(v) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            format!("`{name}` {v} is out of range: use {lo} to {hi} (default {default})"),
        )),
    }
}

fn invalid_form(status: StatusCode, e: &dyn std::error::Error) -> ApiError {
    ApiError::new(
        status,
        "invalid-body",
        format!("the form does not fit this request: {}", detail(e)),
    )
}

fn unsupported_media_type(expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        format!("send the body with `Content-Type: {expected}`"),
    )
}

/// A rejection axum added after this was written: its status, a general message.
fn unexpected(status: StatusCode, detail: impl std::fmt::Display) -> ApiError {
    if status.is_server_error() {
        return ApiError::internal(detail);
    }
    tracing::debug!(error = %detail, "request refused");
    ApiError::new(status, "bad-request", "the request could not be read")
}

/// What the parser said (after axum's own prefix), bounded, with Rust's type
/// names put in words.
fn detail(rejection: &dyn std::error::Error) -> String {
    let text = rejection
        .source()
        .map_or_else(|| rejection.to_string(), |s| s.to_string());
    plain(&bounded(&text))
}

fn bounded(text: &str) -> String {
    if text.len() <= DETAIL_BYTES {
        return text.to_owned();
    }
    let mut cut = DETAIL_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// serde names the Rust type it wanted (`expected u64`, `expected struct
/// ConnectionBody`): say what the client should send instead.
fn plain(text: &str) -> String {
    const EXPECTED: &str = "expected ";
    fn word(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(EXPECTED) {
        let (head, tail) = rest.split_at(at + EXPECTED.len());
        out.push_str(head);
        let first = word(tail);
        let (said, used) = match first {
            "struct" | "enum" => {
                let after = &tail[first.len()..];
                let name = after.strip_prefix(' ').map_or("", word);
                let said = if first == "struct" {
                    "an object"
                } else {
                    "one of the documented values"
                };
                let used = first.len() + if name.is_empty() { 0 } else { 1 + name.len() };
                (said, used)
            }
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i32" | "i64"
            | "i128" | "isize" | "f32" | "f64" => ("a number", first.len()),
            _ => ("", 0),
        };
        out.push_str(said);
        rest = &tail[used..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_type_names_are_put_in_words() {
        assert_eq!(
            plain("invalid type: integer `5`, expected struct ConnectionBody at line 1 column 1"),
            "invalid type: integer `5`, expected an object at line 1 column 1"
        );
        assert_eq!(
            plain("limit: invalid type: string \"x\", expected u64"),
            "limit: invalid type: string \"x\", expected a number"
        );
        assert_eq!(
            plain("expected enum Kind, expected i32; expected a string"),
            "expected one of the documented values, expected a number; expected a string"
        );
        assert_eq!(
            plain("expected value at line 1"),
            "expected value at line 1"
        );
        assert_eq!(plain("ends with expected "), "ends with expected ");
    }

    #[test]
    fn details_are_bounded() {
        let long = "é".repeat(400);
        let b = bounded(&long);
        assert!(b.len() <= DETAIL_BYTES + "…".len(), "{}", b.len());
        assert!(b.ends_with('…'));
    }
}
