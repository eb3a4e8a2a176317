//! The bid tracker: users, items and bids, with their wire shapes, flags, cascades and winners.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResponse};

const USERS: &str = "/api/v1/users";
const ITEMS: &str = "/api/v1/items";
const BIDS: &str = "/api/v1/bids";

/// Asserts that `keys` appear in this order in the raw body.
#[track_caller]
fn assert_key_order(res: &TestResponse, keys: &[&str]) {
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| res.text.find(&format!("\"{k}\":")).expect(k))
        .collect();
    assert!(positions.is_sorted(), "{keys:?} in {}", res.text);
}

async fn place(app: &TestApp, item: &str, user: &str, value: Value) -> TestResponse {
    app.post_json(
        BIDS,
        json!({"bid": {"item": item, "value": value, "user": user}}),
    )
    .await
}

async fn winning(app: &TestApp, item: &str) -> Value {
    app.get(&format!("{ITEMS}/{item}?winningOnly=1")).await.body["item"]["winning"].clone()
}

// ---- users ----

#[tokio::test]
async fn users_are_listed_as_an_object_keyed_by_id() {
    let app = TestApp::new().await;
    let res = app.get(USERS).await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"user1": {"name": "Albert"}, "user2": {"name": "Berry"}, "user3": {"name": "Constance"}})
    );
    assert_key_order(&res, &["user1", "user2", "user3"]);
}

#[tokio::test]
async fn a_user_is_read_by_id() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/users/user2").await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"user_id": "user2", "name": "Berry"})
    );
    let problem = app
        .get("/api/v1/users/user9")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/users/user9")
        .clone();
    assert_eq!(problem["detail"], "user user9 does not exist");
    app.get("/api/v1/users/a%20b")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "/api/v1/users/a%20b");
}

#[tokio::test]
async fn creating_a_user_returns_its_id_and_location_and_ids_are_never_reused() {
    let app = TestApp::new().await;
    let res = app.post_json(USERS, json!({"name": "Dora"})).await;
    assert_eq!(
        res.assert_json(StatusCode::CREATED),
        &json!({"user_id": "user4", "name": "Dora"})
    );
    assert_eq!(res.header("location"), Some("/api/v1/users/user4"));
    assert_eq!(
        app.delete("/api/v1/users/user4").await.status,
        StatusCode::NO_CONTENT
    );
    let res = app.post_json(USERS, json!({"name": "Eve"})).await;
    assert_eq!(res.body["user_id"], "user5");
}

#[tokio::test]
async fn put_creates_a_missing_user_and_renames_an_existing_one() {
    let app = TestApp::new().await;
    let res = app
        .put_json("/api/v1/users/alice", json!({"name": "Alice"}))
        .await;
    assert_eq!(
        res.assert_json(StatusCode::CREATED),
        &json!({"user_id": "alice", "name": "Alice"})
    );
    assert_eq!(res.header("location"), Some("/api/v1/users/alice"));

    let res = app
        .put_json(
            "/api/v1/users/user1",
            json!({"user_id": "user1", "name": "Al"}),
        )
        .await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"user_id": "user1", "name": "Al"})
    );
    assert!(res.header("location").is_none());
    // Renaming keeps the user's bids.
    assert_eq!(
        app.get("/api/v1/bids/bid1").await.body["bid"]["user"],
        "user1"
    );

    // A user created at user7 moves the counter past it.
    app.put_json("/api/v1/users/user7", json!({"name": "Seven"}))
        .await;
    let res = app.post_json(USERS, json!({"name": "Next"})).await;
    assert_eq!(res.body["user_id"], "user8");
}

