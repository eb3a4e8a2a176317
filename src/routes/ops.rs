//! Operations endpoints, never under the API prefix: liveness, readiness and metrics. Listed once,
//! in [`routes`]: the router, the OpenAPI document and the check that the API prefix is none of
//! their paths all read it.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;

/// OpenAPI tag of these routes.
pub const TAG: &str = "operations";

/// `/healthz`, `/readyz` and `/metrics`, with their OpenAPI operations.
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![routes!(healthz), routes!(readyz), routes!(serve_metrics)]
}

/// The paths of [`routes`].
pub fn paths() -> Vec<String> {
    routes()
        .iter()
        .flat_map(|route| route.1.paths.keys().cloned())
        .collect()
}

/// The operations endpoints, served from the origin's root rather than under the API prefix.
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for route in routes() {
        for path in route.1.paths.keys() {
            router = router.route(path, route.2.clone());
        }
    }
    router
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

/// Prometheus metrics
///
/// Request counts and latencies by route, requests in flight, echo key failures, records per
/// resource, process metrics and, with HTTPS, the certificate's expiry. Prometheus text format.
/// Never under the API prefix.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = TAG,
    responses((status = 200, description = "Metrics in Prometheus text format",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String))
)]
pub async fn serve_metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    // Without the database the counts keep their last values: the rest of the metrics (the
    // 503s among them) matter most exactly then.
    match state.store.counts().await {
        Ok(counts) => state.metrics.set_record_counts(&counts),
        Err(e) => tracing::warn!(error = %e, "records not counted for /metrics"),
    }
    let text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}
