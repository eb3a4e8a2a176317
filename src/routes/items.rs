//! The bid tracker's items: list, create, read (with the winning bid), upsert, delete, and an
//! item's bids and winner.

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::bids::Bid;
use crate::routes::conditional::{
    etag, list_etag, not_modified, precondition, tagged, tagged_read,
};
use crate::routes::listing::{
    CHUNK, JsonSource, ListRequest, ListSource, Page, PageParams, QueryPairs, chunk_for,
    json_response, list_headers, list_params, write_json,
};
use crate::routes::schemas::{bid_list_schema, id_schema, nullable_id_schema, text_schema};
use crate::routes::{created_headers, path_id, upsert_response};
use crate::store::query::{self, ListQuery};
use crate::store::{self, Cursor, Name, Resource, Store, StoreError, Version};

/// OpenAPI tag of these routes.
pub const TAG: &str = "items";

/// The items routes, with their OpenAPI operations (paths without the API prefix).
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![
        routes!(list_items, create_item),
        routes!(get_item, put_item, delete_item),
        routes!(list_item_bids),
        routes!(get_winning_bid),
    ]
}

/// The item named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ItemPath {
    /// Item id: 1 to 64 letters, digits, `_` or `-`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub(crate) item_id: String,
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

/// An item in the list, under its id, in the original tracker's wrapper.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"item": {"name": "Item Nº 1", "winning": "bid2", "bids": ["bid1", "bid2"]}}))]
pub struct ItemListEntry {
    item: ItemEntry,
}

impl Item {
    /// An item without its bid list (`winningOnly`), or one known to have no bids.
    fn head(item: store::Item, bids: Option<BidList>) -> Self {
        Self {
            item_id: item.id,
            item: ItemEntry {
                name: item.name,
                winning: item.winning,
                bids,
            },
        }
    }
}

/// How an item's bids are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BidDetail {
    /// Bid ids.
    Ids,
    /// Full bids (`complete=1`).
    Full,
}

/// `"name":…,"winning":…,"bids":[`: the fields of an item entry up to its bid list.
fn write_entry_head(out: &mut Vec<u8>, item: &store::Item) {
    out.extend_from_slice(b"{\"name\":");
    write_json(out, &item.name);
    out.extend_from_slice(b",\"winning\":");
    write_json(out, &item.winning);
    out.extend_from_slice(b",\"bids\":[");
}

