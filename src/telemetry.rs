//! Logging: the tracing subscriber (text or JSON lines on stdout) and the per-request access log.

use std::cell::RefCell;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::Response;
use std::net::SocketAddr;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::{Dispatch, Span};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, CorsOrigins, LogFormat, TlsMode};

/// The request-id header, set on every request and response.
pub const REQUEST_ID: &str = "x-request-id";

/// Lines the log writer may queue before a request thread waits for it.
const QUEUED_LINES: usize = 64 * 1024;

/// Installs the global subscriber, writing to stdout; `Err` if one is installed already.
///
/// Lines are written by a thread of their own, so that a request never waits on the stdout
/// lock or a `write` to it: the request thread formats its line and queues it, and the writer
/// sends whatever has queued up in one `write`. Nothing is dropped: when the queue is full a
/// request waits for room. Keep the returned guard until exit: dropping it writes what is left.
pub fn init(filter: &str, format: LogFormat) -> Result<LogWriterGuard, String> {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    // `try_init` also routes the `log` records of dependencies (rustls) into tracing.
    dispatch(filter, format, writer)?
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(LogWriterGuard(guard))
}

/// Keeps the log writer thread running; dropping it writes out the queued lines.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogWriterGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// The subscriber `init` installs, writing to `writer`: tests capture logs with it.
pub fn dispatch<W>(filter: &str, format: LogFormat, writer: W) -> Result<Dispatch, String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    // Colours only for a terminal: piped to a file or a collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_timer(SecondCachedTime)
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    Ok(match format {
        LogFormat::Text => Dispatch::new(builder.finish()),
        LogFormat::Json => Dispatch::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    })
}

/// The access-log layer: one span per request and one line when the response starts.
pub fn trace_layer()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), AccessLog, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_body_chunk(())
        .on_eos(())
        .on_response(AccessLog)
        .on_failure(())
}

/// Builds the request span from the method, the matched route template and the request id.
///
/// Never from the raw URI: the query string may carry a secret key, and raw paths make
/// unbounded log fields.
#[derive(Clone, Copy, Debug)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &Request<B>) -> Span {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        let request_id = request
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| address_text(addr));
        tracing::info_span!(
            "request",
            method = %request.method(),
            route,
            request_id,
            client = client.as_deref().unwrap_or("unknown"),
        )
    }
}

/// `addr` as `Display` writes it (`127.0.0.1:46026`), for IPv4 without the formatting machinery,
/// which cost as much as a tenth of the access span.
fn address_text(addr: &SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        return addr.to_string();
    };
    let mut text = String::with_capacity("255.255.255.255:65535".len());
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        text.push_str(digits.format(octet));
    }
    text.push(':');
    text.push_str(digits.format(v4.port()));
    text
}

/// tracing-subscriber's own timestamp (RFC 3339, UTC, microseconds), with the date and time of
/// day formatted once a second per thread rather than on every line, where it cost a tenth of
/// the access line.
#[derive(Clone, Copy, Debug, Default)]
struct SecondCachedTime;

thread_local! {
    /// The Unix second last formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS`.
    static FORMATTED_SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl FormatTime for SecondCachedTime {
    fn format_time(&self, w: &mut Writer<'_>) -> std::fmt::Result {
        let since_epoch = |now: std::time::SystemTime| {
            now.duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        };
        let now = since_epoch(std::time::SystemTime::now());
        FORMATTED_SECOND.with_borrow_mut(|(second, text)| {
            if *second == now.as_secs() {
                return write!(w, "{text}.{:06}Z", now.subsec_micros());
            }
            let mut full = String::new();
            SystemTime.format_time(&mut Writer::new(&mut full))?;
            // Cached only if the second did not turn while it was formatted.
            if since_epoch(std::time::SystemTime::now()).as_secs() == now.as_secs()
                && let Some((date_and_time, _)) = full.split_once('.')
            {
                *second = now.as_secs();
                date_and_time.clone_into(text);
            }
            w.write_str(&full)
        })
    }
}

/// Writes the access-log line: status and latency (the span adds method, route, request id and
/// client address).
#[derive(Clone, Copy, Debug)]
pub struct AccessLog;

impl<B> OnResponse<B> for AccessLog {
    fn on_response(self, response: &Response<B>, latency: Duration, _span: &Span) {
        // Whole microseconds: finer digits are noise and make the lines longer.
        let latency_ms = latency.as_micros() as f64 / 1000.0;
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms,
            "request handled"
        );
    }
}

/// Longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Middleware (a request map): removes a client's `x-request-id` unless it is sane (1–128
/// letters, digits and `-_.:`), so that a fresh id replaces it and logs never carry a client's
/// junk or injection.
pub fn drop_insane_request_id(mut request: Request) -> Request {
    let sane = request
        .headers()
        .get(REQUEST_ID)
        .map(|value| {
            let bytes = value.as_bytes();
            (1..=MAX_REQUEST_ID).contains(&bytes.len())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .unwrap_or(true);
    if !sane {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// The start-up line: where the server listens (API, docs and metrics URLs) and the effective
/// configuration, the secret key shown only as `[redacted]` or `unset`, and the store: `memory`, or
/// `postgres` with its URL, password replaced by `***`.
pub fn log_startup(config: &Config, local: SocketAddr) {
    let scheme = match config.tls {
        TlsMode::Off => "http",
        _ => "https",
    };
    let origin = format!("{scheme}://{local}");
    let tls = match &config.tls {
        TlsMode::Off => "off".to_owned(),
        TlsMode::Files { cert, .. } => format!("files ({})", cert.display()),
        TlsMode::SelfSigned => "self-signed".to_owned(),
    };
    let cors = match &config.cors {
        CorsOrigins::None => "off".to_owned(),
        CorsOrigins::Any => "*".to_owned(),
        CorsOrigins::List(origins) => origins
            .iter()
            .filter_map(|o| o.to_str().ok())
            .collect::<Vec<_>>()
            .join(","),
    };
    let rate_limit = config.rate_limit.map_or("off".to_owned(), |limit| {
        format!("{}/s, burst {}", limit.per_second, limit.burst)
    });
    // Only the redacted URL: the real one may carry the database password.
    let (store, database) = match &config.database {
        Some(database) => ("postgres", database.redacted_url.as_str()),
        None => ("memory", "none"),
    };
    tracing::info!(
        address = %local,
        api = %format!("{origin}{}", config.api_prefix),
        docs = %format!("{origin}{}/docs/", config.api_prefix),
        metrics = %format!("{origin}/metrics"),
        api_prefix = %config.api_prefix,
        data_dir = %config.data_dir.display(),
        log_format = ?config.log_format,
        log_filter = %config.log_filter,
        max_body_bytes = config.max_body_bytes,
        request_timeout_secs = config.request_timeout.as_secs(),
        header_read_timeout_secs = config.header_read_timeout.as_secs(),
        write_timeout_secs = config.write_timeout.as_secs(),
        max_connections = config.max_connections,
        secret_key = if config.secret_key.is_some() { "[redacted]" } else { "unset" },
        tls = %tls,
        cors = %cors,
        rate_limit = %rate_limit,
        store,
        database,
        "listening"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for addr in [
            "127.0.0.1:46026",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.4:80",
            "[::1]:8080",
            "[2001:db8::8a2e:370:7334]:443",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(address_text(&addr), addr.to_string());
        }
    }

    fn format(timer: impl FormatTime) -> String {
        let mut text = String::new();
        timer.format_time(&mut Writer::new(&mut text)).unwrap();
        text
    }

    #[test]
    fn cached_timestamps_are_tracing_subscribers_own() {
        let shape = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$").unwrap();
        // The first line of a second formats it whole; the next ones reuse it. Compared with
        // tracing-subscriber's own timestamp read just before: the same second unless it turned
        // in between, so a few tries make the test immune to that.
        let mut same_second = 0;
        for _ in 0..5 {
            // A stale second, which must not be reused.
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            FORMATTED_SECOND.set((secs - 1, "1999-01-01T00:00:00".to_owned()));
            let reference = format(SystemTime);
            let first = format(SecondCachedTime);
            let cached = format(SecondCachedTime);
            for text in [&first, &cached] {
                assert!(shape.is_match(text), "{text}");
            }
            if first[..19] == reference[..19] && cached[..19] == reference[..19] {
                same_second += 1;
            }
            assert!(cached >= first, "{first} then {cached}");
        }
        assert!(
            same_second >= 3,
            "cached seconds differed from the real ones"
        );
    }
}
