//! Filters, search and sort on every list, checked against a model: each list is read whole
//! (plain), the test computes what a query must answer from that, and the server must agree,
//! order and `X-Total-Count` included, on both store backends.

use std::cmp::Ordering;

use axum::http::StatusCode;
use serde_json::{Value, json};

use monolith::Config;

use crate::helpers::{TestApp, TestResponse, data_dir_with, test_config};
use crate::lists::listed;

/// A field's value as the model sees it.
#[derive(Clone, Debug, PartialEq)]
enum Field {
    Number(f64),
    Text(String),
    Missing,
}

/// A record of a list: its key as listed, its place in the plain list (natural id order), and
/// its fields by name, each with whether `q` searches it.
#[derive(Clone, Debug)]
struct Record {
    key: String,
    rank: usize,
    fields: Vec<(&'static str, Field, bool)>,
}

impl Record {
    fn get(&self, name: &str) -> &Field {
        &self
            .fields
            .iter()
            .find(|(field, ..)| *field == name)
            .unwrap_or_else(|| panic!("no field {name}"))
            .1
    }
}

fn text(value: &Value) -> Field {
    match value {
        Value::String(s) => Field::Text(s.clone()),
        Value::Null => Field::Missing,
        Value::Number(n) => Field::Number(n.as_f64().unwrap()),
        other => panic!("not a field: {other}"),
    }
}

/// The records of a plain list's answer, in the order listed.
fn records(list: &str, res: &TestResponse) -> Vec<Record> {
    let keys = listed(res);
    keys.iter()
        .enumerate()
        .map(|(rank, key)| {
            let fields = match list {
                "books" => {
                    let book = res
                        .body
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|b| b["id"] == key.parse::<u64>().unwrap())
                        .unwrap();
                    vec![
                        ("id", text(&book["id"]), false),
                        ("title", text(&book["title"]), true),
                        ("author", text(&book["author"]), true),
                    ]
                }
                "users" => vec![
                    ("id", Field::Text(key.clone()), true),
                    ("name", text(&res.body[key]["name"]), true),
                ],
                "items" => {
                    let item = &res.body[key]["item"];
                    vec![
                        ("id", Field::Text(key.clone()), true),
                        ("name", text(&item["name"]), true),
                        ("winning", text(&item["winning"]), true),
                    ]
                }
                "bids" => {
                    let bid = &res.body[key]["bid"];
                    vec![
                        ("id", Field::Text(key.clone()), true),
                        ("item", text(&bid["item"]), true),
                        ("user", text(&bid["user"]), true),
                        ("value", text(&bid["value"]), false),
                    ]
                }
                "things" => {
                    let thing = &res.body[key];
                    vec![
                        ("id", Field::Text(key.clone()), true),
                        ("name", text(&thing["name"]), true),
                        ("description", text(&thing["description"]), true),
                    ]
                }
                other => panic!("no list {other}"),
            };
            Record {
                key: key.clone(),
                rank,
                fields,
            }
        })
        .collect()
}

/// The order of one field's values: ids by their place in the plain list, numbers as numbers,
/// text by code point, a missing value last.
fn order(a: &Record, b: &Record, field: &str) -> Ordering {
    if field == "id" {
        return a.rank.cmp(&b.rank);
    }
    match (a.get(field), b.get(field)) {
        (Field::Missing, Field::Missing) => Ordering::Equal,
        (Field::Missing, _) => Ordering::Greater,
        (_, Field::Missing) => Ordering::Less,
        (Field::Number(x), Field::Number(y)) => x.total_cmp(y),
        (Field::Text(x), Field::Text(y)) => x.cmp(y),
        (x, y) => panic!("{x:?} and {y:?} do not compare"),
    }
}