#[tokio::test]
async fn user_bodies_are_validated() {
    let app = TestApp::new().await;
    let cases = [
        (Method::POST, USERS, json!({"name": " "}), "/name"),
        (Method::POST, USERS, json!({}), "/name"),
        (
            Method::POST,
            USERS,
            json!({"name": "x", "user_id": "user9"}),
            "/user_id",
        ),
        (
            Method::PUT,
            "/api/v1/users/user1",
            json!({"name": "x".repeat(201)}),
            "/name",
        ),
        (
            Method::PUT,
            "/api/v1/users/user1",
            json!({"user_id": "user2", "name": "x"}),
            "/user_id",
        ),
    ];
    for (method, uri, body, pointer) in cases {
        let res = app
            .send_body(method, uri, Some("application/json"), body.to_string())
            .await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, uri);
        assert_eq!(res.error_pointers(), [pointer], "{body}");
    }
    assert_eq!(app.get("/api/v1/users/user1").await.body["name"], "Albert");
    assert_eq!(app.get(USERS).await.body.as_object().unwrap().len(), 3);
}

#[tokio::test]
async fn invisible_names_are_blank_and_control_characters_are_refused() {
    let app = TestApp::new().await;
    let cases = [
        ("\u{200b}\u{a0}\u{feff}", "must not be blank"),
        ("\u{3164}\u{e0020}", "must not be blank"),
        (
            "a\u{0}b",
            "must not contain control characters other than tab and newline",
        ),
        (
            "tab\tok but not\r",
            "must not contain control characters other than tab and newline",
        ),
    ];
    for (name, detail) in cases {
        let attempts = [
            (Method::POST, USERS, json!({ "name": name }), "/name"),
            (
                Method::PUT,
                "/api/v1/users/user1",
                json!({ "name": name }),
                "/name",
            ),
            (
                Method::PUT,
                "/api/v1/users/user9",
                json!({ "name": name }),
                "/name",
            ),
            (
                Method::POST,
                ITEMS,
                json!({"item": { "name": name }}),
                "/item/name",
            ),
            (
                Method::PUT,
                "/api/v1/items/item1",
                json!({"item": { "name": name }}),
                "/item/name",
            ),
        ];
        for (method, uri, body, pointer) in attempts {
            let res = app
                .send_body(method, uri, Some("application/json"), body.to_string())
                .await;
            res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, uri);
            assert_eq!(res.error_pointers(), [pointer], "{name:?}");
            assert_eq!(res.body["errors"][0]["detail"], detail, "{name:?}");
        }
    }
    assert_eq!(app.get("/api/v1/users/user1").await.body["name"], "Albert");
    assert_eq!(app.get(USERS).await.body.as_object().unwrap().len(), 3);
    assert_eq!(app.get(ITEMS).await.body.as_object().unwrap().len(), 2);
    assert_eq!(
        app.get("/api/v1/items/item1").await.body["item"]["name"],
        "Item Nº 1"
    );

    let name = "a\tb\nc";
    let user = app.post_json(USERS, json!({ "name": name })).await;
    assert_eq!(user.assert_json(StatusCode::CREATED)["name"], name);
    let item = app
        .post_json(ITEMS, json!({"item": { "name": name }}))
        .await;
    assert_eq!(item.assert_json(StatusCode::CREATED)["item"]["name"], name);
}

#[tokio::test]
async fn deleting_a_user_deletes_their_bids_and_recomputes_winners() {
    let app = TestApp::new().await;
    assert_eq!(winning(&app, "item1").await, "bid2");
    let res = app.delete("/api/v1/users/user2").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(winning(&app, "item1").await, "bid1");
    app.get("/api/v1/bids/bid2")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/bids/bid2");
    assert_eq!(
        app.get(BIDS).await.body,
        json!({"bid1": {"bid_id": "bid1", "bid": {"item": "item1", "value": 500.0, "user": "user1"}}})
    );
    app.delete("/api/v1/users/user2")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/users/user2");
}

#[tokio::test]
async fn a_users_items_are_listed_once_in_order_of_first_bid() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/users/user1/items").await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"user_id": "user1", "name": "Albert", "items_bid": ["item1"]})
    );
    place(&app, "item2", "user1", json!(10)).await;
    place(&app, "item1", "user1", json!(2000)).await;
    let res = app.get("/api/v1/users/user1/items").await;
    assert_eq!(res.body["items_bid"], json!(["item1", "item2"]));
    let res = app.get("/api/v1/users/user3/items").await;
    assert_eq!(res.body["items_bid"], json!([]));
    app.get("/api/v1/users/ghost/items")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/users/ghost/items");
}

