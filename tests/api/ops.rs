//! Health, readiness and request ids.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::helpers::TestApp;

#[tokio::test]
async fn healthz_and_readyz_answer_200_while_serving() {
    let app = TestApp::new().await;
    assert_eq!(
        app.get("/healthz").await.assert_json(StatusCode::OK)["status"],
        "ok"
    );
    assert_eq!(
        app.get("/readyz").await.assert_json(StatusCode::OK)["status"],
        "ready"
    );
}

#[tokio::test]
async fn readyz_answers_503_once_shutdown_begins() {
    let app = TestApp::new().await;
    app.state.ready.store(false, Ordering::Release);
    app.get("/readyz")
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE, "/readyz");
    // Liveness is unaffected.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn probes_are_never_under_the_prefix() {
    let app = TestApp::new().await;
    assert_eq!(
        app.get("/api/v1/healthz").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_sent_one_is_kept() {
    let app = TestApp::new().await;
    let a = app.get("/api/v1/books/1").await;
    let b = app.get("/nope").await;
    let (a, b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert!(!a.is_empty() && a != b);

    let res = app
        .send(
            Request::get("/api/v1/books/99")
                .header("x-request-id", "client-chosen-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.header("x-request-id"), Some("client-chosen-42"));
}
