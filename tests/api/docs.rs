//! The index, Swagger UI and the OpenAPI document, under several prefixes.

use std::collections::BTreeSet;
use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, config_with_prefix, parameter_names};

async fn browser_get(app: &TestApp, uri: &str) -> crate::helpers::TestResponse {
    app.send(
        Request::get(uri)
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn the_root_redirects_to_the_docs() {
    let app = TestApp::new().await;
    let res = app.get("/").await;
    assert!(res.status.is_redirection(), "{}", res.status);
    assert_eq!(res.header("location"), Some("/api/v1/docs/"));
}

#[tokio::test]
async fn the_prefix_gives_api_clients_an_index_and_browsers_the_docs() {
    let app = TestApp::new().await;
    for uri in ["/api/v1", "/api/v1/"] {
        let res = app.get(uri).await;
        assert_eq!(
            res.assert_json(StatusCode::OK),
            &json!({
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
            })
        );
        let res = browser_get(&app, uri).await;
        assert!(res.status.is_redirection());
        assert_eq!(res.header("location"), Some("/api/v1/docs/"));
    }
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary_and_loads_the_spec_by_a_relative_url() {
    let app = TestApp::new().await;
    let page = app.get("/api/v1/docs/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type().starts_with("text/html"));
    assert!(page.text.contains("swagger-ui"));
    // Every asset the page names is served here (no CDN), relative to the page.
    for asset in [
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-initializer.js",
        "swagger-ui.css",
    ] {
        assert!(
            page.text.contains(&format!("./{asset}")),
            "page names {asset}"
        );
        let res = app.get(&format!("/api/v1/docs/{asset}")).await;
        assert_eq!(res.status, StatusCode::OK, "{asset}");
        assert!(!res.text.is_empty());
    }
    assert!(!page.text.contains("http://") && !page.text.contains("https://"));

    let init = app.get("/api/v1/docs/swagger-initializer.js").await;
    assert!(
        init.text.contains(r#""url": "/api/v1/openapi.json""#),
        "{}",
        init.text
    );
    // `/docs` without the slash goes to the page.
    let res = app.get("/api/v1/docs").await;
    assert_eq!(res.header("location"), Some("/api/v1/docs/"));
}

#[tokio::test]
async fn swagger_ui_goes_gzipped_to_clients_that_accept_it_and_plain_to_the_others() {
    let app = TestApp::new().await;
    let fetch = |accept_encoding: Option<&'static str>| {
        let mut request = Request::get("/api/v1/docs/swagger-ui-bundle.js");
        if let Some(value) = accept_encoding {
            request = request.header("accept-encoding", value);
        }
        app.send(request.body(Body::empty()).unwrap())
    };

    let zipped = fetch(Some("gzip, deflate, br")).await;
    assert_eq!(zipped.status, StatusCode::OK);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("accept-encoding"));
    let mut script = String::new();
    flate2::read::GzDecoder::new(&zipped.bytes[..])
        .read_to_string(&mut script)
        .expect("a gzip body");
    assert!(script.contains("SwaggerUIBundle"));
    assert!(zipped.bytes.len() * 2 < script.len(), "compressed");

    for accept_encoding in [
        None,
        Some("gzip;q=0"),
        Some("identity"),
        Some("br, deflate"),
    ] {
        let plain = fetch(accept_encoding).await;
        assert_eq!(plain.status, StatusCode::OK, "{accept_encoding:?}");
        assert_eq!(
            plain.header("content-encoding"),
            None,
            "{accept_encoding:?}"
        );
        assert_eq!(plain.header("vary"), Some("accept-encoding"));
        assert_eq!(plain.text, script, "{accept_encoding:?}");
        assert_eq!(
            plain.header("content-length"),
            Some(script.len().to_string().as_str())
        );
    }
}

fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if method == "servers" {
                continue;
            }
            found.insert((method.to_uppercase(), path.clone()));
        }
    }
    found
}