// ---- items ----

#[tokio::test]
async fn items_are_listed_with_their_winner_and_bids() {
    let app = TestApp::new().await;
    let res = app.get(ITEMS).await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({
            "item1": {"item": {"name": "Item Nº 1", "winning": "bid2", "bids": ["bid1", "bid2"]}},
            "item2": {"item": {"name": "Item Nº 2", "winning": null, "bids": []}}
        })
    );
}

#[tokio::test]
async fn an_item_shows_bid_ids_by_default_and_the_flags_change_that() {
    let app = TestApp::new().await;
    let uri = "/api/v1/items/item1";
    let res = app.get(uri).await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"item_id": "item1", "item": {"name": "Item Nº 1", "winning": "bid2", "bids": ["bid1", "bid2"]}})
    );
    for query in [
        "winningOnly=1",
        "winningOnly=true",
        "winningOnly=1&complete=1",
    ] {
        let res = app.get(&format!("{uri}?{query}")).await;
        assert_eq!(
            res.assert_json(StatusCode::OK),
            &json!({"item_id": "item1", "item": {"name": "Item Nº 1", "winning": "bid2"}}),
            "{query}"
        );
    }
    let full = json!({"item_id": "item1", "item": {"name": "Item Nº 1", "winning": "bid2", "bids": [
        {"bid_id": "bid1", "bid": {"item": "item1", "value": 500.0, "user": "user1"}},
        {"bid_id": "bid2", "bid": {"item": "item1", "value": 1000.0, "user": "user2"}}
    ]}});
    for query in [
        "complete=1",
        "winningOnly=0&complete=1",
        "complete=true&winningOnly=false",
    ] {
        let res = app.get(&format!("{uri}?{query}")).await;
        assert_eq!(res.assert_json(StatusCode::OK), &full, "{query}");
    }
    for query in [
        "complete=yes",
        "winningOnly=2",
        "complete=",
        "winningOnly=TRUE",
    ] {
        let res = app.get(&format!("{uri}?{query}")).await;
        res.assert_problem(StatusCode::BAD_REQUEST, uri);
    }
    app.get("/api/v1/items/item9")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/items/item9");
}

#[tokio::test]
async fn creating_an_item_returns_it_in_the_item_shape_with_location() {
    let app = TestApp::new().await;
    let res = app
        .post_json(ITEMS, json!({"item": {"name": "Item Nº 3"}}))
        .await;
    assert_eq!(
        res.assert_json(StatusCode::CREATED),
        &json!({"item_id": "item3", "item": {"name": "Item Nº 3", "winning": null, "bids": []}})
    );
    assert_eq!(res.header("location"), Some("/api/v1/items/item3"));
    let res = app.post_json(ITEMS, json!({"name": "flat"})).await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, ITEMS);
    let res = app.post_json(ITEMS, json!({"item": {"name": ""}})).await;
    assert_eq!(res.error_pointers(), ["/item/name"]);
}

#[tokio::test]
async fn put_on_an_item_keeps_its_bids_or_creates_it() {
    let app = TestApp::new().await;
    let res = app
        .put_json("/api/v1/items/item1", json!({"item": {"name": "Renamed"}}))
        .await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"item_id": "item1", "item": {"name": "Renamed", "winning": "bid2", "bids": ["bid1", "bid2"]}})
    );
    let res = app
        .put_json(
            "/api/v1/items/lamp",
            json!({"item_id": "lamp", "item": {"name": "Lamp"}}),
        )
        .await;
    assert_eq!(res.assert_json(StatusCode::CREATED)["item_id"], "lamp");
    assert_eq!(res.header("location"), Some("/api/v1/items/lamp"));
    let res = app
        .put_json(
            "/api/v1/items/item2",
            json!({"item_id": "item1", "item": {"name": "x"}}),
        )
        .await;
    assert_eq!(res.error_pointers(), ["/item_id"]);
}

