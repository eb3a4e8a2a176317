//! The PostgreSQL implementation of the store traits (`DATABASE_URL`).
//!
//! The schema lives in `migrations/` and is embedded in the binary. Every store operation is one
//! statement or one transaction; the hot ones (`GET /books/{id}`, `POST /bids`) are one prepared
//! statement, so one round trip.
//!
//! Layout: `open.rs` connects (with retries), migrates under an advisory lock and seeds;
//! `books.rs` holds books and things, `auction.rs` users, items and bids, `bid_batches.rs` the
//! placing of bids (an item's waiting bids in one statement); `error.rs` is the one mapping
//! from database errors to [`StoreError`]; `pool.rs` the connection pool. This file holds what
//! every operation goes through: [`PostgresStore::conn`] and [`QueryTimer`].

mod auction;
mod bid_batches;
mod books;
mod error;
mod feeds;
mod idempotency;
pub mod metrics;
mod open;
mod pool;
mod queries;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus::{HistogramOpts, HistogramVec};
use sqlx::PgConnection;
use sqlx::postgres::{PgRow, Postgres};

use super::query::ListQuery;
use super::{Backend, Cursor, Precondition, Resource, StoreError, Version};
use bid_batches::BidQueues;
use error::{Context, store_error};
use pool::{Conn, Pool, Settle};

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
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Longest an operation waits for a connection (`DATABASE_STATEMENT_TIMEOUT_SECS`).
    acquire_timeout: Duration,
    /// Time per store operation (acquiring a connection included), labelled `op`.
    query_latency: HistogramVec,
    /// Bids waiting to be placed, per item (see `bid_batches.rs`).
    bid_queues: Arc<BidQueues>,
    /// The database's random epoch (`store_identity`), read once at open.
    epoch: u64,
    /// The feeds open in this replica and the connection that hears their events.
    feeds: Arc<feeds::Feeds>,
}

/// A snapshot of the connection pool, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections, idle or in use.
    pub size: usize,
    /// Open connections not in use.
    pub idle: usize,
    /// Operations waiting for a connection.
    pub waiting: usize,
    /// The pool's cap (`DATABASE_MAX_CONNECTIONS`).
    pub max: usize,
}

impl PostgresStore {
    fn new(pool: Pool, acquire_timeout: Duration, epoch: u64) -> Self {
        let query_latency = HistogramVec::new(
            HistogramOpts::new(
                "monolith_db_query_duration_seconds",
                "Time per database store operation, waiting for a connection included",
            )
            .buckets(QUERY_LATENCY_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("a valid metric definition");
        Self {
            pool,
            acquire_timeout,
            query_latency,
            bid_queues: Arc::default(),
            epoch,
            feeds: feeds::Feeds::new(),
        }
    }

    /// The pool's size, idle connections and waiting operations now.
    pub fn pool_stats(&self) -> PoolStats {
        let status = self.pool.status();
        PoolStats {
            size: status.size,
            idle: status.available,
            waiting: status.waiting,
            max: status.max_size,
        }
    }

    /// The per-operation latency histogram (`monolith_db_query_duration_seconds{operation}`),
    /// not registered anywhere: the caller registers it in its own registry. A clone shares
    /// the series.
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

    /// A pooled connection; waits at most `DATABASE_STATEMENT_TIMEOUT_SECS`. Each statement's
    /// result goes through [`Settle::settle`], so the connection returns without a ping.
    async fn conn(&self) -> Result<Conn, StoreError> {
        Conn::take(&self.pool, self.acquire_timeout).await
    }

    /// One page of a list, `n` rows from `from`, as the operation `op`.
    async fn page<K, R>(
        &self,
        op: &'static str,
        sql: PageSql,
        from: Cursor<K>,
        n: usize,
    ) -> Result<Vec<R>, StoreError>
    where
        K: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send,
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let _timer = self.timer(op);
        let query = match from {
            Cursor::Offset(offset) => sqlx::query_as(sql.by_offset).bind(sql_count(offset)),
            Cursor::After(key) => sqlx::query_as(sql.after).bind(key),
        };
        let mut conn = self.conn().await?;
        query
            .bind(sql_count(n))
            .fetch_all(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(|e| store_error(e, Context::PLAIN))
    }
}

/// A record a write may carry a precondition on: how to lock it and read its version, and its
/// name for a 404 or a 412.
pub(super) struct Guarded<'a> {
    /// Locks the record's row; `None` where its version never changes (bids).
    pub lock: Option<&'static str>,
    /// Reads the version (`record`, `latest_bid`, `bid_count`); run after the lock, so with a
    /// snapshot that sees every change committed before it.
    pub version: &'static str,
    pub key: Key<'a>,
    pub what: String,
    /// Whether the write creates the record when it does not exist (a PUT of a user or item):
    /// then a precondition on a missing record is checked, else the answer is a 404.
    pub upsert: bool,
}

/// A record's key, to bind.
pub(super) enum Key<'a> {
    Number(i64),
    Text(&'a str),
}

/// A write's statements, on the connection or transaction it is given.
pub(super) type Write<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// `write`, typed for [`PostgresStore::guarded`]: a closure only gets the signature that works
/// for every borrow of the connection when it is passed where that signature is asked for.
pub(super) fn statements<T, F>(write: F) -> F
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> Write<'c, T>,
{
    write
}

impl PostgresStore {
    /// Runs `write` as the operation `op`: alone when `precondition` requires nothing, else in a
    /// transaction that first locks `record` and checks its version, so that no other write
    /// comes between the check and this one.
    async fn guarded<T>(
        &self,
        op: &'static str,
        precondition: &Precondition,
        record: Guarded<'_>,
        write: impl for<'c> FnOnce(&'c mut PgConnection) -> Write<'c, T> + Send,
    ) -> Result<T, StoreError> {
        let _timer = self.timer(op);
        let mut conn = self.conn().await?;
        if precondition.is_none() {
            let result = write(&mut conn).await;
            conn.settle_unless(matches!(result, Err(StoreError::Unavailable(_))));
            return result;
        }
        let plain = |e| store_error(e, Context::PLAIN);
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(plain)?;
        if let Some(lock) = record.lock {
            let query = match record.key {
                Key::Number(n) => sqlx::query(lock).bind(n),
                Key::Text(text) => sqlx::query(lock).bind(text),
            };
            let found = query.fetch_optional(&mut *tx).await.map_err(plain)?;
            if found.is_none() && !record.upsert {
                return Err(StoreError::NotFound(record.what));
            }
        }
        let query = sqlx::query_as::<_, (i64, i64, i64)>(record.version);
        let query = match record.key {
            Key::Number(n) => query.bind(n),
            Key::Text(text) => query.bind(text),
        };
        let current = query.fetch_optional(&mut *tx).await.map_err(plain)?;
        let current = current.map(|(record, latest_bid, bid_count)| Version {
            // Two's complement: seeded bids' negative numbers stay distinct, which is all a
            // version needs.
            record: record as u64,
            latest_bid: latest_bid as u64,
            bid_count: bid_count as u64,
        });
        if current.is_none() && !record.upsert {
            return Err(StoreError::NotFound(record.what));
        }
        precondition.check(|| record.what.clone(), current)?;
        let result = write(&mut tx).await?;
        tx.commit().await.settle(&mut conn).map_err(plain)?;
        Ok(result)
    }
}