#[tokio::test]
async fn the_spec_documents_every_route_with_a_relative_server() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/openapi.json").await;
    let spec = res.assert_json(StatusCode::OK);
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["servers"], json!([{"url": "/api/v1"}]));

    let expected: BTreeSet<(String, String)> = [
        ("GET", "/"),
        ("GET", "/books"),
        ("POST", "/books"),
        ("GET", "/books/{id}"),
        ("PUT", "/books/{id}"),
        ("PATCH", "/books/{id}"),
        ("DELETE", "/books/{id}"),
        ("GET", "/users"),
        ("POST", "/users"),
        ("GET", "/users/{user_id}"),
        ("PUT", "/users/{user_id}"),
        ("DELETE", "/users/{user_id}"),
        ("GET", "/users/{user_id}/items"),
        ("GET", "/items"),
        ("POST", "/items"),
        ("GET", "/items/{item_id}"),
        ("PUT", "/items/{item_id}"),
        ("DELETE", "/items/{item_id}"),
        ("GET", "/items/{item_id}/bids"),
        ("GET", "/items/{item_id}/winning"),
        ("GET", "/items/{item_id}/events"),
        ("GET", "/bids"),
        ("POST", "/bids"),
        ("GET", "/bids/{bid_id}"),
        ("DELETE", "/bids/{bid_id}"),
        ("GET", "/echo"),
        ("POST", "/echo"),
        ("GET", "/things"),
        ("GET", "/things/{id}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(operations(spec), expected);
    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(spec["paths"][probe]["servers"], json!([{"url": "/"}]));
    }

    // Each documented operation is routed: none of them answers 404 or 405 for want of a route.
    for (method, path) in &expected {
        // The probes are served from the root: their path items say so with their own server.
        let server = match spec["paths"][path]["servers"][0]["url"].as_str() {
            Some("/") => "",
            _ => "/api/v1",
        };
        let uri = format!(
            "{server}{}",
            path.replace("{id}", "1")
                .replace("{user_id}", "user1")
                .replace("{item_id}", "item1")
                .replace("{bid_id}", "bid1")
        );
        // A malformed `Last-Event-ID` makes the feed answer 400 at once instead of streaming
        // for ever; every other route ignores it.
        let request = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .header("content-type", "application/json")
            .header("last-event-id", "not-an-id")
            .body(Body::from("{}"))
            .unwrap();
        let res = TestApp::new().await.send(request).await;
        assert!(
            !matches!(res.status, StatusCode::METHOD_NOT_ALLOWED)
                && res.status != StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            res.status
        );
    }
}

/// What `#/components/responses/…` a response refers to.
fn component<'a>(spec: &'a Value, response: &Value) -> &'a Value {
    let location = response["$ref"].as_str().unwrap_or_default();
    let name = location
        .strip_prefix("#/components/responses/")
        .unwrap_or_else(|| panic!("not a shared response: {response}"));
    &spec["components"]["responses"][name]
}

