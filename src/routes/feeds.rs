//! The live feed of an item: `GET /items/{item_id}/events`, Server-Sent Events.
//!
//! A feed sends the item's state, or the events after the client's `Last-Event-ID`, then each
//! event as the store makes it (see `store/feed.rs`). What bounds it: at most `FEED_MAX_OPEN`
//! feeds are open (more are 503 with `Retry-After`); a reader that falls [`FEED_BUFFER`] events
//! behind is caught up from the item's kept history, or sent `reload`; one that stops reading
//! is cut off with its connection after `WRITE_TIMEOUT_SECS` (see `conn.rs`); a comment line
//! every `FEED_HEARTBEAT_SECS` keeps proxies from closing a quiet feed; and every feed ends as
//! soon as shutdown begins, so none holds shutdown up.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::config::FeedConfig;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::metrics::Metrics;
use crate::routes::items::{ItemPath, TAG};
use crate::routes::path_id;
use crate::store::StoreError;
#[cfg(doc)]
use crate::store::feed::FEED_BUFFER;
use crate::store::feed::{self, EventKind, FeedEvent, FeedOpening, Subscription};

/// The feed route, with its OpenAPI operation.
pub fn routes() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![routes!(item_events)]
}

/// How long a client refused at the cap is asked to wait.
const FULL_RETRY_SECS: u64 = 5;

/// What every feed shares: the cap, the shutdown signal, the heartbeat and the metrics.
pub struct FeedGate {
    permits: Arc<Semaphore>,
    closing: watch::Sender<bool>,
    heartbeat: Duration,
    open: IntGauge,
    sent: IntCounter,
}

impl FeedGate {
    /// A gate for `config`'s feeds, its metrics registered in `metrics`.
    pub fn new(config: &FeedConfig, metrics: &Metrics) -> Self {
        let open =
            IntGauge::new("monolith_feeds_open", "Item feeds open now").expect("valid metric");
        let sent = IntCounter::new(
            "monolith_feed_events_sent_total",
            "Events sent to item feeds (heartbeats not counted)",
        )
        .expect("valid metric");
        metrics.register(Box::new(open.clone()));
        metrics.register(Box::new(sent.clone()));
        Self {
            permits: Arc::new(Semaphore::new(config.max_open)),
            closing: watch::channel(false).0,
            heartbeat: config.heartbeat,
            open,
            sent,
        }
    }

    /// Ends every feed and refuses new ones: shutdown has begun.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn admit(&self) -> Result<Admitted, ApiError> {
        if *self.closing.borrow() {
            return Err(ApiError::Unavailable(
                "the server is shutting down".to_owned(),
            ));
        }
        let permit = Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            ApiError::Busy(
                "every feed the server allows (FEED_MAX_OPEN) is open; try again later".to_owned(),
                FULL_RETRY_SECS,
            )
        })?;
        self.open.inc();
        Ok(Admitted {
            _permit: permit,
            open: self.open.clone(),
        })
    }
}

/// A feed's place under the cap, given back (and counted out) when the feed ends.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Live events of an item
///
/// Server-Sent Events (`text/event-stream`) of the item's auction, in the store's order, the
/// same on every replica. Each event has an `id:`, an `event:` and one line of JSON `data:`:
///
/// - `state`: sent first, `{"item_id", "winning_bid", "bid_count"}` (`winning_bid` in the
///   shape of `GET /bids/{id}`, or `null`);
/// - `bid` and `bid_deleted`: a bid placed or deleted, in the shape of `GET /bids/{id}`;
/// - `winner`: the winning bid changed, `{"item_id", "winning_bid"}`;
/// - `reload`: like `state`, when the events the client missed are no longer kept: start again
///   from it;
/// - `item_deleted`: the item was deleted; the last event.
///
/// A client that reconnects with `Last-Event-ID` gets every event it missed while the last
/// `FEED_HISTORY` of the item are kept, or `reload`. A quiet feed sends a comment line every
/// `FEED_HEARTBEAT_SECS`; feeds end when the server shuts down (reconnect). At most
/// `FEED_MAX_OPEN` feeds are open at once. Swagger UI waits for the whole answer, so it shows
/// nothing here; use `curl -N`.
#[utoipa::path(
    get,
    path = "/items/{item_id}/events",
    tag = TAG,
    params(
        ItemPath,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The `id:` of the last event received: the feed goes on after it",
            pattern = "^[0-9]{1,19}$"),
    ),
    responses(
        (status = 200, description = "The item's events, until it is deleted or the server shuts down",
            content_type = "text/event-stream", body = String,
            example = json!("event: state\nid: 17\ndata: {\"item_id\":\"item1\",\"winning_bid\":null,\"bid_count\":0}\n\n")),
        (status = 400, description = "`Last-Event-ID` is not an event id"),
        (status = 404, description = "No item has this id"),
        (status = 503, description = "Every feed the server allows is open, or the server is shutting down"),
    )
)]
pub async fn item_events(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<ItemPath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let item = path_id("item", path.item_id)?;
    let last_event = last_event_id(&headers)?;
    let admitted = state.feeds.admit()?;
    let opening = state.store.open_feed(&item, last_event).await?;
    let heartbeat = state.feeds.heartbeat;
    let reader = Reader {
        closing: state.feeds.closing.subscribe(),
        state,
        item,
        pending: opening.first.into(),
        through: opening.through,
        live: opening.live,
        ended: false,
        _admitted: admitted,
    };
    let sse = Sse::new(events(reader)).keep_alive(KeepAlive::new().interval(heartbeat));
    let mut response = sse.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // nginx (the compose file's balancer) would otherwise hold events back in its buffer.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    Ok(response)
}

