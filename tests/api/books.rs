//! The books API, route by route.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;

const BOOKS: &str = "/api/v1/books";

fn ids(body: &Value) -> Vec<u64> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn list_returns_every_seeded_book_in_id_order_with_the_total() {
    let app = TestApp::new().await;
    let res = app.get(BOOKS).await;
    let body = res.assert_json(StatusCode::OK);
    assert_eq!(ids(body), (1..=12).collect::<Vec<_>>());
    assert_eq!(body[0]["title"], "Java book");
    assert_eq!(res.header("x-total-count"), Some("12"));
    // A book without an author has no `author` member.
    assert!(body[11].get("author").is_none());
}

#[tokio::test]
async fn list_pages_with_limit_and_offset() {
    let app = TestApp::new().await;
    let res = app.get(&format!("{BOOKS}?limit=3&offset=4")).await;
    assert_eq!(ids(res.assert_json(StatusCode::OK)), [5, 6, 7]);
    assert_eq!(res.header("x-total-count"), Some("12"));

    let res = app.get(&format!("{BOOKS}?offset=11")).await;
    assert_eq!(ids(res.assert_json(StatusCode::OK)), [12]);
    let res = app
        .get(&format!("{BOOKS}?offset=99999999999&limit=1000"))
        .await;
    assert_eq!(ids(res.assert_json(StatusCode::OK)), Vec::<u64>::new());
    assert_eq!(res.header("x-total-count"), Some("12"));
}

#[tokio::test]
async fn paging_values_out_of_range_are_bad_requests() {
    let app = TestApp::new().await;
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "offset=-1",
        "offset=x",
        "limit=%ff",
        "limit=10&x=%ff",
    ] {
        app.get(&format!("{BOOKS}?{query}"))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, BOOKS);
    }
    let res = app.get(&format!("{BOOKS}?limit=1000")).await;
    assert_eq!(ids(res.assert_json(StatusCode::OK)).len(), 12);
}

#[tokio::test]
async fn create_answers_201_with_location_and_the_book() {
    let app = TestApp::new().await;
    let res = app
        .post_json(BOOKS, json!({"title": "New book", "author": "Ann Author"}))
        .await;
    let body = res.assert_json(StatusCode::CREATED);
    assert_eq!(
        body,
        &json!({"id": 13, "title": "New book", "author": "Ann Author"})
    );
    assert_eq!(res.header("location"), Some("/api/v1/books/13"));

    let fetched = app.get("/api/v1/books/13").await;
    assert_eq!(fetched.assert_json(StatusCode::OK), body);
    assert_eq!(app.get(BOOKS).await.header("x-total-count"), Some("13"));
}

#[tokio::test]
async fn the_author_is_optional_and_null_means_none() {
    let app = TestApp::new().await;
    for body in [
        json!({"title": "No author"}),
        json!({"title": "Null author", "author": null}),
    ] {
        let res = app.post_json(BOOKS, body).await;
        let book = res.assert_json(StatusCode::CREATED);
        assert!(book.get("author").is_none(), "{book}");
    }
}

#[tokio::test]
async fn ids_continue_above_the_highest_and_are_never_reused() {
    let app = TestApp::new().await;
    app.delete("/api/v1/books/12").await;
    let res = app.post_json(BOOKS, json!({"title": "After delete"})).await;
    assert_eq!(res.assert_json(StatusCode::CREATED)["id"], 13);
    app.delete("/api/v1/books/13").await;
    let res = app.post_json(BOOKS, json!({"title": "Again"})).await;
    assert_eq!(res.assert_json(StatusCode::CREATED)["id"], 14);
}

#[tokio::test]
async fn get_answers_the_book_or_a_404_naming_it() {
    let app = TestApp::new().await;
    let res = app.get("/api/v1/books/3").await;
    assert_eq!(
        res.assert_json(StatusCode::OK)["title"],
        "The Rust Programming Language"
    );
    let res = app.get("/api/v1/books/42").await;
    let problem = res.assert_problem(StatusCode::NOT_FOUND, "/api/v1/books/42");
    assert_eq!(problem["detail"], "book 42 does not exist");
}

#[tokio::test]
async fn ids_of_the_wrong_form_are_bad_requests() {
    let app = TestApp::new().await;
    for id in ["abc", "-1", "1.5", "99999999999999999999999", "%20"] {
        let uri = format!("{BOOKS}/{id}");
        for method in [Method::GET, Method::DELETE] {
            let res = app.send_body(method, &uri, None, "").await;
            res.assert_problem(StatusCode::BAD_REQUEST, &uri);
        }
        app.put_json(&uri, json!({"title": "t"}))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, &uri);
    }
}

