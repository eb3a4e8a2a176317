//! The data layer: records, their rules, and the [`Store`] handle the routes talk to.
//!
//! Handlers reach data only through the async traits below ([`BookStore`], [`ThingStore`]), so a
//! database-backed implementation can replace the in-memory one without touching a handler. The
//! store knows nothing of HTTP: it returns [`StoreError`], which the routes map to statuses.
//!
//! Layout: two engines behind the one [`Backend`] trait, sharing the records and their rules.
//! - `records/` (`auction.rs`, `books.rs`, `things.rs`): the records every store returns, the
//!   checked inputs (names, bid values, book fields) and the seed formats; free of locks, I/O
//!   and storage. Beside it, also shared: `text.rs` (the rules of titles, authors and names),
//!   `ids.rs` (the id form, natural id order, counted ids), `seed.rs` (reads `DATA_DIR`),
//!   `query.rs` (what a list's filters, search and sort mean), `versions.rs` (record versions
//!   and the preconditions writes check against them), `feed.rs` (items' live feed events and
//!   the hub that hands them to this process's feeds), `idempotency.rs` (what is kept of a POST
//!   sent with an `Idempotency-Key`).
//! - `memory/`: the in-memory engine. `mod.rs` is [`MemoryStore`], each table behind its lock;
//!   `auction.rs`, `books.rs` and `things.rs` the tables with their indexes; `ordered.rs` the
//!   order-statistic map they keep records in.
//! - `postgres/`: the PostgreSQL engine (`DATABASE_URL`); it seeds an empty database through
//!   [`MemoryStore::load`], so a seed obeys the same rules in both.
//! - `conformance.rs` (tests only): the rules both engines keep, as one suite run through the
//!   traits against each engine.

#[cfg(test)]
mod conformance;
pub mod feed;
pub mod idempotency;
mod ids;
mod memory;
pub mod postgres;
pub mod query;
mod records;
mod seed;
mod text;
mod versions;

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use query::ListQuery;

use async_trait::async_trait;

pub use ids::{ID_PATTERN, NaturalId, is_valid_id};
pub use memory::MemoryStore;
pub use records::auction::{
    Bid, BidValue, DECIMAL_PATTERN, Item, Name, NewBid, Upsert, User, UserItems,
};
pub use records::books::{Book, BookChanges, BookFields};
pub use records::things::Thing;
pub use seed::SeedError;
pub use text::{MAX_TEXT_CHARS, TEXT_PATTERN};
pub use versions::{Precondition, Version, Versions};

use text::check_text;

/// Why a store operation did not happen.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist; the text names it, e.g. `book 42`.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A counter ran out of ids (after 2^64 books, say).
    #[error("no more {0} can be assigned")]
    Exhausted(&'static str),
    /// The item exists but has no bids, so no winner; the text names it.
    #[error("{0} has no bids")]
    NoBids(String),
    /// The resource holds as many records as it may (`MAX_RECORDS_PER_RESOURCE`); nothing was
    /// stored.
    #[error("the store holds its maximum of {limit} {what}; delete some before adding more")]
    Full {
        /// The resource, plural (`books`).
        what: &'static str,
        /// The cap.
        limit: usize,
    },
    /// A record names another that does not exist (a bid for an unknown user or item).
    #[error("{what} does not exist")]
    MissingReference {
        /// The referring field's path in the request body (`bid/user`, `bid/item`).
        field: &'static str,
        /// The missing record, e.g. `user user9`.
        what: String,
    },
    /// The database cannot be reached, or did not answer in time; nothing is known to have
    /// changed. The text says what failed, never how to connect (no URL, no password).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A write's precondition (`If-Match`, `If-None-Match`) does not hold for the record as it
    /// is; nothing changed. The text names the record.
    #[error("{0} is not in the state the request's precondition requires")]
    PreconditionFailed(String),
    /// The database answered with an error no request should cause (a bug, or a schema that
    /// does not match this binary): a 500 whose text is logged, never sent.
    #[error("{0}")]
    Internal(String),
}

/// A rule a field broke, for the routes to turn into a 422 pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The field's path in the request body, `/`-separated (`title`, `bid/value`).
    pub field: &'static str,
    /// What is wrong, e.g. `must not be blank`.
    pub message: &'static str,
}

