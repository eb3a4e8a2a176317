//! Metrics that move with traffic and keep bounded labels, request ids end to end, and
//! structured logs.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};

use crate::cli::ServerProcess;
use crate::echo::{KEY, app_with_key};
use crate::helpers::{TestApp, test_config};

/// Samples of a Prometheus text exposition: `name{labels}` → value.
struct Samples(HashMap<String, f64>);

impl Samples {
    async fn scrape(app: &TestApp) -> Self {
        let res = app.get("/metrics").await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(res.content_type().starts_with("text/plain; version=0.0.4"));
        Self::parse(&res.text)
    }

    fn parse(text: &str) -> Self {
        let mut samples = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            samples.insert(series.to_owned(), value.parse().expect("a number"));
        }
        Self(samples)
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    fn series_of(&self, name: &str) -> usize {
        self.0
            .keys()
            .filter(|k| k.starts_with(&format!("{name}{{")))
            .count()
    }
}

#[tokio::test]
async fn request_counters_and_latency_histograms_move_with_traffic() {
    let app = TestApp::new().await;
    let before = Samples::scrape(&app).await;
    for _ in 0..3 {
        app.get("/api/v1/books/1").await;
    }
    app.get("/api/v1/books/999").await;
    app.post_json("/api/v1/books", json!({"title": ""})).await;
    let after = Samples::scrape(&app).await;

    let ok = r#"http_requests_total{method="GET",route="/api/v1/books/{id}",status="200"}"#;
    let missing = r#"http_requests_total{method="GET",route="/api/v1/books/{id}",status="404"}"#;
    let invalid = r#"http_requests_total{method="POST",route="/api/v1/books",status="422"}"#;
    assert_eq!(after.get(ok) - before.get(ok), 3.0);
    assert_eq!(after.get(missing) - before.get(missing), 1.0);
    assert_eq!(after.get(invalid) - before.get(invalid), 1.0);
    let count = r#"http_request_duration_seconds_count{method="GET",route="/api/v1/books/{id}"}"#;
    assert_eq!(after.get(count), 4.0);
    let fast =
        r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/books/{id}",le="10"}"#;
    assert_eq!(after.get(fast), 4.0, "every request took less than 10 s");
    // The scrape itself is in flight while it is rendered.
    assert_eq!(after.get("http_requests_in_flight"), 1.0);
}

