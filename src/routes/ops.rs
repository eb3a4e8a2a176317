//! Operations endpoints, never under the API prefix: liveness, readiness and metrics.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::{AppState, metrics};

/// OpenAPI tag of these routes.
pub const TAG: &str = "operations";

/// The routes here, for the spec, which serves them from the origin's root rather than under
/// the API prefix.
pub const PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// `/healthz`, `/readyz` and `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::serve_metrics))
}

/// The body of a successful probe.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct ProbeStatus {
    /// `ok` (liveness) or `ready` (readiness).
    status: &'static str,
}

/// Liveness probe
///
/// 200 while the process serves. Never under the API prefix.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = TAG,
    responses((status = 200, description = "The process is serving", body = ProbeStatus))
)]
pub async fn healthz() -> axum::Json<ProbeStatus> {
    axum::Json(ProbeStatus { status: "ok" })
}

/// Readiness probe
///
/// 200 once the data is loaded, 503 once shutdown has begun or while the database cannot be
/// reached (with `DATABASE_URL`). Never under the API prefix.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = TAG,
    responses(
        (status = 200, description = "Ready to take traffic", body = ProbeStatus,
            example = json!({"status": "ready"})),
        (status = 503, description = "Shutting down, or the database is unreachable"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<ProbeStatus>, ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::Unavailable(
            "the server is shutting down".to_owned(),
        ));
    }
    state.store.ping().await?;
    Ok(axum::Json(ProbeStatus { status: "ready" }))
}
