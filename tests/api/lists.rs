//! Every list: paging with `X-Total-Count`, the original wrappers, lists larger than a chunk,
//! bounded memory on a large store, and the cap on stored records.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::cli::ServerProcess;
use crate::helpers::{TestApp, data_dir_with, rss_bytes, test_config};

const LISTS: [&str; 6] = [
    "/api/v1/books",
    "/api/v1/users",
    "/api/v1/items",
    "/api/v1/bids",
    "/api/v1/things",
    "/api/v1/items/item1/bids",
];

/// The keys of a JSON object in the order they are written (`Value` sorts them).
fn keys_in_order(text: &str) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visitor)
        }
    }
    serde_json::from_str::<Keys>(text).unwrap().0
}

/// The keys of a list sent as an object, or the ids of an array of books or bids, in order.
pub fn listed(res: &crate::helpers::TestResponse) -> Vec<String> {
    match &res.body {
        Value::Object(_) => keys_in_order(&res.text),
        other => ids(other),
    }
}

/// The ids of an array of books or bids, in order.
fn ids(body: &Value) -> Vec<String> {
    match body {
        Value::Array(list) => list
            .iter()
            .map(|v| match (&v["id"], &v["bid_id"]) {
                (Value::Number(n), _) => n.to_string(),
                (_, Value::String(s)) => s.clone(),
                _ => panic!("no id in {v}"),
            })
            .collect(),
        other => panic!("not a list: {other}"),
    }
}

#[tokio::test]
async fn every_list_pages_and_counts_and_is_whole_without_parameters() {
    let app = TestApp::new().await;
    for list in LISTS {
        let whole = app.get(list).await;
        whole.assert_json(StatusCode::OK);
        let all = listed(&whole);
        let total: usize = whole.header("x-total-count").expect(list).parse().unwrap();
        assert_eq!(total, all.len(), "{list}");
        assert!(total >= 2, "{list} needs two records to page");

        let page = app.get(&format!("{list}?limit=1&offset=1")).await;
        page.assert_json(StatusCode::OK);
        assert_eq!(listed(&page), all[1..2], "{list}");
        assert_eq!(
            page.header("x-total-count"),
            Some(total.to_string().as_str())
        );
        // The same record as in the whole list, in the same shape.
        let (key, record) = match &page.body {
            Value::Object(map) => {
                let (k, v) = map.iter().next().unwrap();
                (k.clone(), v.clone())
            }
            Value::Array(list) => (String::new(), list[0].clone()),
            _ => unreachable!(),
        };
        let expected = match &whole.body {
            Value::Object(map) => map[&key].clone(),
            Value::Array(list) => list[1].clone(),
            _ => unreachable!(),
        };
        assert_eq!(record, expected, "{list}");

        let past = app.get(&format!("{list}?offset=100000000000")).await;
        past.assert_json(StatusCode::OK);
        assert_eq!(listed(&past).len(), 0);
        // A bad value, or a parameter the list does not take, is a 400 naming it: never
        // silently ignored (before, `?author=x` answered the whole list; now it filters books).
        for (bad, named) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("offset=-1", "offset"),
            ("limit=x", "limit"),
            ("offset=1.5", "offset"),
            ("colour=red", "colour"),
            ("limit=1&pgae=2", "pgae"),
        ] {
            let uri = format!("{list}?{bad}");
            let res = app.get(&uri).await;
            res.assert_problem(StatusCode::BAD_REQUEST, list);
            let detail = res.body["detail"].as_str().unwrap();
            assert!(detail.contains(named), "{uri}: {detail}");
        }
    }
}

