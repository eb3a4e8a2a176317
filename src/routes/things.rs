//! The things API: a read-only catalogue.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::ApiPath;
use crate::routes::keyed::Keyed;
use crate::routes::path_id;
use crate::store::Thing;

/// OpenAPI tag of these routes.
pub const TAG: &str = "things";

/// The things routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_things))
        .routes(routes!(get_thing))
}

/// List things
///
/// The whole catalogue as an object keyed by id, in natural id order.
#[utoipa::path(
    get,
    path = "/things",
    tag = TAG,
    responses(
        (status = 200, description = "Every thing, keyed by id", body = std::collections::BTreeMap<String, Thing>,
            example = json!({"1": {"id": "1", "name": "Thing 1", "description": "The first thing."}})),
    )
)]
pub async fn list_things(
    State(state): State<AppState>,
) -> Result<axum::Json<Keyed<Thing>>, ApiError> {
    let things = state.store.list_things().await?;
    Ok(axum::Json(
        things.into_iter().map(|t| (t.id.clone(), t)).collect(),
    ))
}

/// Get a thing
#[utoipa::path(
    get,
    path = "/things/{id}",
    tag = TAG,
    params(("id" = String, Path, description = "Thing id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The thing", body = Thing),
        (status = 400, description = "The id is not of the allowed form", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No thing has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_thing(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Thing>, ApiError> {
    let id = path_id("thing", id)?;
    Ok(axum::Json(state.store.get_thing(&id).await?))
}