/// An item's bids from `page`, read in chunks, between `open` and `close`.
fn bids_source(
    store: &Store,
    item: &str,
    page: Page,
    detail: BidDetail,
) -> ListSource<(u64, store::Bid), u64> {
    let (store, item) = (store.clone(), item.to_owned());
    let write: fn(&mut Vec<u8>, &(u64, store::Bid)) = match detail {
        BidDetail::Ids => |out, (_, bid)| write_json(out, &bid.id),
        BidDetail::Full => |out, (_, bid)| write_json(out, &Bid::from(bid.clone())),
    };
    ListSource::new(
        page,
        move |from, n| {
            let (store, item) = (store.clone(), item.clone());
            Box::pin(async move {
                match store.item_bids(&item, from, n).await {
                    Ok((_, bids)) => Ok(bids),
                    // Deleted while its bids were being sent: the list ends here.
                    Err(StoreError::NotFound(_)) => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            })
        },
        |(seq, _)| *seq,
        write,
    )
}

const ALL: Page = Page {
    offset: 0,
    limit: usize::MAX,
};

/// One item with its bid list, streamed: `{"item_id":…,"item":{…,"bids":[…]}}`. The item's
/// winner and its first chunk of bids are read together, so an item with up to a chunk of
/// bids is one consistent read.
async fn item_source(
    store: &Store,
    id: &str,
    detail: BidDetail,
) -> Result<(Version, impl JsonSource), StoreError> {
    let (item, first) = store.item_bids(id, Cursor::Offset(0), CHUNK).await?;
    let version = item.version;
    let mut open = Vec::from(&b"{\"item_id\":"[..]);
    write_json(&mut open, &item.id);
    open.extend_from_slice(b",\"item\":");
    write_entry_head(&mut open, &item);
    let source = bids_source(store, &item.id, ALL, detail)
        .starting_with(first)
        .enclosed(open, "]}}");
    Ok((version, source))
}

/// Flush a fill of the item list once it holds this much.
const FLUSH_BYTES: usize = 64 * 1024;

/// The item list: items read in chunks, each with its bid ids, also read in chunks, so that
/// neither many items nor an item with many bids is ever held whole.
struct ItemsSource {
    store: Store,
    query: ListQuery,
    next: Cursor<store::Item>,
    remaining: usize,
    pending: std::vec::IntoIter<store::Item>,
    bids: Option<ListSource<(u64, store::Bid), u64>>,
    started: bool,
    written: usize,
    exhausted: bool,
}

#[async_trait]
impl JsonSource for ItemsSource {
    async fn fill(&mut self, out: &mut Vec<u8>) -> Result<bool, StoreError> {
        if !self.started {
            out.push(b'{');
            self.started = true;
        }
        loop {
            if let Some(bids) = &mut self.bids {
                if bids.fill(out).await? {
                    return Ok(true);
                }
                self.bids = None;
                if out.len() >= FLUSH_BYTES {
                    return Ok(true);
                }
            } else if let Some(listed) = self.pending.next() {
                // The winner and the first chunk of bids are read together, so they agree.
                let first = Cursor::Offset(0);
                let (item, first) = match self.store.item_bids(&listed.id, first, CHUNK).await {
                    Ok(found) => found,
                    // Deleted since its chunk of items was read: it is not in the list.
                    Err(StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                if self.written > 0 {
                    out.push(b',');
                }
                self.written += 1;
                let mut open = Vec::new();
                write_json(&mut open, &item.id);
                open.extend_from_slice(b":{\"item\":");
                write_entry_head(&mut open, &item);
                let bids = bids_source(&self.store, &item.id, ALL, BidDetail::Ids);
                self.bids = Some(bids.starting_with(first).enclosed(open, "]}}"));
            } else if self.exhausted {
                out.push(b'}');
                return Ok(false);
            } else {
                let wanted = self.remaining.min(chunk_for(&self.query));
                let chunk = if wanted == 0 {
                    Vec::new()
                } else {
                    let from = std::mem::replace(&mut self.next, Cursor::Offset(0));
                    self.store.find_items(&self.query, from, wanted).await?
                };
                self.remaining -= chunk.len();
                match chunk.last() {
                    Some(last) if chunk.len() == wanted => {
                        self.next = Cursor::After(last.clone());
                    }
                    _ => self.exhausted = true,
                }
                self.pending = chunk.into_iter();
                if !out.is_empty() && self.written > 0 {
                    return Ok(true);
                }
            }
        }
    }
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

list_params!(ItemListParams, query::ITEMS);

/// List items
///
/// Every item with its winning bid and bid ids, as an object keyed by item id in natural id
/// order, each in the original tracker's wrapper (`{"item": {…}}`); optionally only those that
/// match filters (`winning=` for items without bids) and a search (`q`), in another order
/// (`sort=-name`), one page of them (`limit`, `offset`). `X-Total-Count` is the number of
/// matching items.
#[utoipa::path(
    get,
    path = "/items",
    tag = TAG,
    params(ItemListParams),
    responses(
        (status = 200, description = "Items keyed by id", body = std::collections::BTreeMap<String, ItemListEntry>,
            headers(("X-Total-Count" = usize, description = "Number of items that match the filters and search (all items without them), before paging")),
            example = json!({"item1": {"item": {"name": "Item Nº 1", "winning": "bid2", "bids": ["bid1", "bid2"]}},
                             "item2": {"item": {"name": "Item Nº 2", "winning": null, "bids": []}}})),
        (status = 400, description = "A parameter the list does not take or given twice, a value of the wrong form (`limit` or `offset` out of range, an unknown `sort` field, a malformed filter), or a query that is not UTF-8 once percent-decoded"),
    )
)]
pub async fn list_items(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    ApiQuery(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    let ListRequest { page, query } = ListRequest::parse(&pairs, query::ITEMS)?;
    let version = state.store.list_version(Resource::Items).await?;
    let etag = list_etag(state.store.epoch(), version);
    if let Some(not_modified) = not_modified(&headers, &etag)? {
        return Ok(not_modified);
    }
    let total = state.store.count_matching(Resource::Items, &query).await?;
    let items = ItemsSource {
        store: state.store.clone(),
        query,
        next: Cursor::Offset(page.offset),
        remaining: page.limit,
        pending: Vec::new().into_iter(),
        bids: None,
        started: false,
        written: 0,
        exhausted: false,
    };
    let mut headers = list_headers(&uri, page, total);
    headers.insert(header::ETAG, etag);
    json_response(items, headers).await
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
        (status = 507, description = "The store holds `MAX_RECORDS_PER_RESOURCE` of these already; nothing was stored"),
    )
)]
pub async fn create_item(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewItem>,
) -> Result<Response, ApiError> {
    let name = Name::parse("item/name", body.item.name)?;
    let item = state.store.create_item(name).await?;
    let headers = created_headers(&state, "items", &item.id)?;
    let version = item.version;
    let item = Item::head(item, Some(BidList::Ids(Vec::new())));
    let answer = (StatusCode::CREATED, headers, axum::Json(item));
    Ok(tagged(state.store.epoch(), version, answer))
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
        (status = 400, description = "The id or a flag is of the wrong form"),
        (status = 404, description = "No item has this id"),
    )
)]
pub async fn get_item(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
    ApiQuery(query): ApiQuery<ItemQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id("item", id)?;
    let winning_only = flag("winningOnly", query.winning_only.as_deref())?;
    let complete = flag("complete", query.complete.as_deref())?;
    let epoch = state.store.epoch();
    if winning_only {
        let item = state.store.get_item(&id).await?;
        let etag = etag(epoch, item.version);
        return tagged_read(&headers, etag, axum::Json(Item::head(item, None)));
    }
    let detail = if complete {
        BidDetail::Full
    } else {
        BidDetail::Ids
    };
    let (version, item) = item_source(&state.store, &id, detail).await?;
    let etag = etag(epoch, version);
    if let Some(not_modified) = not_modified(&headers, &etag)? {
        return Ok(not_modified);
    }
    json_response(item, HeaderMap::from_iter([(header::ETAG, etag)])).await
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
        (status = 422, description = "The name is invalid, or the body's id differs from the path's"),
        (status = 507, description = "The store holds `MAX_RECORDS_PER_RESOURCE` of these already; nothing was stored"),
    )
)]
pub async fn put_item(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ItemReplacement>,
) -> Result<Response, ApiError> {
    let id = path_id("item", id)?;
    let epoch = state.store.epoch();
    let precondition = precondition(&headers, epoch)?;
    if body.item_id.as_ref().is_some_and(|body_id| *body_id != id) {
        return Err(ApiError::invalid_field(
            "/item_id",
            format!("must equal the id in the path ({id})"),
        ));
    }
    let name = Name::parse("item/name", body.item.name)?;
    let (_, upsert) = state.store.put_item_if(&id, name, &precondition).await?;
    // The same status and headers as every upsert, with the bid list streamed as the body (read
    // again: the tag is that of the item as sent).
    let (status, mut headers, _) = upsert_response(&state, "items", &id, upsert, ())?;
    let (version, item) = item_source(&state.store, &id, BidDetail::Ids).await?;
    headers.insert(header::ETAG, etag(epoch, version));
    let mut response = json_response(item, headers).await?;
    *response.status_mut() = status;
    Ok(response)
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
        (status = 404, description = "No item has this id"),
    )
)]
pub async fn delete_item(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = path_id("item", id)?;
    let precondition = precondition(&headers, state.store.epoch())?;
    state.store.delete_item_if(&id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An item's bids
///
/// Full bids in the order they were placed, optionally one page of them (`limit`, `offset`).
/// The item's total number of bids is in the `X-Total-Count` header.
#[utoipa::path(
    get,
    path = "/items/{item_id}/bids",
    tag = TAG,
    params(ItemPath, PageParams),
    responses(
        (status = 200, description = "The item's bids in placing order", body = Vec<Bid>,
            headers(("X-Total-Count" = usize, description = "Number of the item's bids in all"))),
        (status = 400, description = "The id is of the wrong form, `limit` or `offset` out of range, or a parameter the list does not take"),
        (status = 404, description = "No item has this id"),
    )
)]
pub async fn list_item_bids(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
    uri: Uri,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Response, ApiError> {
    let id = path_id("item", id)?;
    let page = params.page()?;
    // The count and the first page are read together, so they agree.
    let first_page = Cursor::Offset(page.offset);
    let (item, first) = state
        .store
        .item_bids(&id, first_page, page.limit.min(CHUNK))
        .await?;
    // The item lists its bids: its version is the list's.
    let etag = list_etag(state.store.epoch(), item.version);
    if let Some(not_modified) = not_modified(&headers, &etag)? {
        return Ok(not_modified);
    }
    let bids = bids_source(&state.store, &id, page, BidDetail::Full)
        .starting_with(first)
        .enclosed("[", "]");
    let mut headers = list_headers(&uri, page, item.bid_count);
    headers.insert(header::ETAG, etag);
    json_response(bids, headers).await
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
        (status = 404, description = "No item has this id, or it has no bids"),
    )
)]
pub async fn get_winning_bid(
    State(state): State<AppState>,
    ApiPath(ItemPath { item_id: id }): ApiPath<ItemPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id("item", id)?;
    let bid = state.store.winning_bid(&id).await?;
    let etag = etag(state.store.epoch(), bid.version);
    tagged_read(&headers, etag, axum::Json(Bid::from(bid)))
}