#[tokio::test]
async fn a_book_id_not_written_canonically_is_400_and_changes_nothing() {
    let app = TestApp::new().await;
    for id in [
        "01", "001", "+1", "%201", "1%20", "1.0", "0", "00", "0x1", "1e0", "%2B1",
    ] {
        let uri = format!("{BOOKS}/{id}");
        let requests = [
            (Method::GET, None),
            (Method::DELETE, None),
            (Method::PUT, Some(json!({"title": "t"}))),
            (Method::PATCH, Some(json!({"title": "t"}))),
        ];
        for (method, body) in requests {
            let res = match body {
                Some(body) => {
                    app.send_body(method, &uri, Some("application/json"), body.to_string())
                        .await
                }
                None => app.send_body(method, &uri, None, "").await,
            };
            let problem = res.assert_problem(StatusCode::BAD_REQUEST, &uri);
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("a book id is a number from 1 without leading zeros or sign"),
                "{id}: {problem}"
            );
        }
    }
    let book = app.get(&format!("{BOOKS}/1")).await;
    assert_eq!(book.assert_json(StatusCode::OK)["title"], "Java book");
    assert_eq!(app.get(BOOKS).await.header("x-total-count"), Some("12"));
    // The largest id is an id like any other; one more is not a number a book can have.
    app.get(&format!("{BOOKS}/18446744073709551615"))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/books/18446744073709551615");
    app.get(&format!("{BOOKS}/18446744073709551616"))
        .await
        .assert_problem(
            StatusCode::BAD_REQUEST,
            "/api/v1/books/18446744073709551616",
        );
}

#[tokio::test]
async fn put_replaces_both_fields_and_an_omitted_author_is_removed() {
    let app = TestApp::new().await;
    let res = app
        .put_json("/api/v1/books/1", json!({"title": "Java, 2nd edition"}))
        .await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"id": 1, "title": "Java, 2nd edition"})
    );
    let res = app
        .put_json(
            "/api/v1/books/1",
            json!({"id": 1, "title": "Java", "author": "J. Doe"}),
        )
        .await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"id": 1, "title": "Java", "author": "J. Doe"})
    );
    assert_eq!(
        app.get("/api/v1/books/1").await.body,
        json!({"id": 1, "title": "Java", "author": "J. Doe"})
    );
}

#[tokio::test]
async fn put_with_another_id_in_the_body_is_422_and_changes_nothing() {
    let app = TestApp::new().await;
    let res = app
        .put_json("/api/v1/books/1", json!({"id": 2, "title": "Hijack"}))
        .await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "/api/v1/books/1");
    assert_eq!(res.error_pointers(), ["/id"]);
    assert_eq!(app.get("/api/v1/books/1").await.body["title"], "Java book");
}

#[tokio::test]
async fn put_and_patch_on_a_missing_book_are_404() {
    let app = TestApp::new().await;
    app.put_json("/api/v1/books/99", json!({"title": "t"}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/books/99");
    app.patch_json("/api/v1/books/99", json!({"title": "t"}))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/books/99");
    // A missing book is not created by PUT.
    assert_eq!(app.get(BOOKS).await.header("x-total-count"), Some("12"));
}

#[tokio::test]
async fn patch_changes_only_the_given_fields() {
    let app = TestApp::new().await;
    let res = app
        .patch_json("/api/v1/books/2", json!({"title": "Python, revised"}))
        .await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"id": 2, "title": "Python, revised", "author": "John Roe"})
    );
    let res = app.patch_json("/api/v1/books/2", json!({})).await;
    assert_eq!(res.assert_json(StatusCode::OK)["title"], "Python, revised");
}

#[tokio::test]
async fn patch_with_a_null_author_removes_it_but_a_null_title_is_refused() {
    let app = TestApp::new().await;
    let res = app
        .send_body(
            Method::PATCH,
            "/api/v1/books/2",
            Some("application/merge-patch+json"),
            r#"{"author": null}"#,
        )
        .await;
    assert_eq!(
        res.assert_json(StatusCode::OK),
        &json!({"id": 2, "title": "Python book"})
    );
    let res = app
        .patch_json("/api/v1/books/2", json!({"title": null}))
        .await;
    res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "/api/v1/books/2");
    assert_eq!(res.error_pointers(), ["/title"]);
    let res = app
        .patch_json("/api/v1/books/2", json!({"id": 3, "title": "x"}))
        .await;
    assert_eq!(res.error_pointers(), ["/id"]);
    assert_eq!(
        app.get("/api/v1/books/2").await.body["title"],
        "Python book"
    );
}

#[tokio::test]
async fn delete_answers_204_then_404() {
    let app = TestApp::new().await;
    let res = app.delete("/api/v1/books/5").await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert!(res.text.is_empty());
    app.get("/api/v1/books/5")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/books/5");
    app.delete("/api/v1/books/5")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "/api/v1/books/5");
    assert_eq!(app.get(BOOKS).await.header("x-total-count"), Some("11"));
}

