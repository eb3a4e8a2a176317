//! The OpenAPI document: its fixed parts (info, tags, shared schemas) and the finishing pass that
//! sets the relative server URL and documents the errors every operation can meet.

use serde_json::json;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Spec, Ref, RefOr, Required, ResponseBuilder, Server};
use utoipa::{Modify, OpenApi};

use crate::error::{FieldError, PROBLEM_JSON, Problem};
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
    add_shared_errors(&mut spec);
    let probes = ops::paths();
    for (path, item) in spec.paths.paths.iter_mut() {
        let is_probe = probes.contains(path);
        if is_probe {
            item.servers = Some(vec![Server::new("/")]);
        }
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            add_conditional(method, operation);
            add_common_errors(operation, is_probe);
            add_paging_links(operation);
        }
    }
    spec
}

/// Whether an operation works on the store's records (not the index, echo or probes).
fn is_store_operation(operation: &Operation) -> bool {
    operation.tags.as_ref().is_some_and(|tags| {
        tags.iter().any(|tag| {
            [books::TAG, users::TAG, items::TAG, bids::TAG, things::TAG].contains(&tag.as_str())
        })
    })
}

/// Conditional requests (`routes::conditional`), declared once for every store operation: the
/// `ETag` of each answer that carries a record or a list, `If-None-Match` and `304` on reads,
/// `If-Match` and `412` on writes (and `If-None-Match: *` on the upserting PUTs).
fn add_conditional(method: &str, operation: &mut Operation) {
    // Its items move with bids without the user's version moving: no tag (README).
    // The feed is a stream, not a representation: no tag.
    if !is_store_operation(operation)
        || matches!(
            operation.operation_id.as_deref(),
            Some("get_user_items" | "item_events")
        )
    {
        return;
    }
    let string = || Some(Object::with_type(Type::String));
    let tag = |description: &str| {
        HeaderBuilder::new()
            .schema(string())
            .description(Some(description.to_owned()))
            .build()
    };
    for status in ["200", "201"] {
        if let Some(RefOr::T(answer)) = operation.responses.responses.get_mut(status) {
            let description = if answer.headers.contains_key("X-Total-Count") {
                "Weak tag of the list: it changes whenever any record of the resource does"
            } else {
                "Strong tag of the record as sent; send it back in `If-Match` or `If-None-Match`"
            };
            answer
                .headers
                .insert("ETag".to_owned(), tag(description).into());
        }
    }
    // `*`, or a comma-separated list of entity tags (RFC 9110 §8.8.3; empty: none), anything
    // else is a 400.
    let tags = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r#"^(\*|((W/)?"[!#-~]*"( ?, ?(W/)?"[!#-~]*")*)?)$"#))
        .build();
    let header = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(tags.clone()))
            .build()
            .into()
    };
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    match method {
        "get" => {
            parameters.push(header(
                "If-None-Match",
                "Tags the client holds (or `*`): when one is the current tag (weak comparison), \
                 the answer is `304 Not Modified` without a body",
            ));
            let not_modified = ResponseBuilder::new()
                .description("Not Modified: `If-None-Match` names the current tag; no body")
                .header("ETag", tag("The current tag"));
            operation
                .responses
                .responses
                .insert("304".to_owned(), not_modified.build().into());
        }
        "put" | "patch" | "delete" => {
            parameters.push(header(
                "If-Match",
                "Write only if the record's current tag is one of these (strong comparison), or \
                 with `*` only if it exists; else `412` and nothing changes. A missing record \
                 stays `404` unless the request would create it.",
            ));
            let creates = operation.responses.responses.contains_key("201");
            if creates {
                parameters.push(header(
                    "If-None-Match",
                    "`*`: create only; `412` if the record exists",
                ));
            }
            let error = shared_error("412").expect("a shared error");
            operation.responses.responses.insert(
                "412".to_owned(),
                ResponseBuilder::new()
                    .description(error.description)
                    .build()
                    .into(),
            );
        }
        "post" if operation.responses.responses.contains_key("201") => {
            add_idempotency_key(operation);
        }
        _ => {}
    }
}

/// The creating POSTs take `Idempotency-Key` (`src/idempotency.rs`).
fn add_idempotency_key(operation: &mut Operation) {
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[!-~]{1,255}$"))
        .build();
    operation.parameters.get_or_insert_with(Vec::new).push(
        ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Makes a retry safe: the first request with this key (1 to 255 visible ASCII \
                     characters, bare or quoted) is carried out and its success kept for \
                     `IDEMPOTENCY_RETENTION_SECS`; a repeat with the same body gets that answer \
                     again with `Idempotent-Replayed: true` and creates nothing; another body is \
                     `422`; a repeat while the first runs waits up to 3 s, then `409`. Keys are \
                     kept per method and path.",
            ))
            .schema(Some(key))
            .build()
            .into(),
    );
    if let Some(RefOr::T(created)) = operation.responses.responses.get_mut("201") {
        created.headers.insert(
            "Idempotent-Replayed".to_owned(),
            HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .description(Some(
                    "`true` when this is the kept answer of an earlier request with the same \
                     `Idempotency-Key`"
                        .to_owned(),
                ))
                .build()
                .into(),
        );
    }
    let error = shared_error("409").expect("a shared error");
    operation.responses.responses.insert(
        "409".to_owned(),
        ResponseBuilder::new()
            .description(error.description)
            .build()
            .into(),
    );
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

/// An error response declared once under `#/components/responses`, with an example of its own.
struct SharedError {
    status: &'static str,
    name: &'static str,
    title: &'static str,
    /// What the component says; each operation's reference says it in its own words.
    description: &'static str,
    example_detail: &'static str,
    /// A header the answer carries, and what it says.
    header: Option<(&'static str, &'static str)>,
}

