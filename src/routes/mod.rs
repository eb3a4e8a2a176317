//! The HTTP surface: one module per API, assembled here under the prefix with the docs and the
//! operations endpoints.

pub mod books;
pub mod index;
pub mod ops;
pub mod schemas;
pub mod things;

use axum::Router;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::AppState;
use crate::openapi;

/// Every route of the server: the APIs under `prefix`, Swagger UI and the spec, and `/healthz`,
/// `/readyz` at the root.
pub fn router(prefix: &str) -> Router<AppState> {
    let (api, spec) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(index::get_index))
        .merge(books::router())
        .merge(things::router())
        .split_for_parts();
    let spec = openapi::finish(spec, prefix);
    let docs = SwaggerUi::new(format!("{prefix}/docs")).url(format!("{prefix}/openapi.json"), spec);

    // axum panics on `nest("")`, so an empty prefix merges the APIs at the root instead; there
    // `GET /` is the index, which already sends browsers to the docs.
    let router = if prefix.is_empty() {
        Router::new().merge(api)
    } else {
        // Inside a nest, `/` matches only `{prefix}`: `{prefix}/` needs its own route.
        Router::new()
            .nest(prefix, api)
            .route(&format!("{prefix}/"), get(index::get_index))
            .route("/", get(index::redirect_to_docs))
    };
    router.merge(docs).merge(ops::router())
}
