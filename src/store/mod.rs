//! The data layer: records, their rules, and the [`Store`] handle the routes talk to.
//!
//! Handlers reach data only through the async traits below ([`BookStore`], [`ThingStore`]), so a
//! database-backed implementation can replace the in-memory one without touching a handler. The
//! store knows nothing of HTTP: it returns [`StoreError`], which the routes map to statuses.
//!
//! Layout: `books.rs` and `things.rs` hold each resource's records and rules, free of locks and
//! I/O; `memory.rs` puts them behind locks; `seed.rs` reads `DATA_DIR`; `ids.rs` orders string ids.

mod books;
mod ids;
mod memory;
mod seed;
mod things;

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use books::{Book, BookChanges, BookFields, BookPage, MAX_TEXT_CHARS, NOT_BLANK, Page};
pub use ids::{NaturalId, is_valid_id};
pub use memory::MemoryStore;
pub use seed::SeedError;
pub use things::Thing;

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist; the text names it, e.g. `book 42`.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A counter ran out of ids (after 2^64 books, say).
    #[error("no more {0} can be assigned")]
    Exhausted(&'static str),
}

/// A rule a field broke, for the routes to turn into a 422 pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The field's name in the request body.
    pub field: &'static str,
    /// What is wrong, e.g. `must not be blank`.
    pub message: &'static str,
}

/// How many records each resource holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Books.
    pub books: usize,
    /// Things in the catalogue.
    pub things: usize,
}

/// Book operations; each one is atomic.
#[async_trait]
pub trait BookStore: Send + Sync {
    /// A page of books in id order, with the total count.
    async fn list_books(&self, page: Page) -> Result<BookPage, StoreError>;
    /// One book.
    async fn get_book(&self, id: u64) -> Result<Book, StoreError>;
    /// Stores a new book under the next id never used before.
    async fn create_book(&self, fields: BookFields) -> Result<Book, StoreError>;
    /// Replaces the title and author of an existing book.
    async fn replace_book(&self, id: u64, fields: BookFields) -> Result<Book, StoreError>;
    /// Changes only the given fields of an existing book.
    async fn update_book(&self, id: u64, changes: BookChanges) -> Result<Book, StoreError>;
    /// Removes a book; its id is not handed out again.
    async fn delete_book(&self, id: u64) -> Result<(), StoreError>;
}

/// Read-only catalogue operations.
#[async_trait]
pub trait ThingStore: Send + Sync {
    /// The whole catalogue in natural id order.
    async fn list_things(&self) -> Result<Vec<Thing>, StoreError>;
    /// One thing.
    async fn get_thing(&self, id: &str) -> Result<Thing, StoreError>;
}

/// Everything a storage implementation provides.
#[async_trait]
pub trait Backend: BookStore + ThingStore {
    /// Records per resource, for `check-data` and the metrics gauge.
    async fn counts(&self) -> RecordCounts;
}

/// A cheap-to-clone handle to the storage implementation.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// Wraps a storage implementation.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Self(Arc::new(backend))
    }

    /// Seeds an in-memory store from the files in `data_dir`; fails whole, never half-loaded.
    pub fn load(data_dir: &Path) -> Result<Self, SeedError> {
        MemoryStore::load(data_dir).map(Self::new)
    }
}

impl Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}
