//! Live feeds on PostgreSQL: events are made by the triggers of `migrations/0004_feeds.sql` in
//! the transaction of their change; each replica LISTENs on its schema's channel
//! (`feed_channel()`) on a connection of its own and hands what it hears to its [`FeedHub`]. PostgreSQL delivers notifications in
//! commit order, and an item's events commit in id order (see the migration), so every replica
//! sends an item's events in the same order.
//!
//! A feed subscribes before it reads the item's state, so nothing committed after that read is
//! missed; what it read is skipped when heard again. When the listening connection is lost,
//! feeds wait (new ones are refused 503) until it is back; then every item with feeds is read
//! again from where its feeds were, which sends what was missed meanwhile, or `reload` if that
//! is no longer kept, or `item_deleted`.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;

use super::PostgresStore;
use super::error::{Context, store_error};
use super::pool::Settle;
use crate::store::feed::{self, EventKind, FeedEvent, FeedHub, FeedOpening};
use crate::store::{Bid, StoreError, Version};

/// Wait between attempts to listen again after the connection was lost.
const RELISTEN_BACKOFF: Duration = Duration::from_secs(1);

/// The listening side of one replica: its hub and whether it is listening now.
#[derive(Debug)]
pub(super) struct Feeds {
    pub(super) hub: Arc<FeedHub>,
    listening: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
}

impl Feeds {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            hub: FeedHub::new(),
            listening: watch::channel(false).0,
            task: std::sync::Mutex::new(None),
        })
    }
}

/// An item's state and its events after a point, read in one statement (one snapshot).
struct Reading {
    floor: u64,
    latest: u64,
    winning: Option<Bid>,
    bid_count: usize,
    after: Vec<Arc<FeedEvent>>,
}

