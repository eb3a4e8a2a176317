//! Errors as RFC 9457 problem details: [`ApiError`], the [`Problem`] body, and the middleware
//! that renders every 4xx/5xx of the server (ours, axum's and tower-http's) as
//! `application/problem+json`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{self, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::{StoreError, Violation};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details body.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Not Found",
    "status": 404,
    "detail": "book 42 does not exist",
    "instance": "/api/v1/books/42",
    "request_id": "0b6e1f0c-7a3e-4c2b-9a57-1d5f0e2a8c31"
}))]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    /// The status's reason phrase.
    #[schema(example = "Not Found")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 404)]
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path (never the query, which may carry a key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// For 422: each invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The request's id (also in the `x-request-id` header and the logs), to quote when
    /// reporting a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One invalid field of a request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"pointer": "/title", "detail": "must not be blank"}))]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) to the field in the request body.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

impl FieldError {
    /// A field error at `pointer`.
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

impl From<Violation> for FieldError {
    fn from(v: Violation) -> Self {
        Self::new(format!("/{}", v.field), v.message)
    }
}

impl Problem {
    fn new(status: StatusCode, detail: Option<String>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            instance: None,
            errors: Vec::new(),
            request_id: None,
        }
    }
}

/// The `Retry-After` of a 503 for an unavailable database: the pool retries connecting in the
/// background, so a second is a fair first wait.
pub const STORE_RETRY_SECS: u64 = 1;

/// Everything a handler or extractor can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a path id, query parameter or body that cannot be read.
    #[error("{0}")]
    BadRequest(String),
    /// 403: the shared key is missing or wrong.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the resource does not exist; the text says which (`book 42 does not exist`).
    #[error("{0}")]
    NotFound(String),
    /// 409 with `Retry-After`: a request with the same `Idempotency-Key` is still being
    /// answered.
    #[error("{0}")]
    Conflict(String),
    /// 412: a precondition (`If-Match`, `If-None-Match`) does not hold; nothing changed.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is larger than `MAX_BODY_BYTES`.
    #[error("the request body is larger than the server accepts")]
    PayloadTooLarge,
    /// 415: the body's `Content-Type` is not one this route reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: the body is well-formed JSON but breaks the schema or a rule.
    #[error("the request body is invalid")]
    Invalid(Vec<FieldError>),
    /// 429: this client sent too many requests; it may retry after this many seconds.
    #[error("too many requests from this address; retry after {0} s")]
    TooManyRequests(u64),
    /// 507: the resource holds as many records as `MAX_RECORDS_PER_RESOURCE` allows; the text
    /// says which and how many.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 503: the server cannot answer this now (shutting down, a feature not configured).
    #[error("{0}")]
    Unavailable(String),
    /// 503 with `Retry-After`: the database is unreachable or slow; the request may succeed
    /// when it is retried.
    #[error("{0}")]
    StoreUnavailable(String),
    /// 503 with `Retry-After`: a bounded resource is all in use (`FEED_MAX_OPEN` feeds); it
    /// may be free when the request is retried after this many seconds.
    #[error("{0}")]
    Busy(String, u64),
    /// 500: a fault of the server; the cause is logged, never sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 422 for one field.
    pub fn invalid_field(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(pointer, detail)])
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::StoreUnavailable(_) | Self::Busy(..) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(_) | StoreError::NoBids(_) => Self::NotFound(err.to_string()),
            StoreError::MissingReference { field, what } => {
                Self::invalid_field(format!("/{field}"), format!("{what} does not exist"))
            }
            StoreError::Full { .. } => Self::InsufficientStorage(err.to_string()),
            StoreError::PreconditionFailed(_) => Self::PreconditionFailed(err.to_string()),
            StoreError::Exhausted(_) | StoreError::Internal(_) => Self::Internal(err.into()),
            StoreError::Unavailable(_) => Self::StoreUnavailable(err.to_string()),
        }
    }
}

impl From<Vec<Violation>> for ApiError {
    fn from(violations: Vec<Violation>) -> Self {
        Self::Invalid(violations.into_iter().map(FieldError::from).collect())
    }
}

