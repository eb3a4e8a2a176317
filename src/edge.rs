//! The hardened edge: security headers, CORS and per-client rate limiting, as configured.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Method, Response};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response as AxumResponse};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::{CorsOrigins, RATE_RANGE, RateLimit};
use crate::error::ApiError;

/// The Content-Security-Policy of API responses: they are data, never a page to render or frame.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The Content-Security-Policy of the Swagger UI pages: everything from this origin only, with the
/// inline styles and `data:` images Swagger UI uses; no inline or foreign scripts.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers every response carries unless the route set its own: no sniffing, no referrer, no
/// framing, no caching.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, API_CSP),
    (header::CACHE_CONTROL, "no-store"),
];

/// Adds the security headers `response` lacks. One function rather than a layer per header:
/// every layer costs each request a move of the request and of the response future.
pub fn add_security_headers<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}

/// The docs pages' own policy and caching (revalidate each time, so a new binary's UI shows), and
/// their files decoded for clients that do not take gzip.
pub fn with_docs_headers<S: Clone + Send + Sync + 'static>(docs: Router<S>) -> Router<S> {
    docs.layer(axum::middleware::from_fn(gunzip_for_clients_without_gzip))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
}

/// Swagger UI's files are embedded gzipped (utoipa-swagger-ui's `gzip` feature: a binary ~3 MB
/// smaller, and browsers fetch a quarter of the bytes), and that crate answers them with
/// `Content-Encoding: gzip` whatever the request says; here a client that does not take gzip
/// gets them decoded.
async fn gunzip_for_clients_without_gzip(request: Request, next: Next) -> AxumResponse {
    let takes_gzip = accepts_gzip(request.headers());
    let mut response = next.run(request).await;
    if response.headers().get(header::CONTENT_ENCODING) != Some(&HeaderValue::from_static("gzip")) {
        return response;
    }
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if takes_gzip {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let decoded = async {
        let zipped = axum::body::to_bytes(body, usize::MAX).await?;
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut plain)?;
        anyhow::Ok(plain)
    };
    match decoded.await {
        Ok(plain) => {
            parts.headers.remove(header::CONTENT_ENCODING);
            parts.headers.remove(header::CONTENT_LENGTH);
            AxumResponse::from_parts(parts, Body::from(plain))
        }
        Err(error) => {
            ApiError::Internal(error.context("decoding a Swagger UI file")).into_response()
        }
    }
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): `gzip` (or `x-gzip`) with a
/// weight above 0, or else `*` with one; no header means identity only.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for item in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
    {
        let mut params = item.split(';');
        let coding = params.next().unwrap_or_default().trim();
        let weight_above_zero = params
            .filter_map(|param| {
                let (name, value) = param.split_once('=')?;
                name.trim().eq_ignore_ascii_case("q").then(|| value.trim())
            })
            .all(|q| q.parse::<f32>().is_ok_and(|q| q > 0.0));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(weight_above_zero);
        } else if coding == "*" {
            any = Some(weight_above_zero);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// CORS for the configured origins; `None` sends no CORS headers at all.
pub fn cors(origins: &CorsOrigins) -> Option<CorsLayer> {
    let allow_origin = match origins {
        CorsOrigins::None => return None,
        CorsOrigins::Any => AllowOrigin::from(Any),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                HeaderName::from_static("x-server-key"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([
                header::ETAG,
                header::LINK,
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("x-total-count"),
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Puts `router` behind a token bucket per client IP (the TCP peer's address); excess requests
/// get a 429 problem with `Retry-After`.
///
/// The peer address is used, not `X-Forwarded-For`, which any client can forge; behind a reverse
/// proxy every client shares the proxy's bucket, so rate-limit at the proxy there.
pub fn with_rate_limit<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    limit: RateLimit,
) -> Router<S> {
    // `Config` keeps both within `RATE_RANGE`; clamping keeps a hand-built `RateLimit` from
    // dividing by zero or rounding the period down to 0 ns, which governor cannot take.
    let per_second = limit.per_second.clamp(1, *RATE_RANGE.end());
    let config = GovernorConfigBuilder::default()
        .key_extractor(PeerIpKeyExtractor)
        .period(Duration::from_secs(1) / per_second)
        .burst_size(limit.burst.max(1))
        .finish()
        .expect("a period of at least 1 µs and a burst of at least 1 make a valid configuration");
    let limiter = Arc::new(config);
    let layer = GovernorLayer::<_, _, Body>::new(limiter).error_handler(|error| match error {
        tower_governor::GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::TooManyRequests(wait_time).into_response()
        }
        other => ApiError::Internal(anyhow::anyhow!("rate limiter: {other}")).into_response(),
    });
    router.layer(layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_is_taken_only_when_the_client_allows_it() {
        assert!(accepts(&["gzip, deflate, br"]));
        assert!(accepts(&["GZip;Q=0.5"]));
        assert!(accepts(&["x-gzip"]));
        assert!(accepts(&["br", "gzip;q=0.001"]));
        assert!(accepts(&["*"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip;q=0.0, *"]));
        assert!(!accepts(&["*;q=0"]));
        assert!(!accepts(&["gzip;q=nonsense"]));
    }
}
