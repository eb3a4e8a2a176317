//! Conditional requests (RFC 9110 §13): `ETag` on records, lists and write answers; `304` for a
//! read whose `If-None-Match` matches; `412` for a write whose `If-Match` / `If-None-Match` does
//! not hold, with nothing changed; and two clients racing one update: exactly one wins.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestResponse, parameter_names};

/// A request with optional JSON body and extra headers.
async fn send(
    app: &TestApp,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> TestResponse {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    app.send(request.body(body).unwrap()).await
}

fn etag(res: &TestResponse) -> String {
    res.header("etag")
        .unwrap_or_else(|| panic!("no ETag: {} {}", res.status, res.text))
        .to_owned()
}

#[tokio::test]
async fn every_record_read_and_write_answer_carries_a_strong_etag_that_moves_with_it() {
    let app = TestApp::new().await;
    for uri in [
        "/api/v1/books/1",
        "/api/v1/users/user1",
        "/api/v1/items/item1",
        "/api/v1/items/item1?winningOnly=1",
        "/api/v1/items/item1?complete=1",
        "/api/v1/items/item1/winning",
        "/api/v1/bids/bid1",
        "/api/v1/things/1",
    ] {
        let first = app.get(uri).await;
        first.assert_json(StatusCode::OK);
        let tag = etag(&first);
        assert!(
            tag.starts_with('"') && tag.ends_with('"'),
            "{uri}: strong, {tag}"
        );
        assert_eq!(etag(&app.get(uri).await), tag, "{uri}: stable");
        // The same tag, asked for again: 304, no body, the tag.
        let again = send(&app, Method::GET, uri, &[("if-none-match", &tag)], None).await;
        assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{uri}");
        assert!(again.text.is_empty(), "{uri}");
        assert_eq!(etag(&again), tag, "{uri}");
        let weak = format!("W/{tag}");
        let listed = format!("\"other\", {weak}");
        let again = send(&app, Method::GET, uri, &[("if-none-match", &listed)], None).await;
        assert_eq!(
            again.status,
            StatusCode::NOT_MODIFIED,
            "{uri}: weak comparison"
        );
        let other = send(&app, Method::GET, uri, &[("if-none-match", "\"x\"")], None).await;
        assert_eq!(other.status, StatusCode::OK, "{uri}");
    }

    // A write's answer carries the tag a read then gives; the old tag no longer matches.
    let before = etag(&app.get("/api/v1/books/1").await);
    let patched = app
        .patch_json("/api/v1/books/1", json!({"title": "Java, again"}))
        .await;
    patched.assert_json(StatusCode::OK);
    let after = etag(&patched);
    assert_ne!(after, before);
    assert_eq!(etag(&app.get("/api/v1/books/1").await), after);
    let stale = [("if-none-match", before.as_str())];
    let stale = send(&app, Method::GET, "/api/v1/books/1", &stale, None).await;
    assert_eq!(stale.status, StatusCode::OK);
    for (uri, body) in [
        ("/api/v1/books", json!({"title": "New"})),
        ("/api/v1/users", json!({"name": "New"})),
        ("/api/v1/items", json!({"item": {"name": "New"}})),
        (
            "/api/v1/bids",
            json!({"bid": {"item": "item2", "user": "user1", "value": 5}}),
        ),
    ] {
        let created = app.post_json(uri, body).await;
        created.assert_json(StatusCode::CREATED);
        let location = created.header("location").unwrap().to_owned();
        assert_eq!(etag(&app.get(&location).await), etag(&created), "{uri}");
    }
    for (uri, body) in [
        ("/api/v1/users/user1", json!({"name": "Al"})),
        ("/api/v1/items/item1", json!({"item": {"name": "Lot"}})),
        ("/api/v1/users/fresh", json!({"name": "Fresh"})),
    ] {
        let put = app.put_json(uri, body).await;
        assert!(put.status.is_success(), "{uri}: {}", put.status);
        assert_eq!(etag(&app.get(uri).await), etag(&put), "{uri}");
    }
}

#[tokio::test]
async fn an_items_tag_moves_with_its_bids_and_with_its_bidders() {
    let app = TestApp::new().await;
    let tag = || async { etag(&app.get("/api/v1/items/item2").await) };
    let untouched = tag().await;
    let bid = json!({"bid": {"item": "item2", "user": "user3", "value": 42}});
    let placed = app.post_json("/api/v1/bids", bid).await;
    placed.assert_json(StatusCode::CREATED);
    let with_bid = tag().await;
    assert_ne!(with_bid, untouched, "a placed bid");
    let bid_id = placed.body["bid_id"].as_str().unwrap().to_owned();
    app.delete(&format!("/api/v1/bids/{bid_id}")).await;
    let without = tag().await;
    assert!(
        ![&untouched, &with_bid].contains(&&without),
        "a deleted bid"
    );
    let bid = json!({"bid": {"item": "item2", "user": "user3", "value": 43}});
    app.post_json("/api/v1/bids", bid)
        .await
        .assert_json(StatusCode::CREATED);
    let again = tag().await;
    assert_eq!(
        app.delete("/api/v1/users/user3").await.status,
        StatusCode::NO_CONTENT
    );
    let gone = tag().await;
    assert!(![&without, &again].contains(&&gone), "its bidder deleted");
    // The list of its bids moves with it.
    let bids = app.get("/api/v1/items/item1/bids").await;
    let list_tag = etag(&bids);
    assert!(list_tag.starts_with("W/"), "{list_tag}");
    let bid = json!({"bid": {"item": "item1", "user": "user1", "value": 1}});
    app.post_json("/api/v1/bids", bid).await;
    assert_ne!(etag(&app.get("/api/v1/items/item1/bids").await), list_tag);
}

#[tokio::test]
async fn lists_carry_a_weak_tag_that_moves_with_any_change_and_answer_304() {
    let app = TestApp::new().await;
    for (list, change) in [
        ("/api/v1/books", ("/api/v1/books", json!({"title": "T"}))),
        ("/api/v1/users", ("/api/v1/users", json!({"name": "U"}))),
        (
            "/api/v1/items",
            (
                "/api/v1/bids",
                json!({"bid": {"item": "item2", "user": "user2", "value": 3}}),
            ),
        ),
        (
            "/api/v1/bids",
            (
                "/api/v1/bids",
                json!({"bid": {"item": "item1", "user": "user3", "value": 2}}),
            ),
        ),
    ] {
        for query in ["", "?limit=1", "?q=a&sort=-id"] {
            let uri = format!("{list}{query}");
            let tag = etag(&app.get(&uri).await);
            assert!(tag.starts_with("W/\""), "{uri}: {tag}");
            let same = send(&app, Method::GET, &uri, &[("if-none-match", &tag)], None).await;
            assert_eq!(same.status, StatusCode::NOT_MODIFIED, "{uri}");
            assert!(same.text.is_empty());
        }
        let tag = etag(&app.get(list).await);
        app.post_json(change.0, change.1)
            .await
            .assert_json(StatusCode::CREATED);
        let moved = send(&app, Method::GET, list, &[("if-none-match", &tag)], None).await;
        moved.assert_json(StatusCode::OK);
        assert_ne!(etag(&moved), tag, "{list}");
    }
    // A rename moves the items list; a delete moves the books list.
    let tag = etag(&app.get("/api/v1/items").await);
    app.put_json("/api/v1/items/item1", json!({"item": {"name": "Renamed"}}))
        .await;
    assert_ne!(etag(&app.get("/api/v1/items").await), tag);
    let tag = etag(&app.get("/api/v1/books").await);
    app.delete("/api/v1/books/2").await;
    assert_ne!(etag(&app.get("/api/v1/books").await), tag);
    // The catalogue never changes: its tag is stable.
    let things = etag(&app.get("/api/v1/things").await);
    assert_eq!(etag(&app.get("/api/v1/things").await), things);
}

#[tokio::test]
async fn writes_whose_precondition_fails_are_412_and_change_nothing() {
    let app = TestApp::new().await;
    let book = app.get("/api/v1/books/1").await;
    let tag = etag(&book);
    let patch = json!({"title": "Lost update"});
    for stale in [
        "\"0-0\"".to_owned(),
        format!("W/{tag}"),
        "\"elsewhere\"".to_owned(),
        format!("\"{:x}-1\"", u64::MAX),
    ] {
        for method in [Method::PATCH, Method::PUT, Method::DELETE] {
            let body = (method != Method::DELETE).then(|| patch.clone());
            let condition = [("if-match", stale.as_str())];
            let res = send(&app, method.clone(), "/api/v1/books/1", &condition, body).await;
            res.assert_problem(StatusCode::PRECONDITION_FAILED, "/api/v1/books/1");
        }
    }
    let unchanged = app.get("/api/v1/books/1").await;
    assert_eq!(unchanged.body, book.body);
    assert_eq!(etag(&unchanged), tag);

    // The current tag, or `*`, lets the write through; its answer has the new tag.
    let res = send(
        &app,
        Method::PATCH,
        "/api/v1/books/1",
        &[("if-match", &tag)],
        Some(patch),
    )
    .await;
    res.assert_json(StatusCode::OK);
    let new_tag = etag(&res);
    assert_ne!(new_tag, tag);
    let listed = format!("\"x\", {new_tag}");
    let put = json!({"title": "Put"});
    let res = send(
        &app,
        Method::PUT,
        "/api/v1/books/1",
        &[("if-match", &listed)],
        Some(put),
    )
    .await;
    res.assert_json(StatusCode::OK);
    let res = send(
        &app,
        Method::DELETE,
        "/api/v1/books/1",
        &[("if-match", "*")],
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    // A missing record is a 404 whatever the precondition (RFC 9110 §13.2.1).
    for method in [Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({"title": "x"}));
        let res = send(&app, method, "/api/v1/books/1", &[("if-match", "*")], body).await;
        res.assert_problem(StatusCode::NOT_FOUND, "/api/v1/books/1");
    }
    // A header that is not a list of tags is a 400 naming it.
    let res = send(
        &app,
        Method::DELETE,
        "/api/v1/books/2",
        &[("if-match", "abc")],
        None,
    )
    .await;
    let problem = res.assert_problem(StatusCode::BAD_REQUEST, "/api/v1/books/2");
    assert!(problem["detail"].as_str().unwrap().contains("if-match"));
    app.get("/api/v1/books/2").await.assert_json(StatusCode::OK);
    // On a read too; an empty list names no tag: the write's condition fails.
    let malformed = [("if-none-match", "abc")];
    let res = send(&app, Method::GET, "/api/v1/books/2", &malformed, None).await;
    res.assert_problem(StatusCode::BAD_REQUEST, "/api/v1/books/2");
    let empty = [("if-match", "")];
    let res = send(&app, Method::DELETE, "/api/v1/books/2", &empty, None).await;
    res.assert_problem(StatusCode::PRECONDITION_FAILED, "/api/v1/books/2");
}

#[tokio::test]
async fn upserts_honour_if_match_and_if_none_match_star() {
    let app = TestApp::new().await;
    let user = json!({"name": "Dora"});
    let item = json!({"item": {"name": "Vase"}});
    for (uri, body) in [("/api/v1/users/dora", &user), ("/api/v1/items/vase", &item)] {
        // If-Match on a record that does not exist: the PUT would create it, so 412.
        for condition in ["*", "\"0-1\""] {
            let condition = [("if-match", condition)];
            let res = send(&app, Method::PUT, uri, &condition, Some(body.clone())).await;
            res.assert_problem(StatusCode::PRECONDITION_FAILED, uri);
        }
        app.get(uri)
            .await
            .assert_problem(StatusCode::NOT_FOUND, uri);
        // If-None-Match: * creates only: 201 once, then 412.
        let create_only = [("if-none-match", "*")];
        let created = send(&app, Method::PUT, uri, &create_only, Some(body.clone())).await;
        created.assert_json(StatusCode::CREATED);
        let again = send(&app, Method::PUT, uri, &create_only, Some(body.clone())).await;
        again.assert_problem(StatusCode::PRECONDITION_FAILED, uri);
        let tag = etag(&created);
        let current = [("if-match", tag.as_str())];
        let renamed = send(&app, Method::PUT, uri, &current, Some(body.clone())).await;
        renamed.assert_json(StatusCode::OK);
        let stale = send(&app, Method::DELETE, uri, &[("if-match", &tag)], None).await;
        stale.assert_problem(StatusCode::PRECONDITION_FAILED, uri);
        let tag = etag(&app.get(uri).await);
        let deleted = send(&app, Method::DELETE, uri, &[("if-match", &tag)], None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{uri}");
    }
    // A bid's tag guards its delete.
    let bid = app.get("/api/v1/bids/bid1").await;
    let stale = [("if-match", "\"0-0\"")];
    let res = send(&app, Method::DELETE, "/api/v1/bids/bid1", &stale, None).await;
    res.assert_problem(StatusCode::PRECONDITION_FAILED, "/api/v1/bids/bid1");
    let tag = etag(&bid);
    let current = [("if-match", tag.as_str())];
    let res = send(&app, Method::DELETE, "/api/v1/bids/bid1", &current, None).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
}

/// Two clients read one book, then both update it with the tag they read: exactly one update
/// succeeds, the other is refused with 412 and its change is nowhere to be seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_clients_racing_to_update_one_book_exactly_one_wins() {
    let app = Arc::new(TestApp::new().await);
    for round in 0..50 {
        let tag = etag(&app.get("/api/v1/books/1").await);
        let racers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|client| {
                let (app, tag) = (app.clone(), tag.clone());
                let title = format!("round {round} by {client}");
                tokio::spawn(async move {
                    let body = json!({"title": title});
                    let method = if client == "a" {
                        Method::PATCH
                    } else {
                        Method::PUT
                    };
                    let condition = [("if-match", tag.as_str())];
                    let res = send(&app, method, "/api/v1/books/1", &condition, Some(body)).await;
                    (title, res)
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for racer in racers {
            outcomes.push(racer.await.unwrap());
        }
        let won: Vec<&String> = outcomes
            .iter()
            .filter(|(_, res)| res.status == StatusCode::OK)
            .map(|(title, _)| title)
            .collect();
        let refused = outcomes
            .iter()
            .filter(|(_, res)| res.status == StatusCode::PRECONDITION_FAILED)
            .count();
        assert_eq!((won.len(), refused), (1, 1), "round {round}");
        let stored = app.get("/api/v1/books/1").await;
        assert_eq!(stored.body["title"], json!(won[0]), "round {round}");
    }
}

#[tokio::test]
async fn the_openapi_document_declares_tags_304_and_412_where_they_happen() {
    let app = TestApp::new().await;
    let spec = app.get("/api/v1/openapi.json").await.body;
    for (path, methods) in [
        ("/books", &["get", "post"][..]),
        ("/books/{id}", &["get", "put", "patch", "delete"]),
        ("/users", &["get", "post"]),
        ("/users/{user_id}", &["get", "put", "delete"]),
        ("/items", &["get", "post"]),
        ("/items/{item_id}", &["get", "put", "delete"]),
        ("/items/{item_id}/bids", &["get"]),
        ("/items/{item_id}/winning", &["get"]),
        ("/bids", &["get", "post"]),
        ("/bids/{bid_id}", &["get", "delete"]),
        ("/things", &["get"]),
        ("/things/{id}", &["get"]),
    ] {
        for method in methods {
            let operation = &spec["paths"][path][method];
            let responses = &operation["responses"];
            let success = if *method == "post" { "201" } else { "200" };
            if *method != "delete" {
                assert!(
                    responses[success]["headers"]["ETag"].is_object(),
                    "{method} {path}"
                );
            }
            match *method {
                "get" => {
                    assert!(parameter_names(operation).contains(&"If-None-Match".to_owned()));
                    assert!(responses["304"]["headers"]["ETag"].is_object(), "{path}");
                }
                "put" | "patch" | "delete" => {
                    assert!(parameter_names(operation).contains(&"If-Match".to_owned()));
                    assert_eq!(
                        responses["412"]["$ref"], "#/components/responses/PreconditionFailed",
                        "{method} {path}"
                    );
                }
                _ => assert!(responses.get("412").is_none(), "{method} {path}"),
            }
        }
    }
    let put_user = &spec["paths"]["/users/{user_id}"]["put"];
    assert!(parameter_names(put_user).contains(&"If-None-Match".to_owned()));
    let user_items = &spec["paths"]["/users/{user_id}/items"]["get"];
    assert!(user_items["responses"].get("304").is_none());
    assert!(
        spec["paths"]["/echo"]["get"]["responses"]
            .get("304")
            .is_none()
    );
}
