//! Connection-level defences, below HTTP: every accepted connection is counted against a cap and
//! wrapped so that it must speak within a deadline and must read what it is sent.
//!
//! [`Guard`] is an axum-server acceptor. For HTTPS it wraps the TLS acceptor, so that its
//! checks see decrypted bytes: a client that completes the TLS handshake and then sends nothing
//! is as silent as one that sends nothing at all.
//!
//! - **First byte**: a connection must send enough for hyper to tell HTTP/1 from HTTP/2 within
//!   `HEADER_READ_TIMEOUT_SECS` of being accepted, or it is closed. Past that point hyper's own
//!   header timeout (HTTP/1) or keep-alive pings (HTTP/2) take over.
//! - **Write deadline**: a write that stays blocked (the client does not read and the socket
//!   buffers are full) for `WRITE_TIMEOUT_SECS` fails, which closes the connection.
//! - **Stalled responses**: a response body that has waited `WRITE_TIMEOUT_SECS` for the
//!   connection to take its next frame closes the connection. This is what catches an HTTP/2
//!   client that answers pings but never opens its flow-control window: hyper then writes
//!   nothing at all, so no write is ever blocked, yet the response makes no progress. A body
//!   that is waiting for data of its own (its poll returned `Pending`) is not stalled.
//! - **Cap**: at most `MAX_CONNECTIONS` connections are open. At the cap, a new connection
//!   displaces the oldest one with no request in flight (silent, or idle between requests: an
//!   idle HTTP/2 connection that answers pings would otherwise hold its place for ever); if
//!   every connection has a request in flight, the new one is closed at once.
//!
//! [`raise_fd_limit`] and [`connection_cap`] fit the cap to the process's file descriptors.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Response;
use axum_server::accept::Accept;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// File descriptors kept back from the cap for everything but client connections: the
/// listener, the runtime's epoll and event descriptors, standard streams, certificate reloads,
/// and connections accepted but not yet closed after being displaced. A running server uses
/// about a dozen.
pub const FD_RESERVE: u64 = 32;

/// What every HTTP/2 client sends first; until the bytes received differ from it, or are all
/// of it, hyper cannot tell which HTTP version the client speaks.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The per-connection time limits.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// How long after accept the client has to show which HTTP version it speaks.
    pub first_byte: Duration,
    /// How long one write may stay blocked.
    pub write: Duration,
}

/// An acceptor that counts connections against a cap and wraps each in [`GuardedIo`] and
/// [`Tracked`]; `inner` is the acceptor that runs first (plain, or the TLS handshake).
#[derive(Clone)]
pub struct Guard<A> {
    inner: A,
    deadlines: Deadlines,
    registry: Arc<Registry>,
}

impl<A> Guard<A> {
    /// Guards connections accepted by `inner`, at most `cap` of them at once.
    pub fn new(inner: A, deadlines: Deadlines, cap: usize) -> Self {
        Self {
            inner,
            deadlines,
            registry: Arc::new(Registry {
                cap: cap.max(1),
                open: Mutex::new(Open::default()),
            }),
        }
    }
}

impl<A, S> Accept<TcpStream, S> for Guard<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
    A::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = GuardedIo<A::Stream>;
    type Service = Tracked<A::Service>;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let first_byte_by = Instant::now() + self.deadlines.first_byte;
        let write_timeout = self.deadlines.write;
        let Some(mut slot) = Registry::admit(&self.registry) else {
            tracing::warn!(
                cap = self.registry.cap,
                "connection refused: every connection is in use (MAX_CONNECTIONS)"
            );
            // Dropping the stream closes it.
            return Box::pin(std::future::ready(Err(io::Error::other(
                "connection cap reached",
            ))));
        };
        let handshake = self.inner.accept(stream, service);
        Box::pin(async move {
            // The first-byte deadline counts from accept, so a slow TLS handshake uses it up;
            // and a connection can be displaced in the middle of its handshake.
            let (io, service) = tokio::select! {
                accepted = handshake => accepted?,
                () = slot.displaced() => return Err(displaced()),
            };
            let in_flight = Arc::clone(&slot.in_flight);
            let waiting = Arc::new(Waiting::default());
            Ok((
                GuardedIo::new(io, slot, first_byte_by, write_timeout, Arc::clone(&waiting)),
                Tracked {
                    inner: service,
                    in_flight,
                    waiting,
                },
            ))
        })
    }
}

/// The open connections, oldest first.
struct Registry {
    cap: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    connections: BTreeMap<u64, Entry>,
}

struct Entry {
    in_flight: Arc<AtomicUsize>,
    displace: oneshot::Sender<()>,
}