/// The cause of a 5xx, kept in the response extensions for the middleware to log.
#[derive(Clone, Debug)]
struct InternalCause(Arc<anyhow::Error>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut problem = Problem::new(status, Some(self.to_string()));
        let mut cause = None;
        let mut retry_after = None;
        match self {
            Self::Invalid(errors) => problem.errors = errors,
            Self::TooManyRequests(seconds) => retry_after = Some(HeaderValue::from(seconds.max(1))),
            Self::StoreUnavailable(_) | Self::Conflict(_) => {
                retry_after = Some(HeaderValue::from(STORE_RETRY_SECS))
            }
            Self::Busy(_, seconds) => retry_after = Some(HeaderValue::from(seconds.max(1))),
            Self::Internal(err) => {
                problem.detail = Some("internal error".to_owned());
                cause = Some(InternalCause(Arc::new(err)));
            }
            _ => {}
        }
        // The body is written by `ProblemContext::render`, which knows the request path for `instance`.
        let mut response = status.into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response.extensions_mut().insert(problem);
        if let Some(cause) = cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

/// Middleware (with [`crate::middleware::Around`]): renders every error response as
/// problem+json and logs it.
///
/// A response built from [`ApiError`] carries its [`Problem`] in the extensions; any other
/// 4xx/5xx (axum's 404 and 405, tower-http's 408 and 413, a caught panic) gets a problem built
/// from its status. Headers such as `Allow` and `Retry-After` are kept.
pub struct ProblemContext {
    method: Method,
    // The whole URI, not its path: cloning it shares its bytes, and the path is copied out only
    // for an error.
    uri: Uri,
    request_id: Option<HeaderValue>,
}

impl ProblemContext {
    /// What a problem needs to know of the request: its method, path and request id.
    pub fn of(request: &Request) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            request_id: request.headers().get(crate::telemetry::REQUEST_ID).cloned(),
        }
    }

    /// `response` as it was if it is no error, else rendered as a problem.
    pub fn render<B>(self, response: http::Response<B>) -> Response
    where
        B: http_body::Body<Data = axum::body::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let status = response.status();
        if !(status.is_client_error() || status.is_server_error()) {
            return response.map(Body::new);
        }
        let (mut parts, _body) = response.into_parts();
        let mut problem = parts
            .extensions
            .remove::<Problem>()
            .unwrap_or_else(|| Problem::new(status, Some(default_detail(status, &self.method))));
        problem.instance = Some(self.uri.path().to_owned());
        problem.request_id = self
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);

        if status == StatusCode::INSUFFICIENT_STORAGE {
            // A full store is the operator's to know about, not a fault of the server; and any
            // client can ask for it, so it must not flood the error log.
            tracing::warn!(status = status.as_u16(), detail = ?problem.detail, "store full");
        } else if status.is_server_error() {
            match parts.extensions.get::<InternalCause>() {
                Some(InternalCause(cause)) => {
                    tracing::error!(status = status.as_u16(), error = ?cause, "request failed");
                }
                None => {
                    tracing::error!(status = status.as_u16(), detail = ?problem.detail, "request failed")
                }
            }
        } else {
            tracing::debug!(status = status.as_u16(), detail = ?problem.detail, "request refused");
        }

        let body = serde_json::to_vec(&problem).expect("a problem always serializes");
        parts.headers.remove(header::CONTENT_LENGTH);
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        Response::from_parts(parts, Body::from(body))
    }
}

/// Details for errors that did not come from [`ApiError`].
fn default_detail(status: StatusCode, method: &Method) -> String {
    match status {
        StatusCode::NOT_FOUND => "no resource at this path".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => {
            format!("{method} is not allowed on this resource; the Allow header lists what is")
        }
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was abandoned".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than the server accepts".to_owned()
        }
        StatusCode::INTERNAL_SERVER_ERROR => "internal error".to_owned(),
        other => other
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    }
}

/// The response for a handler that panicked: a bare 500 that [`ProblemContext::render`] renders as
/// "internal error" and logs with the panic message, which never reaches the client.
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}
