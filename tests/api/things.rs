//! The read-only things catalogue.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_catalogue_is_an_object_keyed_by_id_in_natural_order() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/things").await;
    let body = res.assert_json(StatusCode::OK);
    let names: Vec<_> = ["1", "2", "3", "4"]
        .iter()
        .map(|id| body[id]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Thing 1", "THING 02", "thing3.0", "THiNg 4x1"]);
    assert_eq!(body.as_object().unwrap().len(), 4);
    // Keys come in id order on the wire.
    let positions: Vec<_> = ["\"1\":", "\"2\":", "\"3\":", "\"4\":"]
        .iter()
        .map(|key| res.text.find(key).unwrap())
        .collect();
    assert!(positions.is_sorted(), "{}", res.text);
}

#[tokio::test]
async fn one_thing_or_a_404() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/things/3").await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"id": "3", "name": "thing3.0", "description": "The third thing, version 3.0."})
    );
    let problem = app
        .get("/api/v1/things/99")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/things/99")
        .clone();
    assert_eq!(problem["detail"], "thing 99 does not exist");
}

#[tokio::test]
async fn ids_of_the_wrong_form_are_400() {
    let app = TestApp::new().await;
    let long = "x".repeat(65);
    for id in ["a%20b", "%C3%BC", long.as_str(), "a.b"] {
        let uri = format!("/api/v1/things/{id}");
        app.get(&uri)
            .await
            .assert_problem(StatusCode::BAD_REQUEST, &uri);
    }
}

#[tokio::test]
async fn the_catalogue_is_read_only() {
    let app = TestApp::new().await;
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let res = app
            .send_body(method, "/api/v1/things/1", Some("application/json"), "{}")
            .await;
        assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    }
    assert_eq!(app.get("/api/v1/things/1").await.body["name"], "Thing 1");
}