const fn shared(
    status: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    example_detail: &'static str,
) -> SharedError {
    SharedError {
        status,
        name,
        title,
        description,
        example_detail,
        header: None,
    }
}

const RETRY_AFTER: (&str, &str) = (
    "Retry-After",
    "Seconds to wait before trying again (absent when waiting would not help)",
);

/// Every error status an operation documents.
const SHARED_ERRORS: [SharedError; 14] = [
    shared(
        "400",
        "BadRequest",
        "Bad Request",
        "A parameter or the body cannot be read",
        "limit must be from 1 to 1000, got 0",
    ),
    shared(
        "403",
        "Forbidden",
        "Forbidden",
        "The key is missing or wrong",
        "a valid server key is required",
    ),
    shared(
        "404",
        "NotFound",
        "Not Found",
        "No record has this id",
        "book 42 does not exist",
    ),
    SharedError {
        header: Some(RETRY_AFTER),
        ..shared(
            "409",
            "Conflict",
            "Conflict",
            "A request with the same `Idempotency-Key` is still being answered; retry it later",
            "a request with this Idempotency-Key is still being answered",
        )
    },
    shared(
        "412",
        "PreconditionFailed",
        "Precondition Failed",
        "`If-Match` or `If-None-Match` does not hold for the record as it is; nothing changed",
        "book 1 is not in the state the request's precondition requires",
    ),
    SharedError {
        header: Some(("Allow", "The methods the path takes, comma-separated")),
        ..shared(
            "405",
            "MethodNotAllowed",
            "Method Not Allowed",
            "The path does not take the request's method; `Allow` lists those it takes",
            "DELETE is not allowed here; allowed: GET,HEAD",
        )
    },
    shared(
        "408",
        "RequestTimeout",
        "Request Timeout",
        "The request took longer than `REQUEST_TIMEOUT_SECS`",
        "the request took longer than 30 s",
    ),
    shared(
        "413",
        "ContentTooLarge",
        "Payload Too Large",
        "The body is larger than `MAX_BODY_BYTES`",
        "the body is larger than 65536 bytes",
    ),
    shared(
        "415",
        "UnsupportedMediaType",
        "Unsupported Media Type",
        "The body is not sent as JSON",
        "send the body as application/json",
    ),
    shared(
        "422",
        "UnprocessableContent",
        "Unprocessable Entity",
        "A field is missing, of the wrong type, unknown or breaks a rule",
        "the body has invalid fields",
    ),
    SharedError {
        header: Some(RETRY_AFTER),
        ..shared(
            "429",
            "TooManyRequests",
            "Too Many Requests",
            "Only when `RATE_LIMIT_PER_SECOND` is set: this client sent more than its share",
            "too many requests from this address",
        )
    },
    shared(
        "500",
        "InternalServerError",
        "Internal Server Error",
        "Internal error; the body says nothing more",
        "the server met an internal error",
    ),
    SharedError {
        header: Some(RETRY_AFTER),
        ..shared(
            "503",
            "ServiceUnavailable",
            "Service Unavailable",
            "The server cannot serve this now (the database is unreachable, every feed is in use, \
             or it is shutting down)",
            "the database is unavailable: the connection to the database failed",
        )
    },
    shared(
        "507",
        "InsufficientStorage",
        "Insufficient Storage",
        "The store holds `MAX_RECORDS_PER_RESOURCE` of these already; nothing was stored",
        "the store holds its maximum of 250000 books; delete some before adding more",
    ),
];

/// Adds the shared error responses to the document's components.
fn add_shared_errors(spec: &mut Spec) {
    let components = spec.components.get_or_insert_with(Default::default);
    for error in &SHARED_ERRORS {
        let status: u16 = error.status.parse().expect("a status code");
        let example = json!({
            "type": "about:blank",
            "title": error.title,
            "status": status,
            "detail": error.example_detail,
            "instance": "/api/v1/books/42",
            "request_id": "0b6e1f0c-7a3e-4c2b-9a57-1d5f0e2a8c31",
        });
        let mut content = Content::new(Some(Ref::from_schema_name("Problem")));
        content.example = Some(example);
        let mut response = ResponseBuilder::new()
            .description(error.description)
            .content(PROBLEM_JSON, content);
        if let Some((name, description)) = error.header {
            let header = HeaderBuilder::new()
                .schema(Some(Object::with_type(Type::String)))
                .description(Some(description))
                .build();
            response = response.header(name, header);
        }
        components
            .responses
            .insert(error.name.to_owned(), response.build().into());
    }
}

/// Errors that the middleware, not the handler, can answer, added to each operation they can
/// happen to; then every error response becomes a reference to its shared declaration, keeping
/// the operation's own description.
fn add_common_errors(operation: &mut Operation, is_probe: bool) {
    let has_body = operation.request_body.is_some();
    let has_params = operation
        .parameters
        .as_ref()
        .is_some_and(|params| !params.is_empty());
    let reads_store = is_store_operation(operation);
    let mut errors = vec!["405", "408", "500"];
    if !is_probe {
        errors.push("429");
    }
    if reads_store {
        errors.push("503");
    }
    if has_params || has_body {
        errors.push("400");
    }
    if has_body {
        errors.extend(["413", "415", "422"]);
    }
    for status in errors {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                let error = shared_error(status).expect("a shared error");
                ResponseBuilder::new()
                    .description(error.description)
                    .build()
                    .into()
            });
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        let (Some(error), RefOr::T(inline)) = (shared_error(status), &*response) else {
            continue;
        };
        let mut shared = Ref::from_response_name(error.name);
        shared.description = inline.description.clone();
        *response = shared.into();
    }
}

fn shared_error(status: &str) -> Option<&'static SharedError> {
    SHARED_ERRORS.iter().find(|error| error.status == status)
}
