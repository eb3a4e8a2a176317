//! The HTTP surface: one module per API, assembled here under the prefix with the docs, plus the
//! helpers the APIs share. The operations endpoints (`ops`) are merged beside them in `app`.

pub mod bids;
pub mod books;
pub mod conditional;
pub mod echo;
pub mod feeds;
pub mod index;
pub mod items;
pub mod listing;
pub mod ops;
pub mod schemas;
pub mod things;
pub mod users;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::error::ApiError;
use crate::extract::check_id;
use crate::openapi;
use crate::store::Upsert;
use crate::{AppState, edge};

/// The APIs under `prefix`, Swagger UI and the spec (the operations endpoints are separate, so
/// that rate limiting never throttles a probe).
pub fn router(prefix: &str) -> Router<AppState> {
    let api_routes = [
        vec![routes!(index::get_index)],
        books::routes(),
        users::routes(),
        items::routes(),
        feeds::routes(),
        bids::routes(),
        echo::routes(),
        things::routes(),
    ];
    // Each route is registered at its full path rather than in a `nest` under the prefix: a nest
    // rewrites every request's URI and adds a routing layer: 7 % of a request's instructions.
    // The document keeps the paths without the prefix (its server URL carries it).
    let mut router = Router::new();
    let mut documented = OpenApiRouter::with_openapi(openapi::base());
    for route in api_routes.into_iter().flatten() {
        for path in route.1.paths.keys() {
            router = router.route(&full_path(prefix, path), route.2.clone());
        }
        documented = documented.routes(route);
    }
    // The operations endpoints are in the document, served beside the APIs (see `ops`).
    for route in ops::routes() {
        documented = documented.routes(route);
    }
    let (_, spec) = documented.split_for_parts();
    let spec = openapi::finish(spec, prefix);
    let spec_url = format!("{prefix}/openapi.json");
    // No validator badge: it would fetch from a third-party host, which the docs CSP forbids.
    let docs_config = Config::new([spec_url.clone()]).validator_url("none");
    let docs = SwaggerUi::new(format!("{prefix}/docs"))
        .url(spec_url, spec)
        .config(docs_config);

    // With an empty prefix, `GET /` is the index, which already sends browsers to the docs.
    if !prefix.is_empty() {
        router = router
            .route(&format!("{prefix}/"), get(index::get_index))
            .route("/", get(index::redirect_to_docs));
    }
    router.merge(edge::with_docs_headers(Router::from(docs)))
}

/// Where the API's `path` is served: under `prefix`, the index (`/`) at the prefix itself.
fn full_path(prefix: &str, path: &str) -> String {
    if path == "/" && !prefix.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}{path}")
    }
}

/// The headers of a `201 Created`: `Location` is `{prefix}/{collection}/{id}`.
pub fn created_headers(
    state: &AppState,
    collection: &str,
    id: impl std::fmt::Display,
) -> Result<HeaderMap, ApiError> {
    let location = format!("{}/{collection}/{id}", state.config.api_prefix);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::LOCATION,
        HeaderValue::try_from(location).map_err(|e| ApiError::Internal(e.into()))?,
    );
    Ok(headers)
}

/// The answer to an upserting PUT: 201 with `Location` if it created the record, else 200.
pub fn upsert_response<T>(
    state: &AppState,
    collection: &str,
    id: &str,
    upsert: Upsert,
    body: T,
) -> Result<(StatusCode, HeaderMap, axum::Json<T>), ApiError> {
    Ok(match upsert {
        Upsert::Created => (
            StatusCode::CREATED,
            created_headers(state, collection, id)?,
            axum::Json(body),
        ),
        Upsert::Replaced => (StatusCode::OK, HeaderMap::new(), axum::Json(body)),
    })
}

/// Checks a string id from the path (`[A-Za-z0-9_-]{1,64}`); `kind` names it in the 400.
pub fn path_id(kind: &str, id: String) -> Result<String, ApiError> {
    check_id(kind, &id)?;
    Ok(id)
}
