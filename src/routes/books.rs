//! The books API: list, create, read, replace, update and delete books.

use std::borrow::Cow;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Deserializer};
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::conditional::{etag, precondition, tagged, tagged_read};
use crate::routes::created_headers;
use crate::routes::listing::{QueryPairs, RecordList, list_params, write_json};
use crate::routes::schemas::text_schema;
use crate::store::{Book, BookChanges, BookFields, Resource, query};

/// OpenAPI tag of these routes.
pub const TAG: &str = "books";

/// The books routes, with their OpenAPI operations (paths without the API prefix).
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![
        routes!(list_books, create_book),
        routes!(get_book, replace_book, update_book, delete_book),
    ]
}

/// The book named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BookPath {
    /// Book id: a whole number from 1, written without leading zeros, sign or spaces (`/books/01`
    /// and `/books/+1` are 400, not book 1).
    #[param(minimum = 1)]
    #[serde(deserialize_with = "canonical_id")]
    id: u64,
}

/// Reads a book id only in its one canonical form, so that no two paths name the same book.
fn canonical_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = Cow::<str>::deserialize(deserializer)?;
    let canonical = text.starts_with(|c: char| matches!(c, '1'..='9'))
        && text.bytes().all(|b| b.is_ascii_digit());
    // Too many digits for a u64 is canonical but no id a book can have: a 400 as well.
    canonical
        .then(|| text.parse().ok())
        .flatten()
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "a book id is a number from 1 without leading zeros or sign, up to {}",
                u64::MAX
            ))
        })
}

/// A book to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Java book", "author": "Jane Doe"}))]
pub struct NewBook {
    #[schema(schema_with = title_schema)]
    title: String,
    #[serde(default)]
    #[schema(schema_with = author_schema)]
    author: Option<String>,
}

/// A book's new content: both fields are replaced, and an omitted `author` is removed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Java book, 2nd edition", "author": "Jane Doe"}))]
pub struct BookReplacement {
    /// Optional; when present it must equal the id in the path.
    #[serde(default)]
    #[schema(minimum = 1)]
    id: Option<u64>,
    #[schema(schema_with = title_schema)]
    title: String,
    #[serde(default)]
    #[schema(schema_with = author_schema)]
    author: Option<String>,
}

/// The fields to change; absent fields stay as they are, and `"author": null` removes the author.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"author": "John Roe"}))]
pub struct BookPatch {
    /// Optional; when present it must equal the id in the path.
    #[serde(default)]
    #[schema(minimum = 1)]
    id: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = title_schema)]
    title: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = author_schema)]
    author: Option<Option<String>>,
}

fn title_schema() -> Object {
    text_schema(false, "1 to 200 characters, not blank.")
}

fn author_schema() -> Object {
    text_schema(
        true,
        "At most 200 characters, not blank; omitted or `null` means no author.",
    )
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent at all (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn check_body_id(body_id: Option<u64>, path_id: u64) -> Result<(), ApiError> {
    match body_id {
        Some(id) if id != path_id => Err(ApiError::invalid_field(
            "/id",
            format!("must equal the id in the path ({path_id})"),
        )),
        _ => Ok(()),
    }
}

list_params!(BookListParams, query::BOOKS);

/// List books
///
/// All books ordered by id; optionally only those that match filters (`author=…`, `id_gte=…`)
/// and a search (`q`), in another order (`sort=author,-title`), one page of them (`limit`,
/// `offset`). `X-Total-Count` is the number of matching books.
#[utoipa::path(
    get,
    path = "/books",
    tag = TAG,
    params(BookListParams),
    responses(
        (status = 200, description = "Books ordered by id", body = Vec<Book>,
            headers(("X-Total-Count" = usize, description = "Number of books that match the filters and search (all books without them), before paging"))),
        (status = 400, description = "A parameter the list does not take or given twice, a value of the wrong form (`limit` or `offset` out of range, an unknown `sort` field, a malformed filter), or a query that is not UTF-8 once percent-decoded"),
    )
)]
pub async fn list_books(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    ApiQuery(pairs): QueryPairs,
) -> Result<Response, ApiError> {
    const BOOKS: RecordList<Book> = RecordList {
        what: Resource::Books,
        fields: query::BOOKS,
        find: |store, query, from, n| {
            Box::pin(async move { store.find_books(&query, from, n).await })
        },
        write: write_json,
        enclosed: ("[", "]"),
    };
    BOOKS.respond(&state.store, &uri, &headers, &pairs).await
}

