//! The in-memory bid tracker: users, items and bids with the indexes that keep each item's
//! winning bid and each user's list of items right.
//!
//! Every change is O(log n) in the number of bids: bids are kept in placing order per item (one
//! ranked map keyed by item and placing number, so a page of an item's bids starts at any
//! offset in O(log n)) and in ranking order per item (highest value first, earliest first on a
//! tie), so an item's winner is the first of its ranking; each user keeps, per item, the placing
//! numbers of their bids, and the items in order of the user's first remaining bid. No
//! operation scans all bids.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::books::too_many;
use super::feeds::FeedLog;
use super::ordered::{self, RankedMap, natural_cursor, rank_after, read_chunk, read_positions};
use crate::store::feed::{self, EventKind, FeedEvent};
use crate::store::ids::{IdCounter, NaturalId, is_valid_id};
use crate::store::query::{ListQuery, Row, Value, as_rows};
use crate::store::records::auction::{AuctionSeed, seed_name};
use crate::store::{
    Bid, BidValue, Cursor, Item, Name, NewBid, Precondition, StoreError, Upsert, User, UserItems,
    Version,
};

#[derive(Debug)]
struct UserRecord {
    name: String,
    /// Placing numbers of this user's bids, per item.
    bids_by_item: HashMap<NaturalId, BTreeSet<u64>>,
    /// Items by the placing number of this user's first remaining bid on them.
    items_by_first_bid: BTreeMap<u64, NaturalId>,
    /// Moves when the user is renamed.
    version: u64,
}

#[derive(Debug)]
struct ItemRecord {
    name: String,
    /// The item's number in `AuctionTable::placements`: never reused, so a deleted item's
    /// number cannot pick up another item's bids.
    key: u64,
    /// Placing numbers, highest value first, then earliest placed: the first is the winner.
    ranking: BTreeSet<(Reverse<u64>, u64)>,
    /// Moves when the item is renamed and when a bid on it is placed or deleted.
    version: u64,
}

#[derive(Debug)]
struct BidRecord {
    item: NaturalId,
    user: NaturalId,
    value: BidValue,
    /// Placing number: later bids have higher ones.
    seq: u64,
}

/// A user as a list query sees it.
struct UserRow<'a>(&'a NaturalId, &'a UserRecord);

impl Row for UserRow<'_> {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Id(self.0.as_str()),
            _ => Value::Text(&self.1.name),
        }
    }
}

/// An item as a list query sees it, with its winning bid's id.
struct ItemRow<'a> {
    id: &'a NaturalId,
    record: &'a ItemRecord,
    winning: Option<&'a NaturalId>,
}

impl Row for ItemRow<'_> {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Id(self.id.as_str()),
            1 => Value::Text(&self.record.name),
            _ => self
                .winning
                .map_or(Value::Null, |id| Value::Id(id.as_str())),
        }
    }
}

/// A bid as a list query sees it.
struct BidRow<'a>(&'a NaturalId, &'a BidRecord);

impl Row for BidRow<'_> {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Id(self.0.as_str()),
            1 => Value::Id(self.1.item.as_str()),
            2 => Value::Id(self.1.user.as_str()),
            _ => Value::Number(self.1.value.get()),
        }
    }
}

fn user_view(id: &NaturalId, record: &UserRecord) -> User {
    User {
        id: id.to_string(),
        name: record.name.clone(),
        version: Version::of(record.version),
    }
}

/// The key of the last record a list sent, by its id.
fn resume_key<T>(from: &Cursor<T>, id: impl Fn(&T) -> &str) -> Option<NaturalId> {
    match from {
        Cursor::After(last) => Some(NaturalId::new(id(last))),
        Cursor::Offset(_) => None,
    }
}

/// Users, items and bids with their indexes: the rules, free of locks and I/O.
#[derive(Debug)]
pub struct AuctionTable {
    users: RankedMap<NaturalId, UserRecord>,
    items: RankedMap<NaturalId, ItemRecord>,
    bids: RankedMap<NaturalId, BidRecord>,
    /// Every bid's id by (item number, placing number): each item's bids in placing order.
    placements: RankedMap<(u64, u64), NaturalId>,
    user_ids: IdCounter,
    item_ids: IdCounter,
    bid_ids: IdCounter,
    next_seq: u64,
    next_item_key: u64,
    /// The most users, items, or bids the table may hold (each).
    max_records: usize,
    /// Bumped by every change: the last version handed out, and the three lists' version.
    changes: u64,
    /// The items' events, for their live feeds.
    feed: FeedLog,
}

