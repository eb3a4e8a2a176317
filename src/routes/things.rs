//! The things API: a read-only catalogue.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::listing::{ListSource, PageParams, json_response, list_headers, write_entry};
use crate::routes::path_id;
use crate::store::{Resource, Thing};

/// OpenAPI tag of these routes.
pub const TAG: &str = "things";

/// The things routes, with their OpenAPI operations (paths without the API prefix).
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![routes!(list_things), routes!(get_thing)]
}

/// List things
///
/// The whole catalogue as an object keyed by id, in natural id order; optionally one page of it
/// (`limit`, `offset`). The total number of things is in the `X-Total-Count` header.
#[utoipa::path(
    get,
    path = "/things",
    tag = TAG,
    params(PageParams),
    responses(
        (status = 200, description = "Every thing, keyed by id", body = std::collections::BTreeMap<String, Thing>,
            headers(("X-Total-Count" = usize, description = "Number of things in all")),
            example = json!({"1": {"id": "1", "name": "Thing 1", "description": "The first thing."}})),
        (status = 400, description = "`limit` or `offset` out of range, or a parameter the list does not take"),
    )
)]
pub async fn list_things(
    State(state): State<AppState>,
    uri: Uri,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    let page = params.page()?;
    let total = state.store.count(Resource::Things).await?;
    let store = state.store.clone();
    let things = ListSource::new(
        page,
        move |from, n| {
            let store = store.clone();
            Box::pin(async move { store.list_things(from, n).await })
        },
        |thing: &Thing| thing.id.clone(),
        |out, thing| write_entry(out, &thing.id, thing),
    )
    .enclosed("{", "}");
    json_response(things, list_headers(&uri, page, total)).await
}

/// Get a thing
///
/// The thing with this id, from the read-only catalogue seeded from `things.json`.
#[utoipa::path(
    get,
    path = "/things/{id}",
    tag = TAG,
    params(("id" = String, Path, description = "Thing id", pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses(
        (status = 200, description = "The thing", body = Thing),
        (status = 400, description = "The id is not of the allowed form"),
        (status = 404, description = "No thing has this id"),
    )
)]
pub async fn get_thing(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<Thing>, ApiError> {
    let id = path_id("thing", id)?;
    Ok(axum::Json(state.store.get_thing(&id).await?))
}
