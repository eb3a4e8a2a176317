//! monolith: one REST API server for books, an auction bid tracker, an authenticated echo and a
//! read-only things catalogue, with Swagger UI and operations endpoints.
//!
//! Layout: `config` reads the environment; `store` holds the data behind async traits; `routes`
//! has one module per API; `error` and `extract` make every failure an RFC 9457 problem;
//! `json` reads records only from JSON objects; `openapi` finishes the generated document;
//! `telemetry` sets up logs and `metrics` the Prometheus registry; `middleware` stacks the
//! layers every request passes through; `edge` holds the security headers, CORS and rate limiting, `conn` the connection limits below HTTP, `tls` the HTTPS
//! set-up; `healthcheck` is the container probe; `idempotency` applies `Idempotency-Key` to
//! the creating POSTs. [`app`] builds the router and [`serve`] runs
//! it; `main.rs` only wires them to the process.

pub mod config;
pub mod conn;
pub mod edge;
pub mod error;
pub mod extract;
pub mod healthcheck;
pub mod idempotency;
pub mod json;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod store;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum_server::Handle;
use axum_server::accept::DefaultAcceptor;
use axum_server::tls_rustls::RustlsAcceptor;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder as HttpBuilder;
use tokio::net::TcpListener;

pub use config::Config;
use config::TlsMode;
pub use metrics::Metrics;
pub use middleware::with_middleware;
pub use store::Store;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// The data.
    pub store: Store,
    /// True from start-up until shutdown begins; `/readyz` reports it.
    pub ready: Arc<AtomicBool>,
    /// This app's Prometheus registry.
    pub metrics: Metrics,
    /// What the item feeds share: their cap and the signal that ends them at shutdown.
    pub feeds: Arc<routes::feeds::FeedGate>,
}

impl AppState {
    /// State for a server whose data is loaded, so it starts ready.
    pub fn new(config: Config, store: Store) -> Self {
        let metrics = Metrics::new();
        if let Some(collector) = store.collector() {
            metrics.register(collector);
        }
        let feeds = Arc::new(routes::feeds::FeedGate::new(&config.feeds, &metrics));
        Self {
            config: Arc::new(config),
            store,
            ready: Arc::new(AtomicBool::new(true)),
            metrics,
            feeds,
        }
    }
}

/// The whole application: every route behind the middleware stack.
pub fn app(state: AppState) -> Router {
    let mut api = routes::router(&state.config.api_prefix).layer(
        axum::middleware::from_fn_with_state(state.clone(), idempotency::idempotent_posts),
    );
    if let Some(limit) = state.config.rate_limit {
        api = edge::with_rate_limit(api, limit);
    }
    let router = api.merge(routes::ops::router());
    with_middleware(router, &state.config, &state.metrics).with_state(state)
}

/// Most streams one HTTP/2 connection may have open at once; more are refused (RST_STREAM
/// REFUSED_STREAM), which bounds what one connection can make the server hold.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Largest HTTP/2 request header list, as HTTP/2 counts it (names, values and 32 bytes per
/// field); a larger one is answered 431.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// Serves `state`'s app on `listener` until `shutdown` completes, then stops accepting
/// connections, lets in-flight requests finish, and returns.
///
/// Speaks HTTPS (HTTP/1.1 and HTTP/2 by ALPN) when the configuration asks for it, re-reading
/// certificate files on SIGHUP. Hostile clients are bounded (see [`conn`]): a new connection
/// must speak within `HEADER_READ_TIMEOUT_SECS` (the TLS handshake included), and an HTTP/1
/// client must send each request's headers within it too (slowloris); a client that stops
/// reading is cut off after `WRITE_TIMEOUT_SECS`, and so is one whose response has waited that
/// long for it to take the next frame; an HTTP/2 connection silent for
/// `HEADER_READ_TIMEOUT_SECS` is pinged and closed if the ping goes unanswered for
/// `WRITE_TIMEOUT_SECS`; and at most `MAX_CONNECTIONS` connections are open.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::clone(&state.config);
    let tls = tls::load(&config.tls, &state.metrics).await?;
    let listener = listener.into_std()?;
    let handle = Handle::new();
    // Requests cannot outlive the request timeout, nor header reads theirs: past both, with a
    // second's margin, nothing legitimate is left to wait for.
    let grace = config
        .request_timeout
        .max(config.header_read_timeout)
        .saturating_add(Duration::from_secs(1));
    let ready = Arc::clone(&state.ready);
    let feeds = Arc::clone(&state.feeds);
    let shutdown_handle = handle.clone();
    tokio::spawn(async move {
        // A signal sent before the server listens would be missed; wait until it does.
        shutdown_handle.listening().await;
        shutdown.await;
        ready.store(false, Ordering::Release);
        // Feeds never finish by themselves: ended now, they do not hold the shutdown up.
        feeds.close();
        tracing::info!("shutting down: finishing in-flight requests");
        shutdown_handle.graceful_shutdown(Some(grace));
    });

    let deadlines = conn::Deadlines {
        first_byte: config.header_read_timeout,
        write: config.write_timeout,
    };
    let cap = conn::connection_cap(config.max_connections);
    let state_metrics = state.metrics.clone();
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum_server::from_tcp(listener)?.handle(handle);
    match tls {
        None => {
            let mut server = server.acceptor(conn::Guard::new(DefaultAcceptor, deadlines, cap));
            limit_connections(server.http_builder(), &config);
            server.serve(service).await
        }
        Some(tls_config) => {
            if let TlsMode::Files { cert, key } = &config.tls {
                tls::reload_on_sighup(
                    tls_config.clone(),
                    cert.clone(),
                    key.clone(),
                    state_metrics.clone(),
                )?;
            }
            // The guard wraps the TLS acceptor, so it sees decrypted bytes; the handshake gets
            // the header timeout rather than axum-server's fixed 10 seconds.
            let tls_acceptor =
                RustlsAcceptor::new(tls_config).handshake_timeout(config.header_read_timeout);
            let mut server = server.acceptor(conn::Guard::new(tls_acceptor, deadlines, cap));
            limit_connections(server.http_builder(), &config);
            server.serve(service).await
        }
    }
}

/// hyper's own limits: the HTTP/1 header timeout (slowloris; it also closes keep-alive
/// connections idle that long), and HTTP/2's stream and header-list bounds and keep-alive
/// pings. hyper never writes to a stream whose flow-control window is 0, so no write blocks
/// there: an unanswered ping, or the stalled-response deadline in [`conn`] for a client that
/// answers pings, is what closes such a connection.
fn limit_connections(builder: &mut HttpBuilder<TokioExecutor>, config: &Config) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE)
        .keep_alive_interval(config.header_read_timeout)
        .keep_alive_timeout(config.write_timeout);
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