#[tokio::test]
async fn the_database_pool_and_query_latency_are_exported_only_with_postgresql() {
    let app = TestApp::new().await;
    assert_eq!(app.get("/api/v1/books/1").await.status, StatusCode::OK);
    let text = app.get("/metrics").await.text;
    if !crate::helpers::on_postgres() {
        assert!(!text.contains("monolith_db_"), "{text}");
        return;
    }
    // The test pool's size (DATABASE_MAX_CONNECTIONS=4), its connections, and the read just made.
    assert!(
        text.contains("monolith_db_pool_max_connections 4"),
        "{text}"
    );
    assert!(text.contains("monolith_db_pool_waiting 0"), "{text}");
    for state in ["idle", "in_use"] {
        assert!(
            text.contains(&format!(
                "monolith_db_pool_connections{{state=\"{state}\"}}"
            )),
            "{text}"
        );
    }
    assert!(
        text.contains("monolith_db_query_duration_seconds_count{operation=\"get_book\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn records_per_resource_are_gauged_at_each_scrape() {
    let app = TestApp::new().await;
    let samples = Samples::scrape(&app).await;
    for (resource, count) in [
        ("books", 12.0),
        ("users", 3.0),
        ("items", 2.0),
        ("bids", 2.0),
        ("things", 4.0),
    ] {
        assert_eq!(
            samples.get(&format!(r#"monolith_records{{resource="{resource}"}}"#)),
            count
        );
    }
    app.post_json("/api/v1/books", json!({"title": "One more"}))
        .await;
    app.delete("/api/v1/users/user2").await;
    let samples = Samples::scrape(&app).await;
    assert_eq!(samples.get(r#"monolith_records{resource="books"}"#), 13.0);
    assert_eq!(samples.get(r#"monolith_records{resource="users"}"#), 2.0);
    assert_eq!(samples.get(r#"monolith_records{resource="bids"}"#), 1.0);
}

#[tokio::test]
async fn echo_auth_failures_are_counted_by_reason() {
    let app = app_with_key().await;
    let send = |key: Option<&'static str>| {
        let mut request = Request::get("/api/v1/echo?message=x");
        if let Some(key) = key {
            request = request.header("x-server-key", key);
        }
        app.send(request.body(Body::empty()).unwrap())
    };
    send(None).await;
    send(Some("wrong")).await;
    send(Some("wrong-again")).await;
    send(Some(KEY)).await;
    let samples = Samples::scrape(&app).await;
    assert_eq!(
        samples.get(r#"echo_auth_failures_total{reason="missing"}"#),
        1.0
    );
    assert_eq!(
        samples.get(r#"echo_auth_failures_total{reason="wrong"}"#),
        2.0
    );
    assert_eq!(
        samples.get(r#"http_requests_total{method="GET",route="/api/v1/echo",status="403"}"#),
        3.0
    );
}

#[tokio::test]
async fn process_metrics_are_exported() {
    let app = TestApp::new().await;
    let samples = Samples::scrape(&app).await;
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(samples.get(name) > 0.0, "{name}");
    }
    // A young test process may have used less than a whole second of CPU.
    assert!(samples.0.contains_key("process_cpu_seconds_total"));
    assert_eq!(
        samples.get("tls_certificate_not_after_seconds"),
        0.0,
        "no HTTPS here"
    );
}

#[tokio::test]
async fn a_thousand_unknown_paths_and_odd_methods_add_at_most_one_series_each() {
    let app = TestApp::new().await;
    app.get("/warm-up").await;
    let before = Samples::scrape(&app).await;
    for i in 0..1000 {
        app.get(&format!("/unknown/{i}/path-{}", i * 7919)).await;
    }
    for method in ["PURGE", "FOO", "BREW"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        app.send_body(method, &format!("/odd/{}", rand_suffix()), None, "")
            .await;
    }
    let after = Samples::scrape(&app).await;
    let added = after.series_of("http_requests_total") - before.series_of("http_requests_total");
    // One for the scrape of /metrics itself, one for OTHER methods on unmatched routes.
    assert!(added <= 2, "added {added} series");
    let unmatched = r#"http_requests_total{method="GET",route="unmatched",status="404"}"#;
    assert_eq!(after.get(unmatched) - before.get(unmatched), 1000.0);
    assert_eq!(
        after.get(r#"http_requests_total{method="OTHER",route="unmatched",status="404"}"#),
        3.0
    );
    let text = app.get("/metrics").await.text;
    assert!(!text.contains("/unknown/") && !text.contains("PURGE"));
}

fn rand_suffix() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn a_sane_client_request_id_is_kept_everywhere_and_an_insane_one_replaced() {
    let app = TestApp::new().await;
    let res = app
        .send(
            Request::get("/api/v1/books/404")
                .header("x-request-id", "client-id_42.a:b")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(res.header("x-request-id"), Some("client-id_42.a:b"));
    assert_eq!(res.body["request_id"], "client-id_42.a:b");

    for insane in [
        "has spaces",
        "x".repeat(129).as_str(),
        "quote\"d",
        "semi;colon",
    ] {
        let res = app
            .send(
                Request::get("/api/v1/books/404")
                    .header("x-request-id", insane)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let id = res.header("x-request-id").unwrap().to_owned();
        assert_ne!(id, insane);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "a fresh id: {id}");
        assert_eq!(res.body["request_id"], id.as_str());
    }
}

#[test]
fn json_logs_have_a_start_up_line_and_one_access_line_per_request_with_its_id() {
    let server = ServerProcess::start(&[
        ("SECRET_KEY", "startup-secret-value"),
        ("RUST_LOG", "debug"),
    ]);
    let send = |path: &str, id: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: t\r\nx-request-id: {id}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    assert!(send("/api/v1/books/1", "req-ok-1").starts_with("HTTP/1.1 200"));
    assert!(send("/api/v1/books/999", "req-missing-2").starts_with("HTTP/1.1 404"));
    let (status, logs) = server.stop_keeping_logs();
    assert!(status.success());
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    let startup = lines.iter().find(|l| l["message"] == "listening").unwrap();
    for field in [
        "address",
        "api",
        "docs",
        "metrics",
        "api_prefix",
        "data_dir",
        "tls",
        "rate_limit",
    ] {
        assert!(
            startup[field].is_string() || startup[field].is_number(),
            "{field}: {startup}"
        );
    }
    assert_eq!(startup["secret_key"], "[redacted]");
    assert!(!logs.contains("startup-secret-value"));
    // Which store serves, and where: the database URL only as redacted by the configuration.
    if crate::helpers::on_postgres() {
        assert_eq!(startup["store"], "postgres", "{startup}");
        assert!(
            startup["database"]
                .as_str()
                .is_some_and(|url| url.starts_with("postgres")),
            "{startup}"
        );
    } else {
        assert_eq!(startup["store"], "memory", "{startup}");
        assert_eq!(startup["database"], "none", "{startup}");
    }

    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "request handled")
        .collect();
    assert_eq!(access.len(), 2, "{logs}");
    for (line, (id, status, route)) in access.iter().zip([
        ("req-ok-1", 200, "/api/v1/books/{id}"),
        ("req-missing-2", 404, "/api/v1/books/{id}"),
    ]) {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["status"], status);
        assert!(line["latency_ms"].as_f64().unwrap() >= 0.0);
        let span = &line["span"];
        assert_eq!(span["request_id"], id);
        assert_eq!(span["method"], "GET");
        assert_eq!(span["route"], route);
        assert!(span["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    // The 404 is also logged, quietly, with the same request id.
    let refused = lines
        .iter()
        .find(|l| l["message"] == "request refused")
        .expect("a debug line for the 4xx");
    assert_eq!(refused["level"], "DEBUG");
    assert_eq!(refused["span"]["request_id"], "req-missing-2");
}

#[tokio::test]
async fn the_metrics_endpoint_is_never_rate_limited_or_prefixed() {
    let mut config = test_config();
    config.api_prefix = "/x".to_owned();
    let app = TestApp::with_config(config).await;
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);
    assert_eq!(app.get("/x/metrics").await.status, StatusCode::NOT_FOUND);
}

/// Metric names in PromQL: every selector in our files carries a label matcher, `name{…}`.
fn metric_names(promql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = promql.as_bytes();
    for (i, _) in promql.match_indices('{') {
        let start = bytes[..i]
            .iter()
            .rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b':'))
            .map_or(0, |p| p + 1);
        let name = &promql[start..i];
        // `${1}xx` in label_replace and `{{route}}` legends are not selectors.
        if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
            names.push(name.to_owned());
        }
    }
    names
}

/// The metric families the server exports, from the `# TYPE` lines of a scrape.
async fn exported_families() -> Vec<String> {
    let app = TestApp::new().await;
    // Families with labels appear once they have a sample.
    app.get("/healthz").await;
    let text = app.get("/metrics").await.text;
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

fn family_of(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

#[tokio::test]
async fn the_grafana_dashboard_is_importable_and_uses_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/monolith.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "monolith");
    assert!(dashboard["title"].is_string());
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(
        dashboard["id"].is_null(),
        "no instance id, so that it imports anywhere"
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus")
    );

    let mut exported = exported_families().await;
    // The database panels read what only the PostgreSQL store exports; the store's unit test
    // checks that it exports exactly these.
    exported.extend(monolith::store::postgres::metrics::FAMILIES.map(str::to_owned));
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut used = std::collections::HashSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "unique panel ids"
        );
        assert!(panel["title"].is_string() && panel["type"].is_string());
        for key in ["x", "y", "w", "h"] {
            assert!(panel["gridPos"][key].is_u64(), "{panel}");
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty());
        for target in targets {
            assert!(target["refId"].is_string());
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    exported.contains(&family_of(&name).to_owned()),
                    "{name} is not exported"
                );
                used.insert(family_of(&name).to_owned());
            }
        }
    }
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for needed in [
        "Request rate",
        "Error rate",
        "Latency",
        "in flight",
        "Echo auth",
        "Records",
    ] {
        assert!(
            titles
                .iter()
                .any(|t| t.to_lowercase().contains(&needed.to_lowercase())),
            "a panel for {needed}"
        );
    }
    for family in [
        "http_requests_total",
        "http_request_duration_seconds",
        "http_requests_in_flight",
        "echo_auth_failures_total",
        "monolith_records",
        "monolith_db_pool_connections",
        "monolith_db_pool_waiting",
        "monolith_db_query_duration_seconds",
    ] {
        assert!(used.contains(family), "the dashboard shows {family}");
    }
}

#[tokio::test]
async fn the_prometheus_alerts_use_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus/alerts.yml");
    let rules = std::fs::read_to_string(path).unwrap();
    let exported = exported_families().await;
    let names = metric_names(&rules);
    assert!(names.len() >= 4);
    for name in names {
        // `up` is Prometheus's own, recorded for every scrape target.
        assert!(
            name == "up" || exported.contains(&family_of(&name).to_owned()),
            "{name}"
        );
    }
    let scrape = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/prometheus.yml"
    ))
    .unwrap();
    assert!(scrape.contains("job_name: monolith") && scrape.contains("metrics_path: /metrics"));
}

/// A log sink that tests can read back.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

// Current-thread runtime: the scoped subscriber below sees everything the request does.
#[tokio::test(flavor = "current_thread")]
async fn a_5xx_is_logged_once_at_error_with_its_cause_and_request_id() {
    use axum::Router;
    use axum::routing::get;
    use monolith::config::LogFormat;
    use tower::ServiceExt;

    async fn boom() -> StatusCode {
        panic!("the cause: index out of range")
    }
    // The router here has no store, so the memory half of the suite covers it; in the
    // PostgreSQL half, other threads' pools log through tracing's global callsite cache while
    // this test's scoped subscriber comes and goes, and an access line was once lost to that.
    if crate::helpers::on_postgres() {
        return;
    }
    let captured = Captured::default();
    let dispatch =
        monolith::telemetry::dispatch("debug", LogFormat::Json, captured.clone()).unwrap();
    let _guard = tracing::dispatcher::set_default(&dispatch);
    // Callsites first hit by another test, with no subscriber interested, cached "never".
    tracing::callsite::rebuild_interest_cache();
    let router = monolith::with_middleware(
        Router::new().route("/boom", get(boom)),
        &test_config(),
        &monolith::Metrics::new(),
    );
    let response = router
        .clone()
        .oneshot(
            Request::get("/boom")
                .header("x-request-id", "boom-1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    router
        .oneshot(
            Request::get("/nope")
                .header("x-request-id", "nope-2")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();

    let lines = captured.lines();
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(errors.len(), 1, "one error line: {lines:#?}");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("the cause: index out of range")
    );
    assert_eq!(errors[0]["span"]["request_id"], "boom-1");
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "request refused")
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["level"], "DEBUG");
    assert_eq!(refused[0]["span"]["request_id"], "nope-2");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == "request handled")
            .count(),
        2,
        "one access line per request"
    );
}

#[tokio::test]
async fn a_request_whose_client_disconnects_leaves_the_in_flight_gauge() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    let metrics = monolith::Metrics::new();
    // A handler that never answers: the request ends only when the client goes.
    let router = axum::Router::new().route(
        "/hang",
        axum::routing::get(std::future::pending::<&'static str>),
    );
    let router = monolith::with_middleware(router, &test_config(), &metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let in_flight = |metrics: &monolith::Metrics| {
        Samples::parse(&metrics.render().unwrap()).get("http_requests_in_flight")
    };
    let settles_at = |want: f64| {
        let metrics = metrics.clone();
        async move {
            for _ in 0..200 {
                if in_flight(&metrics) == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
    };

    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /hang HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        clients.push(client);
    }
    assert!(settles_at(3.0).await, "three requests in flight");
    drop(clients.pop());
    assert!(
        settles_at(2.0).await,
        "one client gone: {}",
        in_flight(&metrics)
    );
    drop(clients);
    assert!(
        settles_at(0.0).await,
        "every client gone: {}",
        in_flight(&metrics)
    );
    server.abort();
}
