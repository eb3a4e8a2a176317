//! `Idempotency-Key` on the creating POSTs (issue 13, point 4), on both store backends.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResponse, on_postgres, test_config};
use crate::server::RunningServer;

async fn post_keyed(app: &TestApp, uri: &str, key: &str, body: &Value) -> TestResponse {
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap();
    app.send(request).await
}

async fn total(app: &TestApp, uri: &str) -> String {
    app.get(uri)
        .await
        .header("x-total-count")
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_repeat_with_the_same_key_and_body_replays_the_answer_and_creates_nothing() {
    let app = TestApp::new().await;
    let body = json!({"title": "Retried", "author": "A. Client"});
    let first = post_keyed(&app, "/api/v1/books", "key-1", &body).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.header("idempotent-replayed").is_none());
    let count = total(&app, "/api/v1/books").await;

    let again = post_keyed(&app, "/api/v1/books", "\"key-1\"", &body).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.text, first.text);
    for name in ["location", "etag", "content-type"] {
        assert_eq!(again.header(name), first.header(name), "{name}");
    }
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(total(&app, "/api/v1/books").await, count, "nothing created");

    // Another body under the same key: refused, nothing created.
    let other = json!({"title": "Something else", "author": "A. Client"});
    let refused = post_keyed(&app, "/api/v1/books", "key-1", &other).await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "/api/v1/books");
    assert!(refused.text.contains("Idempotency-Key"), "{}", refused.text);
    assert_eq!(total(&app, "/api/v1/books").await, count);

    // Keys are kept per path: the same key creates a user.
    let user = post_keyed(&app, "/api/v1/users", "key-1", &json!({"name": "Kay"})).await;
    assert_eq!(user.status, StatusCode::CREATED);
    // Without a key, every POST creates.
    let plain = app.post_json("/api/v1/books", body).await;
    assert_eq!(plain.status, StatusCode::CREATED);
    assert_ne!(plain.body["id"], first.body["id"]);
}

#[tokio::test]
async fn a_failed_request_keeps_nothing_so_its_retry_is_carried_out() {
    let app = TestApp::new().await;
    let bid = json!({"bid": {"item": "item1", "user": "user9", "value": 10.0}});
    let refused = post_keyed(&app, "/api/v1/bids", "bid-9", &bid).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let created = app
        .put_json("/api/v1/users/user9", json!({"name": "Late"}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let placed = post_keyed(&app, "/api/v1/bids", "bid-9", &bid).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);
    assert!(placed.header("idempotent-replayed").is_none());
}

#[tokio::test]
async fn a_malformed_key_is_400() {
    let app = TestApp::new().await;
    for key in ["", "two words", &"k".repeat(256)] {
        let response =
            post_keyed(&app, "/api/v1/items", key, &json!({"item": {"name": "x"}})).await;
        response.assert_problem(StatusCode::BAD_REQUEST, "/api/v1/items");
    }
    assert_eq!(total(&app, "/api/v1/items").await, "2", "nothing created");
}

/// 50 retries of one bid, all at once, with one key: one bid, and every answer the same 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_retries_of_one_bid_place_it_once_and_all_get_the_same_201() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let bid = json!({"bid": {"item": "item2", "user": "user1", "value": 77.5}});
    let retries: Vec<_> = (0..50)
        .map(|_| {
            let (app, bid) = (app.clone(), bid.clone());
            tokio::spawn(async move { post_keyed(&app, "/api/v1/bids", "retry-me", &bid).await })
        })
        .collect();
    let mut answers = Vec::new();
    for retry in retries {
        answers.push(retry.await.unwrap());
    }
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        assert_eq!(answer.text, answers[0].text);
        assert_eq!(answer.header("location"), answers[0].header("location"));
    }
    let item = app.get("/api/v1/items/item2").await;
    assert_eq!(
        item.body["item"]["bids"],
        json!([answers[0].body["bid_id"]])
    );
}

/// A repeat that arrives while the first request is still running waits for it a while, then
/// is 409 with `Retry-After`. The first is held up by the item's bid lock, taken from another
/// session: PostgreSQL only (a memory bid takes microseconds and cannot be held up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_while_the_first_is_running_is_409() {
    if !on_postgres() {
        return;
    }
    use sqlx::Connection;
    let server = RunningServer::start(test_config()).await;
    let url = server.database_url().expect("a PostgreSQL server");
    let mut blocker = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(1651074163, hashtext('item1'))")
        .execute(&mut blocker)
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let send = || {
        client
            .post(server.url("/api/v1/bids"))
            .header("idempotency-key", "slow")
            .json(&json!({"bid": {"item": "item1", "user": "user1", "value": 5.0}}))
            .send()
    };
    let first = tokio::spawn(send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let repeat = send().await.unwrap();
    assert_eq!(repeat.status(), StatusCode::CONFLICT);
    assert!(repeat.headers().contains_key("retry-after"));
    sqlx::query("SELECT pg_advisory_unlock(1651074163, hashtext('item1'))")
        .execute(&mut blocker)
        .await
        .unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    server.stop().await;
}
