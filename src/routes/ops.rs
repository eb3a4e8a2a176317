//! Operations endpoints, never under the API prefix: liveness and readiness.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;

/// `/healthz` and `/readyz`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The body of a successful probe.
#[derive(Debug, Serialize)]
pub struct ProbeStatus {
    status: &'static str,
}

/// Liveness: 200 while the process serves.
pub async fn healthz() -> axum::Json<ProbeStatus> {
    axum::Json(ProbeStatus { status: "ok" })
}

/// Readiness: 200 once the data is loaded, 503 once shutdown has begun.
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<ProbeStatus>, ApiError> {
    if state.ready.load(Ordering::Acquire) {
        Ok(axum::Json(ProbeStatus { status: "ready" }))
    } else {
        Err(ApiError::Unavailable(
            "the server is shutting down".to_owned(),
        ))
    }
}
