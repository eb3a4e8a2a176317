//! Live feeds of items (issue 13, points 1, 2 and 5): `GET /items/{id}/events` as Server-Sent
//! Events, on a real server, on both store backends.

use std::time::{Duration, Instant};

use monolith::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::cli::ServerProcess;
use crate::helpers::{init_logs, rss_bytes, test_config};
use crate::server::RunningServer;

const API: &str = "/api/v1";

/// Long enough for a loaded machine, short enough to fail a test that waits for nothing.
const EVENT_WAIT: Duration = Duration::from_secs(15);

/// One event as a client sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

/// Reads a `text/event-stream` answer event by event.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines seen (heartbeats).
    pub comments: usize,
}

impl SseReader {
    /// Opens `url` as a feed, sending `Last-Event-ID` if given; panics unless it is a 200 feed.
    pub async fn open(url: &str, last_event_id: Option<&str>) -> Self {
        let response = request(url, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{url}"
        );
        Self {
            response,
            buffer: String::new(),
            comments: 0,
        }
    }

    /// The next event, or `None` when the feed ends; panics after `EVENT_WAIT` without one.
    pub async fn next(&mut self) -> Option<SseEvent> {
        self.next_within(EVENT_WAIT)
            .await
            .unwrap_or_else(|| panic!("no event within {EVENT_WAIT:?}"))
    }

    /// The next event, `Some(None)` when the feed ends, or `None` if none comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = self.parse(&block) {
                    return Some(Some(event));
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) => return Some(None),
            }
        }
    }

    fn parse(&mut self, block: &str) -> Option<SseEvent> {
        let (mut id, mut event, mut data) = (None, None, None);
        for line in block.lines() {
            if line.starts_with(':') {
                self.comments += 1;
            } else if let Some(value) = line.strip_prefix("id: ") {
                id = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("event: ") {
                event = Some(value.to_owned());
            } else if let Some(value) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str(value).expect("data is JSON"));
            }
        }
        Some(SseEvent {
            id,
            event: event?,
            data: data.expect("every event has data"),
        })
    }

    /// Events until one of kind `kind` (included).
    pub async fn until(&mut self, kind: &str) -> Vec<SseEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await.expect("the feed goes on");
            let done = event.event == kind;
            events.push(event);
            if done {
                return events;
            }
        }
    }

    /// The next `n` events.
    pub async fn take(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next().await.expect("the feed goes on"));
        }
        events
    }
}