/// What `query` must answer on `all`: the keys in order, and the count before paging.
fn model(all: &[Record], query: &str) -> (Vec<String>, usize) {
    let mut found: Vec<&Record> = all.iter().collect();
    let mut sort: Vec<(String, bool)> = Vec::new();
    let (mut limit, mut offset) = (usize::MAX, 0);
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let (name, value) = (name.into_owned(), value.into_owned());
        match name.as_str() {
            "limit" => limit = value.parse().unwrap(),
            "offset" => offset = value.parse().unwrap(),
            "q" => {
                let needle = value.to_lowercase();
                found.retain(|r| {
                    r.fields.iter().any(|(_, field, searched)| {
                        *searched
                            && matches!(field, Field::Text(t) if t.to_lowercase().contains(&needle))
                    })
                })
            }
            "sort" => {
                sort = value
                    .split(',')
                    .map(|key| match key.strip_prefix('-') {
                        Some(key) => (key.to_owned(), true),
                        None => (key.to_owned(), false),
                    })
                    .collect()
            }
            _ => {
                let (field, test) = if let Some(field) = name.strip_suffix("_gte") {
                    (field, Ordering::Greater)
                } else if let Some(field) = name.strip_suffix("_lte") {
                    (field, Ordering::Less)
                } else {
                    (name.as_str(), Ordering::Equal)
                };
                found.retain(|r| match (r.get(field), test) {
                    (Field::Missing, Ordering::Equal) => value.is_empty(),
                    (Field::Missing, _) => false,
                    (Field::Number(n), Ordering::Equal) => *n == value.parse::<f64>().unwrap(),
                    (Field::Number(n), Ordering::Greater) => *n >= value.parse::<f64>().unwrap(),
                    (Field::Number(n), Ordering::Less) => *n <= value.parse::<f64>().unwrap(),
                    (Field::Text(t), Ordering::Equal) => *t == value,
                    (Field::Text(_), _) => panic!("no range on text"),
                })
            }
        }
    }
    found.sort_by(|a, b| {
        sort.iter()
            .map(|(field, descending)| {
                let o = order(a, b, field);
                if *descending { o.reverse() } else { o }
            })
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.rank.cmp(&b.rank))
    });
    let total = found.len();
    let page = found
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|r| r.key.clone())
        .collect();
    (page, total)
}

/// Asks each of `queries` of `list` and holds the answer to the model's.
async fn agrees(app: &TestApp, list: &str, queries: &[&str]) {
    let whole = app.get(&format!("/api/v1/{list}")).await;
    whole.assert_json(StatusCode::OK);
    let all = records(list, &whole);
    for query in queries {
        let uri = format!("/api/v1/{list}?{query}");
        let res = app.get(&uri).await;
        res.assert_json(StatusCode::OK);
        let (expected, total) = model(&all, query);
        assert_eq!(listed(&res), expected, "{uri}");
        assert_eq!(
            res.header("x-total-count"),
            Some(total.to_string().as_str()),
            "{uri}"
        );
    }
}

/// Books with ties, missing authors, mixed case and non-ASCII text.
async fn varied_books(app: &TestApp) {
    for (title, author) in [
        ("Éclair", Some("Zoë")),
        ("éclair", None),
        ("Refactoring", Some("Martin Fowler")),
        ("Refactoring", None),
        (
            "Patterns of Enterprise Application Architecture",
            Some("Martin Fowler"),
        ),
        ("50% off: a_b", Some("Percy")),
    ] {
        let mut book = json!({"title": title});
        if let Some(author) = author {
            book["author"] = json!(author);
        }
        app.post_json("/api/v1/books", book)
            .await
            .assert_json(StatusCode::CREATED);
    }
}

#[tokio::test]
async fn books_filter_search_and_sort_as_the_model_says() {
    let app = TestApp::new().await;
    varied_books(&app).await;
    // The first example: before, this answered all books.
    let fowler = app.get("/api/v1/books?author=Martin%20Fowler").await;
    assert_eq!(listed(&fowler).len(), 3);
    assert_eq!(fowler.header("x-total-count"), Some("3"));
    agrees(
        &app,
        "books",
        &[
            "author=Martin%20Fowler",
            "author=",
            "title=Refactoring&author=",
            "q=rust",
            "q=RUST",
            "q=%C3%89CLAIR",
            "q=%25",
            "q=_",
            "q=zo%C3%AB",
            "sort=title",
            "sort=-title",
            "sort=author,-title",
            "sort=-author,title",
            "sort=-id",
            "sort=title,-id",
            "id_gte=3&id_lte=7&sort=-id",
            "id_gte=12",
            "id=4",
            "id=9223372036854775808",
            "id=184467440737095516150000",
            "id_lte=184467440737095516150000&sort=-id&limit=2",
            "id_gte=184467440737095516150000",
            "q=the&sort=-title&limit=2&offset=1",
            "sort=author&limit=3&offset=12",
            "q=nothing-matches-this",
            "q=%00",
            "title=a%00b",
        ],
    )
    .await;
}

