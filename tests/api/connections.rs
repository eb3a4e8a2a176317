//! Connection-level defences over real sockets: silent connections are closed, a client that
//! stops reading is cut off, the connection cap keeps room for new clients, and the process
//! raises its file-descriptor limit.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monolith::config::TlsMode;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::cli::ServerProcess;
use crate::helpers::{init_logs, many_books, test_config, write_files};
use crate::server::RunningServer;

/// Waits up to `limit` for the server to close `stream`; returns how long that took, or `None`
/// if the connection is still open then. Any bytes the server sent first are skipped.
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = limit.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// One HTTP/1.1 GET on a fresh connection, answered and closed within `limit`; the status line.
async fn status_line(addr: SocketAddr, path: &str, limit: Duration) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {path} was not answered within {limit:?}"))
        .unwrap();
    response.lines().next().unwrap_or_default().to_owned()
}

/// Sends one keep-alive GET on `stream` and reads its response head and body.
async fn keep_alive_get(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    // `/healthz` answers a short fixed body; the blank line and the closing brace end it.
    while !response.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "the connection stays open");
        response.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_after_the_header_timeout() {
    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let closed = closed_within(&mut silent, Duration::from_secs(4)).await;
    let closed = closed.expect("the server closes a silent connection");
    assert!(
        closed >= Duration::from_millis(900),
        "not before: {closed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_half_sent_http2_preface_is_closed_after_the_header_timeout() {
    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Until the preface is whole or differs, the server cannot tell HTTP/1 from HTTP/2.
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(4)).await;
    assert!(closed.is_some(), "the server closes the connection");
    server.stop().await;
}

/// Writes a fresh certificate and key as `cert.pem` and `key.pem` in `dir`; returns the cert.
fn write_certificate(dir: &Path) -> String {
    let (cert, key) = monolith::tls::self_signed_pem().unwrap();
    write_files(dir, &[("cert.pem", &cert), ("key.pem", &key)]);
    cert
}

/// A blocking TLS client over `socket` that trusts only `cert`, for `localhost`, offering `alpn`;
/// the handshake is done.
fn tls_client(
    cert: &str,
    socket: std::net::TcpStream,
    alpn: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let mut client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    assert_eq!(tls.conn.alpn_protocol(), Some(alpn));
    tls
}

/// A configuration serving HTTPS with a fresh certificate in `dir`; returns it and the cert.
fn tls_config(dir: &Path) -> (monolith::Config, String) {
    init_logs();
    let cert = write_certificate(dir);
    let mut config = test_config();
    config.tls = TlsMode::Files {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    (config, cert)
}

#[tokio::test]
async fn a_tls_client_that_sends_nothing_is_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, cert) = tls_config(dir.path());
    config.header_read_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;

    // No handshake at all.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let closed = closed_within(&mut silent, Duration::from_secs(4)).await;
    assert!(
        closed.is_some(),
        "a connection without a handshake is closed"
    );

    // A whole handshake offering HTTP/2, then nothing: no preface, no request.
    let addr = server.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let socket = std::net::TcpStream::connect(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(4)))
            .unwrap();
        let mut tls = tls_client(&cert, socket, b"h2");
        let started = Instant::now();
        let mut buffer = [0u8; 1024];
        loop {
            match tls.read(&mut buffer) {
                Ok(0) => return Some(started.elapsed()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(_) => return Some(started.elapsed()),
            }
        }
    })
    .await
    .unwrap();
    assert!(
        closed.is_some(),
        "a TLS connection that sends no HTTP is closed"
    );
    server.stop().await;
}

/// `count` pipelined requests for every book, the last one asking to close.
fn pipelined_book_lists(count: usize) -> String {
    let mut requests = String::new();
    for i in 0..count {
        let close = if i + 1 == count {
            "connection: close\r\n"
        } else {
            ""
        };
        requests.push_str(&format!(
            "GET /api/v1/books HTTP/1.1\r\nhost: test\r\n{close}\r\n"
        ));
    }
    requests
}

