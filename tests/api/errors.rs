//! Every error path answers an RFC 9457 problem, whoever produced it.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::{get, post};
use monolith::{Metrics, with_middleware};
use serde_json::json;
use tower::ServiceExt;

use crate::helpers::{TestApp, TestResponse, test_config};

const BOOKS: &str = "/api/v1/books";

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::new().await;
    for body in [
        "{",
        "{\"title\": }",
        "",
        "not json",
        "{\"title\": \"t\"} trailing",
    ] {
        let res = app
            .send_body(Method::POST, BOOKS, Some("application/json"), body)
            .await;
        let problem = res.assert_problem(StatusCode::BAD_REQUEST, BOOKS);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("not valid JSON"),
            "{body:?}: {problem}"
        );
    }
}

/// serde would read `["Dune"]` as the fields of a struct in order; the contract's bodies are
/// objects, so an array anywhere a record belongs is a 422 that names it and changes nothing.
#[tokio::test]
async fn an_array_where_an_object_belongs_is_422_and_changes_nothing() {
    let app = TestApp::new().await;
    let cases = [
        (Method::POST, BOOKS, r#"["Dune", "Frank Herbert"]"#, ""),
        (Method::PUT, "/api/v1/books/1", r#"["Dune"]"#, ""),
        (Method::PATCH, "/api/v1/books/1", r#"["Dune"]"#, ""),
        (
            Method::POST,
            "/api/v1/bids",
            r#"{"bid": ["item1", "9000", "user1"]}"#,
            "/bid",
        ),
        (
            Method::POST,
            "/api/v1/bids",
            r#"[["item1", "9000", "user1"]]"#,
            "",
        ),
        (Method::POST, "/api/v1/users", r#"["Dora"]"#, ""),
        (
            Method::PUT,
            "/api/v1/items/item9",
            r#"{"item": ["Item 9"]}"#,
            "/item",
        ),
    ];
    let before = every_record(&app).await;
    for (method, uri, body, pointer) in cases {
        let res = app
            .send_body(method.clone(), uri, Some("application/json"), body)
            .await;
        let problem = res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, uri);
        assert_eq!(res.error_pointers(), [pointer], "{method} {body}");
        assert_eq!(
            problem["errors"][0]["detail"], "invalid type: sequence, expected a JSON object",
            "{method} {body}"
        );
    }
    assert_eq!(every_record(&app).await, before);
}

async fn every_record(app: &TestApp) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    for uri in [BOOKS, "/api/v1/users", "/api/v1/items", "/api/v1/bids"] {
        records.push(app.get(uri).await.body);
    }
    records
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415_whatever_it_holds() {
    let app = TestApp::new().await;
    for content_type in [None, Some("text/plain"), Some("application/xml")] {
        let res = app
            .send_body(Method::POST, BOOKS, content_type, r#"{"title": "t"}"#)
            .await;
        res.assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, BOOKS);
    }
    assert_eq!(app.get(BOOKS).await.header("x-total-count"), Some("12"));
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let app = TestApp::new().await;
    for uri in [
        "/nope",
        "/api/v1/nope",
        "/api/v2/books",
        "/api/v1/books/1/x",
    ] {
        let res = app.get(uri).await;
        res.assert_problem(StatusCode::NOT_FOUND, uri);
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let app = TestApp::new().await;
    let cases = [
        (Method::DELETE, BOOKS, ["GET", "POST"].as_slice()),
        (
            Method::POST,
            "/api/v1/books/1",
            &["GET", "PUT", "PATCH", "DELETE"],
        ),
        (Method::PUT, "/api/v1/things", &["GET"]),
        (Method::POST, "/api/v1/things/1", &["GET"]),
        (Method::POST, "/healthz", &["GET"]),
    ];
    for (method, uri, allowed) in cases {
        let res = app.send_body(method.clone(), uri, None, "").await;
        res.assert_problem(StatusCode::METHOD_NOT_ALLOWED, uri);
        let allow = res.header("allow").expect("an Allow header");
        for m in allowed {
            assert!(allow.contains(m), "{method} {uri}: Allow: {allow}");
        }
    }
}

#[tokio::test]
async fn problem_instances_never_carry_the_query() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/books/42?server_key=secret").await;
    res.assert_problem(StatusCode::NOT_FOUND, "/api/v1/books/42");
    assert!(!res.text.contains("secret"));
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let mut config = test_config();
    config.max_body_bytes = 64;
    let app = TestApp::with_config(config).await;
    let title = "x".repeat(100);
    // With a Content-Length…
    let res = app.post_json(BOOKS, json!({ "title": title })).await;
    res.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, BOOKS);
    // …and streamed without one.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok("{\"title\": \"".into()), Ok(title), Ok("\"}".into())];
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let res = app
        .send(
            Request::post(BOOKS)
                .header("content-type", "application/json")
                .body(body)
                .unwrap(),
        )
        .await;
    res.assert_problem(StatusCode::PAYLOAD_TOO_LARGE, BOOKS);
    // Just under the limit is fine.
    let res = app.post_json(BOOKS, json!({"title": "short"})).await;
    assert_eq!(res.status, StatusCode::CREATED);
}

async fn oneshot(router: Router, request: Request<Body>) -> TestResponse {
    TestResponse::read(router.oneshot(request).await.unwrap()).await
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_that_says_nothing_internal() {
    async fn boom() -> StatusCode {
        panic!("secret detail at /home/app/src/db.rs:42")
    }
    let router = Router::new().route("/boom", get(boom));
    let router = with_middleware(router, &test_config(), &Metrics::new());
    let res = oneshot(
        router.clone(),
        Request::get("/boom").body(Body::empty()).unwrap(),
    )
    .await;
    let problem = res.assert_problem(StatusCode::INTERNAL_SERVER_ERROR, "/boom");
    assert_eq!(problem["detail"], "internal error");
    assert!(!res.text.contains("secret") && !res.text.contains("db.rs"));
    assert!(res.header("x-request-id").is_some());
    // The server goes on serving.
    let res = oneshot(router, Request::get("/boom").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_a_408_problem() {
    let mut config = test_config();
    config.request_timeout = Duration::from_millis(50);
    let router = Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "too late"
        }),
    );
    let router = with_middleware(router, &config, &Metrics::new());
    let res = oneshot(router, Request::post("/slow").body(Body::empty()).unwrap()).await;
    res.assert_problem(StatusCode::REQUEST_TIMEOUT, "/slow");
    assert!(!res.text.contains("too late"));
}
