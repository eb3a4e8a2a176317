//! The in-memory implementation of the store traits.
//!
//! `auction.rs`, `books.rs` and `things.rs` hold each resource's table: its records in ordered
//! maps with the indexes its rules need, free of locks and I/O; `ordered.rs` is the
//! order-statistic map they keep records in and the chunk reader every list goes through.
//!
//! Each table sits behind its own `std::sync::RwLock`, and every method does its whole
//! read-check-write under one guard, so each operation is atomic. No guard is held across an
//! `.await` (there is none inside), which is why a std lock, cheaper than tokio's, is right here.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::feed::{FeedHub, FeedOpening};
use super::idempotency::{Claim, KeepAnswer, KeyRules};
use super::query::ListQuery;
use super::seed::{self, SeedError, UniqueKeys};
use super::{
    AuctionStore, Backend, Bid, Book, BookChanges, BookFields, BookStore, Cursor, Item, Name,
    NewBid, Precondition, Resource, StoreError, Thing, ThingStore, Upsert, User, UserItems,
};
use auction::AuctionTable;
use books::BookTable;
use things::ThingTable;

mod auction;
mod books;
mod feeds;
mod idempotency;
mod ordered;
mod things;

const BOOKS_FILE: &str = "books.json";
const THINGS_FILE: &str = "things.json";
const AUCTION_FILE: &str = "auction.json";

/// All records, held in memory.
#[derive(Debug)]
pub struct MemoryStore {
    books: RwLock<BookTable>,
    /// Read-only after load, so it needs no lock.
    things: ThingTable,
    /// Users, items and bids share one lock: a bid changes an item and a user together.
    auction: RwLock<AuctionTable>,
    /// Random per store: versions of another in-memory store (before a restart) never match.
    epoch: u64,
    /// The items' feeds open in this process.
    hub: Arc<FeedHub>,
    /// The `Idempotency-Key`s in use.
    keys: Mutex<idempotency::KeyTable>,
}

/// A random epoch; a fixed one only if the system has no randomness to give, which costs only
/// the tell-apart across restarts.
fn random_epoch() -> u64 {
    getrandom::u64().unwrap_or(0x6d6f_6e6f)
}

impl MemoryStore {
    /// An empty store that holds at most `max_records` records per resource.
    pub fn new(max_records: usize) -> Self {
        Self {
            books: RwLock::new(BookTable::new(max_records)),
            things: ThingTable::default(),
            auction: RwLock::new(AuctionTable::new(max_records)),
            epoch: random_epoch(),
            hub: FeedHub::new(),
            keys: Mutex::default(),
        }
    }

    /// Loads and checks every seed file of `data_dir`; a missing file leaves its resource empty.
    /// Each resource holds at most `max_records` records, seeded or created.
    pub fn load(data_dir: &Path, max_records: usize) -> Result<Self, SeedError> {
        let books = seed::read::<Vec<Book>>(data_dir, BOOKS_FILE)?.unwrap_or_default();
        let books = BookTable::from_seed(books, max_records)
            .map_err(|reason| seed::rule_error(data_dir, BOOKS_FILE, reason))?;
        let things = seed::read::<UniqueKeys<Thing>>(data_dir, THINGS_FILE)?
            .map(|entries| entries.0)
            .unwrap_or_default();
        let things = ThingTable::from_seed(things)
            .map_err(|reason| seed::rule_error(data_dir, THINGS_FILE, reason))?;
        let auction = match seed::read(data_dir, AUCTION_FILE)? {
            Some(seed) => AuctionTable::from_seed(seed, max_records)
                .map_err(|reason| seed::rule_error(data_dir, AUCTION_FILE, reason))?,
            None => AuctionTable::new(max_records),
        };
        Ok(Self {
            books: RwLock::new(books),
            things,
            auction: RwLock::new(auction),
            epoch: random_epoch(),
            hub: FeedHub::new(),
            keys: Mutex::default(),
        })
    }

