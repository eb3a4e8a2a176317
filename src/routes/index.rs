//! The API index at the prefix: JSON links for API clients, a redirect to the docs for browsers.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// OpenAPI tag of the index.
pub const TAG: &str = "index";

/// Links to every resource collection and to the documentation.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "resources": {
        "books": "/api/v1/books",
        "users": "/api/v1/users",
        "items": "/api/v1/items",
        "bids": "/api/v1/bids",
        "echo": "/api/v1/echo",
        "things": "/api/v1/things"
    },
    "docs": "/api/v1/docs/",
    "openapi": "/api/v1/openapi.json"
}))]
pub struct ApiIndex {
    /// Collection URLs by resource name (origin-relative).
    resources: Resources,
    /// Swagger UI.
    docs: String,
    /// The OpenAPI document.
    openapi: String,
}

/// Collection URLs by resource name.
#[derive(Debug, Serialize, ToSchema)]
pub struct Resources {
    /// The books collection.
    books: String,
    /// The bid tracker's users.
    users: String,
    /// The bid tracker's items.
    items: String,
    /// The bid tracker's bids.
    bids: String,
    /// The key-protected echo.
    echo: String,
    /// The things catalogue.
    things: String,
}

/// The URL of Swagger UI under `prefix`.
pub fn docs_url(prefix: &str) -> String {
    format!("{prefix}/docs/")
}

/// API index
///
/// Links to every resource collection and to the documentation. A browser (`Accept: text/html`)
/// is redirected to Swagger UI instead.
#[utoipa::path(
    get,
    path = "/",
    tag = TAG,
    responses(
        (status = 200, description = "Links to the API's resources", body = ApiIndex),
        (status = 307, description = "Browsers are redirected to Swagger UI",
            headers(("Location" = String, description = "The docs URL"))),
    )
)]
pub async fn get_index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let prefix = &state.config.api_prefix;
    if accepts_html(&headers) {
        return Redirect::temporary(&docs_url(prefix)).into_response();
    }
    axum::Json(ApiIndex {
        resources: Resources {
            books: format!("{prefix}/books"),
            users: format!("{prefix}/users"),
            items: format!("{prefix}/items"),
            bids: format!("{prefix}/bids"),
            echo: format!("{prefix}/echo"),
            things: format!("{prefix}/things"),
        },
        docs: docs_url(prefix),
        openapi: format!("{prefix}/openapi.json"),
    })
    .into_response()
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// `GET /` when the API has a prefix: always to the docs.
pub async fn redirect_to_docs(State(state): State<AppState>) -> Redirect {
    Redirect::temporary(&docs_url(&state.config.api_prefix))
}