/// The `Last-Event-ID` header as an event id; absent is `None`, anything else a 400.
fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        // What EventSource sends when no event had an id: the same as none.
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::BadRequest("Last-Event-ID must be the id of an event of this feed".to_owned())
    })
}

/// One open feed, from its first event to its last.
struct Reader {
    state: AppState,
    item: String,
    /// Events to send before listening again.
    pending: VecDeque<Arc<FeedEvent>>,
    /// The id the reader has been brought up to.
    through: u64,
    live: Subscription,
    closing: watch::Receiver<bool>,
    ended: bool,
    _admitted: Admitted,
}

fn events(reader: Reader) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(reader, |mut reader| async move {
        let event = reader.next().await?;
        reader.state.feeds.sent.inc();
        let sse = Event::default()
            .id(event.id.to_string())
            .event(event.kind.as_str())
            .data(event.data.as_str());
        Some((Ok(sse), reader))
    })
}

impl Reader {
    /// The next event to send; `None` when the feed ends (item deleted, shutdown).
    async fn next(&mut self) -> Option<Arc<FeedEvent>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.ended = event.kind == EventKind::ItemDeleted;
                return Some(event);
            }
            let received = tokio::select! {
                biased;
                _ = self.closing.wait_for(|closing| *closing) => return None,
                received = self.live.receiver.recv() => received,
            };
            match received {
                // Already sent (it was part of the opening), unless the hub says start over.
                Ok(event) if event.id <= self.through && event.kind != EventKind::Reload => {}
                Ok(event) => {
                    self.through = self.through.max(event.id);
                    self.pending.push_back(event);
                }
                Err(RecvError::Lagged(_)) => self.catch_up().await?,
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// This reader fell [`FEED_BUFFER`] events behind: it opens its feed again after the last
    /// event it was sent, as a client reconnecting with `Last-Event-ID` would.
    async fn catch_up(&mut self) -> Option<()> {
        match self
            .state
            .store
            .open_feed(&self.item, Some(self.through))
            .await
        {
            Ok(FeedOpening {
                first,
                through,
                live,
            }) => {
                self.live = live;
                self.pending.extend(first);
                self.through = through;
                Some(())
            }
            Err(StoreError::NotFound(_)) => {
                self.pending
                    .push_back(feed::deleted_after(self.through, &self.item));
                Some(())
            }
            Err(e) => {
                tracing::warn!(error = %e, item = %self.item, "a feed could not catch up; ended");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_is_a_number_or_nothing() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).unwrap(), None);
        headers.insert("last-event-id", HeaderValue::from_static(""));
        assert_eq!(last_event_id(&headers).unwrap(), None);
        headers.insert("last-event-id", HeaderValue::from_static("42"));
        assert_eq!(last_event_id(&headers).unwrap(), Some(42));
        headers.insert("last-event-id", HeaderValue::from_static("x1"));
        assert!(matches!(
            last_event_id(&headers),
            Err(ApiError::BadRequest(_))
        ));
    }
}
