//! The in-memory books: the table that keeps them in id order and assigns ids.

use super::ordered::{self, RankedMap, read_chunk};
use crate::store::query::{ListQuery, Row, Value, as_rows};
use crate::store::{Book, BookChanges, BookFields, Cursor, Precondition, StoreError, Version};

/// A book as the table keeps it: the id is its key, and its version one number, so that a book
/// costs no more than it did before it had a version (the request-path harness counts bytes per
/// book).
#[derive(Debug)]
struct StoredBook {
    title: String,
    author: Option<String>,
    version: u64,
}

/// A stored book as a list query sees it.
struct BookRow<'a>(u64, &'a StoredBook);

impl Row for BookRow<'_> {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Integer(self.0),
            1 => Value::Text(&self.1.title),
            _ => self.1.author.as_deref().map_or(Value::Null, Value::Text),
        }
    }
}

fn book(id: u64, stored: &StoredBook) -> Book {
    Book {
        id,
        title: stored.title.clone(),
        author: stored.author.clone(),
        version: Version::of(stored.version),
    }
}

/// All books, with the id counter: the in-memory rules, free of locks and I/O.
#[derive(Debug)]
pub struct BookTable {
    rows: RankedMap<u64, StoredBook>,
    /// The highest id ever used; ids above it are free, ids at or below it are never handed out
    /// again, even after a delete.
    highest_id: u64,
    /// The most books the table may hold.
    max_records: usize,
    /// Bumped by every change: the version of the last book written, and the list's.
    changes: u64,
}

impl BookTable {
    /// An empty table that holds at most `max_records` books.
    pub fn new(max_records: usize) -> Self {
        Self {
            rows: RankedMap::new(),
            highest_id: 0,
            max_records,
            changes: 0,
        }
    }

    /// Builds the table from seed records; `Err` names the first id that is zero, repeated, or
    /// breaks a field rule, or says that there are more than `max_records`.
    pub fn from_seed(books: Vec<Book>, max_records: usize) -> Result<Self, String> {
        if books.len() > max_records {
            return Err(too_many("books", books.len(), max_records));
        }
        let mut table = Self::new(max_records);
        for book in books {
            if book.id == 0 {
                return Err("book 0: ids start at 1".to_owned());
            }
            if let Err(violations) = BookFields::check(&book.title, book.author.as_deref()) {
                let v = &violations[0];
                return Err(format!("book {}: {} {}", book.id, v.field, v.message));
            }
            table.highest_id = table.highest_id.max(book.id);
            let stored = StoredBook {
                title: book.title,
                author: book.author,
                version: table.next_version(),
            };
            if table.rows.insert(book.id, stored).is_some() {
                return Err(format!("book {}: duplicate id", book.id));
            }
        }
        Ok(table)
    }

    /// How many books there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// At most `n` books in id order from `from`.
    pub fn list(&self, from: &Cursor<u64>, n: usize) -> Vec<Book> {
        read_chunk(&self.rows, from, n, |&id, stored| book(id, stored))
    }

    /// At most `n` books in `query`'s list and order from `from`.
    pub fn find(&self, query: &ListQuery, from: &Cursor<Book>, n: usize) -> Vec<Book> {
        let resume = match from {
            Cursor::After(book) => Some(&book.id),
            Cursor::Offset(_) => None,
        };
        let (rows, from) = (&self.rows, &as_rows(from));
        let row = |&id, stored| BookRow(id, stored);
        ordered::find(rows, query, from, resume, n, row, |row| book(row.0, row.1))
    }

    /// How many books are in `query`'s list.
    pub fn count(&self, query: &ListQuery) -> usize {
        ordered::count(&self.rows, query, |&id, stored| BookRow(id, stored))
    }

    /// One book.
    pub fn get(&self, id: u64) -> Result<Book, StoreError> {
        self.rows
            .get(&id)
            .map(|stored| book(id, stored))
            .ok_or_else(|| not_found(id))
    }

    /// A new version: the one after every version handed out so far.
    fn next_version(&mut self) -> u64 {
        self.changes += 1;
        self.changes
    }

    /// The version of the whole table: it moves with every change.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// `Ok` if the book `id` may be written under `precondition`; a missing book is 404
    /// whatever the precondition (RFC 9110 §13.2.1: it applies only where the answer would be
    /// a success).
    fn check_write(&self, id: u64, precondition: &Precondition) -> Result<(), StoreError> {
        let stored = self.rows.get(&id).ok_or_else(|| not_found(id))?;
        precondition.check(|| format!("book {id}"), Some(Version::of(stored.version)))
    }