impl Registry {
    /// Registers a new connection, displacing the oldest one with no request in flight if the
    /// cap is reached; `None` if every open connection has one.
    fn admit(registry: &Arc<Self>) -> Option<Slot> {
        let mut open = registry.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.connections.len() >= registry.cap {
            let idle = open
                .connections
                .iter()
                .find(|(_, entry)| entry.in_flight.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(entry) = open.connections.remove(&idle) {
                // The receiver may be gone already if that connection is closing anyway.
                let _ = entry.displace.send(());
                tracing::debug!(
                    "connection cap reached: closed the oldest connection with no request in flight"
                );
            }
        }
        let id = open.next_id;
        open.next_id += 1;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (displace, displaced) = oneshot::channel();
        open.connections.insert(
            id,
            Entry {
                in_flight: Arc::clone(&in_flight),
                displace,
            },
        );
        Some(Slot {
            registry: Arc::clone(registry),
            id,
            in_flight,
            displaced,
        })
    }
}

/// One connection's place under the cap; freed on drop.
struct Slot {
    registry: Arc<Registry>,
    id: u64,
    /// Requests whose response is not finished yet.
    in_flight: Arc<AtomicUsize>,
    displaced: oneshot::Receiver<()>,
}

impl Slot {
    /// Ready once the connection has been displaced to make room for a newer one.
    fn poll_displaced(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // A connection is never displaced in the middle of a request; if it was chosen just as
        // one arrived, it goes once that request is answered.
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Poll::Pending;
        }
        Pin::new(&mut self.displaced).poll(cx).map(|_| ())
    }

    async fn displaced(&mut self) {
        std::future::poll_fn(|cx| self.poll_displaced(cx)).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .connections
            .remove(&self.id);
    }
}

fn displaced() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "displaced at the connection cap",
    )
}

/// A connection's byte stream with the first-byte and write deadlines applied.
pub struct GuardedIo<I> {
    io: I,
    slot: Slot,
    /// Bytes of the HTTP/2 preface matched so far, while the version is still unknown; with
    /// it, the deadline for the client to make it known.
    version_unknown: Option<(usize, Pin<Box<Sleep>>)>,
    write_timeout: Duration,
    /// Armed while a write is blocked.
    write_blocked: Option<Pin<Box<Sleep>>>,
    /// This connection's response bodies waiting for the connection to take a frame.
    waiting: Arc<Waiting>,
    /// Armed for when the longest-waiting body will have waited too long.
    stall_timer: Option<Pin<Box<Sleep>>>,
}

impl<I> GuardedIo<I> {
    fn new(
        io: I,
        slot: Slot,
        first_byte_by: Instant,
        write_timeout: Duration,
        waiting: Arc<Waiting>,
    ) -> Self {
        Self {
            io,
            slot,
            version_unknown: Some((0, Box::pin(tokio::time::sleep_until(first_byte_by)))),
            write_timeout,
            write_blocked: None,
            waiting,
            stall_timer: None,
        }
    }

