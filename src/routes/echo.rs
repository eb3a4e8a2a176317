//! The echo API: sends a message back, to callers that present the shared key.
//!
//! The key is checked in one place, [`authorize`], which both handlers call; it compares SHA-256
//! digests in constant time, so neither the key's content nor its length leaks through timing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiQuery, has_json_content_type, parse_json};

/// OpenAPI tag of these routes.
pub const TAG: &str = "echo";

/// The header that carries the key.
pub const KEY_HEADER: &str = "x-server-key";

/// The echo route, with its OpenAPI operations (path without the API prefix).
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![routes!(echo_get, echo_post)]
}

/// The echoed message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"echo": "Hello, world! 👋"}))]
pub struct Echo {
    /// The message, exactly as sent.
    echo: String,
}

/// Query parameters of `GET /echo`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EchoQuery {
    /// The text to send back, any Unicode, possibly empty; percent-escapes must decode to UTF-8.
    // Optional in Rust so that a missing message is judged after the key, not before it.
    #[param(required = true, value_type = String)]
    message: Option<String>,
    /// The shared key, when it is not sent in the `X-Server-Key` header.
    server_key: Option<String>,
}

/// Query parameters of `POST /echo`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyQuery {
    /// The shared key, when it is not sent in the `X-Server-Key` header or the body.
    server_key: Option<String>,
}

/// A JSON message to echo.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"message": "Hello, world! 👋"}))]
pub struct EchoMessage {
    /// The text to send back, any Unicode, possibly empty.
    message: String,
    /// The shared key, when it is not sent in the `X-Server-Key` header or the query.
    #[serde(default)]
    // Read by the lenient pass in `echo_post`, which must find the key before the body is judged.
    #[allow(dead_code)]
    server_key: Option<String>,
}

/// Checks the presented key against `SECRET_KEY`: 503 if none is configured, 403 if the key is
/// missing or wrong.
pub fn authorize(state: &AppState, presented: Option<&str>) -> Result<(), ApiError> {
    let Some(secret) = &state.config.secret_key else {
        return Err(ApiError::Unavailable(
            "the echo API is disabled: the server has no SECRET_KEY configured".to_owned(),
        ));
    };
    let matches = presented.is_some_and(|key| {
        let expected = Sha256::digest(secret.expose_secret().as_bytes());
        let given = Sha256::digest(key.as_bytes());
        bool::from(expected.ct_eq(&given))
    });
    if matches {
        Ok(())
    } else {
        let reason = if presented.is_some() {
            "wrong"
        } else {
            "missing"
        };
        state.metrics.echo_auth_failed(reason);
        tracing::debug!(reason, "echo key refused");
        Err(ApiError::Forbidden(
            "a valid server key is required: send it in the X-Server-Key header, the server_key \
             query parameter, or a server_key field of a JSON body"
                .to_owned(),
        ))
    }
}

fn header_key(headers: &HeaderMap) -> Option<&str> {
    headers.get(KEY_HEADER).and_then(|v| v.to_str().ok())
}

/// Echo a query parameter
///
/// Sends `message` back as `{"echo": …}`, byte for byte. Needs the shared key in the
/// `X-Server-Key` header or the `server_key` query parameter. A query whose percent-escapes do
/// not decode to UTF-8 (`message=%ff`) is a 400: it is refused, not echoed with U+FFFD.
#[utoipa::path(
    get,
    path = "/echo",
    tag = TAG,
    params(EchoQuery),
    security(("server_key_header" = []), ("server_key_query" = [])),
    responses(
        (status = 200, description = "The message, sent back", body = Echo),
        (status = 400, description = "No `message` parameter, or a query that is not UTF-8 once percent-decoded"),
        (status = 403, description = "The key is missing or wrong"),
        (status = 503, description = "The server has no SECRET_KEY configured"),
    )
)]
pub async fn echo_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EchoQuery>,
) -> Result<axum::Json<Echo>, ApiError> {
    authorize(&state, header_key(&headers).or(query.server_key.as_deref()))?;
    let message = query.message.ok_or_else(|| {
        ApiError::BadRequest("the message query parameter is required".to_owned())
    })?;
    Ok(axum::Json(Echo { echo: message }))
}

/// Echo a body
///
/// Sends the message back as `{"echo": …}`, byte for byte: a JSON body's `message` field, or a
/// `text/plain` body whole. Text that is not UTF-8 (a stray byte, a lone surrogate escape in
/// JSON) is a 400. Needs the shared key in the `X-Server-Key` header, the `server_key`
/// query parameter, or (JSON) a `server_key` field.
#[utoipa::path(
    post,
    path = "/echo",
    tag = TAG,
    params(KeyQuery),
    request_body(content(
        (EchoMessage = "application/json"),
        (String = "text/plain", example = "Hello, world! 👋"),
    )),
    security(("server_key_header" = []), ("server_key_query" = []), ()),
    responses(
        (status = 200, description = "The message, sent back", body = Echo),
        (status = 400, description = "The body is not valid JSON, or not UTF-8 text; or the query is not UTF-8 once percent-decoded"),
        (status = 403, description = "The key is missing or wrong"),
        (status = 415, description = "The body is neither JSON nor text/plain"),
        (status = 503, description = "The server has no SECRET_KEY configured"),
    )
)]
pub async fn echo_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<KeyQuery>,
    body: Bytes,
) -> Result<axum::Json<Echo>, ApiError> {
    let outside_key = header_key(&headers).or(query.server_key.as_deref());
    if has_json_content_type(&headers) {
        // The key is checked before the body is judged, so that only key holders learn what
        // is wrong with a body; a body that does not parse presents no key.
        let body_key = match outside_key {
            Some(_) => None,
            None => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("server_key")?.as_str().map(str::to_owned)),
        };
        authorize(&state, outside_key.or(body_key.as_deref()))?;
        let message: EchoMessage = parse_json(&body)?;
        return Ok(axum::Json(Echo {
            echo: message.message,
        }));
    }
    authorize(&state, outside_key)?;
    if !is_text_plain(&headers) {
        return Err(ApiError::UnsupportedMediaType(
            "send the message as application/json ({\"message\": …}) or text/plain".to_owned(),
        ));
    }
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("a text/plain body must be UTF-8".to_owned()))?;
    Ok(axum::Json(Echo { echo: text }))
}

fn is_text_plain(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/plain"))
}
