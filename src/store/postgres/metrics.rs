//! The PostgreSQL store's metrics: the pool's connections, the operations waiting for one, and
//! the time each store operation takes. Pool figures are read at each scrape, so they cost
//! nothing between scrapes.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramVec, IntGauge, IntGaugeVec, Opts};

use super::PostgresStore;

/// The metric families this module exports, for tests and the dashboard's check.
pub const FAMILIES: [&str; 4] = [
    "monolith_db_pool_connections",
    "monolith_db_pool_max_connections",
    "monolith_db_pool_waiting",
    "monolith_db_query_duration_seconds",
];

/// The store's metrics as one collector, registered with the app's registry.
pub struct DbMetrics {
    store: PostgresStore,
    query_seconds: HistogramVec,
    connections: IntGaugeVec,
    max_connections: IntGauge,
    waiting: IntGauge,
}

impl DbMetrics {
    /// Metrics for `store`'s pool and operations.
    pub fn new(store: PostgresStore) -> Self {
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
        let waiting = IntGauge::new(
            "monolith_db_pool_waiting",
            "Store operations waiting for a database connection",
        )
        .expect("valid metric");
        Self {
            query_seconds: store.query_latency(),
            store,
            connections,
            max_connections,
            waiting,
        }
    }
}

fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Collector for DbMetrics {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.query_seconds.desc(),
            self.connections.desc(),
            self.max_connections.desc(),
            self.waiting.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.store.pool_stats();
        let idle = gauge_value(stats.idle);
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set((gauge_value(stats.size) - idle).max(0));
        self.max_connections.set(gauge_value(stats.max));
        self.waiting.set(gauge_value(stats.waiting));
        [
            self.query_seconds.collect(),
            self.connections.collect(),
            self.max_connections.collect(),
            self.waiting.collect(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exports_exactly_its_families_without_touching_the_database() {
        // The pool connects on first use, so this needs no database.
        let options = "postgres://nobody@127.0.0.1:1/none".parse().unwrap();
        let store = PostgresStore::new(
            super::super::pool::new(options, 4),
            std::time::Duration::from_secs(1),
            0,
        );
        drop(store.timer("get_book"));
        let metrics = DbMetrics::new(store);
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
