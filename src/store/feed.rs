//! Live feeds of items (`GET /items/{id}/events`): what an event is, and the hub that hands each
//! one to the feeds open on its item in this process.
//!
//! Events are made by the store inside the operation that causes them (a bid placed or deleted,
//! a winner changed, an item deleted), so an item's events are in the store's order. Ids grow
//! per item and are never reused, even across restarts of an in-memory store or an item deleted
//! and created again: a client's `Last-Event-ID` either names a point in its item's current
//! history or is older (then it gets `reload`). Each engine keeps the last `FEED_HISTORY` events
//! of every item for clients that reconnect; the memory engine publishes to the [`FeedHub`]
//! under its table lock, the PostgreSQL engine through `LISTEN` (so every replica sees every
//! event, in commit order).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::Bid;

/// Events a feed buffers for a reader that has not taken them yet; a reader further behind is
/// skipped to a `reload` event (its buffer is shared with the item's other feeds, so a slow
/// reader costs nothing more).
pub const FEED_BUFFER: usize = 256;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The item's state when the feed opened: winning bid and bid count.
    State,
    /// The reader missed events that are no longer kept: its state now, to start again from.
    Reload,
    /// A bid was placed.
    Bid,
    /// A bid was deleted (alone, or with its user).
    BidDeleted,
    /// The winning bid changed (to `null` when the last bid went).
    Winner,
    /// The item was deleted: the last event of its feeds.
    ItemDeleted,
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Reload => "reload",
            Self::Bid => "bid",
            Self::BidDeleted => "bid_deleted",
            Self::Winner => "winner",
            Self::ItemDeleted => "item_deleted",
        }
    }

    /// The kind named `name`, as the database stores it.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::State,
            Self::Reload,
            Self::Bid,
            Self::BidDeleted,
            Self::Winner,
            Self::ItemDeleted,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

/// One event of one item's feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEvent {
    /// Its SSE `id:`; grows with each event of the item.
    pub id: u64,
    /// Its SSE `event:`.
    pub kind: EventKind,
    /// Its SSE `data:`, one line of JSON.
    pub data: String,
}

/// A bid in the original tracker's shape, as `GET /bids/{id}` sends it.
#[derive(Debug, Serialize, Deserialize)]
struct BidData {
    bid_id: String,
    bid: BidFields,
}

#[derive(Debug, Serialize, Deserialize)]
struct BidFields {
    item: String,
    value: f64,
    user: String,
}

impl From<&Bid> for BidData {
    fn from(bid: &Bid) -> Self {
        Self {
            bid_id: bid.id.clone(),
            bid: BidFields {
                item: bid.item.clone(),
                value: bid.value,
                user: bid.user.clone(),
            },
        }
    }
}

/// A `winner` event's data.
#[derive(Debug, Serialize, Deserialize)]
struct WinnerData {
    item_id: String,
    winning_bid: Option<BidData>,
}

/// A `state` or `reload` event's data.
#[derive(Debug, Serialize)]
struct StateData<'a> {
    item_id: &'a str,
    winning_bid: Option<BidData>,
    bid_count: usize,
}

/// An `item_deleted` event's data.
#[derive(Debug, Serialize)]
struct DeletedData<'a> {
    item_id: &'a str,
}

fn to_json(data: &impl Serialize) -> String {
    serde_json::to_string(data).expect("event data serializes")
}

/// A `bid` or `bid_deleted` event's data.
pub fn bid_data(bid: &Bid) -> String {
    to_json(&BidData::from(bid))
}

/// A `winner` event's data.
pub fn winner_data(item: &str, winning: Option<&Bid>) -> String {
    to_json(&WinnerData {
        item_id: item.to_owned(),
        winning_bid: winning.map(BidData::from),
    })
}

/// A `state` or `reload` event's data.
pub fn state_data(item: &str, winning: Option<&Bid>, bid_count: usize) -> String {
    to_json(&StateData {
        item_id: item,
        winning_bid: winning.map(BidData::from),
        bid_count,
    })
}

/// An `item_deleted` event's data.
pub fn deleted_data(item: &str) -> String {
    to_json(&DeletedData { item_id: item })
}

