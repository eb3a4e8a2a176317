//! A real server on an ephemeral port: sockets, graceful shutdown, timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use monolith::{AppState, Config, serve};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::helpers::{TestDatabase, init_logs, open_store, test_config, with_test_database};

/// A server running in a task, stopped by `shutdown`.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    /// The schema the store lives in on the PostgreSQL half; dropped after the server.
    _database: Option<TestDatabase>,
}

impl RunningServer {
    /// Serves `config` (on a fresh schema when the run has a test database).
    pub async fn start(mut config: Config) -> Self {
        init_logs();
        let database = with_test_database(&mut config).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = open_store(&config).await;
        let state = AppState::new(config, store);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            shutdown: Some(tx),
            task,
            _database: database,
        }
    }

    /// The URL of the server's schema on the PostgreSQL half.
    pub fn database_url(&self) -> Option<&str> {
        self._database
            .as_ref()
            .map(|database| database.url.as_str())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Begins graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits for `serve` to return.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .expect("serve returns Ok");
    }
}

/// Reads one HTTP/1.1 response whole from a raw connection that the server then closes.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buffer))
        .await
        .expect("a response in time")
        .unwrap();
    String::from_utf8_lossy(&buffer).into_owned()
}

#[tokio::test]
async fn serves_the_api_over_a_real_socket() {
    let server = RunningServer::start(test_config()).await;
    let client = reqwest::Client::new();
    let res = client
        .get(server.url("/api/v1/books"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-total-count"], "12");
    let books: Value = res.json().await.unwrap();
    assert_eq!(books.as_array().unwrap().len(), 12);

    let res = client
        .post(server.url("/api/v1/books"))
        .json(&json!({"title": "Over the wire"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], "/api/v1/books/13");

    let res = client.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_connections() {
    let mut server = RunningServer::start(test_config()).await;
    let body = r#"{"title": "Finished during shutdown"}"#;
    let (head, tail) = body.split_at(10);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST /api/v1/books HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "no new connections once shutdown has begun"
    );

    stream.write_all(tail.as_bytes()).await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("Finished during shutdown"));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stalls_its_body_gets_a_408() {
    let mut config = test_config();
    config.request_timeout = Duration::from_millis(300);
    let server = RunningServer::start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/v1/books HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 100\r\nconnection: close\r\n\r\n{\"title\"",
        )
        .await
        .unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("application/problem+json"));
    server.stop().await;
}

/// The winner by brute force from an item's bids in placing order: the highest value, the
/// earliest on a tie.
fn brute_force_winner(bids_in_order: &[Value]) -> Option<String> {
    let mut best: Option<(&str, f64)> = None;
    for bid in bids_in_order {
        let value = bid["bid"]["value"].as_f64().unwrap();
        if best.is_none_or(|(_, top)| value > top) {
            best = Some((bid["bid_id"].as_str().unwrap(), value));
        }
    }
    best.map(|(id, _)| id.to_owned())
}

async fn item_bids_and_winner(
    client: &reqwest::Client,
    server: &RunningServer,
) -> (Vec<Value>, Value) {
    let get = |path: &str| {
        let request = client.get(server.url(path)).send();
        async move { request.await.unwrap().json::<Value>().await.unwrap() }
    };
    let bids = get("/api/v1/items/item1/bids").await;
    let item = get("/api/v1/items/item1?winningOnly=1").await;
    (
        bids.as_array().unwrap().clone(),
        item["item"]["winning"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_bids_and_deletes_keep_every_bid_and_the_right_winner() {
    const BIDS: usize = 240;
    let server = RunningServer::start(test_config()).await;
    let client = reqwest::Client::new();

    // Values 1000..1049 repeat, so the top value is tied four times and only placing order
    // decides the winner; the seed's 1000.0 bid ties the lowest.
    let placing = (0..BIDS).map(|i| {
        let client = client.clone();
        let url = server.url("/api/v1/bids");
        let value = 1000.0 + (i % 50) as f64;
        tokio::spawn(async move {
            let res = client
                .post(url)
                .json(&json!({"bid": {"item": "item1", "value": value, "user": format!("user{}", i % 3 + 1)}}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201);
            res.json::<Value>().await.unwrap()["bid_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
    });
    let mut ids = Vec::new();
    for task in placing.collect::<Vec<_>>() {
        ids.push(task.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), BIDS, "every bid got its own id");

    let (bids, winner) = item_bids_and_winner(&client, &server).await;
    assert_eq!(
        bids.len(),
        BIDS + 2,
        "every bid exists, with the two seeded ones"
    );
    for id in &ids {
        assert!(
            bids.iter().any(|b| b["bid_id"] == id.as_str()),
            "{id} is listed"
        );
    }
    assert_eq!(winner.as_str(), brute_force_winner(&bids).as_deref());
    assert_eq!(
        bids.iter().filter(|b| b["bid"]["value"] == 1049.0).count(),
        BIDS / 50
    );

    // Delete half of them, the current winner first among them, all at once.
    let mut doomed: Vec<String> = ids.iter().step_by(2).cloned().collect();
    if let Some(w) = winner.as_str() {
        doomed.retain(|id| id != w);
        doomed.insert(0, w.to_owned());
    }
    let deleting = doomed.iter().map(|id| {
        let client = client.clone();
        let url = server.url(&format!("/api/v1/bids/{id}"));
        tokio::spawn(async move {
            assert_eq!(client.delete(url).send().await.unwrap().status(), 204);
        })
    });
    for task in deleting.collect::<Vec<_>>() {
        task.await.unwrap();
    }
    let (bids, winner) = item_bids_and_winner(&client, &server).await;
    assert_eq!(bids.len(), BIDS + 2 - doomed.len());
    assert_eq!(winner.as_str(), brute_force_winner(&bids).as_deref());
    server.stop().await;
}
