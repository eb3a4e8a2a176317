//! The bid tracker's users: list, create, read, upsert, delete, and the items a user bid on.

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
use crate::routes::listing::{
    ListSource, Page, QueryPairs, RecordList, json_response, list_params, write_entry, write_json,
};
use crate::routes::schemas::{id_schema, nullable_id_schema, text_schema};
use crate::routes::{created_headers, path_id, upsert_response};
use crate::store::{self, Cursor, Name, Resource, StoreError, query};

/// OpenAPI tag of these routes.
pub const TAG: &str = "users";

/// The users routes, with their OpenAPI operations (paths without the API prefix).
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![
        routes!(list_users, create_user),
        routes!(get_user, put_user, delete_user),
        routes!(get_user_items),
    ]
}

/// The user named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// User id: 1 to 64 letters, digits, `_` or `-`.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: String,
}

fn user_id_schema() -> Object {
    id_schema(
        "The user's id: 1 to 64 letters, digits, `_` or `-`",
        "user1",
    )
}

fn optional_user_id_schema() -> Object {
    nullable_id_schema(
        "Optional; when present it must equal the id in the path",
        "user1",
    )
}

fn name_schema() -> Object {
    text_schema(false, "1 to 200 characters, not blank.")
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"user_id": "user1", "name": "Albert"}))]
pub struct User {
    #[schema(schema_with = user_id_schema)]
    user_id: String,
    #[schema(schema_with = name_schema)]
    name: String,
}

impl From<store::User> for User {
    fn from(user: store::User) -> Self {
        Self {
            user_id: user.id,
            name: user.name,
        }
    }
}

/// A user in the list, under their id.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"name": "Albert"}))]
pub struct UserEntry {
    #[schema(schema_with = name_schema)]
    name: String,
}

/// A user to create; the server assigns the id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Dora"}))]
pub struct NewUser {
    #[schema(schema_with = name_schema)]
    name: String,
}

/// A user's new content.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Albert Jr."}))]
pub struct UserReplacement {
    #[serde(default)]
    #[schema(schema_with = optional_user_id_schema)]
    user_id: Option<String>,
    #[schema(schema_with = name_schema)]
    name: String,
}

/// A user with the items they bid on.
// Described here, written by `get_user_items` piece by piece, so never built whole.
#[allow(dead_code)]
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"user_id": "user1", "name": "Albert", "items_bid": ["item1"]}))]
pub struct UserItems {
    #[schema(schema_with = user_id_schema)]
    user_id: String,
    #[schema(schema_with = name_schema)]
    name: String,
    /// Each item the user bid on, once, in order of their first (remaining) bid.
    items_bid: Vec<String>,
}

list_params!(UserListParams, query::USERS);

/// List users
///
/// Every user, as an object keyed by user id, in natural id order (`user2` before `user10`),
/// optionally only those that match filters (`name=…`) and a search (`q`), in another order
/// (`sort=-name`), one page of them (`limit`, `offset`). `X-Total-Count` is the number of
/// matching users.
#[utoipa::path(
    get,
    path = "/users",
    tag = TAG,
    params(UserListParams),
    responses(
        (status = 200, description = "Users keyed by id", body = std::collections::BTreeMap<String, UserEntry>,
            headers(("X-Total-Count" = usize, description = "Number of users that match the filters and search (all users without them), before paging")),
            example = json!({"user1": {"name": "Albert"}, "user2": {"name": "Berry"}})),
        (status = 400, description = "A parameter the list does not take or given twice, a value of the wrong form (`limit` or `offset` out of range, an unknown `sort` field, a malformed filter), or a query that is not UTF-8 once percent-decoded"),
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    ApiQuery(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    const USERS: RecordList<store::User> = RecordList {
        what: Resource::Users,
        fields: query::USERS,
        find: |store, query, from, n| {
            Box::pin(async move { store.find_users(&query, from, n).await })
        },
        write: |out, user| {
            let entry = UserEntry {
                name: user.name.clone(),
            };
            write_entry(out, &user.id, &entry);
        },
        enclosed: ("{", "}"),
    };
    USERS.respond(&state.store, &uri, &headers, &pairs).await
}

/// Create a user
///
/// The server assigns the id: `user` and the next number above the highest ever used that no
/// user has.
#[utoipa::path(
    post,
    path = "/users",
    tag = TAG,
    request_body = NewUser,
    responses(
        (status = 201, description = "The new user", body = User,
            headers(("Location" = String, description = "URL of the new user"))),
        (status = 507, description = "The store holds `MAX_RECORDS_PER_RESOURCE` of these already; nothing was stored"),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Response, ApiError> {
    let user = state
        .store
        .create_user(Name::parse("name", body.name)?)
        .await?;
    let headers = created_headers(&state, "users", &user.id)?;
    let version = user.version;
    let answer = (StatusCode::CREATED, headers, axum::Json(User::from(user)));
    Ok(tagged(state.store.epoch(), version, answer))
}

/// Get a user
///
/// The user with this id and their name. The items they bid on are at
/// `/users/{user_id}/items`.
#[utoipa::path(
    get,
    path = "/users/{user_id}",
    tag = TAG,
    params(UserPath),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 404, description = "No user has this id"),
    )
)]
pub async fn get_user(
    State(state): State<AppState>,
    ApiPath(UserPath { user_id: id }): ApiPath<UserPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id("user", id)?;
    let user = state.store.get_user(&id).await?;
    let etag = etag(state.store.epoch(), user.version);
    tagged_read(&headers, etag, axum::Json(User::from(user)))
}