/// The `item_deleted` event a feed ends with when, catching up after event `last_id`, it finds
/// its item gone (with its history, so the store's own event is no longer there to send).
pub fn deleted_after(last_id: u64, item: &str) -> Arc<FeedEvent> {
    Arc::new(FeedEvent {
        id: last_id + 1,
        kind: EventKind::ItemDeleted,
        data: deleted_data(item),
    })
}

/// `data` written by the database, as this module writes it (numbers as Rust writes them, so
/// `2000.0`, not `2000`): every replica and both engines send the same bytes. `None` if it is
/// not the data of a `kind` event.
pub fn rewrite(kind: EventKind, data: &str) -> Option<String> {
    match kind {
        EventKind::Bid | EventKind::BidDeleted => serde_json::from_str::<BidData>(data)
            .ok()
            .map(|d| to_json(&d)),
        EventKind::Winner => serde_json::from_str::<WinnerData>(data)
            .ok()
            .map(|d| to_json(&d)),
        EventKind::ItemDeleted | EventKind::State | EventKind::Reload => Some(data.to_owned()),
    }
}

/// What a feed starts with, and the events after it.
pub struct FeedOpening {
    /// Sent first: the item's state, the events after the reader's `Last-Event-ID`, or a
    /// `reload` when those are no longer all kept.
    pub first: Vec<Arc<FeedEvent>>,
    /// The id `first` brings the reader up to: later events of `live` with an id this or lower
    /// are already in `first`.
    pub through: u64,
    /// The item's events from the moment before `first` was read.
    pub live: Subscription,
}

/// Where the first events of a feed come from, given the item's kept history.
///
/// `history` is the item's kept events after `last_event` at least, oldest first; `floor` the id
/// at or below which events are not kept (or predate the item); `latest` the item's last event's
/// id (`floor` if none is kept); `state` makes the item's state event with a given id.
pub fn opening_events(
    last_event: Option<u64>,
    history: &[Arc<FeedEvent>],
    floor: u64,
    latest: u64,
    state: impl FnOnce(EventKind, u64) -> FeedEvent,
) -> (Vec<Arc<FeedEvent>>, u64) {
    match last_event {
        None => (vec![Arc::new(state(EventKind::State, latest))], latest),
        Some(last) if last >= floor && last <= latest => (
            history
                .iter()
                .filter(|event| event.id > last)
                .cloned()
                .collect(),
            latest,
        ),
        Some(_) => (vec![Arc::new(state(EventKind::Reload, latest))], latest),
    }
}

/// The feeds open in this process, by item: one broadcast channel per item with a feed.
#[derive(Debug, Default)]
pub struct FeedHub {
    topics: Mutex<HashMap<String, Topic>>,
}

#[derive(Debug)]
struct Topic {
    sender: broadcast::Sender<Arc<FeedEvent>>,
    /// The highest id sent: an event again (a gap filled from the database) is not resent.
    last_id: u64,
}

impl FeedHub {
    /// A new hub with no feeds.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Starts receiving `item`'s events.
    pub fn subscribe(self: &Arc<Self>, item: &str) -> Subscription {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        let topic = topics.entry(item.to_owned()).or_insert_with(|| Topic {
            sender: broadcast::channel(FEED_BUFFER).0,
            last_id: 0,
        });
        Subscription {
            receiver: topic.sender.subscribe(),
            hub: Arc::clone(self),
            item: item.to_owned(),
        }
    }

    /// Hands `event` to `item`'s feeds, if it has any, unless one with its id or a higher one
    /// was handed before.
    pub fn publish(&self, item: &str, event: Arc<FeedEvent>) {
        let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(topic) = topics.get_mut(item)
            && event.id > topic.last_id
        {
            topic.last_id = event.id;
            if topic.sender.send(event).is_err() {
                topics.remove(item);
            }
        }
    }

    /// The items with feeds, each with the highest id handed to them.
    pub fn items(&self) -> Vec<(String, u64)> {
        let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        topics
            .iter()
            .map(|(item, topic)| (item.clone(), topic.last_id))
            .collect()
    }
}

