//! The in-memory engine's side of live feeds: each item's recent events, kept for readers that
//! reconnect, and the events of the operation in progress, which the store hands to the
//! [`FeedHub`](crate::store::feed::FeedHub) before it lets go of the table's lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::feed::{EventKind, FeedEvent};
use crate::store::ids::NaturalId;

/// The events of every item, as far as they are kept.
#[derive(Debug)]
pub struct FeedLog {
    /// The next event's id. It starts at the clock's microseconds, so that ids go on growing
    /// across restarts and a `Last-Event-ID` from before one is older than every item's floor.
    next_id: u64,
    /// Most events kept per item (`FEED_HISTORY`).
    per_item: usize,
    /// Most events kept in all (the record cap): bounds memory however many items there are.
    in_all: usize,
    items: HashMap<NaturalId, History>,
    /// Every kept event's item by id, oldest first: what goes when `in_all` is reached.
    kept: BTreeMap<u64, NaturalId>,
    /// The current operation's events, for the hub.
    outbox: Vec<(String, Arc<FeedEvent>)>,
    /// Off while the seed loads: a seed is the starting state, not a stream of events.
    recording: bool,
}

#[derive(Debug, Default)]
struct History {
    /// Events with this id or lower are not kept (or came before the item).
    floor: u64,
    events: VecDeque<Arc<FeedEvent>>,
}

impl FeedLog {
    /// An empty log that keeps `in_all` events at most, not yet recording.
    pub fn new(in_all: usize) -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |since| since.as_micros() as u64);
        Self {
            next_id: micros.max(1),
            per_item: crate::config::DEFAULT_FEED_HISTORY,
            in_all,
            items: HashMap::new(),
            kept: BTreeMap::new(),
            outbox: Vec::new(),
            recording: false,
        }
    }

    /// Sets how many events are kept per item.
    pub fn keep_per_item(&mut self, events: usize) {
        self.per_item = events;
    }

    /// Starts or stops making events.
    pub fn record(&mut self, on: bool) {
        self.recording = on;
    }

    /// Whether events are being made.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// `item` was created: its history starts now.
    pub fn item_created(&mut self, item: &NaturalId) {
        let floor = self.next_id - 1;
        self.items.insert(
            item.clone(),
            History {
                floor,
                events: VecDeque::new(),
            },
        );
    }

    /// `item` was deleted: its feeds get their last event, and its history goes.
    pub fn item_deleted(&mut self, item: &NaturalId, data: String) {
        if let Some(history) = self.items.remove(item) {
            for event in history.events {
                self.kept.remove(&event.id);
            }
        }
        if self.recording {
            let event = self.next_event(EventKind::ItemDeleted, data);
            self.outbox.push((item.to_string(), event));
        }
    }

    /// Records an event of `item`.
    pub fn emit(&mut self, item: &NaturalId, kind: EventKind, data: impl FnOnce() -> String) {
        if !self.recording {
            return;
        }
        let event = self.next_event(kind, data());
        if let Some(history) = self.items.get_mut(item) {
            history.events.push_back(Arc::clone(&event));
            self.kept.insert(event.id, item.clone());
            if history.events.len() > self.per_item
                && let Some(dropped) = history.events.pop_front()
            {
                history.floor = dropped.id;
                self.kept.remove(&dropped.id);
            }
            self.trim();
        }
        self.outbox.push((item.to_string(), event));
    }

    /// Drops the oldest kept events, whatever their item, until at most `in_all` are kept.
    fn trim(&mut self) {
        while self.kept.len() > self.in_all {
            let Some((id, item)) = self.kept.pop_first() else {
                return;
            };
            // An item's events are kept oldest first, so the oldest of all is its first.
            if let Some(history) = self.items.get_mut(&item) {
                history.events.pop_front();
                history.floor = id;
            }
        }
    }

    fn next_event(&mut self, kind: EventKind, data: String) -> Arc<FeedEvent> {
        let id = self.next_id;
        self.next_id += 1;
        Arc::new(FeedEvent { id, kind, data })
    }

    /// `item`'s kept events, oldest first, and its floor.
    pub fn history(&self, item: &NaturalId) -> (Vec<Arc<FeedEvent>>, u64) {
        self.items
            .get(item)
            .map_or((Vec::new(), self.next_id - 1), |history| {
                (history.events.iter().cloned().collect(), history.floor)
            })
    }

    /// The current operation's events, in order, each with its item.
    pub fn take_outbox(&mut self) -> Vec<(String, Arc<FeedEvent>)> {
        std::mem::take(&mut self.outbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(log: &FeedLog, item: &str) -> (Vec<u64>, u64) {
        let (events, floor) = log.history(&NaturalId::new(item));
        (events.iter().map(|e| e.id).collect(), floor)
    }

    #[test]
    fn each_item_keeps_its_last_events_and_all_items_together_keep_a_bounded_number() {
        let mut log = FeedLog::new(5);
        log.keep_per_item(3);
        let (a, b) = (NaturalId::new("a"), NaturalId::new("b"));
        log.item_created(&a);
        log.item_created(&b);
        log.emit(&a, EventKind::Bid, String::new);
        assert!(
            log.take_outbox().is_empty(),
            "nothing is made before recording starts"
        );
        log.record(true);
        let start = log.next_id;
        for _ in 0..4 {
            log.emit(&a, EventKind::Bid, String::new);
        }
        assert_eq!(
            ids(&log, "a"),
            (vec![start + 1, start + 2, start + 3], start)
        );
        for _ in 0..3 {
            log.emit(&b, EventKind::Bid, String::new);
        }
        // Six kept, five allowed: a's oldest goes.
        assert_eq!(ids(&log, "a"), (vec![start + 2, start + 3], start + 1));
        assert_eq!(ids(&log, "b").0.len(), 3);
        assert_eq!(log.take_outbox().len(), 7);
        assert_eq!(log.kept.len(), 5, "exactly the events kept");
        // However many events one item gets, what is kept stays what its history holds.
        for _ in 0..1000 {
            log.emit(&b, EventKind::Bid, String::new);
        }
        assert_eq!(log.kept.len(), 5);
        assert_eq!(ids(&log, "b").0.len(), 3);
        assert_eq!(ids(&log, "a").0.len(), 2);
        log.take_outbox();
        log.item_deleted(&a, String::new());
        let deleted = log.take_outbox();
        assert_eq!(deleted[0].1.kind, EventKind::ItemDeleted);
        assert!(ids(&log, "a").0.is_empty());
        assert_eq!(
            log.kept.len(),
            3,
            "a deleted item's events are no longer counted"
        );
    }
}