#[tokio::test]
async fn invalid_fields_are_422_with_a_pointer_for_each_and_change_nothing() {
    let app = TestApp::new().await;
    let long = "x".repeat(201);
    let cases = [
        (json!({"title": ""}), vec!["/title"]),
        (json!({"title": " \t\n"}), vec!["/title"]),
        (json!({"title": "\u{85}\u{3000}"}), vec!["/title"]),
        (json!({"title": long}), vec!["/title"]),
        (json!({"title": "ok", "author": "  "}), vec!["/author"]),
        (
            json!({"title": "", "author": long}),
            vec!["/title", "/author"],
        ),
        (json!({}), vec!["/title"]),
        (json!({"title": 5}), vec!["/title"]),
        (json!({"title": null}), vec!["/title"]),
        (json!({"title": "t", "author": 7}), vec!["/author"]),
        (json!({"title": "t", "isbn": "123"}), vec!["/isbn"]),
        (json!({"id": 50, "title": "t"}), vec!["/id"]),
    ];
    for (body, pointers) in cases {
        let res = app.post_json(BOOKS, body.clone()).await;
        let problem = res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, BOOKS);
        assert_eq!(res.error_pointers(), pointers, "for {body}");
        for error in problem["errors"].as_array().unwrap() {
            assert!(error["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }
    let blank = app.post_json(BOOKS, json!({"title": "  "})).await;
    assert_eq!(blank.body["errors"][0]["detail"], "must not be blank");
    assert_eq!(app.get(BOOKS).await.header("x-total-count"), Some("12"));
}

const NOT_BLANK: &str = "must not be blank";
const NO_CONTROLS: &str = "must not contain control characters other than tab and newline";

/// Titles made only of invisible characters (whitespace or Unicode Default_Ignorable_Code_Point).
const INVISIBLE: &[&str] = &[
    "\u{200b}\u{a0}\u{feff}",
    "\u{ad}",
    "\u{34f}\u{61c}\u{115f}\u{1160}\u{17b4}\u{180e}",
    "\u{200c}\u{200d}\u{200e}\u{200f}\u{202a}\u{202e}",
    "\u{2060}\u{2065}\u{206f}\u{3164}\u{ffa0}\u{fff0}",
    "\u{fe00}\u{fe0f} \t\n",
    "\u{1bca0}\u{1d173}\u{1d17a}",
    "\u{e0001}\u{e0020}\u{e007f}\u{e0100}\u{e0fff}",
];

/// Titles with a control character other than tab and newline.
const WITH_CONTROLS: &[&str] = &[
    "a\u{0}b",
    "\u{0}",
    "line\r\n",
    "\u{1b}[31mred",
    "bell\u{7}",
    "del\u{7f}",
    "c1\u{80}",
    "next line\u{85}",
    "\u{9f}",
    "\u{b}vertical tab",
];

/// Titles that look odd but have a visible character and no forbidden control.
const ACCEPTED: &[&str] = &[
    "a\tb\nc",
    "\u{200b}a\u{200b}",
    "\u{feff}BOM",
    "\u{e0041}x",
    "e\u{301}",
    "\u{115f}\u{1161}",
    "\u{2061}\u{fff9}",
];

#[tokio::test]
async fn invisible_titles_are_blank_and_control_characters_are_refused() {
    let app = TestApp::new().await;
    let one = format!("{BOOKS}/1");
    let cases = INVISIBLE
        .iter()
        .map(|t| (*t, NOT_BLANK))
        .chain(WITH_CONTROLS.iter().map(|t| (*t, NO_CONTROLS)));
    for (text, detail) in cases {
        let attempts = [
            (Method::POST, BOOKS, json!({"title": text}), "/title"),
            (
                Method::POST,
                BOOKS,
                json!({"title": "t", "author": text}),
                "/author",
            ),
            (Method::PUT, one.as_str(), json!({"title": text}), "/title"),
            (
                Method::PATCH,
                one.as_str(),
                json!({"author": text}),
                "/author",
            ),
        ];
        for (method, uri, body, pointer) in attempts {
            let res = app
                .send_body(method, uri, Some("application/json"), body.to_string())
                .await;
            res.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, uri);
            assert_eq!(res.error_pointers(), [pointer], "{text:?}");
            assert_eq!(res.body["errors"][0]["detail"], detail, "{text:?}");
        }
    }
    assert_eq!(app.get(BOOKS).await.header("x-total-count"), Some("12"));
    let book = app.get(&one).await;
    assert_eq!(
        book.body,
        json!({"id": 1, "title": "Java book", "author": "Jane Doe"})
    );
    for text in ACCEPTED {
        let res = app
            .post_json(BOOKS, json!({"title": text, "author": text}))
            .await;
        let created = res.assert_json(StatusCode::CREATED);
        assert_eq!(created["title"], *text);
        assert_eq!(created["author"], *text);
    }
}

#[tokio::test]
async fn lengths_are_counted_in_characters() {
    let app = TestApp::new().await;
    let title = "é".repeat(200);
    let res = app.post_json(BOOKS, json!({"title": title})).await;
    assert_eq!(res.assert_json(StatusCode::CREATED)["title"], title);
}

#[tokio::test]
async fn text_is_stored_exactly_as_sent() {
    let app = TestApp::new().await;
    let title = "  <b>Ünïcødé</b> 📚 \"quoted\" \\ 'x'; DROP TABLE books;--  ";
    let res = app.post_json(BOOKS, json!({"title": title})).await;
    let id = res.assert_json(StatusCode::CREATED)["id"].as_u64().unwrap();
    let fetched = app.get(&format!("{BOOKS}/{id}")).await;
    assert_eq!(fetched.body["title"], title);
}