#[tokio::test]
async fn deleting_an_item_deletes_its_bids() {
    let app = TestApp::new().await;
    assert_eq!(
        app.delete("/api/v1/items/item1").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(BIDS).await.body, json!({}));
    assert_eq!(
        app.get("/api/v1/users/user1/items").await.body["items_bid"],
        json!([])
    );
    app.delete("/api/v1/items/item1")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/items/item1");
}

#[tokio::test]
async fn an_items_bids_come_in_placing_order_and_its_winner_on_its_own() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/items/item1/bids").await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!([
            {"bid_id": "bid1", "bid": {"item": "item1", "value": 500.0, "user": "user1"}},
            {"bid_id": "bid2", "bid": {"item": "item1", "value": 1000.0, "user": "user2"}}
        ])
    );
    let res = app.get("/api/v1/items/item1/winning").await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"bid_id": "bid2", "bid": {"item": "item1", "value": 1000.0, "user": "user2"}})
    );
    let problem = app
        .get("/api/v1/items/item2/winning")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/items/item2/winning")
        .clone();
    assert_eq!(problem["detail"], "item item2 has no bids");
    assert_eq!(app.get("/api/v1/items/item2/bids").await.body, json!([]));
    app.get("/api/v1/items/nope/bids")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/items/nope/bids");
}

// ---- bids ----

#[tokio::test]
async fn a_bid_value_sent_as_a_string_is_stored_as_a_number() {
    let app = TestApp::new().await;
    let res = place(&app, "item1", "user1", json!("100000")).await;
    assert_eq!(
        res.assert_json(StatusCode::CREATED),
        &json!({"bid_id": "bid3", "bid": {"item": "item1", "value": 100000.0, "user": "user1"}})
    );
    assert_eq!(res.header("location"), Some("/api/v1/bids/bid3"));
    assert_eq!(winning(&app, "item1").await, "bid3");
    assert!(app.get("/api/v1/bids/bid3").await.body["bid"]["value"].is_f64());
    let res = place(&app, "item1", "user3", json!(100.5)).await;
    assert_eq!(res.assert_json(StatusCode::CREATED)["bid"]["value"], 100.5);
}

#[tokio::test]
async fn the_first_bid_on_an_item_without_bids_becomes_its_winner() {
    let app = TestApp::new().await;
    let res = place(&app, "item2", "user3", json!(1)).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(winning(&app, "item2").await, "bid3");
}

#[tokio::test]
async fn the_highest_bid_wins_and_the_earliest_wins_a_tie() {
    let app = TestApp::new().await;
    place(&app, "item1", "user3", json!(1000.0)).await; // bid3 ties bid2, later
    assert_eq!(winning(&app, "item1").await, "bid2");
    place(&app, "item1", "user3", json!("1000.01")).await; // bid4
    assert_eq!(winning(&app, "item1").await, "bid4");
    assert_eq!(
        app.delete("/api/v1/bids/bid4").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(winning(&app, "item1").await, "bid2");
    app.delete("/api/v1/bids/bid2").await;
    assert_eq!(winning(&app, "item1").await, "bid3");
    app.delete("/api/v1/bids/bid3").await;
    app.delete("/api/v1/bids/bid1").await;
    assert_eq!(winning(&app, "item1").await, Value::Null);
}

#[tokio::test]
async fn unknown_users_or_items_are_a_422_naming_them_and_change_nothing() {
    let app = TestApp::new().await;
    let res = place(&app, "item1", "user9", json!(5)).await;
    let problem = res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, BIDS);
    assert_eq!(problem["errors"][0]["pointer"], "/bid/user");
    assert_eq!(problem["errors"][0]["detail"], "user user9 does not exist");
    let res = place(&app, "item9", "user1", json!(5)).await;
    assert_eq!(res.error_pointers(), ["/bid/item"]);
    assert_eq!(res.body["errors"][0]["detail"], "item item9 does not exist");
    assert_eq!(app.get(BIDS).await.body.as_object().unwrap().len(), 2);
    // No id was used up by the refused bids.
    assert_eq!(
        place(&app, "item1", "user1", json!(5)).await.body["bid_id"],
        "bid3"
    );
}