/// A key whose order is the value's order: the bit patterns of positive finite floats sort as the
/// numbers do, and unlike `f64` they are `Ord`.
fn rank_key(value: BidValue) -> u64 {
    value.get().to_bits()
}

fn not_found(kind: &str, id: &str) -> StoreError {
    StoreError::NotFound(format!("{kind} {id}"))
}

impl AuctionTable {
    /// Builds the tables from a seed; `Err` names the first record that breaks a rule. Bids are
    /// placed in natural id order (`bid2` before `bid10`), which decides ties.
    pub fn from_seed(seed: AuctionSeed, max_records: usize) -> Result<Self, String> {
        let mut table = Self::new(max_records);
        table.feed.record(false);
        let users = seed.users.map(|u| u.0).unwrap_or_default();
        let items = seed.items.map(|i| i.0).unwrap_or_default();
        let bids = seed.bids.map(|b| b.0).unwrap_or_default();
        for (what, count) in [
            ("users", users.len()),
            ("items", items.len()),
            ("bids", bids.len()),
        ] {
            if count > max_records {
                return Err(too_many(what, count, max_records));
            }
        }
        for (id, user) in users {
            let name = seed_name(&id, "user", user.name)?;
            table.upsert_user(NaturalId::new(id), name);
        }
        for (id, item) in items {
            let name = seed_name(&id, "item", item.name)?;
            table.upsert_item(NaturalId::new(id), name);
        }
        let mut bids: Vec<_> = bids.into_iter().collect();
        bids.sort_by(|(a, _), (b, _)| NaturalId::new(a.as_str()).cmp(&NaturalId::new(b.as_str())));
        for (id, bid) in bids {
            if !is_valid_id(&id) {
                return Err(format!("bid {id:?}: ids must match [A-Za-z0-9_-]{{1,64}}"));
            }
            let new = NewBid {
                item: bid.item,
                user: bid.user,
                value: bid.value,
            };
            let id = NaturalId::new(id);
            table.bid_ids.observe(id.as_str());
            table
                .insert_bid(id.clone(), new)
                .map_err(|e| format!("bid {id}: {e}"))?;
        }
        table.feed.record(true);
        Ok(table)
    }

    /// Empty tables that hold at most `max_records` users, items and bids (each).
    pub fn new(max_records: usize) -> Self {
        Self {
            users: RankedMap::new(),
            items: RankedMap::new(),
            bids: RankedMap::new(),
            placements: RankedMap::new(),
            user_ids: IdCounter::new("user", "user ids"),
            item_ids: IdCounter::new("item", "item ids"),
            bid_ids: IdCounter::new("bid", "bid ids"),
            next_seq: 0,
            next_item_key: 0,
            max_records,
            changes: 0,
            feed: {
                let mut feed = FeedLog::new(max_records);
                feed.record(true);
                feed
            },
        }
    }

    /// Sets how many events are kept per item for feeds that reconnect.
    pub fn keep_feed_events(&mut self, per_item: usize) {
        self.feed.keep_per_item(per_item);
    }

    /// The events the last operation made, each with its item, in order.
    pub fn take_feed_events(&mut self) -> Vec<(String, Arc<FeedEvent>)> {
        self.feed.take_outbox()
    }

    /// What a feed of `id` starts with, after `last_event` (see [`feed::opening_events`]).
    pub fn feed_opening(
        &self,
        id: &str,
        last_event: Option<u64>,
    ) -> Result<(Vec<Arc<FeedEvent>>, u64), StoreError> {
        let key = NaturalId::new(id);
        let record = self.item_record(id)?;
        let (history, floor) = self.feed.history(&key);
        let latest = history.last().map_or(floor, |event| event.id);
        Ok(feed::opening_events(
            last_event,
            &history,
            floor,
            latest,
            |kind, id| {
                let winning = self.winner_of(record).map(|bid| self.bid_view(bid));
                FeedEvent {
                    id,
                    kind,
                    data: feed::state_data(key.as_str(), winning.as_ref(), record.ranking.len()),
                }
            },
        ))
    }

