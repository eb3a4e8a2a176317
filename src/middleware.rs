//! The middleware stack every request passes through, and [`Around`], the layer monolith's own
//! middleware is written with.
//!
//! axum's `from_fn` middleware clones the whole service stack below it and boxes it and its
//! future on every request; with three of them, that was 13 allocations per request (callgrind).
//! [`Around`] does neither: `before` reads what it needs from the request, the inner service is
//! called directly, and `after` gets that back with the response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;

use crate::{Config, Metrics, edge, error, metrics, routes, telemetry};

/// Wraps `router` in the middleware every request passes through, outermost first: request id
/// (a client's insane one replaced), access log (with `X-Server-Key` marked sensitive), metrics,
/// CORS, security headers, problem details, panic catcher, body limit, timeout.
///
/// Public so that tests can put a router of their own (one with a panicking route, say) behind
/// exactly the production stack.
pub fn with_middleware<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    config: &Config,
    metrics: &Metrics,
) -> Router<S> {
    let metrics = metrics.clone();
    router.layer(
        ServiceBuilder::new()
            .map_request(telemetry::drop_insane_request_id)
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(SetSensitiveRequestHeadersLayer::new([
                HeaderName::from_static(routes::echo::KEY_HEADER),
            ]))
            .layer(telemetry::trace_layer())
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(Around::new(
                move |request: &Request| metrics.start(request),
                metrics::Timing::finish,
            ))
            .option_layer(edge::cors(&config.cors))
            .layer(Around::new(
                error::ProblemContext::of,
                |context: error::ProblemContext, response| {
                    edge::add_security_headers(context.render(response))
                },
            ))
            .layer(CatchPanicLayer::custom(error::panic_response))
            .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
            // tower-http's limit above is the one in force; axum's own 2 MB default would
            // otherwise cap a larger `MAX_BODY_BYTES`.
            .layer(DefaultBodyLimit::disable())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                config.request_timeout,
            )),
    )
}

/// Middleware from two functions: `before(&request)` runs before the inner service and its
/// result goes, with the response, to `after(context, response)`. If the request's future is
/// dropped unfinished, the context is dropped with it (so a guard in it sees that too).
#[derive(Clone, Copy, Debug)]
pub struct Around<B, A> {
    before: B,
    after: A,
}

impl<B, A> Around<B, A> {
    pub fn new(before: B, after: A) -> Self {
        Self { before, after }
    }
}

impl<S, B: Clone, A: Clone> Layer<S> for Around<B, A> {
    type Service = AroundService<S, B, A>;

    fn layer(&self, inner: S) -> Self::Service {
        AroundService {
            inner,
            before: self.before.clone(),
            after: self.after.clone(),
        }
    }
}

/// The service [`Around`] makes.
#[derive(Clone, Copy, Debug)]
pub struct AroundService<S, B, A> {
    inner: S,
    before: B,
    after: A,
}

impl<S, B, A, T, Body, Out> Service<Request> for AroundService<S, B, A>
where
    S: Service<Request, Response = Response<Body>>,
    B: Fn(&Request) -> T,
    A: Fn(T, Response<Body>) -> Out + Clone,
{
    type Response = Out;
    type Error = S::Error;
    type Future = AroundFuture<S::Future, A, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let context = (self.before)(&request);
        AroundFuture {
            inner: self.inner.call(request),
            after: Some((self.after.clone(), context)),
        }
    }
}

pin_project! {
    /// The response future of [`AroundService`].
    pub struct AroundFuture<F, A, T> {
        #[pin]
        inner: F,
        after: Option<(A, T)>,
    }
}

impl<F, A, T, E, Body, Out> Future for AroundFuture<F, A, T>
where
    F: Future<Output = Result<Response<Body>, E>>,
    A: Fn(T, Response<Body>) -> Out,
{
    type Output = Result<Out, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?;
        let (after, context) = this
            .after
            .take()
            .expect("an AroundFuture is not polled after it completed");
        Poll::Ready(Ok(after(context, response)))
    }
}
