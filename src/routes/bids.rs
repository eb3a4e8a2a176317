//! The bid tracker's bids: list, place, read, delete. Bids are immutable: PUT and PATCH are 405.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::conditional::{etag, precondition, tagged, tagged_read};
use crate::routes::listing::{QueryPairs, RecordList, list_params, write_entry};
use crate::routes::schemas::{bid_value_schema, id_schema};
use crate::routes::{created_headers, path_id};
use crate::store::{self, BidValue, NewBid as NewStoreBid, Resource, is_valid_id, query};

/// OpenAPI tag of these routes.
pub const TAG: &str = "bids";

/// The bids routes, with their OpenAPI operations (paths without the API prefix).
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![routes!(list_bids, place_bid), routes!(get_bid, delete_bid)]
}

/// The bid named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BidPath {
    /// Bid id: 1 to 64 letters, digits, `_` or `-`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    bid_id: String,
}

fn bid_id_schema() -> Object {
    id_schema("The bid's id", "bid1")
}

fn item_ref_schema() -> Object {
    id_schema("Id of an existing item", "item1")
}

fn user_ref_schema() -> Object {
    id_schema("Id of an existing user", "user1")
}

/// A bid.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"bid_id": "bid1", "bid": {"item": "item1", "value": 500.0, "user": "user1"}}))]
pub struct Bid {
    #[schema(schema_with = bid_id_schema)]
    bid_id: String,
    bid: BidEntry,
}

/// A bid's content.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"item": "item1", "value": 500.0, "user": "user1"}))]
pub struct BidEntry {
    #[schema(schema_with = item_ref_schema)]
    item: String,
    /// The amount, greater than 0.
    #[schema(exclusive_minimum = 0)]
    value: f64,
    #[schema(schema_with = user_ref_schema)]
    user: String,
}

impl From<store::Bid> for Bid {
    fn from(bid: store::Bid) -> Self {
        Self {
            bid_id: bid.id,
            bid: BidEntry {
                item: bid.item,
                value: bid.value,
                user: bid.user,
            },
        }
    }
}

/// The fields of a bid to place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BidFields {
    #[schema(schema_with = item_ref_schema)]
    item: String,
    #[schema(schema_with = bid_value_schema)]
    value: BidValue,
    #[schema(schema_with = user_ref_schema)]
    user: String,
}

/// A bid to place; the server assigns the id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"bid": {"item": "item1", "value": "100000", "user": "user1"}}))]
pub struct NewBid {
    bid: BidFields,
}

list_params!(BidListParams, query::BIDS);

/// List bids
///
/// Every bid, as an object keyed by bid id in natural id order (`bid9` before `bid10`), each in
/// the original tracker's wrapper (`{"bid_id": …, "bid": {…}}`); optionally only those that
/// match filters (`item=item1&user=user2`, `value_gte=…`) and a search (`q`), in another order
/// (`sort=-value`), one page of them (`limit`, `offset`). `X-Total-Count` is the number of
/// matching bids.
#[utoipa::path(
    get,
    path = "/bids",
    tag = TAG,
    params(BidListParams),
    responses(
        (status = 200, description = "Bids keyed by id", body = std::collections::BTreeMap<String, Bid>,
            headers(("X-Total-Count" = usize, description = "Number of bids that match the filters and search (all bids without them), before paging")),
            example = json!({"bid1": {"bid_id": "bid1", "bid": {"item": "item1", "value": 500.0, "user": "user1"}},
                             "bid2": {"bid_id": "bid2", "bid": {"item": "item1", "value": 1000.0, "user": "user2"}}})),
        (status = 400, description = "A parameter the list does not take or given twice, a value of the wrong form (`limit` or `offset` out of range, an unknown `sort` field, a malformed filter), or a query that is not UTF-8 once percent-decoded"),
    )
)]
pub async fn list_bids(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    ApiQuery(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    const BIDS: RecordList<store::Bid> = RecordList {
        what: Resource::Bids,
        fields: query::BIDS,
        find: |store, query, from, n| {
            Box::pin(async move { store.find_bids(&query, from, n).await })
        },
        write: |out, bid| write_entry(out, &bid.id, &Bid::from(bid.clone())),
        enclosed: ("{", "}"),
    };
    BIDS.respond(&state.store, &uri, &headers, &pairs).await
}

/// Place a bid
///
/// `value` is a number greater than 0, or a string holding one (`"100000"`), as the original
/// client sends it; it is stored and returned as a number. The item's winning bid is updated in
/// the same step. An unknown user or item is a 422 naming it.
#[utoipa::path(
    post,
    path = "/bids",
    tag = TAG,
    request_body = NewBid,
    responses(
        (status = 201, description = "The bid as placed", body = Bid,
            headers(("Location" = String, description = "URL of the new bid"))),
        (status = 422, description = "A field is invalid, or the user or item does not exist"),
        (status = 507, description = "The store holds `MAX_RECORDS_PER_RESOURCE` of these already; nothing was stored"),
    )
)]
pub async fn place_bid(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewBid>,
) -> Result<Response, ApiError> {
    let BidFields { item, value, user } = body.bid;
    let mut errors = Vec::new();
    for (pointer, id) in [("/bid/item", &item), ("/bid/user", &user)] {
        if !is_valid_id(id) {
            errors.push(crate::error::FieldError::new(
                pointer,
                "must be an id of 1 to 64 letters, digits, `_` or `-`",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    let bid = state
        .store
        .place_bid(NewStoreBid { item, user, value })
        .await?;
    let headers = created_headers(&state, "bids", &bid.id)?;
    let version = bid.version;
    let answer = (StatusCode::CREATED, headers, axum::Json(Bid::from(bid)));
    Ok(tagged(state.store.epoch(), version, answer))
}

/// Get a bid
///
/// The bid with this id, in the original tracker's shape (`bid_id` and a `bid` object). Bids
/// never change once placed; a deleted bid, or one whose user or item was deleted, is 404.
#[utoipa::path(
    get,
    path = "/bids/{bid_id}",
    tag = TAG,
    params(BidPath),
    responses(
        (status = 200, description = "The bid", body = Bid),
        (status = 404, description = "No bid has this id"),
    )
)]
pub async fn get_bid(
    State(state): State<AppState>,
    ApiPath(BidPath { bid_id: id }): ApiPath<BidPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id("bid", id)?;
    let bid = state.store.get_bid(&id).await?;
    let etag = etag(state.store.epoch(), bid.version);
    tagged_read(&headers, etag, axum::Json(Bid::from(bid)))
}

/// Delete a bid
///
/// The item's winning bid is recomputed in the same step.
#[utoipa::path(
    delete,
    path = "/bids/{bid_id}",
    tag = TAG,
    params(BidPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No bid has this id"),
    )
)]
pub async fn delete_bid(
    State(state): State<AppState>,
    ApiPath(BidPath { bid_id: id }): ApiPath<BidPath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = path_id("bid", id)?;
    let precondition = precondition(&headers, state.store.epoch())?;
    state.store.delete_bid_if(&id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}
