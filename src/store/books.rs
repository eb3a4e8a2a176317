//! Books: the record, its field rules, and the table that assigns ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{StoreError, Violation, check_text};

/// A book as stored and sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": 1, "title": "Java book", "author": "Jane Doe"}))]
pub struct Book {
    /// Assigned by the server; never reused.
    #[schema(minimum = 1, example = 1)]
    pub id: u64,
    /// 1 to 200 characters, not blank.
    #[schema(min_length = 1, max_length = 200, example = "Java book")]
    pub title: String,
    /// At most 200 characters, not blank; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, example = "Jane Doe")]
    pub author: Option<String>,
}

/// A book's fields, checked against the rules: what create and replace store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookFields {
    title: String,
    author: Option<String>,
}

impl BookFields {
    /// Checks `title` and `author`; every broken rule is reported, not just the first.
    pub fn parse(title: String, author: Option<String>) -> Result<Self, Vec<Violation>> {
        let mut violations = Vec::new();
        violations.extend(check_text("title", &title));
        if let Some(author) = &author {
            violations.extend(check_text("author", author));
        }
        if violations.is_empty() {
            Ok(Self { title, author })
        } else {
            Err(violations)
        }
    }
}

/// A partial change to a book, checked against the rules: what PATCH applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookChanges {
    title: Option<String>,
    /// `Some(None)` removes the author.
    author: Option<Option<String>>,
}

impl BookChanges {
    /// Checks the fields that are present.
    pub fn parse(
        title: Option<String>,
        author: Option<Option<String>>,
    ) -> Result<Self, Vec<Violation>> {
        let mut violations = Vec::new();
        if let Some(title) = &title {
            violations.extend(check_text("title", title));
        }
        if let Some(Some(author)) = &author {
            violations.extend(check_text("author", author));
        }
        if violations.is_empty() {
            Ok(Self { title, author })
        } else {
            Err(violations)
        }
    }
}

/// Which slice of the ordered list to return.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// How many records to return at most; `None` for all.
    pub limit: Option<usize>,
    /// How many records to skip.
    pub offset: usize,
}

/// A slice of books and the total count they were taken from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookPage {
    /// The books of the slice, ordered by id.
    pub books: Vec<Book>,
    /// How many books there are in all.
    pub total: usize,
}

/// All books, with the id counter: the in-memory rules, free of locks and I/O.
#[derive(Debug, Default)]
pub struct BookTable {
    rows: BTreeMap<u64, Book>,
    /// The highest id ever used; ids above it are free, ids at or below it are never handed out
    /// again, even after a delete.
    highest_id: u64,
}

impl BookTable {
    /// Builds the table from seed records; `Err` names the first id that is zero, repeated, or
    /// breaks a field rule.
    pub fn from_seed(books: Vec<Book>) -> Result<Self, String> {
        let mut table = Self::default();
        for book in books {
            if book.id == 0 {
                return Err("book 0: ids start at 1".to_owned());
            }
            if let Err(violations) = BookFields::parse(book.title.clone(), book.author.clone()) {
                let v = &violations[0];
                return Err(format!("book {}: {} {}", book.id, v.field, v.message));
            }
            table.highest_id = table.highest_id.max(book.id);
            if let Some(earlier) = table.rows.insert(book.id, book) {
                return Err(format!("book {}: duplicate id", earlier.id));
            }
        }
        Ok(table)
    }