/// Where a chunk of an ordered list starts. Lists are read in chunks so that no request holds a
/// whole large list in memory, and so that a lock is never held for long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor<K> {
    /// Skip this many records from the start; O(log n), not O(offset).
    Offset(usize),
    /// Start right after the record with this key: the last one already sent.
    After(K),
}

/// The default cap on records per resource (`MAX_RECORDS_PER_RESOURCE`): a store with all four
/// resources full measured about 520 MiB resident (release build, short texts), so the default
/// fits a 1 GiB VM.
pub const DEFAULT_MAX_RECORDS: usize = 250_000;

/// How many records each resource holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Books.
    pub books: usize,
    /// Things in the catalogue.
    pub things: usize,
    /// Bid-tracker users.
    pub users: usize,
    /// Auction items.
    pub items: usize,
    /// Bids.
    pub bids: usize,
}

/// Book operations; each one is atomic.
#[async_trait]
pub trait BookStore: Send + Sync {
    /// At most `n` books in id order, from `from`.
    async fn list_books(&self, from: Cursor<u64>, n: usize) -> Result<Vec<Book>, StoreError>;
    /// At most `n` books in `query`'s list and order, from `from` (a count of matches to skip,
    /// or the last book sent).
    async fn find_books(
        &self,
        query: &ListQuery,
        from: Cursor<Book>,
        n: usize,
    ) -> Result<Vec<Book>, StoreError>;
    /// One book.
    async fn get_book(&self, id: u64) -> Result<Book, StoreError>;
    /// Stores a new book under the next id never used before.
    async fn create_book(&self, fields: BookFields) -> Result<Book, StoreError>;
    /// Replaces the title and author of an existing book, if `precondition` holds for it.
    async fn replace_book_if(
        &self,
        id: u64,
        fields: BookFields,
        precondition: &Precondition,
    ) -> Result<Book, StoreError>;
    /// Changes only the given fields of an existing book, if `precondition` holds for it.
    async fn update_book_if(
        &self,
        id: u64,
        changes: BookChanges,
        precondition: &Precondition,
    ) -> Result<Book, StoreError>;
    /// Removes a book, if `precondition` holds for it; its id is not handed out again.
    async fn delete_book_if(&self, id: u64, precondition: &Precondition) -> Result<(), StoreError>;

    /// [`BookStore::replace_book_if`] without a precondition.
    async fn replace_book(&self, id: u64, fields: BookFields) -> Result<Book, StoreError> {
        self.replace_book_if(id, fields, &Precondition::default())
            .await
    }
    /// [`BookStore::update_book_if`] without a precondition.
    async fn update_book(&self, id: u64, changes: BookChanges) -> Result<Book, StoreError> {
        self.update_book_if(id, changes, &Precondition::default())
            .await
    }
    /// [`BookStore::delete_book_if`] without a precondition.
    async fn delete_book(&self, id: u64) -> Result<(), StoreError> {
        self.delete_book_if(id, &Precondition::default()).await
    }
}

/// Read-only catalogue operations.
#[async_trait]
pub trait ThingStore: Send + Sync {
    /// At most `n` things in natural id order, from `from`.
    async fn list_things(&self, from: Cursor<String>, n: usize) -> Result<Vec<Thing>, StoreError>;
    /// At most `n` things in `query`'s list and order, from `from`.
    async fn find_things(
        &self,
        query: &ListQuery,
        from: Cursor<Thing>,
        n: usize,
    ) -> Result<Vec<Thing>, StoreError>;
    /// One thing.
    async fn get_thing(&self, id: &str) -> Result<Thing, StoreError>;
}