async fn request(url: &str, last_event_id: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

async fn post(server: &RunningServer, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.url(&format!("{API}{path}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{path} {body}");
    response.json().await.unwrap()
}

async fn delete(server: &RunningServer, path: &str) {
    let response = reqwest::Client::new()
        .delete(server.url(&format!("{API}{path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
}

async fn bid(server: &RunningServer, item: &str, user: &str, value: f64) -> String {
    let bid = post(
        server,
        "/bids",
        json!({"bid": {"item": item, "user": user, "value": value}}),
    )
    .await;
    bid["bid_id"].as_str().unwrap().to_owned()
}

fn feed_url(server: &RunningServer, item: &str) -> String {
    server.url(&format!("{API}/items/{item}/events"))
}

fn kinds(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

fn bid_id(event: &SseEvent) -> &str {
    event.data["bid_id"].as_str().unwrap()
}

fn winning_id(event: &SseEvent) -> Option<&str> {
    event.data["winning_bid"]["bid_id"].as_str()
}

fn id_of(event: &SseEvent) -> u64 {
    event.id.as_deref().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_feed_sends_the_state_then_every_bid_and_winner_change_and_ends_with_its_item() {
    let server = RunningServer::start(test_config()).await;
    let mut feed = SseReader::open(&feed_url(&server, "item1"), None).await;
    let state = feed.next().await.unwrap();
    assert_eq!(state.event, "state");
    assert_eq!(
        state.data,
        json!({"item_id": "item1", "bid_count": 2,
               "winning_bid": {"bid_id": "bid2", "bid": {"item": "item1", "value": 1000.0, "user": "user2"}}})
    );

    let low = bid(&server, "item1", "user3", 10.0).await;
    let high = bid(&server, "item1", "user3", 2000.0).await;
    let tie = bid(&server, "item1", "user1", 2000.0).await;
    let events = feed.take(4).await;
    assert_eq!(kinds(&events), ["bid", "bid", "winner", "bid"]);
    assert_eq!(bid_id(&events[0]), low);
    assert_eq!(bid_id(&events[1]), high);
    assert_eq!(
        events[1].data["bid"],
        json!({"item": "item1", "value": 2000.0, "user": "user3"})
    );
    assert_eq!(winning_id(&events[2]), Some(high.as_str()));
    assert_eq!(bid_id(&events[3]), tie, "a tie does not take the lead");
    let ids: Vec<u64> = std::iter::once(&state).chain(&events).map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");

    // Deleting the winner hands the lead to the earliest of the equal bids.
    delete(&server, &format!("/bids/{high}")).await;
    let events = feed.take(2).await;
    assert_eq!(kinds(&events), ["bid_deleted", "winner"]);
    assert_eq!(bid_id(&events[0]), high);
    assert_eq!(winning_id(&events[1]), Some(tie.as_str()));

    // A user's delete takes their bids, then names the new winner once.
    delete(&server, "/users/user1").await;
    let events = feed.until("winner").await;
    let deleted: Vec<&str> = events[..events.len() - 1].iter().map(bid_id).collect();
    assert_eq!(
        kinds(&events[..deleted.len()]),
        vec!["bid_deleted"; deleted.len()]
    );
    assert_eq!(deleted, ["bid1", tie.as_str()]);
    assert_eq!(winning_id(events.last().unwrap()), Some("bid2"));

    delete(&server, "/items/item1").await;
    let last = feed.next().await.unwrap();
    assert_eq!(last.event, "item_deleted");
    assert_eq!(last.data, json!({"item_id": "item1"}));
    assert_eq!(feed.next().await, None, "the feed ends with its item");
    server.stop().await;
}

#[tokio::test]
async fn a_reconnecting_client_gets_what_it_missed_while_it_is_kept_and_else_a_reload() {
    let mut config = test_config();
    config.feeds.history = 6;
    let server = RunningServer::start(config).await;
    let url = feed_url(&server, "item2");
    let mut feed = SseReader::open(&url, None).await;
    let state = feed.next().await.unwrap();
    assert_eq!(state.data["bid_count"], 0);
    assert_eq!(state.data["winning_bid"], Value::Null);
    drop(feed);

    let first = bid(&server, "item2", "user1", 5.0).await;
    let second = bid(&server, "item2", "user2", 1.0).await;
    let mut feed = SseReader::open(&url, state.id.as_deref()).await;
    let missed = feed.take(3).await;
    assert_eq!(kinds(&missed), ["bid", "winner", "bid"]);
    assert_eq!(bid_id(&missed[0]), first);
    assert_eq!(bid_id(&missed[2]), second);
    // Live from there on, with nothing sent twice.
    let third = bid(&server, "item2", "user3", 9.0).await;
    let live = feed.take(2).await;
    assert_eq!(kinds(&live), ["bid", "winner"]);
    assert_eq!(bid_id(&live[0]), third);
    let last_seen = live[1].id.clone();
    drop(feed);

    // Up to date: nothing to replay, the feed simply goes on.
    let mut feed = SseReader::open(&url, last_seen.as_deref()).await;
    assert_eq!(feed.next_within(Duration::from_millis(300)).await, None);
    drop(feed);

    // Seven events later, six are kept: a client that saw none of them must start again.
    for value in [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0] {
        bid(&server, "item2", "user1", value).await;
    }
    let mut feed = SseReader::open(&url, last_seen.as_deref()).await;
    let reload = feed.next().await.unwrap();
    assert_eq!(reload.event, "reload");
    assert_eq!(reload.data["bid_count"], 10);
    assert_eq!(winning_id(&reload), Some(third.as_str()));
    // An id from no history of this item (another item's, a restarted store's): reload too.
    let mut feed = SseReader::open(&url, Some("1")).await;
    assert_eq!(feed.next().await.unwrap().event, "reload");
    server.stop().await;
}

#[tokio::test]
async fn a_feed_of_a_missing_item_is_404_and_a_malformed_last_event_id_is_400() {
    let server = RunningServer::start(test_config()).await;
    let response = request(&feed_url(&server, "item9"), None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = request(&feed_url(&server, "item1"), Some("seventeen")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Last-Event-ID")
    );
    server.stop().await;
}

#[tokio::test]
async fn feeds_beyond_the_cap_are_503_with_retry_after_and_metrics_count_feeds_and_events() {
    let mut config = test_config();
    config.feeds.max_open = 2;
    let server = RunningServer::start(config).await;
    let url = feed_url(&server, "item1");
    let mut one = SseReader::open(&url, None).await;
    let two = SseReader::open(&url, None).await;
    let refused = request(&url, None).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    one.next().await.unwrap();
    bid(&server, "item1", "user3", 5000.0).await;
    one.take(2).await;

    let metrics = metrics(server.url("/metrics")).await;
    assert!(metrics.contains("monolith_feeds_open 2"), "{metrics}");
    let sent = metric_value(&metrics, "monolith_feed_events_sent_total");
    assert!(sent >= 3.0, "{sent}");

    // A closed feed frees its place.
    drop(two);
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let response = request(&url, None).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place of a closed feed is never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// The text of `/metrics` at `url`.
async fn metrics(url: String) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in {metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_quiet_feed_sends_heartbeats() {
    let mut config = test_config();
    config.feeds.heartbeat = Duration::from_secs(1);
    let server = RunningServer::start(config).await;
    let mut feed = SseReader::open(&feed_url(&server, "item1"), None).await;
    feed.next().await.unwrap();
    assert_eq!(feed.next_within(Duration::from_millis(2500)).await, None);
    assert!(feed.comments >= 2, "{} heartbeats in 2.5 s", feed.comments);
    server.stop().await;
}

#[tokio::test]
async fn feeds_end_as_soon_as_shutdown_begins() {
    let mut config = test_config();
    // A long grace: the feeds must not be what the server waits for.
    config.request_timeout = Duration::from_secs(30);
    let mut server = RunningServer::start(config).await;
    let mut feeds = Vec::new();
    for _ in 0..5 {
        let mut feed = SseReader::open(&feed_url(&server, "item1"), None).await;
        feed.next().await.unwrap();
        feeds.push(feed);
    }
    let started = Instant::now();
    server.begin_shutdown();
    for feed in &mut feeds {
        assert_eq!(feed.next().await, None, "the feed ends");
    }
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?} with feeds open",
        started.elapsed()
    );
}

/// Point 5: with 200 bids placed at once and a feed open, the feed's bids are the store's bids
/// in the store's order, and its winners are exactly those a brute-force model computes from
/// that order (highest value, earliest on a tie).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_200_concurrent_bids_the_feeds_winners_are_the_models() {
    let server = RunningServer::start(test_config()).await;
    let item = post(&server, "/items", json!({"item": {"name": "Race"}})).await;
    let item = item["item_id"].as_str().unwrap().to_owned();
    let mut feed = SseReader::open(&feed_url(&server, &item), None).await;
    assert_eq!(feed.next().await.unwrap().event, "state");

    let client = reqwest::Client::new();
    let placing: Vec<_> = (0..200)
        .map(|n| {
            let (client, url, item) = (
                client.clone(),
                server.url(&format!("{API}/bids")),
                item.clone(),
            );
            // Few distinct values, so ties are common.
            let value = ((n * 37) % 23 + 1) as f64;
            let user = format!("user{}", n % 3 + 1);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&json!({"bid": {"item": item, "user": user, "value": value}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
            })
        })
        .collect();
    for task in placing {
        task.await.unwrap();
    }

    // Every event until the feed has been quiet for a second after the 200th bid.
    let mut bids = Vec::new();
    let mut winners = Vec::new();
    loop {
        let event = if bids.len() < 200 {
            feed.next().await
        } else {
            match feed.next_within(Duration::from_secs(1)).await {
                Some(event) => event,
                None => break,
            }
        };
        let event = event.expect("the feed goes on");
        match event.event.as_str() {
            "bid" => bids.push(event),
            "winner" => winners.push(winning_id(&event).unwrap().to_owned()),
            other => panic!("unexpected {other} event"),
        }
    }

    let stored: Value = reqwest::get(server.url(&format!("{API}/items/{item}?complete=1")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored = stored["item"]["bids"]
        .as_array()
        .expect("bids in placing order");
    let stored_ids: Vec<&str> = stored
        .iter()
        .map(|b| b["bid_id"].as_str().unwrap())
        .collect();
    let feed_ids: Vec<&str> = bids.iter().map(bid_id).collect();
    assert_eq!(feed_ids, stored_ids, "the feed's bids in the store's order");

    let mut model = Vec::new();
    let mut best: Option<f64> = None;
    for stored_bid in stored {
        let value = stored_bid["bid"]["value"].as_f64().unwrap();
        if best.is_none_or(|best| value > best) {
            best = Some(value);
            model.push(stored_bid["bid_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(winners, model);
    server.stop().await;
}

/// Point 2: feeds whose readers never read cost the server no more than a bounded buffer each
/// (what the kernel's socket buffers hold is not the server's memory); a reader that does read
/// is served; the feeds of clients that go away are freed. (A client whose socket buffers
/// fill is cut off after `WRITE_TIMEOUT_SECS`: `connections.rs` tests that deadline.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feeds_that_are_never_read_do_not_grow_the_server() {
    init_logs();
    let server = ServerProcess::start(&[("FEED_MAX_OPEN", "300")]);
    let base = format!("http://{}", server.address);
    let client = reqwest::Client::new();
    let item: Value = client
        .post(format!("{base}{API}/items"))
        .json(&json!({"item": {"name": "Watched by the silent"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = item["item_id"].as_str().unwrap().to_owned();

    // 200 feeds that send a request and never read a byte.
    let mut silent = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(&server.address).await.unwrap();
        let request = format!(
            "GET {API}/items/{item}/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        silent.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes(server.child.id());

    // 4 000 bids with long user names make about 4 MB of events per feed: 800 MB if buffered.
    let name = "x".repeat(150);
    let user: Value = client
        .post(format!("{base}{API}/users"))
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = user["user_id"].as_str().unwrap().to_owned();
    let placing: Vec<_> = (0..8)
        .map(|worker| {
            let (client, base, item, user) =
                (client.clone(), base.clone(), item.clone(), user.clone());
            tokio::spawn(async move {
                for n in 0..500 {
                    let value = (worker * 500 + n + 1) as f64;
                    let response = client
                        .post(format!("{base}{API}/bids"))
                        .json(&json!({"bid": {"item": item, "user": user, "value": value}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::CREATED);
                }
            })
        })
        .collect();
    for task in placing {
        task.await.unwrap();
    }
    let after = rss_bytes(server.child.id());
    let grown = after.saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "RSS grew by {} MiB with 200 unread feeds",
        grown >> 20
    );

    // A reader that reads still gets the feed, from its state.
    let mut reader = SseReader::open(&format!("{base}{API}/items/{item}/events"), None).await;
    let state = reader.next().await.unwrap();
    assert_eq!(state.data["bid_count"], 4000);

    // Gone clients free their feeds: the next event written to each finds it closed.
    drop(silent);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        client
            .post(format!("{base}{API}/bids"))
            .json(&json!({"bid": {"item": item, "user": user, "value": 1.0}}))
            .send()
            .await
            .unwrap();
        let text = metrics(format!("{base}/metrics")).await;
        if metric_value(&text, "monolith_feeds_open") <= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the feeds of gone clients stay open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The configuration the documentation promises (README, `--help`).
#[test]
fn feed_settings_have_their_documented_defaults() {
    let config = Config::from_lookup(|_| None).unwrap();
    assert_eq!(config.feeds.history, 100);
    assert_eq!(config.feeds.max_open, 1000);
    assert_eq!(config.feeds.heartbeat, Duration::from_secs(15));
}