/// The `Link` header's targets by relation (RFC 8288: `<target>; rel="name"`, comma-separated).
fn links(res: &crate::helpers::TestResponse) -> std::collections::BTreeMap<String, String> {
    let link = regex::Regex::new(r#"<([^>]*)>; rel="([a-z]+)""#).unwrap();
    let header = res.header("link").unwrap_or_default();
    link.captures_iter(header)
        .map(|c| (c[2].to_owned(), c[1].to_owned()))
        .collect()
}

#[tokio::test]
async fn every_paged_list_links_its_first_previous_next_and_last_pages() {
    let app = TestApp::new().await;
    for list in LISTS {
        let whole = app.get(list).await;
        assert_eq!(
            whole.header("link"),
            None,
            "{list}: one page, nothing to link"
        );
        let all = listed(&whole);

        // Following `next` from `first` reads the whole list, page by page, and ends at `last`.
        let first = app.get(&format!("{list}?limit=2")).await;
        let rel = links(&first);
        assert_eq!(rel["first"], format!("{list}?limit=2&offset=0"), "{list}");
        assert!(!rel.contains_key("prev"), "{list}: the first page has none");
        let last = rel["last"].clone();
        let mut read = listed(&first);
        let mut next = rel.get("next").cloned();
        let mut pages = 1;
        while let Some(uri) = next {
            let page = app.get(&uri).await;
            page.assert_json(StatusCode::OK);
            read.extend(listed(&page));
            let rel = links(&page);
            assert_eq!(rel["first"], format!("{list}?limit=2&offset=0"), "{uri}");
            assert_eq!(rel["last"], last, "{uri}");
            next = rel.get("next").cloned();
            if next.is_none() {
                assert_eq!(uri, last, "{list}: the page without `next` is `last`");
            }
            pages += 1;
        }
        assert_eq!(read, all, "{list}");
        assert_eq!(pages, all.len().div_ceil(2), "{list}");

        // Other parameters are kept, in their place; only the offset changes.
        let middle = app.get(&format!("{list}?offset=1&limit=1")).await;
        let rel = links(&middle);
        assert_eq!(rel["prev"], format!("{list}?offset=0&limit=1"), "{list}");
        let next = (all.len() > 2).then(|| format!("{list}?offset=2&limit=1"));
        assert_eq!(rel.get("next"), next.as_ref(), "{list}");
        // Past the end, `prev` leads back to the last page.
        let past = app.get(&format!("{list}?limit=1&offset=1000")).await;
        assert_eq!(links(&past)["prev"], links(&past)["last"], "{list}");
        assert!(!links(&past).contains_key("next"), "{list}");
    }
}

#[tokio::test]
async fn lists_keep_the_original_trackers_wrappers() {
    let app = TestApp::new().await;
    let items = app.get("/api/v1/items").await.body;
    // What the original client does: items[id]["item"]["winning"], bids[id]["bid"]["value"].
    assert_eq!(items["item1"]["item"]["winning"], "bid2");
    assert_eq!(items["item1"]["item"]["bids"], json!(["bid1", "bid2"]));
    let bids = app.get("/api/v1/bids").await.body;
    assert_eq!(bids["bid2"]["bid_id"], "bid2");
    assert_eq!(bids["bid2"]["bid"]["value"], 1000.0);
    assert_eq!(
        app.get("/api/v1/users").await.body["user1"],
        json!({"name": "Albert"})
    );
}

/// A store with `books` books, `users` users and one item with `bids` bids on it.
fn big_seed(books: usize, user_count: usize, bids: usize) -> tempfile::TempDir {
    let books: Vec<Value> = (1..=books)
        .map(|id| json!({"id": id, "title": format!("Book {id}")}))
        .collect();
    let users: serde_json::Map<String, Value> = (1..=user_count)
        .map(|n| (format!("user{n}"), json!({"name": format!("User {n}")})))
        .collect();
    let mut items = serde_json::Map::new();
    for n in 1..=user_count {
        items.insert(format!("item{n}"), json!({"name": format!("Item {n}")}));
    }
    let mut all_bids = serde_json::Map::new();
    for n in 1..=bids {
        let user = format!("user{}", n % user_count + 1);
        all_bids.insert(
            format!("bid{n}"),
            json!({"item": "item1", "value": n, "user": user}),
        );
    }
    // user1 bids once on every item, so their item list is long too.
    for n in 1..=user_count {
        all_bids.insert(
            format!("x{n}"),
            json!({"item": format!("item{n}"), "value": 1, "user": "user1"}),
        );
    }
    let auction = json!({"users": users, "items": items, "bids": all_bids});
    data_dir_with(&[
        ("books.json", &Value::from(books).to_string()),
        ("auction.json", &auction.to_string()),
    ])
}

#[tokio::test]
async fn lists_larger_than_a_chunk_come_whole_and_in_order() {
    let dir = big_seed(1300, 600, 700);
    let mut config = test_config();
    config.data_dir = dir.path().to_owned();
    let app = TestApp::with_config(config).await;

    let books = app.get("/api/v1/books").await;
    let expected: Vec<String> = (1..=1300).map(|n| n.to_string()).collect();
    assert_eq!(ids(books.assert_json(StatusCode::OK)), expected);
    let page = app.get("/api/v1/books?offset=1000&limit=1000").await;
    assert_eq!(ids(&page.body), expected[1000..]);

    let users = listed(&app.get("/api/v1/users").await);
    let expected_users: Vec<String> = (1..=600).map(|n| format!("user{n}")).collect();
    assert_eq!(users, expected_users);

    // item1's bids: 700 numbered ones, then user1's x1 (seed bids go in natural id order).
    let bid_ids: Vec<String> = (1..=700)
        .map(|n| format!("bid{n}"))
        .chain(["x1".to_owned()])
        .collect();
    let item = app.get("/api/v1/items/item1").await;
    let item_bids: Vec<String> = serde_json::from_value(item.body["item"]["bids"].clone()).unwrap();
    assert_eq!(item_bids, bid_ids);
    assert_eq!(item.body["item"]["winning"], "bid700");
    let complete = app.get("/api/v1/items/item1?complete=1").await;
    assert_eq!(ids(&complete.body["item"]["bids"]), bid_ids);
    let paged = app
        .get("/api/v1/items/item1/bids?offset=690&limit=20")
        .await;
    assert_eq!(ids(&paged.body), bid_ids[690..]);
    assert_eq!(paged.header("x-total-count"), Some("701"));

    let items = app.get("/api/v1/items").await;
    assert_eq!(listed(&items).len(), 600);
    let items = items.body;
    let item1_bids: Vec<String> =
        serde_json::from_value(items["item1"]["item"]["bids"].clone()).unwrap();
    assert_eq!(item1_bids, bid_ids);
    assert_eq!(items["item600"]["item"]["bids"], json!(["x600"]));

    let user_items = app.get("/api/v1/users/user1/items").await.body;
    let expected_items: Vec<String> = std::iter::once("item1".to_owned())
        .chain((2..=600).map(|n| format!("item{n}")))
        .collect();
    assert_eq!(
        serde_json::from_value::<Vec<String>>(user_items["items_bid"].clone()).unwrap(),
        expected_items
    );
    assert_eq!(user_items["name"], "User 1");
    let bids = app.get("/api/v1/bids?offset=1290&limit=100").await;
    assert_eq!(bids.header("x-total-count"), Some("1300"));
    assert_eq!(listed(&bids).len(), 10);
}

#[tokio::test]
async fn a_full_resource_refuses_creates_with_507_and_changes_nothing() {
    if crate::helpers::on_postgres() {
        return; // Memory only: the cap protects RAM; PostgreSQL keeps records on disk, uncapped.
    }
    // The bundled auction (3 users, 2 items, 2 bids) and 3 books.
    let auction =
        std::fs::read_to_string(format!("{}/auction.json", crate::helpers::DATA_DIR)).unwrap();
    let books = json!([{"id": 1, "title": "a"}, {"id": 2, "title": "b"}, {"id": 3, "title": "c"}]);
    let dir = data_dir_with(&[
        ("auction.json", &auction),
        ("books.json", &books.to_string()),
    ]);
    let mut config = test_config();
    config.data_dir = dir.path().to_owned();
    config.max_records = 3;
    let app = TestApp::with_config(config).await;
    let refused = [
        ("/api/v1/users", json!({"name": "Dora"})),
        ("/api/v1/books", json!({"title": "One more"})),
    ];
    for (uri, body) in refused {
        let before = app.get(uri).await.text;
        let res = app.post_json(uri, body).await;
        let problem = res.assert_problem(StatusCode::INSUFFICIENT_STORAGE, uri);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("maximum of 3"), "{detail}");
        assert_eq!(app.get(uri).await.text, before, "{uri} unchanged");
    }
    let put = app
        .put_json("/api/v1/users/user9", json!({"name": "Nine"}))
        .await;
    put.assert_problem(StatusCode::INSUFFICIENT_STORAGE, "/api/v1/users/user9");
    // Renaming is not adding.
    let rename = app
        .put_json("/api/v1/users/user1", json!({"name": "Al"}))
        .await;
    rename.assert_json(StatusCode::OK);

    let item = app
        .post_json("/api/v1/items", json!({"item": {"name": "Three"}}))
        .await;
    item.assert_json(StatusCode::CREATED);
    let full = app
        .post_json("/api/v1/items", json!({"item": {"name": "Four"}}))
        .await;
    full.assert_problem(StatusCode::INSUFFICIENT_STORAGE, "/api/v1/items");
    let bid = json!({"bid": {"item": "item2", "value": 5, "user": "user3"}});
    app.post_json("/api/v1/bids", bid.clone())
        .await
        .assert_json(StatusCode::CREATED);
    let before = app.get("/api/v1/items/item2").await.text;
    let full = app.post_json("/api/v1/bids", bid).await;
    full.assert_problem(StatusCode::INSUFFICIENT_STORAGE, "/api/v1/bids");
    assert_eq!(app.get("/api/v1/items/item2").await.text, before);
}