/// Bid-tracker operations; each one is atomic, so a bid and its item's winner change together.
#[async_trait]
pub trait AuctionStore: Send + Sync {
    /// At most `n` users in natural id order, from `from`.
    async fn list_users(&self, from: Cursor<String>, n: usize) -> Result<Vec<User>, StoreError>;
    /// At most `n` users in `query`'s list and order, from `from`.
    async fn find_users(
        &self,
        query: &ListQuery,
        from: Cursor<User>,
        n: usize,
    ) -> Result<Vec<User>, StoreError>;
    /// One user.
    async fn get_user(&self, id: &str) -> Result<User, StoreError>;
    /// A new user under the next free id.
    async fn create_user(&self, name: Name) -> Result<User, StoreError>;
    /// Creates or renames the user `id`, if `precondition` holds for it (`None`: it does not
    /// exist).
    async fn put_user_if(
        &self,
        id: &str,
        name: Name,
        precondition: &Precondition,
    ) -> Result<(User, Upsert), StoreError>;
    /// Deletes a user and their bids, if `precondition` holds; winners are recomputed.
    async fn delete_user_if(&self, id: &str, precondition: &Precondition)
    -> Result<(), StoreError>;
    /// [`AuctionStore::put_user_if`] without a precondition.
    async fn put_user(&self, id: &str, name: Name) -> Result<(User, Upsert), StoreError> {
        self.put_user_if(id, name, &Precondition::default()).await
    }
    /// [`AuctionStore::delete_user_if`] without a precondition.
    async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        self.delete_user_if(id, &Precondition::default()).await
    }
    /// The user and at most `n` of the items they bid on, once each, in order of their first
    /// remaining bid, after the item whose first bid has placing number `after`.
    async fn user_items(
        &self,
        id: &str,
        after: Option<u64>,
        n: usize,
    ) -> Result<UserItems, StoreError>;
    /// At most `n` items with their winners, in natural id order, from `from`.
    async fn list_items(&self, from: Cursor<String>, n: usize) -> Result<Vec<Item>, StoreError>;
    /// At most `n` items with their winners in `query`'s list and order, from `from`.
    async fn find_items(
        &self,
        query: &ListQuery,
        from: Cursor<Item>,
        n: usize,
    ) -> Result<Vec<Item>, StoreError>;
    /// One item with its winner.
    async fn get_item(&self, id: &str) -> Result<Item, StoreError>;
    /// A new item under the next free id.
    async fn create_item(&self, name: Name) -> Result<Item, StoreError>;
    /// Creates or renames the item `id`, if `precondition` holds for it; its bids stay.
    async fn put_item_if(
        &self,
        id: &str,
        name: Name,
        precondition: &Precondition,
    ) -> Result<(Item, Upsert), StoreError>;
    /// Deletes an item and its bids, if `precondition` holds.
    async fn delete_item_if(&self, id: &str, precondition: &Precondition)
    -> Result<(), StoreError>;
    /// [`AuctionStore::put_item_if`] without a precondition.
    async fn put_item(&self, id: &str, name: Name) -> Result<(Item, Upsert), StoreError> {
        self.put_item_if(id, name, &Precondition::default()).await
    }
    /// [`AuctionStore::delete_item_if`] without a precondition.
    async fn delete_item(&self, id: &str) -> Result<(), StoreError> {
        self.delete_item_if(id, &Precondition::default()).await
    }
    /// The item with its winner, and at most `n` of its bids in placing order from `from` (a
    /// cursor of placing numbers), each with its placing number: read together, so that the
    /// winner and the bids agree.
    async fn item_bids(
        &self,
        id: &str,
        from: Cursor<u64>,
        n: usize,
    ) -> Result<(Item, Vec<(u64, Bid)>), StoreError>;
    /// An item's winning bid.
    async fn winning_bid(&self, id: &str) -> Result<Bid, StoreError>;
    /// At most `n` bids in natural id order, from `from`.
    async fn list_bids(&self, from: Cursor<String>, n: usize) -> Result<Vec<Bid>, StoreError>;
    /// At most `n` bids in `query`'s list and order, from `from`.
    async fn find_bids(
        &self,
        query: &ListQuery,
        from: Cursor<Bid>,
        n: usize,
    ) -> Result<Vec<Bid>, StoreError>;
    /// One bid.
    async fn get_bid(&self, id: &str) -> Result<Bid, StoreError>;
    /// Places a bid and updates its item's winner in one step.
    async fn place_bid(&self, bid: NewBid) -> Result<Bid, StoreError>;
    /// Deletes a bid and updates its item's winner in one step, if `precondition` holds.
    async fn delete_bid_if(&self, id: &str, precondition: &Precondition) -> Result<(), StoreError>;
    /// [`AuctionStore::delete_bid_if`] without a precondition.
    async fn delete_bid(&self, id: &str) -> Result<(), StoreError> {
        self.delete_bid_if(id, &Precondition::default()).await
    }
}