    /// Stores a new book under the next free id.
    pub fn create(&mut self, fields: BookFields) -> Result<Book, StoreError> {
        if self.rows.len() >= self.max_records {
            return Err(StoreError::Full {
                what: "books",
                limit: self.max_records,
            });
        }
        let id = self
            .highest_id
            .checked_add(1)
            .ok_or(StoreError::Exhausted("book ids"))?;
        self.highest_id = id;
        let (title, author) = fields.into_parts();
        let stored = StoredBook {
            title,
            author,
            version: self.next_version(),
        };
        let created = book(id, &stored);
        self.rows.insert(id, stored);
        Ok(created)
    }

    /// Replaces both fields of an existing book.
    pub fn replace(
        &mut self,
        id: u64,
        fields: BookFields,
        precondition: &Precondition,
    ) -> Result<Book, StoreError> {
        self.check_write(id, precondition)?;
        let version = self.next_version();
        let stored = self.rows.get_mut(&id).ok_or_else(|| not_found(id))?;
        (stored.title, stored.author) = fields.into_parts();
        stored.version = version;
        Ok(book(id, stored))
    }

    /// Changes the given fields of an existing book.
    pub fn update(
        &mut self,
        id: u64,
        changes: BookChanges,
        precondition: &Precondition,
    ) -> Result<Book, StoreError> {
        self.check_write(id, precondition)?;
        let version = self.next_version();
        let stored = self.rows.get_mut(&id).ok_or_else(|| not_found(id))?;
        let (title, author) = changes.into_parts();
        if let Some(title) = title {
            stored.title = title;
        }
        if let Some(author) = author {
            stored.author = author;
        }
        stored.version = version;
        Ok(book(id, stored))
    }

    /// Removes a book; its id stays used.
    pub fn delete(&mut self, id: u64, precondition: &Precondition) -> Result<(), StoreError> {
        self.check_write(id, precondition)?;
        self.rows.remove(&id);
        self.next_version();
        Ok(())
    }
}

/// The seed error for a resource with more records than the cap.
pub fn too_many(what: &str, count: usize, max_records: usize) -> String {
    format!(
        "{count} {what}, more than MAX_RECORDS_PER_RESOURCE ({max_records}) allows: raise the \
         setting or seed fewer"
    )
}

fn not_found(id: u64) -> StoreError {
    StoreError::NotFound(format!("book {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(title: &str) -> BookFields {
        BookFields::parse(title.to_owned(), None).unwrap()
    }

    fn book(id: u64, title: &str) -> Book {
        Book {
            id,
            title: title.to_owned(),
            author: None,
            version: Version::default(),
        }
    }

    fn seeded(books: Vec<Book>) -> Result<BookTable, String> {
        BookTable::from_seed(books, 100)
    }

    #[test]
    fn ids_continue_above_the_highest_seed_id_and_are_never_reused() {
        let mut table = seeded(vec![book(3, "c"), book(7, "g")]).unwrap();
        assert_eq!(table.create(fields("h")).unwrap().id, 8);
        table.delete(8, &Precondition::default()).unwrap();
        table.delete(7, &Precondition::default()).unwrap();
        assert_eq!(table.create(fields("i")).unwrap().id, 9);
    }

    #[test]
    fn a_full_table_refuses_creates_and_changes_nothing() {
        let mut table = BookTable::new(2);
        table.create(fields("a")).unwrap();
        table.create(fields("b")).unwrap();
        assert!(matches!(
            table.create(fields("c")),
            Err(StoreError::Full {
                what: "books",
                limit: 2
            })
        ));
        assert_eq!(table.len(), 2);
        table.delete(1, &Precondition::default()).unwrap();
        // The refused create used no id.
        assert_eq!(table.create(fields("d")).unwrap().id, 3);
        let over = seeded((1..=101).map(|id| book(id, "t")).collect()).unwrap_err();
        assert!(
            over.contains("101 books") && over.contains("MAX_RECORDS_PER_RESOURCE"),
            "{over}"
        );
    }

    #[test]
    fn seeds_with_duplicate_zero_or_invalid_records_are_refused() {
        let dup = seeded(vec![book(1, "a"), book(1, "b")]).unwrap_err();
        assert!(dup.contains("book 1") && dup.contains("duplicate"), "{dup}");
        assert!(seeded(vec![book(0, "a")]).is_err());
        let blank = seeded(vec![book(4, "  ")]).unwrap_err();
        assert!(
            blank.contains("book 4") && blank.contains("title"),
            "{blank}"
        );
    }
}