    /// `Err` once a response has waited `WRITE_TIMEOUT_SECS` for the connection to take its
    /// next frame; otherwise arms a timer that wakes this connection when that would happen.
    ///
    /// Checked whenever the connection reads or writes: an HTTP/2 connection keeps reading
    /// (pings, if nothing else), so the check runs within a ping interval of the deadline.
    fn check_stalled(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(since) = self.waiting.oldest() else {
            self.stall_timer = None;
            return Ok(());
        };
        let deadline = since + self.write_timeout;
        let timer = self
            .stall_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            tracing::debug!("closing a connection whose client takes no more of a response");
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "a response made no progress within WRITE_TIMEOUT_SECS",
            ));
        }
        Ok(())
    }

    /// Follows hyper's HTTP version detection over the bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        let Some((matched, _)) = &mut self.version_unknown else {
            return;
        };
        let known = if bytes.is_empty() {
            // End of stream: hyper stops waiting too.
            true
        } else {
            let rest = &H2_PREFACE[*matched..];
            let n = bytes.len().min(rest.len());
            if bytes[..n] == rest[..n] {
                *matched += n;
                *matched == H2_PREFACE.len()
            } else {
                true
            }
        };
        if known {
            self.version_unknown = None;
        }
    }

    /// Runs one write-side operation, failing it once it has been blocked for too long.
    fn guard_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut I>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        I: Unpin,
    {
        if self.slot.poll_displaced(cx).is_ready() {
            return Poll::Ready(Err(displaced()));
        }
        if let Err(e) = self.check_stalled(cx) {
            return Poll::Ready(Err(e));
        }
        match op(Pin::new(&mut self.io), cx) {
            Poll::Ready(result) => {
                self.write_blocked = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let deadline = self
                    .write_blocked
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if deadline.as_mut().poll(cx).is_ready() {
                    tracing::debug!("closing a connection whose client stopped reading");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read nothing within WRITE_TIMEOUT_SECS",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for GuardedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.slot.poll_displaced(cx).is_ready() {
            return Poll::Ready(Err(displaced()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Err(e) = this.check_stalled(cx) {
                    return Poll::Ready(Err(e));
                }
                let late = match &mut this.version_unknown {
                    Some((_, deadline)) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if late {
                    tracing::debug!("closing a connection that did not speak in time");
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within HEADER_READ_TIMEOUT_SECS",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for GuardedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard_write(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard_write(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard_write(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .guard_write(cx, |io, cx| io.poll_shutdown(cx))
    }
}

/// A connection's service: it counts the connection's requests in flight (from the request
/// until its response body is done), which protect it from being displaced at the cap, and
/// tracks its response bodies so that a stalled one can close the connection.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
    waiting: Arc<Waiting>,
}

/// One request in flight; counted from the request until dropped with its response body (or
/// with the request, if it never got one).
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R, B> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R, Response = Response<B>>,
{
    type Response = Response<ProgressBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_flight = InFlight::start(&self.in_flight);
        TrackedFuture {
            response: self.inner.call(request),
            body_tracking: Some((Arc::clone(&self.waiting), in_flight)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Tracked`]: the response, its body tracked.
    pub struct TrackedFuture<F> {
        #[pin]
        response: F,
        body_tracking: Option<(Arc<Waiting>, InFlight)>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ProgressBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.response.poll(cx))?;
        let (waiting, in_flight) = this
            .body_tracking
            .take()
            .expect("a TrackedFuture is not polled after it completed");
        Poll::Ready(Ok(
            response.map(|body| ProgressBody::new(body, waiting, in_flight))
        ))
    }
}

/// A connection's response bodies that have a frame ready to go, or have not been asked for
/// their first one yet: each waits for the connection, not for data of its own.
#[derive(Debug, Default)]
pub struct Waiting {
    // A list, not a map: it holds one body on an HTTP/1 connection and at most
    // `H2_MAX_CONCURRENT_STREAMS` on HTTP/2, and it keeps its allocation between requests, where
    // a B-tree allocated a node each time it went from empty to not.
    since: Mutex<Vec<(u64, Instant)>>,
    next_id: AtomicU64,
}

impl Waiting {
    fn bodies(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Instant)>> {
        self.since.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Since when the longest-waiting body has waited.
    fn oldest(&self) -> Option<Instant> {
        self.bodies().iter().map(|&(_, since)| since).min()
    }

    fn wait(&self, id: u64) {
        self.bodies().push((id, Instant::now()));
    }

    fn stop_waiting(&self, id: u64) {
        let mut bodies = self.bodies();
        if let Some(at) = bodies.iter().position(|&(waiting, _)| waiting == id) {
            bodies.swap_remove(at);
        }
    }
}

/// A response body that records, in its connection's [`Waiting`], when it waits for the
/// connection to take its next frame.
pub struct ProgressBody<B> {
    inner: B,
    id: u64,
    waiting: Arc<Waiting>,
    _in_flight: InFlight,
}

impl<B> ProgressBody<B> {
    fn new(inner: B, waiting: Arc<Waiting>, in_flight: InFlight) -> Self {
        let id = waiting.next_id.fetch_add(1, Ordering::Relaxed);
        // Not asked for anything yet: hyper asks once the client can take data.
        waiting.wait(id);
        Self {
            inner,
            id,
            waiting,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for ProgressBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        this.waiting.stop_waiting(this.id);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &polled {
            this.waiting.wait(this.id);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ProgressBody<B> {
    fn drop(&mut self) {
        self.waiting.stop_waiting(self.id);
    }
}

/// Raises the soft limit on open files to the hard limit, and logs both. A failure is logged,
/// not fatal: the server can still run, with a lower connection cap.
pub fn raise_fd_limit() {
    let before = match rlimit::Resource::NOFILE.get() {
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the file-descriptor limit");
            return;
        }
    };
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the file-descriptor limit");
    }
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) => {
            tracing::info!(soft_before = before, soft, hard, "file-descriptor limit");
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the file-descriptor limit"),
    }
}

/// The connection cap in force: `configured`, lowered if need be so that the connections and
/// [`FD_RESERVE`] fit within the soft limit on open files. Logs a warning when it lowers it.
pub fn connection_cap(configured: usize) -> usize {
    let Ok((soft, _)) = rlimit::Resource::NOFILE.get() else {
        return configured;
    };
    let room = usize::try_from(soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            configured,
            max_connections = room,
            fd_limit = soft,
            "MAX_CONNECTIONS lowered to fit the file-descriptor limit"
        );
        room
    } else {
        configured
    }
}
