//! `Idempotency-Key` on the POSTs that create records (`/books`, `/users`, `/items`, `/bids`),
//! after the IETF httpapi draft "The Idempotency-Key HTTP Header Field".
//!
//! The first request with a key is carried out, to the end even if its client goes away, and
//! its answer is kept for `IDEMPOTENCY_RETENTION_SECS` if it succeeded (a failure created
//! nothing, so its key is let go and a retry is carried out afresh). A repeat with the same key
//! and the same body gets that answer again (status, headers, body, and
//! `Idempotent-Replayed: true`) and creates nothing; the same key with another body is 422; a
//! repeat that arrives while the first is running waits up to [`RUNNING_WAIT`] for its answer,
//! then gets 409 with `Retry-After`.
//!
//! Scope: a key is kept per method and path (`POST /api/v1/bids` and `POST /api/v1/users` do
//! not share keys), and an answer is replayed only to a request with the same body. monolith
//! has no per-client identity on these routes (they are open to every client, and what they
//! answer is readable by every client with a GET), so a client that guessed another's key and
//! body could learn nothing it could not read anyway.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ApiError;
use crate::store::idempotency::{Claim, KeptAnswer, KeyRules};

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// How long a repeat waits for the first request with its key before it is answered 409.
pub const RUNNING_WAIT: Duration = Duration::from_secs(3);

/// Largest answer kept; the creating POSTs answer well under it.
const MAX_KEPT_BODY: usize = 1 << 20;

/// How often a waiting repeat looks again.
const POLL: Duration = Duration::from_millis(20);

/// The collections whose POST takes a key, under the API prefix.
const COLLECTIONS: [&str; 4] = ["/books", "/users", "/items", "/bids"];

/// Middleware: applies `Idempotency-Key` to the creating POSTs; every other request passes.
pub async fn idempotent_posts(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let applies = request.method() == Method::POST
        && request.headers().contains_key(IDEMPOTENCY_KEY)
        && request
            .uri()
            .path()
            .strip_prefix(state.config.api_prefix.as_str())
            .is_some_and(|path| COLLECTIONS.contains(&path));
    if !applies {
        return next.run(request).await;
    }
    match keyed(state, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn keyed(state: AppState, request: Request, next: Next) -> Result<Response, Response> {
    let key = parse_key(request.headers().get(IDEMPOTENCY_KEY)).map_err(into_response)?;
    let scoped = format!("{} {} {key}", request.method(), request.uri().path());
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| into_response(ApiError::PayloadTooLarge))?;
    let fingerprint = Sha256::digest(&body).to_vec();
    let rules = KeyRules {
        retention: state.config.idempotency.retention,
        max_keys: state.config.idempotency.max_keys,
        // No request outlives its timeout: a claim older than that (and a margin) without an
        // answer was left by a process that stopped.
        abandoned_after: state.config.request_timeout * 2 + Duration::from_secs(10),
    };

    let waited = tokio::time::Instant::now() + RUNNING_WAIT;
    loop {
        let claim = state
            .store
            .claim_key(&scoped, &fingerprint, &rules)
            .await
            .map_err(|e| into_response(ApiError::from(e)))?;
        match claim {
            Claim::New => break,
            Claim::Answered(answer) => return Ok(replay(answer)),
            Claim::Mismatch => {
                return Err(into_response(ApiError::invalid_field(
                    "",
                    "this Idempotency-Key was used with a different request body",
                )));
            }
            Claim::Running if tokio::time::Instant::now() < waited => {
                tokio::time::sleep(POLL).await;
            }
            Claim::Running => {
                return Err(into_response(ApiError::Conflict(
                    "a request with this Idempotency-Key is still being answered".to_owned(),
                )));
            }
        }
    }

    // Carried out in a task of its own: a client that goes away must not leave its key
    // claimed with the record created and no answer kept.
    let request = Request::from_parts(parts, Body::from(body));
    let task = tokio::spawn(async move {
        let response = next.run(request).await;
        let (parts, body) = response.into_parts();
        let body = to_bytes(body, MAX_KEPT_BODY).await;
        let kept = match &body {
            Ok(bytes) if parts.status.is_success() => Some(KeptAnswer {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                    })
                    .collect(),
                body: bytes.to_vec(),
            }),
            _ => None,
        };
        if let Err(e) = state.store.settle_key(&scoped, kept).await {
            tracing::warn!(error = %e, "an Idempotency-Key answer could not be kept");
        }
        match body {
            Ok(bytes) => Response::from_parts(parts, Body::from(bytes)),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    });
    task.await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The key of the header: 1 to [`MAX_KEY_LEN`] visible ASCII characters; a key quoted as a
/// structured-field string (`"…"`, as the draft writes it) is the same key unquoted.
fn parse_key(value: Option<&HeaderValue>) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        ))
    };
    let text = value
        .and_then(|v| v.to_str().ok())
        .ok_or_else(invalid)?
        .trim();
    if text.is_empty() || text.len() > MAX_KEY_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.is_empty());
    Ok(unquoted.unwrap_or(text).to_owned())
}

fn replay(answer: KeptAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, Body::from(answer.body)).into_response();
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(
        HeaderName::from_static("idempotent-replayed"),
        HeaderValue::from_static("true"),
    );
    response
}

fn into_response(error: ApiError) -> Response {
    error.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_visible_ascii_bare_or_quoted() {
        let key = |text: &str| parse_key(Some(&HeaderValue::from_bytes(text.as_bytes()).unwrap()));
        assert_eq!(key("abc-123").unwrap(), "abc-123");
        assert_eq!(key("\"8e03978e-40d5\"").unwrap(), "8e03978e-40d5");
        assert_eq!(key("\"\"").unwrap(), "\"\"");
        for bad in ["", "a b", "ké", &"k".repeat(MAX_KEY_LEN + 1)] {
            assert!(key(bad).is_err(), "{bad:?}");
        }
        assert!(parse_key(None).is_err());
    }
}