    /// How many books there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// A page of books in id order.
    pub fn list(&self, page: Page) -> BookPage {
        let books = self
            .rows
            .values()
            .skip(page.offset)
            .take(page.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        BookPage {
            books,
            total: self.rows.len(),
        }
    }

    /// One book.
    pub fn get(&self, id: u64) -> Result<Book, StoreError> {
        self.rows.get(&id).cloned().ok_or_else(|| not_found(id))
    }

    /// Stores a new book under the next free id.
    pub fn create(&mut self, fields: BookFields) -> Result<Book, StoreError> {
        let id = self
            .highest_id
            .checked_add(1)
            .ok_or(StoreError::Exhausted("book ids"))?;
        self.highest_id = id;
        let book = Book {
            id,
            title: fields.title,
            author: fields.author,
        };
        self.rows.insert(id, book.clone());
        Ok(book)
    }

    /// Replaces both fields of an existing book.
    pub fn replace(&mut self, id: u64, fields: BookFields) -> Result<Book, StoreError> {
        let book = self.rows.get_mut(&id).ok_or_else(|| not_found(id))?;
        book.title = fields.title;
        book.author = fields.author;
        Ok(book.clone())
    }

    /// Changes the given fields of an existing book.
    pub fn update(&mut self, id: u64, changes: BookChanges) -> Result<Book, StoreError> {
        let book = self.rows.get_mut(&id).ok_or_else(|| not_found(id))?;
        if let Some(title) = changes.title {
            book.title = title;
        }
        if let Some(author) = changes.author {
            book.author = author;
        }
        Ok(book.clone())
    }

    /// Removes a book; its id stays used.
    pub fn delete(&mut self, id: u64) -> Result<(), StoreError> {
        self.rows
            .remove(&id)
            .map(|_| ())
            .ok_or_else(|| not_found(id))
    }
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
        }
    }

    #[test]
    fn ids_continue_above_the_highest_seed_id_and_are_never_reused() {
        let mut table = BookTable::from_seed(vec![book(3, "c"), book(7, "g")]).unwrap();
        assert_eq!(table.create(fields("h")).unwrap().id, 8);
        table.delete(8).unwrap();
        table.delete(7).unwrap();
        assert_eq!(table.create(fields("i")).unwrap().id, 9);
    }

    #[test]
    fn an_empty_table_starts_at_one() {
        let mut table = BookTable::default();
        assert_eq!(table.create(fields("a")).unwrap().id, 1);
    }

    #[test]
    fn list_is_ordered_by_id_and_paged() {
        let table = BookTable::from_seed(vec![book(10, "j"), book(2, "b"), book(5, "e")]).unwrap();
        let ids = |p: BookPage| p.books.iter().map(|b| b.id).collect::<Vec<_>>();
        assert_eq!(ids(table.list(Page::default())), [2, 5, 10]);
        let page = table.list(Page {
            limit: Some(1),
            offset: 1,
        });
        assert_eq!(page.total, 3);
        assert_eq!(ids(page), [5]);
        assert!(
            table
                .list(Page {
                    limit: None,
                    offset: 9
                })
                .books
                .is_empty()
        );
    }

    #[test]
    fn seeds_with_duplicate_zero_or_invalid_records_are_refused() {
        let dup = BookTable::from_seed(vec![book(1, "a"), book(1, "b")]).unwrap_err();
        assert!(dup.contains("book 1") && dup.contains("duplicate"), "{dup}");
        assert!(BookTable::from_seed(vec![book(0, "a")]).is_err());
        let blank = BookTable::from_seed(vec![book(4, "  ")]).unwrap_err();
        assert!(
            blank.contains("book 4") && blank.contains("title"),
            "{blank}"
        );
    }

    #[test]
    fn field_rules_report_every_violation() {
        let long = "x".repeat(201);
        let errs = BookFields::parse(" ".into(), Some(long)).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].field, "title");
        assert_eq!(errs[1].field, "author");
        // 200 characters is the limit, counted in characters, not bytes.
        assert!(BookFields::parse("é".repeat(200), Some("ü".repeat(200))).is_ok());
    }

    #[test]
    fn changes_touch_only_given_fields_and_can_remove_the_author() {
        let mut table = BookTable::default();
        let b = table
            .create(BookFields::parse("t".into(), Some("a".into())).unwrap())
            .unwrap();
        let same = table.update(b.id, BookChanges::default()).unwrap();
        assert_eq!(same, b);
        let changed = table
            .update(b.id, BookChanges::parse(None, Some(None)).unwrap())
            .unwrap();
        assert_eq!(changed.title, "t");
        assert_eq!(changed.author, None);
        assert!(matches!(
            table.update(99, BookChanges::default()),
            Err(StoreError::NotFound(_))
        ));
    }
}