#[tokio::test]
async fn bad_bid_bodies_are_422_with_a_pointer() {
    let app = TestApp::new().await;
    let cases = [
        (
            json!({"bid": {"item": "item1", "value": 0, "user": "user1"}}),
            "/bid/value",
        ),
        (
            json!({"bid": {"item": "item1", "value": -3, "user": "user1"}}),
            "/bid/value",
        ),
        (
            json!({"bid": {"item": "item1", "value": "0", "user": "user1"}}),
            "/bid/value",
        ),
        (
            json!({"bid": {"item": "item1", "value": "abc", "user": "user1"}}),
            "/bid/value",
        ),
        (
            json!({"bid": {"item": "item1", "value": "1e5", "user": "user1"}}),
            "/bid/value",
        ),
        (
            json!({"bid": {"item": "item1", "value": null, "user": "user1"}}),
            "/bid/value",
        ),
        (
            json!({"bid": {"item": "item1", "user": "user1"}}),
            "/bid/value",
        ),
        (
            json!({"bid": {"item": "item1", "value": 1, "user": "user1", "x": 1}}),
            "/bid/x",
        ),
        (
            json!({"bid": {"item": "a b", "value": 1, "user": "user1"}}),
            "/bid/item",
        ),
        (
            json!({"item": "item1", "value": 1, "user": "user1"}),
            "/item",
        ),
        (json!({}), "/bid"),
    ];
    for (body, pointer) in cases {
        let res = app.post_json(BIDS, body.clone()).await;
        res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, BIDS);
        assert_eq!(res.error_pointers(), [pointer], "{body}");
    }
    assert_eq!(app.get(BIDS).await.body.as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn bids_are_immutable() {
    let app = TestApp::new().await;
    for method in [Method::PUT, Method::PATCH] {
        let res = app
            .send_body(
                method,
                "/api/v1/bids/bid1",
                Some("application/json"),
                r#"{"bid": {"item": "item1", "value": 1, "user": "user1"}}"#,
            )
            .await;
        res.assert_problem(StatusCode::METHOD_NOT_ALLOWED, "/api/v1/bids/bid1");
        let allow = res.header("allow").unwrap();
        assert!(allow.contains("GET") && allow.contains("DELETE"), "{allow}");
        assert!(
            !allow.contains("PUT") && !allow.contains("PATCH"),
            "{allow}"
        );
    }
    assert_eq!(
        app.get("/api/v1/bids/bid1").await.body["bid"]["value"],
        500.0
    );
}

#[tokio::test]
async fn bids_are_keyed_in_natural_order_and_ids_are_never_reused() {
    let app = TestApp::new().await;
    for value in 3..=10 {
        place(&app, "item2", "user3", json!(value)).await;
    }
    let res = app.get(BIDS).await;
    assert_key_order(&res, &["bid1", "bid2", "bid9", "bid10"]);
    app.delete("/api/v1/bids/bid10").await;
    assert_eq!(
        place(&app, "item2", "user3", json!(1)).await.body["bid_id"],
        "bid11"
    );
    app.get("/api/v1/bids/bid10")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/bids/bid10");
    app.delete("/api/v1/bids/bid10")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/bids/bid10");
}

#[tokio::test]
async fn the_original_clients_requests_all_succeed_in_order() {
    let app = TestApp::new().await;
    let script: Value = serde_json::from_str(include_str!("../fixtures/original_client.json"))
        .expect("the fixture is JSON");
    for step in script["requests"].as_array().unwrap() {
        let method: Method = step["method"].as_str().unwrap().parse().unwrap();
        let uri = step["path"].as_str().unwrap();
        let res = match step.get("body") {
            Some(body) => {
                app.send_body(
                    method.clone(),
                    uri,
                    Some("application/json"),
                    body.to_string(),
                )
                .await
            }
            None => app.send_body(method.clone(), uri, None, "").await,
        };
        assert!(
            res.status.is_success(),
            "{method} {uri}: {} {}",
            res.status,
            res.text
        );
    }
}
