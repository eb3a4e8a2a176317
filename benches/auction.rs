//! Bid-tracker costs at 1k, 10k and 100k bids on one item: placing a bid, deleting the winning
//! bid, reading an item with its winner (store calls), and `GET /items/{id}?winningOnly=1`
//! through the whole router. Each should stay flat as the bid count grows.
//!
//! Run with `cargo bench --bench auction`; the README's performance section has the numbers.

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use monolith::store::{BidValue, DEFAULT_MAX_RECORDS, MemoryStore, Name, NewBid};
use monolith::{AppState, Config, Store, app};
use tokio::runtime::Runtime;
use tower::ServiceExt;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn bid(value: f64) -> NewBid {
    NewBid {
        item: "item1".into(),
        user: "user1".into(),
        value: BidValue::new(value).expect("positive"),
    }
}

/// A store with one user, one item and `bids` bids on it, of varied values.
fn store_with(rt: &Runtime, bids: usize) -> Store {
    let store = Store::new(MemoryStore::new(DEFAULT_MAX_RECORDS));
    rt.block_on(async {
        let name = |n: &str| Name::parse("name", n.to_owned()).expect("valid name");
        store.put_user("user1", name("Bidder")).await.unwrap();
        store.put_item("item1", name("Item")).await.unwrap();
        for i in 0..bids {
            store.place_bid(bid((i % 997 + 1) as f64)).await.unwrap();
        }
    });
    store
}

fn auction(c: &mut Criterion) {
    let rt = Runtime::new().expect("a runtime");
    let mut group = c.benchmark_group("auction");
    group.measurement_time(Duration::from_secs(3));
    for size in SIZES {
        let store = store_with(&rt, size);

        // Each placed bid is removed again outside the timing, so the size stays put.
        group.bench_with_input(BenchmarkId::new("place_bid", size), &size, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for i in 0..iters {
                    let started = Instant::now();
                    let placed = rt.block_on(store.place_bid(bid((i % 1500 + 1) as f64)));
                    spent += started.elapsed();
                    rt.block_on(store.delete_bid(&placed.unwrap().id)).unwrap();
                }
                spent
            });
        });

        // A new highest bid is placed untimed, then deleting it (the winner) is timed.
        group.bench_with_input(
            BenchmarkId::new("delete_winning_bid", size),
            &size,
            |b, _| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let placed = rt.block_on(store.place_bid(bid(1e9))).unwrap();
                        let started = Instant::now();
                        rt.block_on(store.delete_bid(&placed.id)).unwrap();
                        spent += started.elapsed();
                    }
                    spent
                });
            },
        );

        group.bench_with_input(
            BenchmarkId::new("read_item_with_winner", size),
            &size,
            |b, _| {
                b.iter(|| black_box(rt.block_on(store.get_item("item1")).unwrap()));
            },
        );

        let router = app(AppState::new(Config::for_tests("./data"), store.clone()));
        group.bench_with_input(
            BenchmarkId::new("http_get_item_winning_only", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let request = Request::get("/api/v1/items/item1?winningOnly=1")
                        .body(Body::empty())
                        .unwrap();
                    let response = rt.block_on(router.clone().oneshot(request)).unwrap();
                    assert!(response.status().is_success());
                    black_box(response)
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, auction);
criterion_main!(benches);
