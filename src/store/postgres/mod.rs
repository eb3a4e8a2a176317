//! The PostgreSQL implementation of the store traits (`DATABASE_URL`).
//!
//! The schema lives in `migrations/` and is embedded in the binary. Every store operation is one
//! statement or one transaction; the hot ones (`GET /books/{id}`, `POST /bids`) are one prepared
//! statement, so one round trip.
//!
//! Layout: `open.rs` connects (with retries), migrates under an advisory lock and seeds;
//! `books.rs` holds books and things, `auction.rs` users, items and bids; `error.rs` is the one
//! mapping from database errors to [`StoreError`]. This file holds the pool and what every
//! operation goes through: [`PostgresStore::conn`] (counts waiters) and [`QueryTimer`].

mod auction;
mod books;
mod error;
mod open;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{HistogramOpts, HistogramVec};
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

use super::{Backend, Resource, StoreError};
use error::{Context, store_error};

pub use open::{migrate, open};

/// Query latency buckets in seconds: a fraction of a millisecond for a point read on a warm
/// cache up to the longest statement timeout anyone should set.
const QUERY_LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Longest `/readyz` waits for the database: a probe must answer before its own timeout, and
/// the pool would otherwise keep retrying a refused connection for the whole acquire timeout.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// All records, in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// Requests waiting for a pooled connection right now.
    waiting: Arc<AtomicUsize>,
    /// Time per store operation (acquiring a connection included), labelled `op`.
    query_latency: HistogramVec,
}

/// A snapshot of the connection pool, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections, idle or in use.
    pub size: u32,
    /// Open connections not in use.
    pub idle: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
    /// The pool's cap (`DATABASE_MAX_CONNECTIONS`).
    pub max: u32,
}

impl PostgresStore {
    fn new(pool: PgPool) -> Self {
        let query_latency = HistogramVec::new(
            HistogramOpts::new(
                "db_query_duration_seconds",
                "Time per database store operation, waiting for a connection included",
            )
            .buckets(QUERY_LATENCY_BUCKETS.to_vec()),
            &["op"],
        )
        .expect("a valid metric definition");
        Self {
            pool,
            waiting: Arc::new(AtomicUsize::new(0)),
            query_latency,
        }
    }

    /// The pool's size, idle connections and waiting operations now.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle(),
            waiting: self.waiting.load(Ordering::Relaxed),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// The per-operation latency histogram (`db_query_duration_seconds{op}`), not registered
    /// anywhere: the caller registers it in its own registry. A clone shares the series.
    pub fn query_latency(&self) -> HistogramVec {
        self.query_latency.clone()
    }

    /// Starts timing the operation `op`; the time is recorded when the timer drops, so every
    /// exit of an operation, `?` included, is counted.
    fn timer(&self, op: &'static str) -> QueryTimer<'_> {
        QueryTimer {
            histogram: &self.query_latency,
            op,
            started: Instant::now(),
        }
    }

    /// A pooled connection; waits at most `DATABASE_STATEMENT_TIMEOUT_SECS`, counted in
    /// [`PoolStats::waiting`] while it waits.
    async fn conn(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waited = Decrement(&self.waiting);
        self.pool
            .acquire()
            .await
            .map_err(|e| store_error(e, Context::PLAIN))
    }
}

/// Records the time since its creation into the operation's histogram series when dropped.
struct QueryTimer<'a> {
    histogram: &'a HistogramVec,
    op: &'static str,
    started: Instant,
}

impl Drop for QueryTimer<'_> {
    fn drop(&mut self) {
        self.histogram
            .with_label_values(&[self.op])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// Decrements a counter when dropped, so a cancelled wait is uncounted too.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A `LIMIT` or `OFFSET` for PostgreSQL's `bigint` (`usize::MAX` means "all").
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Backend for PostgresStore {
    async fn count(&self, what: Resource) -> Result<usize, StoreError> {
        let _timer = self.timer("count");
        // `count(*)` reads the whole table (an index-only scan at best): O(n), which is what a
        // list's `X-Total-Count` costs here.
        let sql = match what {
            Resource::Books => "SELECT count(*) FROM books",
            Resource::Things => "SELECT count(*) FROM things",
            Resource::Users => "SELECT count(*) FROM users",
            Resource::Items => "SELECT count(*) FROM items",
            Resource::Bids => "SELECT count(*) FROM bids",
        };
        let mut conn = self.conn().await?;
        let n: i64 = sqlx::query_scalar(sql)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| store_error(e, Context::PLAIN))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let _timer = self.timer("ping");
        let ping = async {
            let mut conn = self.conn().await?;
            sqlx::query("SELECT 1")
                .execute(&mut *conn)
                .await
                .map_err(|e| store_error(e, Context::PLAIN))
        };
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(StoreError::Unavailable(
                "the database did not answer within a second".to_owned(),
            )),
        }
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn postgres(&self) -> Option<&PostgresStore> {
        Some(self)
    }
}