    /// The winning bid of `item`, if it exists and has bids.
    fn winner_id(&self, item: &NaturalId) -> Option<NaturalId> {
        self.items
            .get(item)
            .and_then(|record| self.winner_of(record))
            .cloned()
    }

    /// Records a `winner` event for `item` if its winner is no longer `before`.
    fn emit_winner_change(&mut self, item: &NaturalId, before: Option<NaturalId>) {
        let after = self.winner_id(item);
        if after != before {
            let winning = after.map(|bid| self.bid_view(&bid));
            self.feed.emit(item, EventKind::Winner, || {
                feed::winner_data(item.as_str(), winning.as_ref())
            });
        }
    }

    /// A new version: the one after every version handed out so far.
    fn next_version(&mut self) -> u64 {
        self.changes += 1;
        self.changes
    }

    /// The version of the users, items and bids together: it moves with every change.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// `Err` if `what` already holds `count` records, the cap.
    fn check_room(&self, what: &'static str, count: usize) -> Result<(), StoreError> {
        if count >= self.max_records {
            Err(StoreError::Full {
                what,
                limit: self.max_records,
            })
        } else {
            Ok(())
        }
    }

    fn user_record(&self, id: &str) -> Result<&UserRecord, StoreError> {
        self.users
            .get(&NaturalId::new(id))
            .ok_or_else(|| not_found("user", id))
    }

    fn item_record(&self, id: &str) -> Result<&ItemRecord, StoreError> {
        self.items
            .get(&NaturalId::new(id))
            .ok_or_else(|| not_found("item", id))
    }