/// Create or rename a user
///
/// 200 if the user existed (their bids stay), 201 with `Location` if it was created.
#[utoipa::path(
    put,
    path = "/users/{user_id}",
    tag = TAG,
    params(UserPath),
    request_body = UserReplacement,
    responses(
        (status = 200, description = "The user, renamed", body = User),
        (status = 201, description = "The user, created", body = User,
            headers(("Location" = String, description = "URL of the new user"))),
        (status = 422, description = "The name is invalid, or the body's id differs from the path's"),
        (status = 507, description = "The store holds `MAX_RECORDS_PER_RESOURCE` of these already; nothing was stored"),
    )
)]
pub async fn put_user(
    State(state): State<AppState>,
    ApiPath(UserPath { user_id: id }): ApiPath<UserPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UserReplacement>,
) -> Result<Response, ApiError> {
    let id = path_id("user", id)?;
    let epoch = state.store.epoch();
    let precondition = precondition(&headers, epoch)?;
    if body.user_id.as_ref().is_some_and(|body_id| *body_id != id) {
        return Err(ApiError::invalid_field(
            "/user_id",
            format!("must equal the id in the path ({id})"),
        ));
    }
    let name = Name::parse("name", body.name)?;
    let (user, upsert) = state.store.put_user_if(&id, name, &precondition).await?;
    let (id, version) = (user.id.clone(), user.version);
    let answer = upsert_response(&state, "users", &id, upsert, User::from(user))?;
    Ok(tagged(epoch, version, answer))
}

/// Delete a user
///
/// Their bids are deleted too, and the winning bids of the items they bid on are recomputed.
#[utoipa::path(
    delete,
    path = "/users/{user_id}",
    tag = TAG,
    params(UserPath),
    responses(
        (status = 204, description = "Deleted, with their bids"),
        (status = 404, description = "No user has this id"),
    )
)]
pub async fn delete_user(
    State(state): State<AppState>,
    ApiPath(UserPath { user_id: id }): ApiPath<UserPath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = path_id("user", id)?;
    let precondition = precondition(&headers, state.store.epoch())?;
    state.store.delete_user_if(&id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Items a user bid on
///
/// Each item the user bid on, once, in order of their first bid.
#[utoipa::path(
    get,
    path = "/users/{user_id}/items",
    tag = TAG,
    params(UserPath),
    responses(
        (status = 200, description = "The user and their items", body = UserItems),
        (status = 404, description = "No user has this id"),
    )
)]
pub async fn get_user_items(
    State(state): State<AppState>,
    ApiPath(UserPath { user_id: id }): ApiPath<UserPath>,
) -> Result<Response, ApiError> {
    let id = path_id("user", id)?;
    let user = state.store.get_user(&id).await?;
    let mut open = Vec::from(&b"{\"user_id\":"[..]);
    write_json(&mut open, &user.id);
    open.extend_from_slice(b",\"name\":");
    write_json(&mut open, &user.name);
    open.extend_from_slice(b",\"items_bid\":[");
    let store = state.store.clone();
    let all = Page {
        offset: 0,
        limit: usize::MAX,
    };
    let items = ListSource::new(
        all,
        move |from, n| {
            let (store, id) = (store.clone(), id.clone());
            let after = match from {
                Cursor::Offset(_) => None,
                Cursor::After(seq) => Some(seq),
            };
            Box::pin(async move {
                match store.user_items(&id, after, n).await {
                    Ok(found) => Ok(found.items),
                    // Deleted while its list was being sent: the list ends here.
                    Err(StoreError::NotFound(_)) => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            })
        },
        |(seq, _): &(u64, String)| *seq,
        |out, (_, item)| write_json(out, item),
    )
    .enclosed(open, "]}");
    json_response(items, HeaderMap::new()).await
}
