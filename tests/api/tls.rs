//! HTTPS: certificates from files (HTTP/1.1 and HTTP/2 by ALPN), self-signed, bad files, and a
//! certificate swapped on SIGHUP without a restart or a dropped connection.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use monolith::config::TlsMode;
use monolith::tls::self_signed_pem;
use reqwest::{Certificate, Client, Version};

use crate::cli::ServerProcess;
use crate::helpers::{DATA_DIR, binary, init_logs, test_config};
use crate::server::RunningServer;

/// Writes a fresh certificate and key as `cert.pem` and `key.pem` in `dir`; returns the cert.
fn write_certificate(dir: &Path) -> String {
    let (cert, key) = self_signed_pem().unwrap();
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    cert
}

/// A client that trusts only `cert` and reaches `localhost` at `addr`.
fn client_trusting(cert: &str, addr: SocketAddr) -> reqwest::ClientBuilder {
    init_logs();
    Client::builder()
        .tls_certs_only([Certificate::from_pem(cert.as_bytes()).unwrap()])
        .resolve("localhost", addr)
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

#[tokio::test]
async fn https_serves_http2_and_http1_by_alpn() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_certificate(dir.path());
    let mut config = test_config();
    config.tls = TlsMode::Files {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    let server = RunningServer::start(config).await;

    let h2 = client_trusting(&cert, server.addr).build().unwrap();
    let res = h2
        .get(url(server.addr, "/api/v1/books/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_2);

    let h1 = client_trusting(&cert, server.addr)
        .http1_only()
        .build()
        .unwrap();
    let res = h1.get(url(server.addr, "/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_11);

    // The certificate's expiry is exported for alerting.
    let metrics = h1.get(url(server.addr, "/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    let expected = monolith::tls::not_after(cert.as_bytes()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("tls_certificate_not_after_seconds "))
        .unwrap();
    let exported: f64 = line.rsplit_once(' ').unwrap().1.parse().unwrap();
    assert_eq!(exported, expected as f64);
    assert!(expected > 1_700_000_000, "a plausible time: {expected}");

    // Plain HTTP to the TLS port gets nowhere.
    let plain = Client::new()
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    server.stop().await;
}

#[tokio::test]
async fn a_self_signed_certificate_can_be_generated_at_start_up() {
    let mut config = test_config();
    config.tls = TlsMode::SelfSigned;
    let server = RunningServer::start(config).await;
    init_logs();
    let client = Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let res = client
        .get(format!("https://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    server.stop().await;
}

#[test]
fn invalid_certificate_files_stop_start_up_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let output = std::process::Command::new(binary())
        .current_dir(dir.path())
        .env_clear()
        .envs([
            ("DATA_DIR", DATA_DIR),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("TLS_CERT_PATH", "cert.pem"),
            ("TLS_KEY_PATH", "key.pem"),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("TLS_CERT_PATH=cert.pem"), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

// Multi-threaded so that the clients' connection tasks keep running while the test thread blocks
// waiting for the server process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_for_new_connections_and_keeps_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let old_cert = write_certificate(dir.path());
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let server = ServerProcess::start(&[
        ("TLS_CERT_PATH", cert_path.to_str().unwrap()),
        ("TLS_KEY_PATH", key_path.to_str().unwrap()),
    ]);
    let addr: SocketAddr = server.address.parse().unwrap();

    // HTTP/1.1 with a long idle timeout: this client keeps one connection open throughout.
    let old_client = client_trusting(&old_cert, addr)
        .http1_only()
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let res = old_client.get(url(addr, "/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let new_cert = write_certificate(dir.path());
    assert_ne!(new_cert, old_cert);
    server.signal("-HUP");
    let mut reloaded = false;
    for _ in 0..50 {
        if server.log_text().contains("TLS certificate reloaded") {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reloaded,
        "the server logs the reload:\n{}",
        server.log_text()
    );

    let new_client = client_trusting(&new_cert, addr).build().unwrap();
    let res = new_client.get(url(addr, "/healthz")).send().await.unwrap();
    assert_eq!(
        res.status(),
        200,
        "a new connection gets the new certificate"
    );

    let res = old_client.get(url(addr, "/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the open connection was not dropped");

    let fresh_old = client_trusting(&old_cert, addr).build().unwrap();
    assert!(
        fresh_old.get(url(addr, "/healthz")).send().await.is_err(),
        "new connections no longer present the old certificate"
    );
    drop((old_client, new_client, fresh_old));
    let status = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert!(status.success());
}