#[tokio::test]
async fn every_operation_documents_its_errors_as_shared_problems_with_their_own_examples() {
    let app = TestApp::new().await;
    let spec = app.get("/api/v1/openapi.json").await.body;
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        let is_probe = item.get("servers").is_some();
        for (method, op) in item.as_object().unwrap() {
            if method == "servers" {
                continue;
            }
            operations += 1;
            let summary = op["summary"].as_str().unwrap_or("");
            assert!(!summary.is_empty(), "{method} {path} has a summary");
            let description = op["description"].as_str().unwrap_or("");
            assert!(!description.is_empty(), "{method} {path} has a description");
            let responses = op["responses"].as_object().unwrap();
            for status in ["405", "500"] {
                assert!(responses.contains_key(status), "{method} {path} {status}");
            }
            // Rate limiting and the store are not in front of the probes.
            assert_eq!(responses.contains_key("429"), !is_probe, "{method} {path}");
            for (status, response) in responses {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                // Declared once under components, referred to with this operation's own words.
                let shared = component(&spec, response);
                let what = format!("{method} {path} {status}");
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{what}"
                );
                let content = &shared["content"]["application/problem+json"];
                assert_eq!(
                    content["schema"]["$ref"], "#/components/schemas/Problem",
                    "{what}"
                );
                assert_eq!(content["example"]["status"].to_string(), *status, "{what}");
                let header = match status.as_str() {
                    "405" => Some("Allow"),
                    "429" | "503" => Some("Retry-After"),
                    _ => None,
                };
                if let Some(header) = header {
                    assert!(shared["headers"][header].is_object(), "{what} {header}");
                }
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
    assert!(operations >= 31, "{operations}");
    let books_item = &spec["paths"]["/books/{id}"];
    assert!(books_item["get"]["responses"]["404"].is_object());
    assert!(books_item["get"]["responses"]["400"].is_object());
    assert_eq!(
        books_item["get"]["responses"]["404"]["description"],
        "No book has this id"
    );
    // Stores that can be unreachable (PostgreSQL) answer 503 on every operation that reads one.
    assert!(books_item["get"]["responses"]["503"].is_object());
}

#[tokio::test]
async fn schemas_carry_examples_and_the_rules() {
    let app = TestApp::new().await;
    let spec = app.get("/api/v1/openapi.json").await.body;
    let schemas = &spec["components"]["schemas"];
    for name in [
        "Book",
        "NewBook",
        "BookReplacement",
        "BookPatch",
        "Thing",
        "Problem",
        "ApiIndex",
    ] {
        assert!(schemas[name].is_object(), "{name}");
        assert!(
            schemas[name]["example"].is_object(),
            "{name} has an example"
        );
    }
    let title = &schemas["NewBook"]["properties"]["title"];
    assert_eq!(title["minLength"], 1);
    assert_eq!(title["maxLength"], 200);
    assert!(title["pattern"].is_string());
    assert_eq!(schemas["NewBook"]["additionalProperties"], false);
}

#[tokio::test]
async fn an_empty_prefix_puts_the_api_at_the_root() {
    let app = TestApp::with_config(config_with_prefix("")).await;
    assert_eq!(
        app.get("/books/1").await.assert_json(StatusCode::OK)["id"],
        1
    );
    let res = app.post_json("/books", json!({"title": "Root"})).await;
    assert_eq!(res.header("location"), Some("/books/13"));
    assert_eq!(app.get("/docs/").await.status, StatusCode::OK);
    let spec = app.get("/openapi.json").await.body;
    assert_eq!(spec["servers"], json!([{"url": "/"}]));
    let init = app.get("/docs/swagger-initializer.js").await;
    assert!(init.text.contains(r#""url": "/openapi.json""#));
    // At the root, `/` is the index: JSON for API clients, the docs for browsers.
    assert_eq!(
        app.get("/").await.assert_json(StatusCode::OK)["resources"]["books"],
        "/books"
    );
    assert_eq!(
        browser_get(&app, "/").await.header("location"),
        Some("/docs/")
    );
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/books").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_custom_prefix_with_slashes_is_normalised() {
    let app = TestApp::with_config(config_with_prefix("/custom/")).await;
    assert_eq!(
        app.get("/custom/books/2").await.assert_json(StatusCode::OK)["id"],
        2
    );
    let res = app
        .post_json("/custom/books", json!({"title": "Custom"}))
        .await;
    assert_eq!(res.header("location"), Some("/custom/books/13"));
    assert_eq!(app.get("/").await.header("location"), Some("/custom/docs/"));
    assert_eq!(app.get("/custom/").await.body["docs"], "/custom/docs/");
    assert_eq!(app.get("/custom/docs/").await.status, StatusCode::OK);
    assert_eq!(
        app.get("/custom/openapi.json").await.body["servers"],
        json!([{"url": "/custom"}])
    );
    app.get("/custom/books/99")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/custom/books/99");
    assert_eq!(app.get("/api/v1/books").await.status, StatusCode::NOT_FOUND);
}

/// Issue 13: the feed is documented as an event stream with `Last-Event-ID`, and the creating
/// POSTs take `Idempotency-Key` with their 409.
#[tokio::test]
async fn the_spec_documents_the_feed_and_idempotency_keys() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/openapi.json").await;
    let spec = res.assert_json(StatusCode::OK);
    let feed = &spec["paths"]["/items/{item_id}/events"]["get"];
    assert!(
        feed["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{feed}"
    );
    assert!(feed["responses"]["503"].is_object());
    assert!(parameter_names(feed).contains(&"Last-Event-ID".to_owned()));
    assert!(
        !parameter_names(feed).contains(&"If-None-Match".to_owned()),
        "a stream has no tag"
    );
    for path in ["/books", "/users", "/items", "/bids"] {
        let post = &spec["paths"][path]["post"];
        assert!(
            parameter_names(post).contains(&"Idempotency-Key".to_owned()),
            "{path}"
        );
        assert!(post["responses"]["409"].is_object(), "{path}");
    }
}
