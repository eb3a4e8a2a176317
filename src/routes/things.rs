//! The things API: a read-only catalogue.

use axum::extract::State;
use serde::Serialize;
use serde::ser::SerializeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::ApiPath;
use crate::store::{Thing, is_valid_id};

/// OpenAPI tag of these routes.
pub const TAG: &str = "things";

/// The things routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_things))
        .routes(routes!(get_thing))
}

/// A JSON object of things keyed by id, written in the order given (natural id order).
#[derive(Debug)]
pub struct Catalogue(Vec<Thing>);

impl Serialize for Catalogue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for thing in &self.0 {
            map.serialize_entry(&thing.id, thing)?;
        }
        map.end()
    }
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
pub async fn list_things(State(state): State<AppState>) -> Result<axum::Json<Catalogue>, ApiError> {
    Ok(axum::Json(Catalogue(state.store.list_things().await?)))
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
    if !is_valid_id(&id) {
        return Err(ApiError::BadRequest(
            "a thing id is 1 to 64 letters, digits, `_` or `-`".to_owned(),
        ));
    }
    Ok(axum::Json(state.store.get_thing(&id).await?))
}