/// How many responses `received` begins.
fn responses_begun(received: &[u8]) -> usize {
    received
        .windows(12)
        .filter(|w| *w == b"HTTP/1.1 200")
        .count()
}

/// A socket connected to `addr` with a small receive buffer, so that the server's writes
/// block soon once it stops reading.
async fn small_window_socket(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    const REQUESTS: usize = 8;
    let data = many_books(20_000);
    let mut config = test_config();
    config.data_dir = data.path().to_owned();
    config.write_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;

    let mut stream = small_window_socket(server.addr).await;
    // Eight answers of 2 MB each are far more than the kernel buffers on both sides hold.
    stream
        .write_all(pipelined_book_lists(REQUESTS).as_bytes())
        .await
        .unwrap();
    // Time for the buffers to fill, and for the write deadline.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the connection ends");
    let answered = responses_begun(&received);
    assert!(
        answered < REQUESTS,
        "the server gave up before sending all {REQUESTS} answers ({answered} begun, {} bytes)",
        received.len()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_tls_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    const REQUESTS: usize = 8;
    let data = many_books(20_000);
    let dir = tempfile::tempdir().unwrap();
    let (mut config, cert) = tls_config(dir.path());
    config.data_dir = data.path().to_owned();
    config.write_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;
    let socket = small_window_socket(server.addr).await.into_std().unwrap();
    socket.set_nonblocking(false).unwrap();
    let (ended, answered, bytes) = tokio::task::spawn_blocking(move || {
        let mut tls = tls_client(&cert, socket, b"http/1.1");
        tls.write_all(pipelined_book_lists(REQUESTS).as_bytes())
            .unwrap();
        tls.flush().unwrap();
        std::thread::sleep(Duration::from_secs(4));
        tls.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut received = Vec::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let ended = loop {
            match tls.read(&mut buffer) {
                Ok(0) => break true,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
                Err(e) => {
                    break !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    );
                }
            }
        };
        (ended, responses_begun(&received), received.len())
    })
    .await
    .unwrap();
    assert!(ended, "the connection ends");
    assert!(
        answered < REQUESTS,
        "the server gave up before sending all {REQUESTS} answers ({answered} begun, {bytes} bytes)"
    );
    server.stop().await;
}