/// The two statements of a list in key order: `by_offset` binds `$1` offset and `$2` limit;
/// `after` binds `$1` the last key seen and `$2` the limit.
struct PageSql {
    by_offset: &'static str,
    after: &'static str,
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

/// A `LIMIT` or `OFFSET` for PostgreSQL's `bigint` (`usize::MAX` means "all").
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Backend for PostgresStore {
    async fn count_matching(&self, what: Resource, query: &ListQuery) -> Result<usize, StoreError> {
        if query.is_plain() {
            return self.count(what).await;
        }
        let listing = match what {
            Resource::Books => &queries::BOOKS,
            Resource::Things => &queries::THINGS,
            Resource::Users => &queries::USERS,
            Resource::Items => &queries::ITEMS,
            Resource::Bids => &queries::BIDS,
        };
        PostgresStore::count_matching(self, listing, query).await
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn claim_key(
        &self,
        key: &str,
        fingerprint: &[u8],
        rules: &crate::store::idempotency::KeyRules,
    ) -> Result<crate::store::idempotency::Claim, StoreError> {
        self.claim_idempotency_key(key, fingerprint, rules).await
    }

    async fn settle_key(
        &self,
        key: &str,
        answer: crate::store::idempotency::KeepAnswer,
    ) -> Result<(), StoreError> {
        self.settle_idempotency_key(key, answer).await
    }

    async fn open_feed(
        &self,
        item: &str,
        last_event: Option<u64>,
    ) -> Result<crate::store::feed::FeedOpening, StoreError> {
        self.open_item_feed(item, last_event).await
    }

    /// Every row's key and version hashed and folded with XOR, and the count: one scan (as
    /// `count(*)` is), no lock, no counter row for writers to queue on, and it moves with any
    /// insert, update or delete, whatever order concurrent writers commit in. (A counter
    /// bumped by every write would serialise them, bid batches of different items included; a
    /// sequence read here would miss a write that drew its number earlier and committed later.)
    /// Items list their bids, so their version folds in the bids' too.
    async fn list_version(&self, what: Resource) -> Result<u64, StoreError> {
        let _timer = self.timer("list_version");
        const BOOKS: &str = "SELECT count(*), \
            COALESCE(bit_xor(hashtextextended(id::text || '/' || version, 0)), 0) FROM books";
        const USERS: &str = "SELECT count(*), \
            COALESCE(bit_xor(hashtextextended(id || '/' || version, 0)), 0) FROM users";
        const BIDS: &str = "SELECT count(*), \
            COALESCE(bit_xor(hashtextextended(id, 0)), 0) FROM bids";
        let sql: &[&str] = match what {
            Resource::Books => &[BOOKS],
            Resource::Things => return Ok(0),
            Resource::Users => &[USERS],
            Resource::Items => &[
                "SELECT count(*), \
                 COALESCE(bit_xor(hashtextextended(id || '/' || version, 0)), 0) FROM items",
                BIDS,
            ],
            Resource::Bids => &[BIDS],
        };
        let mut conn = self.conn().await?;
        let mut version = 0_u64;
        for sql in sql {
            let (count, hashes): (i64, i64) = sqlx::query_as(*sql)
                .fetch_one(&mut *conn)
                .await
                .settle(&mut conn)
                .map_err(|e| store_error(e, Context::PLAIN))?;
            version = version.rotate_left(17)
                ^ (hashes as u64)
                ^ (count as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        Ok(version)
    }

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
            .settle(&mut conn)
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
                .settle(&mut conn)
                .map_err(|e| store_error(e, Context::PLAIN))
        };
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(StoreError::Unavailable(
                "the database did not answer within a second".to_owned(),
            )),
        }
    }

    fn collector(&self) -> Option<Box<dyn prometheus::core::Collector>> {
        Some(Box::new(metrics::DbMetrics::new(self.clone())))
    }

    async fn close(&self) {
        self.stop_listening();
        pool::close(&self.pool).await;
    }
}