/// Create a book
///
/// The server assigns the id: the next number above the highest ever used.
#[utoipa::path(
    post,
    path = "/books",
    tag = TAG,
    request_body = NewBook,
    responses(
        (status = 201, description = "The new book", body = Book,
            headers(("Location" = String, description = "URL of the new book"))),
        (status = 422, description = "A field is missing, of the wrong type, unknown or breaks a rule"),
        (status = 507, description = "The store holds `MAX_RECORDS_PER_RESOURCE` of these already; nothing was stored"),
    )
)]
pub async fn create_book(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewBook>,
) -> Result<Response, ApiError> {
    let fields = BookFields::parse(body.title, body.author)?;
    let book = state.store.create_book(fields).await?;
    let headers = created_headers(&state, "books", book.id)?;
    let version = book.version;
    let answer = (StatusCode::CREATED, headers, axum::Json(book));
    Ok(tagged(state.store.epoch(), version, answer))
}

/// Get a book
///
/// The book with this id, as stored. Ids are never reused, so a deleted book stays 404.
#[utoipa::path(
    get,
    path = "/books/{id}",
    tag = TAG,
    params(BookPath),
    responses(
        (status = 200, description = "The book", body = Book),
        (status = 404, description = "No book has this id"),
    )
)]
pub async fn get_book(
    State(state): State<AppState>,
    ApiPath(BookPath { id }): ApiPath<BookPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let book = state.store.get_book(id).await?;
    let etag = etag(state.store.epoch(), book.version);
    tagged_read(&headers, etag, axum::Json(book))
}

/// Replace a book
///
/// Sets both title and author; an omitted `author` is removed. An `id` in the body must equal the
/// id in the path.
#[utoipa::path(
    put,
    path = "/books/{id}",
    tag = TAG,
    params(BookPath),
    request_body = BookReplacement,
    responses(
        (status = 200, description = "The book as replaced", body = Book),
        (status = 404, description = "No book has this id"),
        (status = 422, description = "A field is invalid, or the body's id differs from the path's"),
    )
)]
pub async fn replace_book(
    State(state): State<AppState>,
    ApiPath(BookPath { id }): ApiPath<BookPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BookReplacement>,
) -> Result<Response, ApiError> {
    let epoch = state.store.epoch();
    let precondition = precondition(&headers, epoch)?;
    check_body_id(body.id, id)?;
    let fields = BookFields::parse(body.title, body.author)?;
    let book = state
        .store
        .replace_book_if(id, fields, &precondition)
        .await?;
    Ok(tagged(epoch, book.version, axum::Json(book)))
}

/// Update a book
///
/// Changes only the fields given (JSON merge patch: `"author": null` removes the author).
/// `Content-Type` may be `application/json` or `application/merge-patch+json`.
#[utoipa::path(
    patch,
    path = "/books/{id}",
    tag = TAG,
    params(BookPath),
    request_body(content((BookPatch = "application/json"), (BookPatch = "application/merge-patch+json"))),
    responses(
        (status = 200, description = "The book as updated", body = Book),
        (status = 404, description = "No book has this id"),
        (status = 422, description = "A field is invalid, or the body's id differs from the path's"),
    )
)]
pub async fn update_book(
    State(state): State<AppState>,
    ApiPath(BookPath { id }): ApiPath<BookPath>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BookPatch>,
) -> Result<Response, ApiError> {
    let epoch = state.store.epoch();
    let precondition = precondition(&headers, epoch)?;
    check_body_id(body.id, id)?;
    let title = match body.title {
        Some(None) => return Err(ApiError::invalid_field("/title", "cannot be removed")),
        Some(Some(title)) => Some(title),
        None => None,
    };
    let changes = BookChanges::parse(title, body.author)?;
    let book = state
        .store
        .update_book_if(id, changes, &precondition)
        .await?;
    Ok(tagged(epoch, book.version, axum::Json(book)))
}

/// Delete a book
///
/// Its id is never handed out again.
#[utoipa::path(
    delete,
    path = "/books/{id}",
    tag = TAG,
    params(BookPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No book has this id"),
    )
)]
pub async fn delete_book(
    State(state): State<AppState>,
    ApiPath(BookPath { id }): ApiPath<BookPath>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let precondition = precondition(&headers, state.store.epoch())?;
    state.store.delete_book_if(id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}