    // A panic elsewhere while holding a guard cannot leave a table half-changed (each method
    // checks before it writes), so a poisoned lock is safe to keep using.
    fn books(&self) -> RwLockReadGuard<'_, BookTable> {
        self.books.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn books_mut(&self) -> RwLockWriteGuard<'_, BookTable> {
        self.books.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn auction(&self) -> RwLockReadGuard<'_, AuctionTable> {
        self.auction.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn auction_mut(&self) -> RwLockWriteGuard<'_, AuctionTable> {
        self.auction.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` on the auction table, then hands the events it made to the feeds while
    /// the lock is still held, so that every feed gets them in the table's order.
    fn auction_change<T>(&self, change: impl FnOnce(&mut AuctionTable) -> T) -> T {
        let mut auction = self.auction_mut();
        let result = change(&mut auction);
        for (item, event) in auction.take_feed_events() {
            self.hub.publish(&item, event);
        }
        result
    }

    /// Keeps `per_item` events per item for feeds that reconnect (`FEED_HISTORY`).
    pub fn keep_feed_events(&self, per_item: usize) {
        self.auction_mut().keep_feed_events(per_item);
    }
}

#[async_trait]
impl BookStore for MemoryStore {
    async fn list_books(&self, from: Cursor<u64>, n: usize) -> Result<Vec<Book>, StoreError> {
        Ok(self.books().list(&from, n))
    }

    async fn find_books(
        &self,
        query: &ListQuery,
        from: Cursor<Book>,
        n: usize,
    ) -> Result<Vec<Book>, StoreError> {
        Ok(self.books().find(query, &from, n))
    }

    async fn get_book(&self, id: u64) -> Result<Book, StoreError> {
        self.books().get(id)
    }

    async fn create_book(&self, fields: BookFields) -> Result<Book, StoreError> {
        self.books_mut().create(fields)
    }

    async fn replace_book_if(
        &self,
        id: u64,
        fields: BookFields,
        precondition: &Precondition,
    ) -> Result<Book, StoreError> {
        self.books_mut().replace(id, fields, precondition)
    }

    async fn update_book_if(
        &self,
        id: u64,
        changes: BookChanges,
        precondition: &Precondition,
    ) -> Result<Book, StoreError> {
        self.books_mut().update(id, changes, precondition)
    }

    async fn delete_book_if(&self, id: u64, precondition: &Precondition) -> Result<(), StoreError> {
        self.books_mut().delete(id, precondition)
    }
}

#[async_trait]
impl ThingStore for MemoryStore {
    async fn list_things(&self, from: Cursor<String>, n: usize) -> Result<Vec<Thing>, StoreError> {
        Ok(self.things.list(&from, n))
    }

    async fn find_things(
        &self,
        query: &ListQuery,
        from: Cursor<Thing>,
        n: usize,
    ) -> Result<Vec<Thing>, StoreError> {
        Ok(self.things.find(query, &from, n))
    }

    async fn get_thing(&self, id: &str) -> Result<Thing, StoreError> {
        self.things.get(id)
    }
}

#[async_trait]
impl AuctionStore for MemoryStore {
    async fn list_users(&self, from: Cursor<String>, n: usize) -> Result<Vec<User>, StoreError> {
        Ok(self.auction().list_users(&from, n))
    }

    async fn find_users(
        &self,
        query: &ListQuery,
        from: Cursor<User>,
        n: usize,
    ) -> Result<Vec<User>, StoreError> {
        Ok(self.auction().find_users(query, &from, n))
    }

    async fn get_user(&self, id: &str) -> Result<User, StoreError> {
        self.auction().get_user(id)
    }

    async fn create_user(&self, name: Name) -> Result<User, StoreError> {
        self.auction_mut().create_user(name)
    }

    async fn put_user_if(
        &self,
        id: &str,
        name: Name,
        precondition: &Precondition,
    ) -> Result<(User, Upsert), StoreError> {
        self.auction_mut().put_user(id, name, precondition)
    }

    async fn delete_user_if(
        &self,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), StoreError> {
        self.auction_change(|auction| auction.delete_user(id, precondition))
    }

    async fn user_items(
        &self,
        id: &str,
        after: Option<u64>,
        n: usize,
    ) -> Result<UserItems, StoreError> {
        self.auction().user_items(id, after, n)
    }

    async fn list_items(&self, from: Cursor<String>, n: usize) -> Result<Vec<Item>, StoreError> {
        Ok(self.auction().list_items(&from, n))
    }

    async fn find_items(
        &self,
        query: &ListQuery,
        from: Cursor<Item>,
        n: usize,
    ) -> Result<Vec<Item>, StoreError> {
        Ok(self.auction().find_items(query, &from, n))
    }

    async fn get_item(&self, id: &str) -> Result<Item, StoreError> {
        self.auction().get_item(id)
    }

    async fn create_item(&self, name: Name) -> Result<Item, StoreError> {
        self.auction_mut().create_item(name)
    }

    async fn put_item_if(
        &self,
        id: &str,
        name: Name,
        precondition: &Precondition,
    ) -> Result<(Item, Upsert), StoreError> {
        self.auction_mut().put_item(id, name, precondition)
    }

    async fn delete_item_if(
        &self,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), StoreError> {
        self.auction_change(|auction| auction.delete_item(id, precondition))
    }

    async fn item_bids(
        &self,
        id: &str,
        from: Cursor<u64>,
        n: usize,
    ) -> Result<(Item, Vec<(u64, Bid)>), StoreError> {
        let auction = self.auction();
        Ok((auction.get_item(id)?, auction.item_bids(id, &from, n)?))
    }

    async fn winning_bid(&self, id: &str) -> Result<Bid, StoreError> {
        self.auction().winning_bid(id)
    }

    async fn list_bids(&self, from: Cursor<String>, n: usize) -> Result<Vec<Bid>, StoreError> {
        Ok(self.auction().list_bids(&from, n))
    }

    async fn find_bids(
        &self,
        query: &ListQuery,
        from: Cursor<Bid>,
        n: usize,
    ) -> Result<Vec<Bid>, StoreError> {
        Ok(self.auction().find_bids(query, &from, n))
    }

    async fn get_bid(&self, id: &str) -> Result<Bid, StoreError> {
        self.auction().get_bid(id)
    }

    async fn place_bid(&self, bid: NewBid) -> Result<Bid, StoreError> {
        self.auction_change(|auction| auction.place_bid(bid))
    }

    async fn delete_bid_if(&self, id: &str, precondition: &Precondition) -> Result<(), StoreError> {
        self.auction_change(|auction| auction.delete_bid(id, precondition))
    }
}

#[async_trait]
impl Backend for MemoryStore {
    async fn count_matching(&self, what: Resource, query: &ListQuery) -> Result<usize, StoreError> {
        Ok(match what {
            Resource::Books => self.books().count(query),
            Resource::Things => self.things.count(query),
            Resource::Users => self.auction().count_users(query),
            Resource::Items => self.auction().count_items(query),
            Resource::Bids => self.auction().count_bids(query),
        })
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn claim_key(
        &self,
        key: &str,
        fingerprint: &[u8],
        rules: &KeyRules,
    ) -> Result<Claim, StoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(keys.claim(key, fingerprint, rules))
    }

    async fn settle_key(&self, key: &str, answer: KeepAnswer) -> Result<(), StoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.settle(key, answer);
        Ok(())
    }

    async fn open_feed(
        &self,
        item: &str,
        last_event: Option<u64>,
    ) -> Result<FeedOpening, StoreError> {
        // Events are published under the write lock: none can slip between what is read here
        // and the subscription.
        let auction = self.auction();
        let (first, through) = auction.feed_opening(item, last_event)?;
        let live = self.hub.subscribe(item);
        Ok(FeedOpening {
            first,
            through,
            live,
        })
    }

    async fn list_version(&self, what: Resource) -> Result<u64, StoreError> {
        Ok(match what {
            Resource::Books => self.books().changes(),
            // Loaded once, never changed.
            Resource::Things => 0,
            Resource::Users | Resource::Items | Resource::Bids => self.auction().changes(),
        })
    }

    async fn count(&self, what: Resource) -> Result<usize, StoreError> {
        let (users, items, bids) = self.auction().counts();
        Ok(match what {
            Resource::Books => self.books().len(),
            Resource::Things => self.things.len(),
            Resource::Users => users,
            Resource::Items => items,
            Resource::Bids => bids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn missing_files_give_empty_resources() {
        let dir = dir_with(&[]);
        let store = MemoryStore::load(dir.path(), 100).unwrap();
        assert_eq!(store.books().len(), 0);
        assert_eq!(store.things.len(), 0);
    }

    #[test]
    fn syntax_errors_name_the_file_line_and_column() {
        let dir = dir_with(&[(
            "books.json",
            "[\n  {\"id\": 1, \"title\": \"a\"},\n  oops\n]",
        )]);
        let message = MemoryStore::load(dir.path(), 100).unwrap_err().to_string();
        assert!(message.contains("books.json"), "{message}");
        assert!(message.contains("invalid JSON"), "{message}");
        assert!(message.contains("line 3 column 3"), "{message}");
    }

    #[test]
    fn wrong_shapes_and_broken_rules_name_the_file() {
        let dir = dir_with(&[("books.json", r#"[{"id": "one", "title": "a"}]"#)]);
        let message = MemoryStore::load(dir.path(), 100).unwrap_err().to_string();
        assert!(
            message.contains("books.json") && message.contains("line 1"),
            "{message}"
        );

        let dir = dir_with(&[(
            "things.json",
            r#"{"1": {"id": "1", "name": "a"}, "1": {"id": "1", "name": "b"}}"#,
        )]);
        let message = MemoryStore::load(dir.path(), 100).unwrap_err().to_string();
        assert!(
            message.contains("things.json") && message.contains("duplicate id"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_later_file_fails_the_whole_load() {
        let dir = dir_with(&[
            ("books.json", r#"[{"id": 1, "title": "a"}]"#),
            ("things.json", "{"),
        ]);
        assert!(MemoryStore::load(dir.path(), 100).is_err());
    }
}
