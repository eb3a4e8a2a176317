//! HTTP/2 under hostile clients, spoken frame by frame over a plain socket (h2c), so that a test
//! controls what a client library would hide: a zero flow-control window, more streams than
//! allowed, an oversized header list, PINGs left unanswered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::ServerProcess;
use crate::helpers::{many_books, rss_bytes, test_config};
use crate::server::RunningServer;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const MAX_CONCURRENT_STREAMS: u16 = 0x3;
const INITIAL_WINDOW_SIZE: u16 = 0x4;
const MAX_HEADER_LIST_SIZE: u16 = 0x6;

const REFUSED_STREAM: u32 = 0x7;

/// One frame as read off the wire.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap();
    assert!(
        length < 1 << 14,
        "within the default SETTINGS_MAX_FRAME_SIZE"
    );
    let mut bytes = length.to_be_bytes()[1..].to_vec();
    bytes.extend_from_slice(&[kind, flags]);
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// An HPACK integer with an `n`-bit prefix, the prefix's other bits set from `flags` (RFC 7541 5.1).
fn hpack_int(out: &mut Vec<u8>, value: usize, n: u32, flags: u8) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A literal header field without indexing, new name, no Huffman coding (RFC 7541 6.2.2).
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    hpack_int(out, name.len(), 7, 0);
    out.extend_from_slice(name.as_bytes());
    hpack_int(out, value.len(), 7, 0);
    out.extend_from_slice(value.as_bytes());
}

/// A complete GET request on `stream` as one HEADERS frame.
fn get(stream: u32, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "test"),
    ]
    .iter()
    .chain(extra)
    {
        hpack_literal(&mut block, name, value);
    }
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &block)
}

/// The next frame, or `None` once the server has closed the connection.
async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// Connects over h2c with a zero stream window, so the server can send headers but no body.
/// Returns the connection and the server's settings.
async fn connect_with_zero_window(addr: SocketAddr) -> (TcpStream, HashMap<u16, u32>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    handshake(stream, 0).await
}

/// Speaks h2c on `stream` with `window` as the initial stream window; returns the connection
/// and the server's settings.
async fn handshake(mut stream: TcpStream, window: u32) -> (TcpStream, HashMap<u16, u32>) {
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(&[(INITIAL_WINDOW_SIZE, window)]));
    stream.write_all(&hello).await.unwrap();
    let server_settings = loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream))
            .await
            .expect("the server's SETTINGS in time")
            .expect("the connection stays open");
        if frame.kind == SETTINGS && frame.flags & ACK == 0 {
            break frame
                .payload
                .chunks(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect();
        }
    };
    stream
        .write_all(&frame(SETTINGS, ACK, 0, &[]))
        .await
        .unwrap();
    (stream, server_settings)
}

/// Reads frames until `done` says so or `limit` has passed; the frames read.
async fn frames_until(
    stream: &mut TcpStream,
    limit: Duration,
    mut done: impl FnMut(&[Frame]) -> bool,
) -> Vec<Frame> {
    let started = Instant::now();
    let mut frames = Vec::new();
    while !done(&frames) {
        let Some(left) = limit.checked_sub(started.elapsed()) else {
            break;
        };
        match tokio::time::timeout(left, read_frame(stream)).await {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) | Err(_) => break,
        }
    }
    frames
}

fn reset_code(frame: &Frame) -> u32 {
    u32::from_be_bytes(frame.payload[..4].try_into().unwrap())
}

