//! The PostgreSQL store's metrics: the pool's connections, the requests waiting for one, and
//! the time each store operation takes. Pool figures are read at each scrape, so they cost
//! nothing between scrapes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts};
use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

/// Query latency buckets in seconds: a fraction of a millisecond on loopback up to the
/// statement timeout's range.
const QUERY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The metric families this module exports, for tests and the dashboard's check.
pub const FAMILIES: [&str; 4] = [
    "monolith_db_pool_connections",
    "monolith_db_pool_max_connections",
    "monolith_db_pool_waiting",
    "monolith_db_query_duration_seconds",
];

/// Counts and times the store's use of the database; cheap to clone.
#[derive(Clone)]
pub struct DbMetrics {
    pool: PgPool,
    waiting: Arc<AtomicI64>,
    query_seconds: HistogramVec,
    connections: IntGaugeVec,
    max_connections: IntGauge,
    waiting_gauge: IntGauge,
}

impl DbMetrics {
    /// Metrics for `pool`.
    pub fn new(pool: PgPool) -> Self {
        let query_seconds = HistogramVec::new(
            HistogramOpts::new(
                "monolith_db_query_duration_seconds",
                "Time per store operation on PostgreSQL (one statement or one transaction)",
            )
            .buckets(QUERY_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("valid metric");
        let connections = IntGaugeVec::new(
            Opts::new(
                "monolith_db_pool_connections",
                "Open database connections by state (idle, in_use)",
            ),
            &["state"],
        )
        .expect("valid metric");
        let max_connections = IntGauge::new(
            "monolith_db_pool_max_connections",
            "The pool's maximum (DATABASE_MAX_CONNECTIONS)",
        )
        .expect("valid metric");
        let waiting_gauge = IntGauge::new(
            "monolith_db_pool_waiting",
            "Store operations waiting for a database connection",
        )
        .expect("valid metric");
        Self {
            pool,
            waiting: Arc::new(AtomicI64::new(0)),
            query_seconds,
            connections,
            max_connections,
            waiting_gauge,
        }
    }

    /// A connection from the pool, counted as waiting until it arrives.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        // Decremented on drop too, so a request cancelled while waiting is not counted forever.
        let _waiting = WaitingGuard(&self.waiting);
        self.pool.acquire().await
    }

    /// Runs one store operation, recording how long it took under `operation`.
    pub async fn time<T>(&self, operation: &'static str, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = work.await;
        self.query_seconds
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// The collector to register with the app's registry.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.clone())
    }
}

struct WaitingGuard<'a>(&'a AtomicI64);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Collector for DbMetrics {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.query_seconds.desc(),
            self.connections.desc(),
            self.max_connections.desc(),
            self.waiting_gauge.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let size = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX);
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set((size - idle).max(0));
        self.max_connections
            .set(i64::from(self.pool.options().get_max_connections()));
        self.waiting_gauge
            .set(self.waiting.load(Ordering::Relaxed).max(0));
        [
            self.query_seconds.collect(),
            self.connections.collect(),
            self.max_connections.collect(),
            self.waiting_gauge.collect(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exports_exactly_its_families_without_touching_the_database() {
        // A lazy pool never connects, so this needs no database.
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let metrics = DbMetrics::new(pool);
        metrics.time("get_book", async {}).await;
        let mut names: Vec<String> = metrics
            .collect()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        names.sort();
        let mut expected = FAMILIES.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(names, expected);
    }
}
