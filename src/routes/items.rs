//! The bid tracker's items: list, create, read (with the winning bid), upsert, delete, and an
//! item's bids and winner.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::bids::Bid;
use crate::routes::keyed::Keyed;
use crate::routes::schemas::{bid_list_schema, id_schema, nullable_id_schema, text_schema};
use crate::routes::{created_headers, path_id, upsert_response};
use crate::store::{self, ItemBids, ItemDetail, Name};

/// OpenAPI tag of these routes.
pub const TAG: &str = "items";

/// The items routes, with their OpenAPI operations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_items, create_item))
        .routes(routes!(get_item, put_item, delete_item))
        .routes(routes!(list_item_bids))
        .routes(routes!(get_winning_bid))
}

/// The item named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ItemPath {
    /// Item id: 1 to 64 letters, digits, `_` or `-`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    item_id: String,
}

fn item_id_schema() -> Object {
    id_schema(
        "The item's id: 1 to 64 letters, digits, `_` or `-`",
        "item1",
    )
}

fn optional_item_id_schema() -> Object {
    nullable_id_schema(
        "Optional; when present it must equal the id in the path",
        "item1",
    )
}

fn name_schema() -> Object {
    text_schema(false, "1 to 200 characters, not blank.")
}

/// An item with its winning bid.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"item_id": "item1", "item": {"name": "Item Nº 1", "winning": "bid2", "bids": ["bid1", "bid2"]}}))]
pub struct Item {
    #[schema(schema_with = item_id_schema)]
    item_id: String,
    item: ItemEntry,
}

/// An item's content: its name, winning bid and bids.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "Item Nº 1", "winning": "bid2", "bids": ["bid1", "bid2"]}))]
pub struct ItemEntry {
    #[schema(schema_with = name_schema)]
    name: String,
    /// Id of the winning bid: the highest value, the earliest on a tie; `null` without bids.
    winning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = bid_list_schema)]
    bids: Option<BidList>,
}

/// An item's bids: ids, or full bids.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BidList {
    /// Bid ids in the order placed.
    Ids(Vec<String>),
    /// Full bids in the order placed (`complete=1`).
    Full(Vec<Bid>),
}

impl From<store::Item> for Item {
    fn from(item: store::Item) -> Self {
        let (item_id, entry) = entry(item);
        Self {
            item_id,
            item: entry,
        }
    }
}

fn entry(item: store::Item) -> (String, ItemEntry) {
    let bids = match item.bids {
        ItemBids::Omitted => None,
        ItemBids::Ids(ids) => Some(BidList::Ids(ids)),
        ItemBids::Full(bids) => Some(BidList::Full(bids.into_iter().map(Bid::from).collect())),
    };
    (
        item.id,
        ItemEntry {
            name: item.name,
            winning: item.winning,
            bids,
        },
    )
}

/// An item's editable fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemFields {
    #[schema(schema_with = name_schema)]
    name: String,
}

/// An item to create; the server assigns the id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"item": {"name": "Item Nº 3"}}))]
pub struct NewItem {
    item: ItemFields,
}

/// An item's new content; its bids stay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"item": {"name": "Item Nº 2, restored"}}))]
pub struct ItemReplacement {
    #[serde(default)]
    #[schema(schema_with = optional_item_id_schema)]
    item_id: Option<String>,
    item: ItemFields,
}

/// How much of the item's bids to show.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemQuery {
    /// `1`/`true`: omit the bid list (the winner stays). Wins over `complete`.
    #[serde(rename = "winningOnly")]
    #[param(rename = "winningOnly", value_type = Option<String>, pattern = "^(0|1|true|false)$")]
    winning_only: Option<String>,
    /// `1`/`true`: list full bids instead of their ids.
    #[param(value_type = Option<String>, pattern = "^(0|1|true|false)$")]
    complete: Option<String>,
}

/// Reads a flag: `0`/`1`/`true`/`false`, absent is false; anything else is a 400.
fn flag(name: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "{name} must be 0, 1, true or false, got {other:?}"
        ))),
    }
}

/// List items
///
/// Every item with its winning bid and bid ids, as an object keyed by item id, in natural id
/// order.
#[utoipa::path(
    get,
    path = "/items",
    tag = TAG,
    responses(
        (status = 200, description = "Items keyed by id", body = std::collections::BTreeMap<String, ItemEntry>,
            example = json!({"item1": {"name": "Item Nº 1", "winning": "bid2", "bids": ["bid1", "bid2"]},
                             "item2": {"name": "Item Nº 2", "winning": null, "bids": []}})),
    )
)]
pub async fn list_items(
    State(state): State<AppState>,
) -> Result<axum::Json<Keyed<ItemEntry>>, ApiError> {
    let items = state.store.list_items().await?;
    Ok(axum::Json(items.into_iter().map(entry).collect()))
}

