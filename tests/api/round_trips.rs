//! What the PostgreSQL store says to the database, counted on the wire: a proxy between the
//! store and the server counts the client's `Sync` messages, one per round trip. (The
//! PostgreSQL half only; TLS is off between the store and the proxy, so the messages can be
//! read.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestApp, TestDatabase, database_config, test_config};

/// A TCP proxy to the test database that counts the `Sync` messages clients send.
struct SyncCounter {
    port: u16,
    syncs: Arc<AtomicUsize>,
}

impl SyncCounter {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&syncs);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(upstream.clone()).await.unwrap();
                tokio::spawn(relay(client, server, Arc::clone(&counted)));
            }
        });
        Self { port, syncs }
    }

    fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }
}

/// Copies both ways; the client's bytes are parsed as frontend messages as they pass: the
/// untyped start-up message first, then `type, length, body` frames.
async fn relay(client: TcpStream, server: TcpStream, syncs: Arc<AtomicUsize>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut started = false;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        loop {
            let (header, kind) = if started {
                (5, Some(pending.first()))
            } else {
                (4, None)
            };
            if pending.len() < header {
                break;
            }
            let length_at = header - 4;
            let length =
                u32::from_be_bytes(pending[length_at..header].try_into().unwrap()) as usize;
            let total = length_at + length;
            if pending.len() < total {
                break;
            }
            if kind == Some(Some(&b'S')) {
                syncs.fetch_add(1, Ordering::SeqCst);
            }
            pending.drain(..total);
            started = true;
        }
    }
    down.abort();
}

/// The app on `database` through a [`SyncCounter`] (TLS off), with a pool of
/// `max_connections` if given (else the tests' usual size).
async fn app_through_counter(
    database: &TestDatabase,
    max_connections: Option<u32>,
) -> (SyncCounter, TestApp) {
    let mut url = url::Url::parse(&database.url).unwrap();
    let upstream = (
        url.host_str().unwrap_or("localhost").to_owned(),
        url.port().unwrap_or(5432),
    );
    let proxy = SyncCounter::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    url.query_pairs_mut().append_pair("sslmode", "disable");
    let mut store_config = database_config(url.as_str());
    if let Some(max) = max_connections {
        store_config.max_connections = max;
    }
    let mut config = test_config();
    config.database = Some(store_config);
    (proxy, TestApp::with_config(config).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_read_is_one_round_trip_to_the_database() {
    let Some(database) = TestDatabase::create().await else {
        return; // The memory half: no database.
    };
    let (proxy, app) = app_through_counter(&database, None).await;

    // The first read prepares the statement on the connection.
    assert_eq!(app.get("/api/v1/books/1").await.status, StatusCode::OK);
    let before = proxy.syncs();
    let reads = 20;
    for _ in 0..reads {
        assert_eq!(app.get("/api/v1/books/1").await.status, StatusCode::OK);
    }
    let round_trips = proxy.syncs() - before;
    // One Sync per read (Bind, Execute, Sync). A connection idle for over a tenth of a second
    // is pinged first, which a slow machine may cause now and then; a ping on every release
    // (sqlx's own pool) makes it two per read.
    assert!(
        (reads..reads + reads / 4).contains(&round_trips),
        "{round_trips} round trips for {reads} reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_mid_statement_leaves_its_connection_clean_for_the_next() {
    let Some(database) = TestDatabase::create().await else {
        return; // The memory half: no database.
    };
    // One connection, so the next request gets the very one the cancelled request left.
    let (_proxy, app) = app_through_counter(&database, Some(1)).await;
    assert_eq!(app.get("/api/v1/books/1").await.status, StatusCode::OK);

    // A second session holds the books table, so the PUT's UPDATE waits inside PostgreSQL
    // when its request is dropped (a client gone, a timeout).
    use sqlx::Connection;
    let mut holder = sqlx::PgConnection::connect(&database.url).await.unwrap();
    let mut lock = holder.begin().await.unwrap();
    sqlx::query("LOCK TABLE books IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let put = app.put_json(
        "/api/v1/books/1",
        serde_json::json!({"title": "Cancelled", "author": "Nobody"}),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), put)
            .await
            .is_err(),
        "the PUT waits for the lock"
    );
    lock.rollback().await.unwrap();

    // The dropped PUT's statement still runs to its end once the lock is gone (PostgreSQL
    // never heard of the cancel); what matters is that the connection's unread reply does not
    // leak into the next request's answer.
    for _ in 0..5 {
        let book = app.get("/api/v1/books/2").await;
        assert_eq!(book.status, StatusCode::OK, "{}", book.text);
        assert_eq!(book.body["id"], 2, "{}", book.text);
    }
    let after = app.get("/api/v1/books/1").await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_requests_dropped_at_random_points_leave_every_connection_usable() {
    let Some(database) = TestDatabase::create().await else {
        return; // The memory half: no database.
    };
    // Two connections shared by all, so each is handed from dropped request to dropped request.
    let (_proxy, app) = app_through_counter(&database, Some(2)).await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..300u64)
        .map(|n| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                // Deadlines from nothing to a few milliseconds cut requests before, during and
                // after their statement; a third are writes.
                let deadline = Duration::from_micros((n * 397) % 4000);
                let book = 1 + n % 12;
                let request = async {
                    if n % 3 == 0 {
                        app.patch_json(
                            &format!("/api/v1/books/{book}"),
                            serde_json::json!({"title": format!("Title {book}")}),
                        )
                        .await
                    } else {
                        app.get(&format!("/api/v1/books/{book}")).await
                    }
                };
                if let Ok(answer) = tokio::time::timeout(deadline, request).await {
                    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Every later request gets its own answer, whatever the connections were left holding.
    for book in 1..=12u64 {
        let answer = app.get(&format!("/api/v1/books/{book}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.body["id"], book, "{}", answer.text);
    }
    let created = app
        .post_json(
            "/api/v1/books",
            serde_json::json!({"title": "After the storm"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_u64().unwrap();
    let read = app.get(&format!("/api/v1/books/{id}")).await;
    assert_eq!(read.body["title"], "After the storm", "{}", read.text);
}
