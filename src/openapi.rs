//! The OpenAPI document: its fixed parts (info, tags, shared schemas) and the finishing pass that
//! sets the relative server URL and documents the errors every operation can meet.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Spec, Ref, RefOr, ResponseBuilder, Server};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, PROBLEM_JSON, Problem};
use crate::metrics;
use crate::routes::{bids, books, echo, index, items, ops, things, users};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "monolith",
        description = "Books, an auction bid tracker, an authenticated echo and a read-only things \
catalogue in one server. Every error is an RFC 9457 problem (`application/problem+json`).",
        license(name = "MIT", identifier = "MIT"),
    ),
    tags(
        (name = index::TAG, description = "Where to find the API's resources"),
        (name = books::TAG, description = "Books: create, read, update and delete"),
        (name = users::TAG, description = "Bid tracker: users, and the items each bid on"),
        (name = items::TAG, description = "Bid tracker: items, their bids and winning bid"),
        (name = bids::TAG, description = "Bid tracker: bids (immutable; the highest wins, the earliest on a tie)"),
        (name = echo::TAG, description = "Sends a message back, to callers with the shared key"),
        (name = things::TAG, description = "A read-only catalogue of things"),
        (name = ops::TAG, description = "Probes for orchestrators, served at the root, never under the prefix"),
    ),
    paths(ops::healthz, ops::readyz, metrics::serve_metrics),
    components(schemas(Problem, FieldError)),
    modifiers(&EchoKeySchemes)
)]
struct ApiDoc;

/// The echo API's shared key as a header or a query parameter (OpenAPI has no way to declare the
/// third way, a JSON body field; the operation documents it).
struct EchoKeySchemes;

impl Modify for EchoKeySchemes {
    fn modify(&self, spec: &mut Spec) {
        let components = spec.components.get_or_insert_with(Default::default);
        for (name, location, key) in [
            ("server_key_header", "header", "X-Server-Key"),
            ("server_key_query", "query", "server_key"),
        ] {
            let api_key = if location == "header" {
                ApiKey::Header(ApiKeyValue::with_description(
                    key,
                    "The shared key (`SECRET_KEY`) in a request header",
                ))
            } else {
                ApiKey::Query(ApiKeyValue::with_description(
                    key,
                    "The shared key (`SECRET_KEY`) in the query string; it is kept out of logs",
                ))
            };
            components.add_security_scheme(name, SecurityScheme::ApiKey(api_key));
        }
    }
}

/// The document before routes are added: info, tags and shared schemas.
pub fn base() -> Spec {
    ApiDoc::openapi()
}

/// Completes the document generated from the routes.
///
/// The server URL is the prefix alone (origin-relative), so "Try it out" works through any host
/// or port mapping. Errors that the middleware, not the handler, can answer (a bad body, a body
/// too large, a timeout, an internal error) are added to each operation they can happen to.
pub fn finish(mut spec: Spec, prefix: &str) -> Spec {
    let url = if prefix.is_empty() { "/" } else { prefix };
    spec.servers = Some(vec![Server::new(url)]);
    for (path, item) in spec.paths.paths.iter_mut() {
        if ops::PATHS.contains(&path.as_str()) {
            item.servers = Some(vec![Server::new("/")]);
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_common_errors(operation);
            add_paging_links(operation);
        }
    }
    spec
}

/// A list's `200` declares `X-Total-Count`; with a `limit` it also carries `Link`
/// (`routes::listing::list_headers`), declared here once for every list.
fn add_paging_links(operation: &mut Operation) {
    let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") else {
        return;
    };
    if !ok.headers.contains_key("X-Total-Count") {
        return;
    }
    let link = HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::String)))
        .description(Some(
            "With `limit`: RFC 8288 links to the `first`, `prev`, `next` and `last` pages \
             (those that exist), relative URLs that keep the other parameters",
        ))
        .build();
    ok.headers.insert("Link".to_owned(), link.into());
}

fn add_common_errors(operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let has_params = operation
        .parameters
        .as_ref()
        .is_some_and(|params| !params.is_empty());
    let mut errors = vec![
        ("408", "The request took longer than `REQUEST_TIMEOUT_SECS`"),
        ("500", "Internal error; the body says nothing more"),
    ];
    if has_params || has_body {
        errors.push(("400", "A parameter or the body cannot be read"));
    }
    if has_body {
        errors.extend([
            ("413", "The body is larger than `MAX_BODY_BYTES`"),
            ("415", "The body is not sent as JSON"),
            (
                "422",
                "A field is missing, of the wrong type, unknown or breaks a rule",
            ),
        ]);
    }
    for (status, description) in errors {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        PROBLEM_JSON,
                        Content::new(Some(Ref::from_schema_name("Problem"))),
                    )
                    .build()
                    .into()
            });
    }
}