/// A kind of record, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Books.
    Books,
    /// Things in the catalogue.
    Things,
    /// Bid-tracker users.
    Users,
    /// Auction items.
    Items,
    /// Bids.
    Bids,
}

/// Everything a storage implementation provides.
#[async_trait]
pub trait Backend: BookStore + ThingStore + AuctionStore {
    /// How many records of one kind there are: a list's `X-Total-Count`.
    async fn count(&self, what: Resource) -> Result<usize, StoreError>;

    /// How many records of one kind are in `query`'s list: a filtered list's `X-Total-Count`.
    async fn count_matching(&self, what: Resource, query: &ListQuery) -> Result<usize, StoreError>;

    /// The random number this store's versions are told apart from another store's by (a
    /// restarted in-memory store, another database): part of every `ETag`.
    fn epoch(&self) -> u64;

    /// Opens a live feed of item `item`: its state, or the events after `last_event` (a
    /// `Last-Event-ID`) while they are kept, and every event from then on, in the store's order.
    async fn open_feed(
        &self,
        item: &str,
        last_event: Option<u64>,
    ) -> Result<feed::FeedOpening, StoreError>;

    /// Claims the `Idempotency-Key` `key` (already scoped by method and path) for a request
    /// whose body has `fingerprint`, or says what holds it.
    async fn claim_key(
        &self,
        key: &str,
        fingerprint: &[u8],
        rules: &idempotency::KeyRules,
    ) -> Result<idempotency::Claim, StoreError>;

    /// Keeps the answer of the request that claimed `key`, or lets the key go.
    async fn settle_key(
        &self,
        key: &str,
        answer: idempotency::KeepAnswer,
    ) -> Result<(), StoreError>;

    /// A number that moves whenever any record of `what` changes (for users, items and bids:
    /// whenever any of them does): a list's weak `ETag`.
    async fn list_version(&self, what: Resource) -> Result<u64, StoreError>;

    /// Records per resource, for `check-data` and the metrics gauge.
    async fn counts(&self) -> Result<RecordCounts, StoreError> {
        Ok(RecordCounts {
            books: self.count(Resource::Books).await?,
            things: self.count(Resource::Things).await?,
            users: self.count(Resource::Users).await?,
            items: self.count(Resource::Items).await?,
            bids: self.count(Resource::Bids).await?,
        })
    }

    /// `Ok` if the store can serve requests now: `/readyz`.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Releases what the store holds (database connections) at shutdown.
    async fn close(&self) {}

    /// The backend's own metrics (pool and query latency), read at each scrape of `/metrics`.
    fn collector(&self) -> Option<Box<dyn prometheus::core::Collector>> {
        None
    }
}

/// A cheap-to-clone handle to the storage implementation.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// Wraps a storage implementation.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Self(Arc::new(backend))
    }

    /// Seeds an in-memory store from the files in `data_dir` that holds at most `max_records`
    /// records per resource; fails whole, never half-loaded, and refuses a seed with more.
    pub fn load(data_dir: &Path, max_records: usize) -> Result<Self, SeedError> {
        MemoryStore::load(data_dir, max_records).map(Self::new)
    }

    /// The store `config` asks for: PostgreSQL with `DATABASE_URL` (migrated, and seeded from
    /// `DATA_DIR` if empty), else memory seeded from `DATA_DIR`.
    pub async fn open(config: &Config) -> Result<Self, OpenError> {
        match &config.database {
            Some(database) => {
                postgres::open(database, &config.data_dir, config.feeds.history).await
            }
            None => {
                let store = MemoryStore::load(&config.data_dir, config.max_records)?;
                store.keep_feed_events(config.feeds.history);
                Ok(Self::new(store))
            }
        }
    }
}

/// Why a store could not be opened: the one line start-up exits with.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The seed files are unreadable or break a rule.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// The database could not be reached, migrated or seeded; never names the password.
    #[error("{0}")]
    Database(String),
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}
