//! Prometheus metrics: the registry, the per-request middleware, and the `/metrics` handler.
//!
//! Each [`Metrics`] owns its registry (no global recorder), so every app, and every test, counts
//! on its own. Labels are bounded by construction: `route` is the matched route template or
//! `unmatched`, `method` one of the standard methods or `OTHER`, `status` a status code.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::store::RecordCounts;

/// Latency buckets in seconds: sub-millisecond in-memory answers up to the 10 s default timeout.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests that matched no route: one series, whatever the paths.
pub const UNMATCHED: &str = "unmatched";

/// Every metric monolith exports, in one registry. Cheap to clone: one shared set.
#[derive(Clone)]
pub struct Metrics(Arc<Registered>);

struct Registered {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    echo_auth_failures: IntCounterVec,
    records: IntGaugeVec,
    tls_not_after: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric, process metrics included.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from receiving a request to its response head",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        let in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being answered")
            .expect("valid metric");
        let echo_auth_failures = IntCounterVec::new(
            Opts::new(
                "echo_auth_failures_total",
                "Echo requests refused for a missing or wrong key",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let records = IntGaugeVec::new(
            Opts::new("monolith_records", "Records held per resource"),
            &["resource"],
        )
        .expect("valid metric");
        let tls_not_after = Gauge::new(
            "tls_certificate_not_after_seconds",
            "Expiry of the served TLS certificate, as a Unix time; 0 without HTTPS",
        )
        .expect("valid metric");
        for reason in ["missing", "wrong"] {
            echo_auth_failures.with_label_values(&[reason]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 6] = [
            Box::new(requests.clone()),
            Box::new(duration.clone()),
            Box::new(in_flight.clone()),
            Box::new(echo_auth_failures.clone()),
            Box::new(records.clone()),
            Box::new(tls_not_after.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("names are unique");
        Self(Arc::new(Registered {
            registry,
            requests,
            duration,
            in_flight,
            echo_auth_failures,
            records,
            tls_not_after,
        }))
    }

    /// Adds a backend's own metrics (the database pool's, say) to this registry.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.0.registry.register(collector) {
            tracing::warn!(error = %e, "store metrics not registered");
        }
    }

    /// Counts an echo request refused for a `missing` or `wrong` key.
    pub fn echo_auth_failed(&self, reason: &'static str) {
        self.0.echo_auth_failures.with_label_values(&[reason]).inc();
    }

    /// Records the expiry of the certificate now being served.
    pub fn set_tls_not_after(&self, unix_seconds: i64) {
        self.0.tls_not_after.set(unix_seconds as f64);
    }

    /// Sets the records-per-resource gauges to `counts`.
    pub fn set_record_counts(&self, counts: &RecordCounts) {
        for (resource, count) in [
            ("books", counts.books),
            ("users", counts.users),
            ("items", counts.items),
            ("bids", counts.bids),
            ("things", counts.things),
        ] {
            self.0
                .records
                .with_label_values(&[resource])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.0.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}

/// A method label from a fixed set, so that invented methods cannot add series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware (with [`crate::middleware::Around`]): counts and times every request by method,
/// route template and status, and counts it in flight meanwhile.
impl Metrics {
    /// Starts timing `request`, counting it in flight until the [`Timing`] is finished or
    /// dropped.
    pub fn start(&self, request: &Request) -> Timing {
        self.0.in_flight.inc();
        Timing {
            metrics: self.clone(),
            method: method_label(request.method()),
            route: request.extensions().get::<MatchedPath>().cloned(),
            started: Instant::now(),
        }
    }
}

/// One request being answered. Dropped unfinished (the client went away, the connection was
/// cut), it still leaves the in-flight gauge.
pub struct Timing {
    metrics: Metrics,
    method: &'static str,
    route: Option<MatchedPath>,
    started: Instant,
}

impl Timing {
    /// Records the request's latency and status; passes `response` on.
    pub fn finish<B>(self, response: Response<B>) -> Response<B> {
        let route = self.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
        let metrics = &self.metrics.0;
        metrics
            .duration
            .with_label_values(&[self.method, route])
            .observe(self.started.elapsed().as_secs_f64());
        metrics
            .requests
            .with_label_values(&[self.method, route, response.status().as_str()])
            .inc();
        response
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        self.metrics.0.in_flight.dec();
    }
}