/// One feed's receiving end; the item's channel goes when its last feed does.
#[derive(Debug)]
pub struct Subscription {
    /// The events, in order; a reader [`FEED_BUFFER`] behind gets `Lagged`.
    pub receiver: broadcast::Receiver<Arc<FeedEvent>>,
    hub: Arc<FeedHub>,
    item: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = self
            .hub
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // This subscription's receiver is still alive here: 1 means it was the last.
        if topics
            .get(&self.item)
            .is_some_and(|topic| topic.sender.receiver_count() <= 1)
        {
            topics.remove(&self.item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64) -> Arc<FeedEvent> {
        Arc::new(FeedEvent {
            id,
            kind: EventKind::Bid,
            data: String::new(),
        })
    }

    fn state(kind: EventKind, id: u64) -> FeedEvent {
        FeedEvent {
            id,
            kind,
            data: String::new(),
        }
    }

    fn ids(events: &[Arc<FeedEvent>]) -> Vec<(EventKind, u64)> {
        events.iter().map(|e| (e.kind, e.id)).collect()
    }

    #[test]
    fn a_reader_gets_what_it_missed_while_it_is_kept_and_a_reload_once_it_is_not() {
        let history = [event(11), event(12), event(13)];
        let open = |last| opening_events(last, &history, 10, 13, state);
        assert_eq!(ids(&open(None).0), [(EventKind::State, 13)]);
        assert_eq!(
            ids(&open(Some(10)).0),
            [
                (EventKind::Bid, 11),
                (EventKind::Bid, 12),
                (EventKind::Bid, 13)
            ]
        );
        assert_eq!(ids(&open(Some(12)).0), [(EventKind::Bid, 13)]);
        assert!(open(Some(13)).0.is_empty());
        assert_eq!(open(Some(12)).1, 13);
        // Older than what is kept, or not an id of this item's history at all.
        assert_eq!(ids(&open(Some(9)).0), [(EventKind::Reload, 13)]);
        assert_eq!(ids(&open(Some(14)).0), [(EventKind::Reload, 13)]);
        // No events yet: the floor is where the item's history starts.
        assert_eq!(ids(&opening_events(Some(10), &[], 10, 10, state).0), []);
        assert_eq!(
            ids(&opening_events(None, &[], 10, 10, state).0),
            [(EventKind::State, 10)]
        );
    }

    #[test]
    fn data_from_the_database_is_written_as_the_memory_engine_writes_it() {
        let bid = Bid {
            id: "bid3".to_owned(),
            item: "item1".to_owned(),
            value: 2000.0,
            user: "user2".to_owned(),
            version: Default::default(),
        };
        let from_postgres =
            r#"{"bid_id" : "bid3", "bid" : {"item" : "item1", "value" : 2000, "user" : "user2"}}"#;
        assert_eq!(
            rewrite(EventKind::Bid, from_postgres).unwrap(),
            bid_data(&bid)
        );
        let winner = format!(r#"{{"item_id" : "item1", "winning_bid" : {from_postgres}}}"#);
        assert_eq!(
            rewrite(EventKind::Winner, &winner).unwrap(),
            winner_data("item1", Some(&bid))
        );
        assert_eq!(
            rewrite(
                EventKind::Winner,
                r#"{"item_id": "item1", "winning_bid": null}"#
            )
            .unwrap(),
            winner_data("item1", None)
        );
        assert!(rewrite(EventKind::Bid, "{}").is_none());
    }

    #[test]
    fn the_hub_sends_each_event_once_and_forgets_items_without_feeds() {
        let hub = FeedHub::new();
        hub.publish("i", event(1));
        let mut feed = hub.subscribe("i");
        hub.publish("i", event(2));
        hub.publish("i", event(2));
        hub.publish("j", event(3));
        assert_eq!(feed.receiver.try_recv().unwrap().id, 2);
        assert!(feed.receiver.try_recv().is_err());
        assert_eq!(hub.items(), [("i".to_owned(), 2)]);
        drop(feed);
        assert!(hub.items().is_empty());
    }
}