#[tokio::test]
async fn auction_lists_filter_search_and_sort_as_the_model_says() {
    let app = TestApp::new().await;
    for (user, item, value) in [
        ("user3", "item2", 750.0),
        ("user1", "item2", 750.0),
        ("user2", "item1", 1000.0),
        ("user3", "item1", 20.5),
    ] {
        let bid = json!({"bid": {"item": item, "user": user, "value": value}});
        app.post_json("/api/v1/bids", bid)
            .await
            .assert_json(StatusCode::CREATED);
    }
    let item = json!({"item": {"name": "a lonely lot"}});
    app.post_json("/api/v1/items", item)
        .await
        .assert_json(StatusCode::CREATED);
    agrees(
        &app,
        "bids",
        &[
            "item=item1&user=user2",
            "item=item2",
            "value_gte=600&value_lte=1000&sort=-value",
            "value=750",
            "value_gte=1e3",
            "sort=value",
            "sort=-value,-id",
            "sort=user,value",
            "q=USER3",
            "user=nobody",
            "sort=-value&limit=2&offset=1",
        ],
    )
    .await;
    agrees(
        &app,
        "users",
        &[
            "q=e",
            "name=Albert",
            "sort=-name",
            "q=USER&sort=-id&limit=2",
        ],
    )
    .await;
    agrees(
        &app,
        "items",
        &[
            "winning=",
            "winning=bid2",
            "sort=-name",
            "q=lot",
            "q=%E2%84%96",
            "name=Item%20N%C2%BA%202",
            "sort=winning",
            "sort=-winning,-name&limit=2",
        ],
    )
    .await;
    agrees(
        &app,
        "things",
        &[
            "q=thing&sort=-name",
            "description=",
            "sort=description",
            "id=1",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_query_across_many_chunks_keeps_its_order_with_no_record_twice() {
    // 9 000 books: more than two chunks of a sorted list (4 096) and many of a list in id order
    // (256), with many ties and missing authors, so that each chunk goes on after the last
    // record of the one before by every sort key.
    let books: Vec<Value> = (1..=9000)
        .map(|n| {
            let mut book = json!({"id": n, "title": format!("T{}", n % 7)});
            if n % 3 != 0 {
                book["author"] = json!(format!("A{}", n % 5));
            }
            book
        })
        .collect();
    let data = data_dir_with(&[("books.json", &Value::from(books).to_string())]);
    let app = TestApp::with_config(Config {
        data_dir: data.path().to_owned(),
        ..test_config()
    })
    .await;
    agrees(
        &app,
        "books",
        &[
            "sort=author,-title",
            "sort=-author,title",
            "sort=-title,-id",
            "q=t&sort=author",
            "title=T3&sort=-author",
            "author=&sort=-title",
            "author=A2",
            "sort=author&offset=3000&limit=1000",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_bad_query_is_a_400_naming_what_is_wrong_and_queries_keep_paging_links() {
    let app = TestApp::new().await;
    for (uri, named) in [
        ("/api/v1/books?sort=colour", "colour"),
        ("/api/v1/books?sort=title,", "sort"),
        ("/api/v1/books?title_gte=a", "title_gte"),
        ("/api/v1/books?id=abc", "id"),
        ("/api/v1/books?id_gte=-1", "id_gte"),
        ("/api/v1/books?title=", "title"),
        ("/api/v1/books?q=a&q=b", "q"),
        ("/api/v1/bids?value_gte=abc", "value_gte"),
        ("/api/v1/bids?value=NaN", "value"),
        ("/api/v1/bids?user=not%20an%20id", "user"),
        ("/api/v1/users?author=x", "author"),
        ("/api/v1/items?winning=bad!", "winning"),
        ("/api/v1/things?name_lte=z", "name_lte"),
    ] {
        let res = app.get(uri).await;
        let path = uri.split('?').next().unwrap();
        res.assert_problem(StatusCode::BAD_REQUEST, path);
        let detail = res.body["detail"].as_str().unwrap();
        assert!(detail.contains(named), "{uri}: {detail}");
    }
    // Links page through the matches, keeping the query.
    let res = app.get("/api/v1/books?q=the&sort=-title&limit=2").await;
    assert_eq!(res.header("x-total-count"), Some("3"));
    let link = res.header("link").unwrap();
    assert!(
        link.contains("</api/v1/books?q=the&sort=-title&limit=2&offset=2>; rel=\"next\""),
        "{link}"
    );
    assert!(
        link.contains("</api/v1/books?q=the&sort=-title&limit=2&offset=2>; rel=\"last\""),
        "{link}"
    );
}
