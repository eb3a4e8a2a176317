//! What the PostgreSQL store says to the database, and when: a proxy between the store and the
//! server counts the client's `Sync` messages, one per round trip, and can stop passing them on
//! (a database that stops answering); a second session holds the store's locks to pin down
//! the order it takes them in. (The PostgreSQL half only; TLS is off between the store and the
//! proxy, so the messages can be read.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestApp, TestDatabase, database_config, test_config};

/// A TCP proxy to the test database that counts the `Sync` messages clients send, and can stop
/// passing them on (a database host that froze, a link that dropped without a word).
struct SyncCounter {
    port: u16,
    syncs: Arc<AtomicUsize>,
    frozen: Arc<AtomicBool>,
}

impl SyncCounter {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let syncs = Arc::new(AtomicUsize::new(0));
        let frozen = Arc::new(AtomicBool::new(false));
        let (counted, held) = (Arc::clone(&syncs), Arc::clone(&frozen));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(upstream.clone()).await.unwrap();
                tokio::spawn(relay(
                    client,
                    server,
                    Arc::clone(&counted),
                    Arc::clone(&held),
                ));
            }
        });
        Self {
            port,
            syncs,
            frozen,
        }
    }

    /// While frozen, what clients send is held back, never reaching the server.
    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }
}

/// Copies both ways; the client's bytes are parsed as frontend messages as they pass: the
/// untyped start-up message first, then `type, length, body` frames.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    syncs: Arc<AtomicUsize>,
    frozen: Arc<AtomicBool>,
) {
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
        while frozen.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
    app_through_counter_with(database, max_connections, None).await
}

/// [`app_through_counter`], with a statement timeout if given.
async fn app_through_counter_with(
    database: &TestDatabase,
    max_connections: Option<u32>,
    statement_timeout: Option<Duration>,
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
    if let Some(timeout) = statement_timeout {
        store_config.statement_timeout = timeout;
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

/// A second session holding `item`'s bid lock (the store's `ITEM_BIDS_LOCK`, which placing and
/// a bid's delete take), as a placer would.
async fn hold_item_bid_lock(database: &TestDatabase, item: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut holder = sqlx::PgConnection::connect(&database.url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
        .bind(ITEM_BIDS_LOCK)
        .bind(item)
        .execute(&mut holder)
        .await
        .unwrap();
    holder
}

async fn release_item_bid_lock(holder: &mut sqlx::PgConnection, item: &str) {
    sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
        .bind(ITEM_BIDS_LOCK)
        .bind(item)
        .execute(holder)
        .await
        .unwrap();
}

/// The store's `ITEM_BIDS_LOCK` ("bids").
const ITEM_BIDS_LOCK: i32 = 0x6269_6473;

fn bid(item: &str, user: &str, value: u32) -> serde_json::Value {
    serde_json::json!({"bid": {"item": item, "user": user, "value": value}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bid_on_a_database_that_stops_answering_is_503_and_leaves_its_item_free() {
    let Some(database) = TestDatabase::create().await else {
        return; // The memory half: no database.
    };
    let timeout = Duration::from_secs(1);
    let (proxy, app) = app_through_counter_with(&database, Some(2), Some(timeout)).await;
    let placed = app
        .post_json("/api/v1/bids", bid("item1", "user1", 5))
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text);

    // The server cannot fire its own statement timeout for a statement it never got: the store
    // gives up on its side (before, the item's bids waited for the hung statement, each
    // request until its own timeout, for as long as the link stayed dead).
    proxy.freeze(true);
    let started = std::time::Instant::now();
    let stuck = app
        .post_json("/api/v1/bids", bid("item1", "user1", 6))
        .await;
    assert_eq!(
        stuck.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        stuck.text
    );
    assert!(started.elapsed() < timeout * 4, "{:?}", started.elapsed());

    proxy.freeze(false);
    let again = app
        .post_json("/api/v1/bids", bid("item1", "user1", 7))
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bid_whose_client_left_while_its_placer_waited_for_a_connection_is_not_placed() {
    let Some(database) = TestDatabase::create().await else {
        return; // The memory half: no database.
    };
    // One connection: a bid on item2, held at item2's lock, keeps it while item1's bid waits.
    let (_proxy, app) = app_through_counter(&database, Some(1)).await;
    let app = Arc::new(app);
    let mut holder = hold_item_bid_lock(&database, "item2").await;
    let held = {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            app.post_json("/api/v1/bids", bid("item2", "user1", 8))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gone = app.post_json("/api/v1/bids", bid("item1", "user2", 424_242));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), gone)
            .await
            .is_err(),
        "the bid waits for the pool's one connection"
    );
    release_item_bid_lock(&mut holder, "item2").await;
    assert_eq!(held.await.unwrap().status, StatusCode::CREATED);

    // Another bid on item1 goes through the same placer; the one whose client left is not there.
    let after = app
        .post_json("/api/v1/bids", bid("item1", "user3", 9))
        .await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.text);
    let bids = app.get("/api/v1/items/item1/bids").await.text;
    assert!(!bids.contains("424242"), "{bids}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_bid_takes_its_items_lock_before_the_bids_row() {
    let Some(database) = TestDatabase::create().await else {
        return; // The memory half: no database.
    };
    let (_proxy, app) = app_through_counter(&database, None).await;
    let app = Arc::new(app);
    // A placer's place: item1's bid lock, held by a second session.
    let mut holder = hold_item_bid_lock(&database, "item1").await;
    // bid1 is user1's bid on item1 (the bundled data): its delete waits for the lock...
    let delete_bid = {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.delete("/api/v1/bids/bid1").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !delete_bid.is_finished(),
        "the bid's delete waits for item1's bid lock"
    );
    // ...holding nothing a user's delete needs (before, it held bid1's row, and the user's
    // delete, cascading to bid1, waited behind it: with a placer waiting for the user, a cycle).
    // The user's delete takes its items' bid locks first, as placing does (the feed triggers
    // need them), so it waits for item1's too, holding nothing either: no cycle.
    let delete_user = {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.delete("/api/v1/users/user1").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !delete_user.is_finished(),
        "the user's delete waits for item1's bid lock"
    );
    release_item_bid_lock(&mut holder, "item1").await;
    // Both go through, in the lock's order: the bid, then its user.
    let bid = tokio::time::timeout(Duration::from_secs(3), delete_bid)
        .await
        .expect("the bid's delete is not stuck")
        .unwrap();
    assert_eq!(bid.status, StatusCode::NO_CONTENT, "{}", bid.text);
    let user = tokio::time::timeout(Duration::from_secs(3), delete_user)
        .await
        .expect("the user's delete is not stuck")
        .unwrap();
    assert_eq!(user.status, StatusCode::NO_CONTENT, "{}", user.text);
}