#[test]
fn a_seed_over_the_cap_stops_start_up_naming_the_file() {
    let out = std::process::Command::new(crate::helpers::binary())
        .arg("check-data")
        .env("DATA_DIR", crate::helpers::DATA_DIR)
        .env("MAX_RECORDS_PER_RESOURCE", "5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("books.json") && stderr.contains("12 books"),
        "{stderr}"
    );
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    rss_bytes(pid) >> 20
}

/// GETs `url` and reads the whole body; its length.
async fn read_whole(client: &reqwest::Client, url: &str) -> usize {
    let response = client.get(url).send().await.unwrap();
    response.bytes().await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_read_slowly_or_never_cost_bounded_memory_on_a_large_store() {
    // 200k books is ~7 MB of JSON per full list: 40 whole copies would be near 300 MB.
    crate::helpers::init_logs();
    let dir = big_seed(200_000, 2, 2);
    let server = ServerProcess::start(&[("DATA_DIR", dir.path().to_str().unwrap())]);
    let pid = server.child.id();
    // Warm up: one full read, so that allocator pools are in place before the baseline.
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/books", server.address);
    let whole = read_whole(&client, &url).await;
    assert!(whole > 6_000_000, "{whole} bytes");
    let baseline = rss_mib(pid);

    // 40 clients that ask for every book and never read a byte of the answer.
    let mut silent = Vec::new();
    for _ in 0..40 {
        let mut socket = TcpStream::connect(&server.address).await.unwrap();
        socket
            .write_all(b"GET /api/v1/books HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        silent.push(socket);
    }
    // 16 clients that read everything, at once.
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { read_whole(&client, &url).await })
        })
        .collect();
    let mut peak = 0;
    let mut done = false;
    while !done {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_mib(pid));
        done = readers.iter().all(|r| r.is_finished());
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), whole);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    peak = peak.max(rss_mib(pid));
    assert!(
        peak < baseline + 64,
        "56 clients on 200k books grew RSS from {baseline} MiB to {peak} MiB"
    );
    eprintln!("RSS {baseline} MiB before, {peak} MiB at most with 56 clients");
    drop(silent);
}