type ReadingRow = (
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

/// `item`'s state, and its kept events with an id above `after` (none when `None`); `None` if
/// the item does not exist.
async fn read(
    conn: &mut PgConnection,
    item: &str,
    after: Option<u64>,
) -> Result<Option<Reading>, sqlx::Error> {
    let after = after.map_or(i64::MAX, |id| i64::try_from(id).unwrap_or(i64::MAX));
    let rows: Vec<ReadingRow> = sqlx::query_as(
        "SELECT i.events_floor, (SELECT count(*) FROM bids b WHERE b.item_id = i.id), \
                w.id, w.user_id, w.value, \
                (SELECT max(e.id) FROM item_events e WHERE e.item_id = i.id), \
                e.id, e.kind, e.data \
         FROM items i \
         LEFT JOIN LATERAL (SELECT b.id, b.user_id, b.value FROM bids b WHERE b.item_id = i.id \
                            ORDER BY b.value DESC, b.seq LIMIT 1) w ON true \
         LEFT JOIN item_events e ON e.item_id = i.id AND e.id > $2 \
         WHERE i.id = $1 \
         ORDER BY e.id",
    )
    .bind(item)
    .bind(after)
    .fetch_all(conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let floor = first.0 as u64;
    let winning = match (&first.2, &first.3, first.4) {
        (Some(id), Some(user), Some(value)) => Some(Bid {
            id: id.clone(),
            item: item.to_owned(),
            value,
            user: user.clone(),
            version: Version::default(),
        }),
        _ => None,
    };
    let after = rows
        .iter()
        .filter_map(|row| match (row.6, &row.7, &row.8) {
            (Some(id), Some(kind), Some(data)) => {
                let kind = EventKind::parse(kind)?;
                Some(Arc::new(FeedEvent {
                    id: id as u64,
                    kind,
                    data: feed::rewrite(kind, data)?,
                }))
            }
            _ => None,
        })
        .collect();
    Ok(Some(Reading {
        floor,
        latest: first.5.map_or(floor, |id| id as u64),
        winning,
        bid_count: first.1 as usize,
        after,
    }))
}

impl Reading {
    fn state(&self, item: &str, kind: EventKind, id: u64) -> FeedEvent {
        FeedEvent {
            id,
            kind,
            data: feed::state_data(item, self.winning.as_ref(), self.bid_count),
        }
    }
}

impl PostgresStore {
    /// Opens a feed of `item` (see [`crate::store::Backend::open_feed`]).
    pub(super) async fn open_item_feed(
        &self,
        item: &str,
        last_event: Option<u64>,
    ) -> Result<FeedOpening, StoreError> {
        let _timer = self.timer("open_feed");
        self.wait_until_listening().await?;
        // Subscribed first: whatever commits after the read below is heard.
        let live = self.feeds.hub.subscribe(item);
        let mut conn = self.conn().await?;
        let reading = read(&mut conn, item, last_event)
            .await
            .settle(&mut conn)
            .map_err(|e| store_error(e, Context::PLAIN))?
            .ok_or_else(|| StoreError::NotFound(format!("item {item}")))?;
        let (first, through) = feed::opening_events(
            last_event,
            &reading.after,
            reading.floor,
            reading.latest,
            |kind, id| reading.state(item, kind, id),
        );
        Ok(FeedOpening {
            first,
            through,
            live,
        })
    }

    /// Starts the task that hears feed events; it ends with [`PostgresStore::stop_listening`].
    pub(super) fn start_listening(&self, options: PgConnectOptions) {
        let task = tokio::spawn(self.clone().listen_for_feed_events(options));
        *self
            .feeds
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task.abort_handle());
    }

    /// Stops hearing feed events (at shutdown).
    pub(super) fn stop_listening(&self) {
        let task = self
            .feeds
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
        self.feeds.listening.send_replace(false);
    }

    async fn wait_until_listening(&self) -> Result<(), StoreError> {
        let mut listening = self.feeds.listening.subscribe();
        let wait = listening.wait_for(|listening| *listening);
        match tokio::time::timeout(self.acquire_timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StoreError::Unavailable(
                "not listening for feed events".to_owned(),
            )),
        }
    }

    /// Listens for feed events until the process ends, connecting again whenever the
    /// connection is lost; runs as a task of its own.
    pub(super) async fn listen_for_feed_events(self, options: PgConnectOptions) {
        // A pool of one that opens its connection when the listener asks for it.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        loop {
            match self.listen_once(&pool).await {
                Ok(()) => tracing::warn!("lost the feed events connection; listening again"),
                Err(e) => tracing::warn!(
                    error = %store_error(e, Context::PLAIN),
                    "cannot listen for feed events; trying again"
                ),
            }
            self.feeds.listening.send_replace(false);
            tokio::time::sleep(RELISTEN_BACKOFF).await;
        }
    }

    /// One connection's worth of listening: returns when it is lost.
    async fn listen_once(&self, pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
        let channel: String = sqlx::query_scalar("SELECT feed_channel()")
            .fetch_one(pool)
            .await?;
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(&channel).await?;
        self.feeds.listening.send_replace(true);
        // Listening now: anything missed while not is in the table.
        for (item, last_id) in self.feeds.hub.items() {
            self.catch_up(&item, last_id).await;
        }
        while let Some(notification) = listener.try_recv().await? {
            if let Some((item, event)) = parse(notification.payload()) {
                self.feeds.hub.publish(item, Arc::new(event));
            }
        }
        Ok(())
    }

    /// Sends `item`'s feeds the events after `last_id` they missed, or `reload` when those are
    /// no longer all kept, or `item_deleted` when the item is gone.
    async fn catch_up(&self, item: &str, last_id: u64) {
        let reading = match self.conn().await {
            Ok(mut conn) => read(&mut conn, item, Some(last_id)).await.settle(&mut conn),
            Err(e) => {
                tracing::warn!(error = %e, item, "cannot catch up a feed");
                return;
            }
        };
        let events = match reading {
            Ok(Some(reading)) => {
                feed::opening_events(
                    Some(last_id),
                    &reading.after,
                    reading.floor,
                    reading.latest,
                    |kind, id| reading.state(item, kind, id),
                )
                .0
            }
            Ok(None) => vec![feed::deleted_after(last_id, item)],
            Err(e) => {
                tracing::warn!(error = %store_error(e, Context::PLAIN), item, "cannot catch up a feed");
                return;
            }
        };
        for event in events {
            self.feeds.hub.publish(item, event);
        }
    }
}

/// A notification's item and event: `item \n id \n kind \n data`.
fn parse(payload: &str) -> Option<(&str, FeedEvent)> {
    let mut parts = payload.splitn(4, '\n');
    let item = parts.next()?;
    let id = parts.next()?.parse().ok()?;
    let kind = EventKind::parse(parts.next()?)?;
    let data = feed::rewrite(kind, parts.next()?)?;
    Some((item, FeedEvent { id, kind, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_names_its_item_and_carries_its_event() {
        let data = r#"{"bid_id":"bid1","bid":{"item":"item7","value":5.0,"user":"user1"}}"#;
        let payload = format!("item7\n42\nbid\n{data}");
        let (item, event) = parse(&payload).unwrap();
        assert_eq!(item, "item7");
        assert_eq!(event.id, 42);
        assert_eq!(event.kind, EventKind::Bid);
        assert_eq!(event.data, data);
        assert!(parse("item7\nx\nbid\n{}").is_none());
        assert!(parse("item7\n1\nnonsense\n{}").is_none());
    }
}