#[tokio::test]
async fn http2_bounds_concurrent_streams_and_header_lists() {
    let server = RunningServer::start(test_config()).await;
    let (mut stream, advertised) = connect_with_zero_window(server.addr).await;
    assert_eq!(advertised.get(&MAX_CONCURRENT_STREAMS), Some(&100));
    assert_eq!(advertised.get(&MAX_HEADER_LIST_SIZE), Some(&(16 * 1024)));

    // With no window, no response can finish, so the first 100 streams stay open.
    let mut requests = Vec::new();
    for n in 0..101 {
        requests.extend(get(2 * n + 1, "/healthz", &[]));
    }
    stream.write_all(&requests).await.unwrap();
    let frames = frames_until(&mut stream, Duration::from_secs(5), |frames| {
        frames.iter().any(|f| f.kind == RST_STREAM)
            && frames.iter().filter(|f| f.kind == HEADERS).count() >= 100
    })
    .await;
    let resets: Vec<(u32, u32)> = frames
        .iter()
        .filter(|f| f.kind == RST_STREAM)
        .map(|f| (f.stream, reset_code(f)))
        .collect();
    assert_eq!(
        resets,
        [(201, REFUSED_STREAM)],
        "only the 101st stream is refused"
    );
    let answered = frames.iter().filter(|f| f.kind == HEADERS).count();
    assert_eq!(answered, 100, "the first 100 streams are answered");
    drop(stream);

    // A header list over the limit gets 431 on its stream; the connection goes on.
    let (mut stream, _) = connect_with_zero_window(server.addr).await;
    let big = "a".repeat(16 * 1024);
    let mut requests = get(1, "/healthz", &[("x-big", &big[..16_300])]);
    requests.extend(get(3, "/healthz", &[]));
    stream.write_all(&requests).await.unwrap();
    let frames = frames_until(&mut stream, Duration::from_secs(5), |frames| {
        [1, 3]
            .iter()
            .all(|id| frames.iter().any(|f| f.kind == HEADERS && f.stream == *id))
    })
    .await;
    let status_block = |id: u32| {
        frames
            .iter()
            .find(|f| f.kind == HEADERS && f.stream == id)
            .map(|f| f.payload.clone())
            .unwrap_or_default()
    };
    // `:status: 200` is entry 8 of HPACK's static table; 431 is not there, so the server
    // sends it as a literal with that entry's name: 0x48, then "431" Huffman-coded.
    assert_eq!(status_block(1)[..5], [0x48, 0x83, 0x69, 0x90, 0xff], "431");
    assert_eq!(status_block(3)[0], 0x88, "200");
    // Closing the connections ends their streams, which no window would ever let finish.
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn an_http2_client_that_answers_no_ping_is_closed() {
    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(1);
    config.write_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;
    // No request open, so only keep-alive can end it (a stalled response would end it sooner).
    let (mut stream, _) = connect_with_zero_window(server.addr).await;
    let sent = Instant::now();
    // Silent for HEADER_READ_TIMEOUT_SECS, the client is pinged; unanswered for
    // WRITE_TIMEOUT_SECS, the connection is closed.
    let frames = frames_until(&mut stream, Duration::from_secs(6), |_| false).await;
    let closed = sent.elapsed();
    assert!(
        frames.iter().any(|f| f.kind == PING && f.flags & ACK == 0),
        "the server pings"
    );
    assert!(
        closed < Duration::from_secs(4),
        "closed within the two timeouts and a margin, not after {closed:?}"
    );
    assert!(
        closed >= Duration::from_millis(1900),
        "not before: {closed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_http2_client_that_answers_pings_but_never_opens_its_window_is_closed() {
    // What a real HTTP/2 library does: it answers every ping, so keep-alive never fails; but it
    // never takes any of the answers.
    let mut config = test_config();
    config.header_read_timeout = Duration::from_secs(1);
    config.write_timeout = Duration::from_secs(2);
    let server = RunningServer::start(config).await;
    let (mut stream, _) = connect_with_zero_window(server.addr).await;
    let mut requests = Vec::new();
    for n in 0..10 {
        requests.extend(get(2 * n + 1, "/api/v1/books", &[]));
    }
    stream.write_all(&requests).await.unwrap();
    let sent = Instant::now();
    let mut pings_answered = 0;
    let closed = loop {
        let left = Duration::from_secs(10).saturating_sub(sent.elapsed());
        match tokio::time::timeout(left, read_frame(&mut stream)).await {
            Ok(Some(f)) if f.kind == PING && f.flags & ACK == 0 => {
                stream
                    .write_all(&frame(PING, ACK, 0, &f.payload))
                    .await
                    .unwrap();
                pings_answered += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) => break sent.elapsed(),
            Err(_) => panic!("still open after 10 s, {pings_answered} pings answered"),
        }
    };
    assert!(pings_answered >= 1, "the server pinged and was answered");
    // Stalled after WRITE_TIMEOUT_SECS; noticed at the latest at the next ping.
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(5)).contains(&closed),
        "closed after {closed:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_http2_client_that_stops_reading_with_its_window_open_is_cut_off() {
    const STREAMS: u32 = 8;
    let data = many_books(20_000);
    let mut config = test_config();
    config.data_dir = data.path().to_owned();
    // Late enough that no ping closes the connection first.
    config.header_read_timeout = Duration::from_secs(30);
    config.write_timeout = Duration::from_secs(1);
    let server = RunningServer::start(config).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut stream, _) = handshake(stream, 0x7fff_ffff).await;
    // Open the connection's window wide too: only TCP can hold the server back now.
    let mut requests = frame(WINDOW_UPDATE, 0, 0, &0x7fff_0000u32.to_be_bytes());
    for n in 0..STREAMS {
        requests.extend(get(2 * n + 1, "/api/v1/books", &[]));
    }
    stream.write_all(&requests).await.unwrap();
    // Time for the eight lists to be built and the buffers to fill, and for the write deadline.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let started = Instant::now();
    let frames = frames_until(&mut stream, Duration::from_secs(10), |_| false).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the connection ends"
    );
    let body_bytes: usize = frames
        .iter()
        .filter(|f| f.kind == DATA)
        .map(|f| f.payload.len())
        .sum();
    let one_list = std::fs::metadata(data.path().join("books.json"))
        .unwrap()
        .len() as usize;
    assert!(
        body_bytes < STREAMS as usize * one_list / 2,
        "the server gave up long before sending all {STREAMS} lists ({body_bytes} bytes)"
    );
    server.stop().await;
}