/// Create an item
///
/// The server assigns the id: `item` and the next number above the highest ever used that no
/// item has.
#[utoipa::path(
    post,
    path = "/items",
    tag = TAG,
    request_body = NewItem,
    responses(
        (status = 201, description = "The new item, without bids", body = Item,
            headers(("Location" = String, description = "URL of the new item")),
            example = json!({"item_id": "item3", "item": {"name": "Item Nº 3", "winning": null, "bids": []}})),
    )
)]
pub async fn create_item(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewItem>,
) -> Result<(StatusCode, HeaderMap, axum::Json<Item>), ApiError> {
    let name = Name::parse("item/name", body.item.name)?;
    let item = state.store.create_item(name).await?;
    let headers = created_headers(&state, "items", &item.id)?;
    Ok((StatusCode::CREATED, headers, axum::Json(item.into())))
}

/// Get an item
///
/// The item with its winning bid and its bid ids in the order placed. `winningOnly=1` omits the
/// bids; `complete=1` lists full bids instead of ids. Flags take `0`, `1`, `true` or `false`.
#[utoipa::path(
    get,
    path = "/items/{item_id}",
    tag = TAG,
    params(
        ItemPath,
        ItemQuery,
    ),
    responses(
        (status = 200, description = "The item", body = Item),
        (status = 400, description = "The id or a flag is of the wrong form", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No item has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_item(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
    ApiQuery(query): ApiQuery<ItemQuery>,
) -> Result<axum::Json<Item>, ApiError> {
    let id = path_id("item", id)?;
    let winning_only = flag("winningOnly", query.winning_only.as_deref())?;
    let complete = flag("complete", query.complete.as_deref())?;
    let detail = match (winning_only, complete) {
        (true, _) => ItemDetail::WinningOnly,
        (false, true) => ItemDetail::FullBids,
        (false, false) => ItemDetail::BidIds,
    };
    Ok(axum::Json(state.store.get_item(&id, detail).await?.into()))
}

/// Create or rename an item
///
/// 200 if the item existed (its bids stay), 201 with `Location` if it was created.
#[utoipa::path(
    put,
    path = "/items/{item_id}",
    tag = TAG,
    params(ItemPath),
    request_body = ItemReplacement,
    responses(
        (status = 200, description = "The item, renamed, with its bids", body = Item),
        (status = 201, description = "The item, created", body = Item,
            headers(("Location" = String, description = "URL of the new item"))),
        (status = 422, description = "The name is invalid, or the body's id differs from the path's", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_item(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
    ApiJson(body): ApiJson<ItemReplacement>,
) -> Result<(StatusCode, HeaderMap, axum::Json<Item>), ApiError> {
    let id = path_id("item", id)?;
    if body.item_id.as_ref().is_some_and(|body_id| *body_id != id) {
        return Err(ApiError::invalid_field(
            "/item_id",
            format!("must equal the id in the path ({id})"),
        ));
    }
    let name = Name::parse("item/name", body.item.name)?;
    let (item, upsert) = state.store.put_item(&id, name).await?;
    let id = item.id.clone();
    upsert_response(&state, "items", &id, upsert, item.into())
}

/// Delete an item
///
/// Its bids are deleted too.
#[utoipa::path(
    delete,
    path = "/items/{item_id}",
    tag = TAG,
    params(ItemPath),
    responses(
        (status = 204, description = "Deleted, with its bids"),
        (status = 404, description = "No item has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_item(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
) -> Result<StatusCode, ApiError> {
    let id = path_id("item", id)?;
    state.store.delete_item(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An item's bids
///
/// Full bids in the order they were placed.
#[utoipa::path(
    get,
    path = "/items/{item_id}/bids",
    tag = TAG,
    params(ItemPath),
    responses(
        (status = 200, description = "The item's bids in placing order", body = Vec<Bid>),
        (status = 404, description = "No item has this id", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_item_bids(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
) -> Result<axum::Json<Vec<Bid>>, ApiError> {
    let id = path_id("item", id)?;
    let bids = state.store.item_bids(&id).await?;
    Ok(axum::Json(bids.into_iter().map(Bid::from).collect()))
}

/// An item's winning bid
///
/// The highest bid; on a tie, the earliest placed. 404 when the item has no bids.
#[utoipa::path(
    get,
    path = "/items/{item_id}/winning",
    tag = TAG,
    params(ItemPath),
    responses(
        (status = 200, description = "The winning bid", body = Bid),
        (status = 404, description = "No item has this id, or it has no bids", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_winning_bid(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
) -> Result<axum::Json<Bid>, ApiError> {
    let id = path_id("item", id)?;
    Ok(axum::Json(state.store.winning_bid(&id).await?.into()))
}
