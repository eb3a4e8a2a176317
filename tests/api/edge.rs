//! The hardened edge over real sockets: header timeout, CORS, rate limiting, security headers.

use std::time::{Duration, Instant};

use monolith::config::{CorsOrigins, RateLimit};
use reqwest::header::HeaderValue;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::test_config;
use crate::server::RunningServer;

#[tokio::test]
async fn a_client_that_dribbles_its_headers_is_cut_off() {
    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    let request = b"GET /api/v1/books HTTP/1.1\r\nhost: test\r\nx-slow: ";
    let mut cut_off = false;
    // One byte every 100 ms would take far longer than the limit to finish the headers.
    for byte in request
        .iter()
        .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter())
    {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    if !cut_off {
        // The server may have answered (408) and closed; either way the read ends.
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;
        cut_off = matches!(read, Ok(Ok(_)) | Ok(Err(_)));
    }
    assert!(cut_off, "the connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "within the header timeout"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_prompt_client_is_unaffected_by_the_header_timeout() {
    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let res = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn cors_answers_preflights_and_simple_requests_for_allowed_origins_only() {
    let mut config = test_config();
    config.cors = CorsOrigins::List(vec![HeaderValue::from_static("https://app.example")]);
    let server = RunningServer::start(config).await;
    let client = reqwest::Client::new();

    let preflight = client
        .request(reqwest::Method::OPTIONS, server.url("/api/v1/books"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, x-server-key",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let headers = preflight.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    for name in ["content-type", "x-server-key", "if-match", "if-none-match"] {
        assert!(allowed.contains(name), "{name}: {allowed}");
    }

    let simple = client
        .get(server.url("/api/v1/books"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-total-count"), "{exposed}");
    assert!(exposed.contains("link"), "{exposed}");
    assert!(exposed.contains("etag"), "{exposed}");
    // Error answers carry CORS headers too, so a browser can read the problem.
    let missing = client
        .get(server.url("/api/v1/books/999"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    let stranger = client
        .get(server.url("/api/v1/books"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    server.stop().await;
}

#[tokio::test]
async fn without_configured_origins_no_cors_headers_are_sent() {
    let server = RunningServer::start(test_config()).await;
    let client = reqwest::Client::new();
    let res = client
        .get(server.url("/api/v1/books"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-"))
    );
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.url("/api/v1/books"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 405);
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_probes_are_never_limited() {
    let mut config = test_config();
    config.rate_limit = Some(RateLimit {
        per_second: 1,
        burst: 3,
    });
    let server = RunningServer::start(config).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            client
                .get(server.url("/api/v1/things"))
                .send()
                .await
                .unwrap(),
        );
    }
    assert!(statuses[..3].iter().all(|r| r.status() == 200));
    let limited = statuses.pop().unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let problem: Value = limited.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["instance"], "/api/v1/things");

    for _ in 0..10 {
        let res = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = client
        .get(server.url("/api/v1/things"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a token came back after a second");
    server.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = RunningServer::start(test_config()).await;
    let client = reqwest::Client::new();
    for path in [
        "/api/v1/books",
        "/api/v1/books/999",
        "/nope",
        "/healthz",
        "/api/v1",
    ] {
        let res = client.get(server.url(path)).send().await.unwrap();
        let headers = res.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(
            headers["content-security-policy"],
            monolith::edge::API_CSP,
            "{path}"
        );
    }
    // The docs and the spec they load: their own policy, and revalidated rather than never stored.
    for path in [
        "/api/v1/docs/",
        "/api/v1/docs/swagger-initializer.js",
        "/api/v1/openapi.json",
    ] {
        let res = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert_eq!(csp, monolith::edge::DOCS_CSP);
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(res.headers()["x-frame-options"], "DENY");
        assert_eq!(res.headers()["cache-control"], "no-cache");
    }
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_over_the_wire_too() {
    let mut config = test_config();
    config.max_body_bytes = 1024;
    let server = RunningServer::start(config).await;
    let client = reqwest::Client::new();
    let title = "x".repeat(2000);
    let res = client
        .post(server.url("/api/v1/books"))
        .json(&serde_json::json!({ "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // A body that fits still goes through.
    let res = client
        .post(server.url("/api/v1/books"))
        .json(&serde_json::json!({ "title": "small" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    server.stop().await;
}