    /// How many users, items and bids there are.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.users.len(), self.items.len(), self.bids.len())
    }

    // ---- users ----

    /// At most `n` users in natural id order from `from`.
    pub fn list_users(&self, from: &Cursor<String>, n: usize) -> Vec<User> {
        read_chunk(&self.users, &natural_cursor(from), n, |id, user| {
            user_view(id, user)
        })
    }

    /// At most `n` users in `query`'s list and order from `from`.
    pub fn find_users(&self, query: &ListQuery, from: &Cursor<User>, n: usize) -> Vec<User> {
        let resume = resume_key(from, |user| &user.id);
        let view = |row: &UserRow| user_view(row.0, row.1);
        let (users, from) = (&self.users, &as_rows(from));
        ordered::find(users, query, from, resume.as_ref(), n, UserRow, view)
    }

    /// How many users are in `query`'s list.
    pub fn count_users(&self, query: &ListQuery) -> usize {
        ordered::count(&self.users, query, UserRow)
    }

    /// One user.
    pub fn get_user(&self, id: &str) -> Result<User, StoreError> {
        Ok(user_view(&NaturalId::new(id), self.user_record(id)?))
    }

    /// A new user under the next free id.
    pub fn create_user(&mut self, name: Name) -> Result<User, StoreError> {
        self.check_room("users", self.users.len())?;
        let id = self.user_ids.next(|id| self.users.contains_key(id))?;
        self.upsert_user(id.clone(), name);
        self.get_user(id.as_str())
    }

    /// Creates or renames the user `id`; their bids stay.
    pub fn put_user(
        &mut self,
        id: &str,
        name: Name,
        precondition: &Precondition,
    ) -> Result<(User, Upsert), StoreError> {
        let key = NaturalId::new(id);
        let current = self.users.get(&key).map(|user| Version::of(user.version));
        precondition.check(|| format!("user {id}"), current)?;
        if current.is_none() {
            self.check_room("users", self.users.len())?;
        }
        let upsert = self.upsert_user(key, name);
        Ok((self.get_user(id)?, upsert))
    }

    fn upsert_user(&mut self, id: NaturalId, name: Name) -> Upsert {
        self.user_ids.observe(id.as_str());
        let version = self.next_version();
        match self.users.get_mut(&id) {
            Some(user) => {
                user.name = name.into_string();
                user.version = version;
                Upsert::Replaced
            }
            None => {
                self.users.insert(
                    id,
                    UserRecord {
                        name: name.into_string(),
                        bids_by_item: HashMap::new(),
                        items_by_first_bid: BTreeMap::new(),
                        version,
                    },
                );
                Upsert::Created
            }
        }
    }

    /// Deletes a user and all of their bids; winners are recomputed.
    pub fn delete_user(&mut self, id: &str, precondition: &Precondition) -> Result<(), StoreError> {
        let user = self.user_record(id)?;
        precondition.check(|| format!("user {id}"), Some(Version::of(user.version)))?;
        let (items, placements) = (&self.items, &self.placements);
        // Per item, in id order as PostgreSQL's feed trigger goes: the user's bids on it in
        // placing order, then the item's new winner.
        let mut by_item: Vec<(NaturalId, Vec<NaturalId>)> = user
            .bids_by_item
            .iter()
            .map(|(item, seqs)| {
                let key = items.get(item).map_or(u64::MAX, |item| item.key);
                let bids = seqs
                    .iter()
                    .filter_map(|&seq| placements.get(&(key, seq)).cloned())
                    .collect();
                (item.clone(), bids)
            })
            .collect();
        by_item.sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
        for (item, bids) in by_item {
            let before = self.winner_id(&item);
            for bid in bids {
                let view = self.bid_view(&bid);
                self.remove_bid(&bid);
                self.feed
                    .emit(&item, EventKind::BidDeleted, || feed::bid_data(&view));
            }
            self.emit_winner_change(&item, before);
        }
        self.users.remove(&NaturalId::new(id));
        self.next_version();
        Ok(())
    }

    /// The user and at most `n` of the items they bid on, once each, in order of their first
    /// remaining bid, after the one whose first bid is `after`.
    pub fn user_items(
        &self,
        id: &str,
        after: Option<u64>,
        n: usize,
    ) -> Result<UserItems, StoreError> {
        let record = self.user_record(id)?;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(UserItems {
            user: user_view(&NaturalId::new(id), record),
            items: record
                .items_by_first_bid
                .range((start, Bound::Unbounded))
                .take(n)
                .map(|(&seq, item)| (seq, item.to_string()))
                .collect(),
        })
    }

    // ---- items ----

    fn winner_of(&self, record: &ItemRecord) -> Option<&NaturalId> {
        record
            .ranking
            .first()
            .and_then(|&(_, seq)| self.placements.get(&(record.key, seq)))
    }

    fn item_row<'a>(&'a self, id: &'a NaturalId, record: &'a ItemRecord) -> ItemRow<'a> {
        ItemRow {
            id,
            record,
            winning: self.winner_of(record),
        }
    }

    fn item_view(&self, id: &NaturalId, record: &ItemRecord) -> Item {
        let winning = self.winner_of(record).map(NaturalId::to_string);
        Item {
            id: id.to_string(),
            name: record.name.clone(),
            winning,
            bid_count: record.ranking.len(),
            version: Version::of(record.version),
        }
    }

    /// At most `n` items with their winners, in natural id order from `from`.
    pub fn list_items(&self, from: &Cursor<String>, n: usize) -> Vec<Item> {
        read_chunk(&self.items, &natural_cursor(from), n, |id, record| {
            self.item_view(id, record)
        })
    }

    /// At most `n` items with their winners in `query`'s list and order from `from`.
    pub fn find_items(&self, query: &ListQuery, from: &Cursor<Item>, n: usize) -> Vec<Item> {
        let resume = resume_key(from, |item| &item.id);
        let row = |id, record| self.item_row(id, record);
        let view = |row: &ItemRow| self.item_view(row.id, row.record);
        let (items, from) = (&self.items, &as_rows(from));
        ordered::find(items, query, from, resume.as_ref(), n, row, view)
    }

    /// How many items are in `query`'s list.
    pub fn count_items(&self, query: &ListQuery) -> usize {
        ordered::count(&self.items, query, |id, record| self.item_row(id, record))
    }

    /// One item with its winner.
    pub fn get_item(&self, id: &str) -> Result<Item, StoreError> {
        let record = self.item_record(id)?;
        Ok(self.item_view(&NaturalId::new(id), record))
    }

    /// A new item under the next free id.
    pub fn create_item(&mut self, name: Name) -> Result<Item, StoreError> {
        self.check_room("items", self.items.len())?;
        let id = self.item_ids.next(|id| self.items.contains_key(id))?;
        self.upsert_item(id.clone(), name);
        self.get_item(id.as_str())
    }

    /// Creates or renames the item `id`; its bids stay.
    pub fn put_item(
        &mut self,
        id: &str,
        name: Name,
        precondition: &Precondition,
    ) -> Result<(Item, Upsert), StoreError> {
        let key = NaturalId::new(id);
        let current = self.items.get(&key).map(|item| Version::of(item.version));
        precondition.check(|| format!("item {id}"), current)?;
        if current.is_none() {
            self.check_room("items", self.items.len())?;
        }
        let upsert = self.upsert_item(key, name);
        Ok((self.get_item(id)?, upsert))
    }

    fn upsert_item(&mut self, id: NaturalId, name: Name) -> Upsert {
        self.item_ids.observe(id.as_str());
        let version = self.next_version();
        match self.items.get_mut(&id) {
            Some(item) => {
                item.name = name.into_string();
                item.version = version;
                Upsert::Replaced
            }
            None => {
                let key = self.next_item_key;
                self.next_item_key += 1;
                let record = ItemRecord {
                    name: name.into_string(),
                    key,
                    ranking: BTreeSet::new(),
                    version,
                };
                self.feed.item_created(&id);
                self.items.insert(id, record);
                Upsert::Created
            }
        }
    }

    /// Deletes an item and all bids on it.
    pub fn delete_item(&mut self, id: &str, precondition: &Precondition) -> Result<(), StoreError> {
        let record = self.item_record(id)?;
        precondition.check(|| format!("item {id}"), Some(Version::of(record.version)))?;
        let (start, end) = self.placement_positions(record);
        let bid_ids = read_positions(&self.placements, start, end, usize::MAX, |_, bid| {
            bid.clone()
        });
        for bid in bid_ids {
            self.remove_bid(&bid);
        }
        let key = NaturalId::new(id);
        self.items.remove(&key);
        self.feed.item_deleted(&key, feed::deleted_data(id));
        self.next_version();
        Ok(())
    }

    /// Where an item's bids lie in `placements`: positions `start..end`.
    fn placement_positions(&self, record: &ItemRecord) -> (usize, usize) {
        let start = self.placements.rank(&(record.key, 0));
        (start, start + record.ranking.len())
    }

    /// At most `n` of an item's full bids in placing order from `from`, with their placing
    /// numbers.
    pub fn item_bids(
        &self,
        id: &str,
        from: &Cursor<u64>,
        n: usize,
    ) -> Result<Vec<(u64, Bid)>, StoreError> {
        let record = self.item_record(id)?;
        let (first, end) = self.placement_positions(record);
        let start = match from {
            Cursor::Offset(offset) => first.saturating_add(*offset),
            Cursor::After(seq) => rank_after(&self.placements, &(record.key, *seq)),
        };
        Ok(read_positions(
            &self.placements,
            start,
            end,
            n,
            |&(_, seq), bid| (seq, self.bid_view(bid)),
        ))
    }

    /// An item's winning bid: the highest value, the earliest on a tie.
    pub fn winning_bid(&self, id: &str) -> Result<Bid, StoreError> {
        let winner = self
            .get_item(id)?
            .winning
            .ok_or_else(|| StoreError::NoBids(format!("item {id}")))?;
        Ok(self.bid_view(&NaturalId::new(winner)))
    }

    // ---- bids ----

    fn bid_view(&self, id: &NaturalId) -> Bid {
        let record = self.bids.get(id).expect("indexes name only stored bids");
        Bid {
            id: id.to_string(),
            item: record.item.to_string(),
            value: record.value.get(),
            user: record.user.to_string(),
            version: Version::of(record.seq),
        }
    }

    /// At most `n` bids in natural id order from `from`.
    pub fn list_bids(&self, from: &Cursor<String>, n: usize) -> Vec<Bid> {
        read_chunk(&self.bids, &natural_cursor(from), n, |id, _| {
            self.bid_view(id)
        })
    }

    /// At most `n` bids in `query`'s list and order from `from`.
    pub fn find_bids(&self, query: &ListQuery, from: &Cursor<Bid>, n: usize) -> Vec<Bid> {
        let resume = resume_key(from, |bid| &bid.id);
        let view = |row: &BidRow| self.bid_view(row.0);
        let (bids, from) = (&self.bids, &as_rows(from));
        ordered::find(bids, query, from, resume.as_ref(), n, BidRow, view)
    }

    /// How many bids are in `query`'s list.
    pub fn count_bids(&self, query: &ListQuery) -> usize {
        ordered::count(&self.bids, query, BidRow)
    }

    /// One bid.
    pub fn get_bid(&self, id: &str) -> Result<Bid, StoreError> {
        let key = NaturalId::new(id);
        if !self.bids.contains_key(&key) {
            return Err(not_found("bid", id));
        }
        Ok(self.bid_view(&key))
    }

    /// Places a bid under the next free id, updating the item's winner.
    pub fn place_bid(&mut self, bid: NewBid) -> Result<Bid, StoreError> {
        // Check before taking an id, so a refused bid uses none up.
        self.check_room("bids", self.bids.len())?;
        self.check_references(&bid)?;
        let id = self.bid_ids.next(|id| self.bids.contains_key(id))?;
        self.insert_bid(id.clone(), bid)?;
        Ok(self.bid_view(&id))
    }

    /// Deletes a bid, updating the item's winner and the user's items.
    pub fn delete_bid(&mut self, id: &str, precondition: &Precondition) -> Result<(), StoreError> {
        let key = NaturalId::new(id);
        let bid = self.bids.get(&key).ok_or_else(|| not_found("bid", id))?;
        precondition.check(|| format!("bid {id}"), Some(Version::of(bid.seq)))?;
        let item = bid.item.clone();
        let before = self.winner_id(&item);
        let view = self.bid_view(&key);
        self.remove_bid(&key);
        self.feed
            .emit(&item, EventKind::BidDeleted, || feed::bid_data(&view));
        self.emit_winner_change(&item, before);
        Ok(())
    }

    fn check_references(&self, bid: &NewBid) -> Result<(), StoreError> {
        if !self.users.contains_key(&NaturalId::new(bid.user.as_str())) {
            return Err(StoreError::MissingReference {
                field: "bid/user",
                what: format!("user {}", bid.user),
            });
        }
        if !self.items.contains_key(&NaturalId::new(bid.item.as_str())) {
            return Err(StoreError::MissingReference {
                field: "bid/item",
                what: format!("item {}", bid.item),
            });
        }
        Ok(())
    }

    fn insert_bid(&mut self, id: NaturalId, bid: NewBid) -> Result<(), StoreError> {
        self.check_references(&bid)?;
        let item_id = NaturalId::new(bid.item);
        let user_id = NaturalId::new(bid.user);
        let seq = self.next_seq;
        self.next_seq += 1;
        let version = self.next_version();
        let recording = self.feed.is_recording();
        let before = if recording {
            self.winner_id(&item_id)
        } else {
            None
        };

        let item = self.items.get_mut(&item_id).expect("checked above");
        item.ranking.insert((Reverse(rank_key(bid.value)), seq));
        item.version = version;
        let key = item.key;
        self.placements.insert((key, seq), id.clone());

        let user = self.users.get_mut(&user_id).expect("checked above");
        let seqs = user.bids_by_item.entry(item_id.clone()).or_default();
        if seqs.is_empty() {
            user.items_by_first_bid.insert(seq, item_id.clone());
        }
        seqs.insert(seq);

        self.bids.insert(
            id.clone(),
            BidRecord {
                item: item_id.clone(),
                user: user_id,
                value: bid.value,
                seq,
            },
        );
        if recording {
            let view = self.bid_view(&id);
            self.feed
                .emit(&item_id, EventKind::Bid, || feed::bid_data(&view));
            self.emit_winner_change(&item_id, before);
        }
        Ok(())
    }

    fn remove_bid(&mut self, id: &NaturalId) -> Option<BidRecord> {
        let bid = self.bids.remove(id)?;
        let version = self.next_version();
        if let Some(item) = self.items.get_mut(&bid.item) {
            item.ranking
                .remove(&(Reverse(rank_key(bid.value)), bid.seq));
            item.version = version;
            let key = item.key;
            self.placements.remove(&(key, bid.seq));
        }
        if let Some(user) = self.users.get_mut(&bid.user)
            && let Some(seqs) = user.bids_by_item.get_mut(&bid.item)
        {
            let was_first = seqs.first() == Some(&bid.seq);
            seqs.remove(&bid.seq);
            if was_first {
                user.items_by_first_bid.remove(&bid.seq);
                if let Some(&next_first) = seqs.first() {
                    user.items_by_first_bid.insert(next_first, bid.item.clone());
                }
            }
            if seqs.is_empty() {
                user.bids_by_item.remove(&bid.item);
            }
        }
        Some(bid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::parse("name", s.to_owned()).unwrap()
    }

    fn value(v: f64) -> BidValue {
        BidValue::new(v).unwrap()
    }

    fn bid(t: &mut AuctionTable, item: &str, user: &str, v: f64) -> String {
        t.place_bid(NewBid {
            item: item.into(),
            user: user.into(),
            value: value(v),
        })
        .unwrap()
        .id
    }

    fn winner(t: &AuctionTable, item: &str) -> Option<String> {
        t.get_item(item).unwrap().winning
    }

    #[test]
    fn full_tables_refuse_new_records_but_not_renames() {
        let mut t = AuctionTable::new(2);
        t.put_user("u1", name("a"), &Precondition::default())
            .unwrap();
        t.create_user(name("b")).unwrap();
        let full = |r: Result<(), StoreError>| {
            matches!(
                r,
                Err(StoreError::Full {
                    what: "users",
                    limit: 2
                })
            )
        };
        assert!(full(t.create_user(name("c")).map(drop)));
        assert!(full(
            t.put_user("u9", name("c"), &Precondition::default())
                .map(drop)
        ));
        assert_eq!(
            t.put_user("u1", name("renamed"), &Precondition::default())
                .unwrap()
                .1,
            Upsert::Replaced
        );
        t.put_item("i1", name("i"), &Precondition::default())
            .unwrap();
        t.put_item("i2", name("i"), &Precondition::default())
            .unwrap();
        assert!(matches!(
            t.create_item(name("x")),
            Err(StoreError::Full { what: "items", .. })
        ));
        bid(&mut t, "i1", "u1", 1.0);
        bid(&mut t, "i2", "u1", 2.0);
        let refused = t.place_bid(NewBid {
            item: "i1".into(),
            user: "u1".into(),
            value: value(3.0),
        });
        assert!(matches!(
            refused,
            Err(StoreError::Full { what: "bids", .. })
        ));
        assert_eq!(t.counts(), (2, 2, 2));
        assert_eq!(winner(&t, "i1").as_deref(), Some("bid1"));
    }

    #[test]
    fn seeds_are_checked_record_by_record() {
        let seed = |json: &str| {
            AuctionTable::from_seed(serde_json::from_str(json).unwrap(), 100).map(|t| t.counts())
        };
        assert_eq!(seed("{}").unwrap(), (0, 0, 0));
        let ok = r#"{"users": {"user1": {"name": "A"}}, "items": {"item1": {"name": "I"}},
                     "bids": {"bid10": {"item": "item1", "value": 5, "user": "user1"},
                              "bid9": {"item": "item1", "value": "5", "user": "user1"}}}"#;
        assert_eq!(seed(ok).unwrap(), (1, 1, 2));
        let t = AuctionTable::from_seed(serde_json::from_str(ok).unwrap(), 100).unwrap();
        // Seed bids are placed in natural id order, so bid9 wins the tie.
        assert_eq!(winner(&t, "item1").as_deref(), Some("bid9"));

        let unknown_user = r#"{"items": {"item1": {"name": "I"}},
                     "bids": {"bid1": {"item": "item1", "value": 5, "user": "ghost"}}}"#;
        let message = seed(unknown_user).unwrap_err();
        assert!(
            message.contains("bid bid1") && message.contains("user ghost"),
            "{message}"
        );
        let blank = seed(r#"{"users": {"user1": {"name": " "}}}"#).unwrap_err();
        assert!(blank.contains("user user1"), "{blank}");
        let bad_id = seed(r#"{"items": {"a b": {"name": "x"}}}"#).unwrap_err();
        assert!(bad_id.contains("a b"), "{bad_id}");
        let too_many = AuctionTable::from_seed(serde_json::from_str(ok).unwrap(), 1).unwrap_err();
        assert!(too_many.contains("2 bids"), "{too_many}");
    }
}