#[tokio::test]
async fn the_openapi_document_describes_paging_and_the_cap() {
    let app = TestApp::new().await;
    let spec = app.get("/api/v1/openapi.json").await.body;
    for path in [
        "/books",
        "/users",
        "/items",
        "/bids",
        "/things",
        "/items/{item_id}/bids",
    ] {
        let get = &spec["paths"][path]["get"];
        let params: Vec<&str> = get["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            params.contains(&"limit") && params.contains(&"offset"),
            "{path}: {params:?}"
        );
        let headers = &get["responses"]["200"]["headers"];
        assert_eq!(
            headers["X-Total-Count"]["schema"]["type"], "integer",
            "{path}"
        );
        assert_eq!(headers["Link"]["schema"]["type"], "string", "{path}");
        assert!(get["responses"]["400"].is_object(), "{path}");
    }
    // Each of the five lists documents its search, sort and one filter per field (ranges on
    // numbers); the sort pattern names exactly the list's fields.
    for (path, filters) in [
        ("/books", &["id", "id_gte", "id_lte", "title", "author"][..]),
        ("/users", &["id", "name"]),
        ("/items", &["id", "name", "winning"]),
        (
            "/bids",
            &["id", "item", "user", "value", "value_gte", "value_lte"],
        ),
        ("/things", &["id", "name", "description"]),
    ] {
        let params = spec["paths"][path]["get"]["parameters"].as_array().unwrap();
        let names: Vec<&str> = params
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let mut expected = vec!["limit", "offset", "q", "sort"];
        expected.extend(filters);
        assert_eq!(names, expected, "{path}");
        let sort = params.iter().find(|p| p["name"] == "sort").unwrap();
        let pattern = regex::Regex::new(sort["schema"]["pattern"].as_str().unwrap()).unwrap();
        let first_field = filters[0];
        assert!(
            pattern.is_match(&format!("-{first_field},{first_field}")),
            "{path}"
        );
        assert!(!pattern.is_match("colour"), "{path}");
    }
    // A record is not a list.
    let one = &spec["paths"]["/books/{id}"]["get"]["responses"]["200"];
    assert!(one.get("headers").is_none_or(|h| h.get("Link").is_none()));
    for (path, method) in [
        ("/books", "post"),
        ("/users", "post"),
        ("/users/{user_id}", "put"),
        ("/items", "post"),
        ("/items/{item_id}", "put"),
        ("/bids", "post"),
    ] {
        let responses = &spec["paths"][path][method]["responses"];
        assert!(responses["507"].is_object(), "{method} {path}");
    }
    let items = &spec["paths"]["/items"]["get"]["responses"]["200"]["content"]["application/json"];
    assert!(
        items["example"]["item1"]["item"]["winning"].is_string(),
        "{items}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_items_winner_is_always_among_its_listed_bids_under_concurrent_bids() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let writer = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move {
            for _ in 0..400 {
                let bid = json!({"bid": {"item": "item1", "value": 5000, "user": "user3"}});
                let placed = app.post_json("/api/v1/bids", bid).await;
                let id = placed.body["bid_id"].as_str().unwrap().to_owned();
                app.delete(&format!("/api/v1/bids/{id}")).await;
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        for uri in [
            "/api/v1/items/item1",
            "/api/v1/items/item1?complete=1",
            "/api/v1/items",
        ] {
            let body = app.get(uri).await.body;
            let entry = if uri == "/api/v1/items" {
                &body["item1"]["item"]
            } else {
                &body["item"]
            };
            let winning = entry["winning"].as_str().unwrap();
            let listed: Vec<&str> = entry["bids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_str().or_else(|| b["bid_id"].as_str()).unwrap())
                .collect();
            assert!(
                listed.contains(&winning),
                "{uri}: {winning} not in {listed:?}"
            );
            reads += 1;
        }
    }
    writer.await.unwrap();
    assert!(reads > 10, "{reads} reads overlapped the writes");
}

#[test]
fn a_full_store_is_logged_as_a_warning_not_an_error() {
    if crate::helpers::on_postgres() {
        return; // Memory only: PostgreSQL has no records cap, so no 507 to log.
    }
    // The bundled seed holds 12 books: the cap is reached at once.
    let server = ServerProcess::start(&[("MAX_RECORDS_PER_RESOURCE", "12")]);
    let response = crate::cli::http_post_json(&server.address, "/api/v1/books", r#"{"title":"x"}"#);
    assert!(response.starts_with("HTTP/1.1 507"), "{response}");
    let (status, logs) = server.stop_keeping_logs();
    assert!(status.success());
    assert!(
        logs.contains(r#""level":"WARN""#) && logs.contains("store full"),
        "{logs}"
    );
    assert!(!logs.contains(r#""level":"ERROR""#), "{logs}");
}