/// Starts a request whose body never finishes arriving: a request in flight until `finish`.
async fn start_slow_upload(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /api/v1/books HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                content-length: 16\r\n\r\n{\"title\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Sends the rest of `start_slow_upload`'s body and reads the status line of the answer.
async fn finish_slow_upload(stream: &mut TcpStream) -> String {
    stream.write_all(b"\"abcd\"}").await.unwrap();
    let mut buffer = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&buffer[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_displaces_the_oldest_silent_connection() {
    let mut config = test_config();
    config.max_connections = 4;
    config.header_read_timeout = Duration::from_secs(30);
    let server = RunningServer::start(config).await;

    // The oldest connection, but in the middle of a request.
    let mut in_use = start_slow_upload(server.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
        // The server registers connections as it accepts them: keep their order certain.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let line = status_line(server.addr, "/healthz", Duration::from_secs(2)).await;
    assert_eq!(line, "HTTP/1.1 200 OK");
    let oldest = closed_within(&mut silent[0], Duration::from_secs(1)).await;
    assert!(oldest.is_some(), "the oldest silent connection made room");
    for younger in &mut silent[1..] {
        let closed = closed_within(younger, Duration::from_millis(200)).await;
        assert!(closed.is_none(), "younger silent connections stay");
    }
    assert_eq!(
        finish_slow_upload(&mut in_use).await,
        "HTTP/1.1 201 Created",
        "a connection with a request in flight is never displaced"
    );
    server.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_idle_keep_alive_connections_make_room() {
    // What locked every client out before: connections that made a request once and then sit
    // idle (HTTP/1 keep-alive here; an HTTP/2 connection answering pings is the same to the cap).
    let mut config = test_config();
    config.max_connections = 2;
    config.header_read_timeout = Duration::from_secs(30);
    let server = RunningServer::start(config).await;
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        assert!(
            keep_alive_get(&mut stream, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        idle.push(stream);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = status_line(server.addr, "/healthz", Duration::from_secs(2)).await;
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(1))
            .await
            .is_some(),
        "the oldest idle connection made room"
    );
    assert!(
        closed_within(&mut idle[1], Duration::from_millis(200))
            .await
            .is_none()
    );
    server.stop().await;
}

#[tokio::test]
async fn at_the_connection_cap_with_every_connection_in_use_a_new_one_is_closed() {
    let mut config = test_config();
    config.max_connections = 2;
    config.header_read_timeout = Duration::from_secs(30);
    let server = RunningServer::start(config).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(start_slow_upload(server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let closed = closed_within(&mut extra, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "the server has no room for it");
    drop(clients);
    // Once a slot is free again, new clients are served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let line = status_line(server.addr, "/healthz", Duration::from_secs(2)).await;
    assert_eq!(line, "HTTP/1.1 200 OK");
    server.stop().await;
}

/// The JSON log entry whose message is `message`.
fn log_entry(server: &ServerProcess, message: &str) -> Option<serde_json::Value> {
    server
        .log_text()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["message"] == message)
}

#[test]
fn the_soft_file_descriptor_limit_is_raised_to_the_hard_limit() {
    let hard = rlimit::Resource::NOFILE.get().unwrap().1;
    if hard <= 100 || hard == rlimit::INFINITY {
        eprintln!("skipped: the hard limit ({hard}) leaves nothing to show");
        return;
    }
    let server = ServerProcess::start_under_ulimit("-S -n 100", &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(
        numbers,
        [hard.to_string(), hard.to_string()],
        "{open_files}"
    );
    let entry = log_entry(&server, "file-descriptor limit").expect("a log line for the limit");
    assert_eq!(entry["soft_before"], 100, "{entry}");
    assert_eq!(entry["soft"], hard, "{entry}");
    assert_eq!(entry["hard"], hard, "{entry}");
}

// Multi-threaded so that the blocking reads below do not stall the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_more_silent_sockets_than_file_descriptors_new_clients_are_still_served() {
    const FD_LIMIT: usize = 64;
    let server = ServerProcess::start_under_ulimit(
        &format!("-n {FD_LIMIT}"),
        &[("HEADER_READ_TIMEOUT_SECS", "2")],
    );
    let addr: SocketAddr = server.address.parse().unwrap();
    let mut silent = Vec::new();
    for _ in 0..FD_LIMIT + 36 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = Instant::now();
    let line = status_line(addr, "/healthz", Duration::from_secs(2)).await;
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert!(started.elapsed() < Duration::from_secs(2));

    // Every silent socket is closed by the header timeout at the latest.
    for stream in &mut silent {
        let closed = closed_within(stream, Duration::from_secs(4)).await;
        assert!(closed.is_some(), "silent sockets are closed");
    }
    let entry = log_entry(&server, "file-descriptor limit").expect("a log line for the limit");
    assert_eq!(entry["soft"], FD_LIMIT, "{entry}");
    assert_eq!(entry["hard"], FD_LIMIT, "{entry}");
    let cap = log_entry(
        &server,
        "MAX_CONNECTIONS lowered to fit the file-descriptor limit",
    )
    .expect("a warning that the cap was lowered");
    assert!(
        cap["max_connections"].as_u64().unwrap() < FD_LIMIT as u64,
        "{cap}"
    );
    drop(silent);

    // A blocking client too, as a load balancer's probe would be.
    let mut probe = std::net::TcpStream::connect(addr).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    probe
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    probe.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