/// The reported attack: one h2c connection, 200 streams listing every book, a zero window, no
/// PING ever answered. The server must neither grow without bound nor hold the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_reads_nothing_cannot_pin_memory() {
    const BOOKS: usize = 100_000;
    const STREAMS: u32 = 200;
    const GROWTH_BOUND: u64 = 64 * 1024 * 1024;
    let data = many_books(BOOKS);
    let server = ServerProcess::start(&[
        ("DATA_DIR", data.path().to_str().unwrap()),
        ("HEADER_READ_TIMEOUT_SECS", "2"),
        ("WRITE_TIMEOUT_SECS", "2"),
    ]);
    let pid = server.child.id();
    let addr: SocketAddr = server.address.parse().unwrap();
    let baseline = rss_bytes(pid);

    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let (mut stream, _) = connect_with_zero_window(addr).await;
    let mut requests = Vec::new();
    for n in 0..STREAMS {
        requests.extend(get(2 * n + 1, "/api/v1/books", &[]));
    }
    stream.write_all(&requests).await.unwrap();
    let sent = Instant::now();
    // Reading opens no window: the server still cannot send a byte of any body.
    let frames = frames_until(&mut stream, Duration::from_secs(20), |_| false).await;
    let closed = sent.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    let refused = frames
        .iter()
        .filter(|f| f.kind == RST_STREAM && reset_code(f) == REFUSED_STREAM)
        .count();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    eprintln!(
        "attack: baseline {:.1} MiB, peak {:.1} MiB, closed after {closed:?}, {refused} streams refused",
        mib(baseline),
        mib(peak),
    );
    assert_eq!(refused, 100, "streams over the limit of 100 are refused");
    assert!(
        closed < Duration::from_secs(8),
        "closed within the two timeouts and a margin, not after {closed:?}"
    );
    assert!(
        peak - baseline < GROWTH_BOUND,
        "RSS grew by {:.1} MiB (from {:.1} MiB); the bound is {:.0} MiB",
        mib(peak - baseline),
        mib(baseline),
        mib(GROWTH_BOUND)
    );
    // And the server is fine afterwards.
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    probe.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
