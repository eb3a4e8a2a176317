//! The things API: a read-only catalogue.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::conditional::{etag, tagged_read};
use crate::routes::listing::{QueryPairs, RecordList, list_params, write_entry};
use crate::routes::path_id;
use crate::store::{Resource, Thing, query};

/// OpenAPI tag of these routes.
pub const TAG: &str = "things";

/// The things routes, with their OpenAPI operations (paths without the API prefix).
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![routes!(list_things), routes!(get_thing)]
}

list_params!(ThingListParams, query::THINGS);

/// List things
///
/// The whole catalogue as an object keyed by id, in natural id order; optionally only the things
/// that match filters and a search (`q`), in another order (`sort=name`), one page of them
/// (`limit`, `offset`). `X-Total-Count` is the number of matching things.
#[utoipa::path(
    get,
    path = "/things",
    tag = TAG,
    params(ThingListParams),
    responses(
        (status = 200, description = "Every thing, keyed by id", body = std::collections::BTreeMap<String, Thing>,
            headers(("X-Total-Count" = usize, description = "Number of things that match the filters and search (all things without them), before paging")),
            example = json!({"1": {"id": "1", "name": "Thing 1", "description": "The first thing."}})),
        (status = 400, description = "A parameter the list does not take or given twice, a value of the wrong form (`limit` or `offset` out of range, an unknown `sort` field, a malformed filter), or a query that is not UTF-8 once percent-decoded"),
    )
)]
pub async fn list_things(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    ApiQuery(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    const THINGS: RecordList<Thing> = RecordList {
        what: Resource::Things,
        fields: query::THINGS,
        find: |store, query, from, n| {
            Box::pin(async move { store.find_things(&query, from, n).await })
        },
        write: |out, thing| write_entry(out, &thing.id, thing),
        enclosed: ("{", "}"),
    };
    THINGS.respond(&state.store, &uri, &headers, &pairs).await
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id("thing", id)?;
    let thing = state.store.get_thing(&id).await?;
    let etag = etag(state.store.epoch(), thing.version);
    tagged_read(&headers, etag, axum::Json(thing))
}
