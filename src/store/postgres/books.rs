//! Books and the things catalogue in PostgreSQL: each operation is one statement.
//!
//! Book ids are `bigint`: an id above 2^63−1 cannot exist, so it is simply not found (the
//! memory store goes to 2^64−1).

use async_trait::async_trait;

use super::error::{Context, store_error};
use super::pool::Settle;
use super::{Guarded, Key, PageSql, PostgresStore, queries, statements};
use crate::store::query::{ListQuery, as_rows};
use crate::store::{
    Book, BookChanges, BookFields, BookStore, Cursor, Precondition, StoreError, Thing, ThingStore,
    Version,
};

type BookRow = (i64, String, Option<String>, i64);

fn book((id, title, author, version): BookRow) -> Book {
    Book {
        id: id.unsigned_abs(),
        title,
        author,
        version: Version::of(version.unsigned_abs()),
    }
}

/// Locks a book and reads its version, for a write with a precondition.
fn guarded(key: i64, id: u64) -> Guarded<'static> {
    Guarded {
        lock: None,
        version: "SELECT version, 0::bigint, 0::bigint FROM books WHERE id = $1 FOR UPDATE",
        key: Key::Number(key),
        what: format!("book {id}"),
        upsert: false,
    }
}

fn not_found(id: u64) -> StoreError {
    StoreError::NotFound(format!("book {id}"))
}

fn plain(e: sqlx::Error) -> StoreError {
    store_error(e, Context::PLAIN)
}

#[async_trait]
impl BookStore for PostgresStore {
    async fn list_books(&self, from: Cursor<u64>, n: usize) -> Result<Vec<Book>, StoreError> {
        let from = match from {
            Cursor::Offset(offset) => Cursor::Offset(offset),
            Cursor::After(id) => match i64::try_from(id) {
                Ok(id) => Cursor::After(id),
                // No stored id is above i64::MAX.
                Err(_) => return Ok(Vec::new()),
            },
        };
        let sql = PageSql {
            by_offset: "SELECT id, title, author, version FROM books ORDER BY id OFFSET $1 LIMIT $2",
            after: "SELECT id, title, author, version FROM books WHERE id > $1 ORDER BY id LIMIT $2",
        };
        let rows: Vec<BookRow> = self.page("list_books", sql, from, n).await?;
        Ok(rows.into_iter().map(book).collect())
    }

    async fn find_books(
        &self,
        query: &ListQuery,
        from: Cursor<Book>,
        n: usize,
    ) -> Result<Vec<Book>, StoreError> {
        let rows: Vec<BookRow> = self.find(&queries::BOOKS, query, as_rows(&from), n).await?;
        Ok(rows.into_iter().map(book).collect())
    }

    async fn get_book(&self, id: u64) -> Result<Book, StoreError> {
        let _timer = self.timer("get_book");
        let key = i64::try_from(id).map_err(|_| not_found(id))?;
        let mut conn = self.conn().await?;
        sqlx::query_as::<_, BookRow>("SELECT id, title, author, version FROM books WHERE id = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(plain)?
            .map(book)
            .ok_or_else(|| not_found(id))
    }

    async fn create_book(&self, fields: BookFields) -> Result<Book, StoreError> {
        let _timer = self.timer("create_book");
        let mut conn = self.conn().await?;
        sqlx::query_as::<_, BookRow>(
            "INSERT INTO books (id, title, author) VALUES (nextval('book_ids'), $1, $2) \
             RETURNING id, title, author, version",
        )
        .bind(fields.title())
        .bind(fields.author())
        .fetch_one(&mut *conn)
        .await
        .settle(&mut conn)
        .map(book)
        .map_err(|e| store_error(e, Context::hands_out("book ids")))
    }

    async fn replace_book_if(
        &self,
        id: u64,
        fields: BookFields,
        precondition: &Precondition,
    ) -> Result<Book, StoreError> {
        let key = i64::try_from(id).map_err(|_| not_found(id))?;
        let write = statements(move |conn| {
            Box::pin(async move {
                sqlx::query_as::<_, BookRow>(
                    "UPDATE books SET title = $2, author = $3, \
                     version = nextval('record_versions') \
                     WHERE id = $1 RETURNING id, title, author, version",
                )
                .bind(key)
                .bind(fields.title())
                .bind(fields.author())
                .fetch_optional(conn)
                .await
                .map_err(plain)?
                .map(book)
                .ok_or_else(|| not_found(id))
            })
        });
        self.guarded("replace_book", precondition, guarded(key, id), write)
            .await
    }

    async fn update_book_if(
        &self,
        id: u64,
        changes: BookChanges,
        precondition: &Precondition,
    ) -> Result<Book, StoreError> {
        let key = i64::try_from(id).map_err(|_| not_found(id))?;
        let write = statements(move |conn| {
            Box::pin(async move {
                let author = changes.author();
                // `$3` says whether the author changes at all; `$4` is the new one (NULL
                // removes it).
                sqlx::query_as::<_, BookRow>(
                    "UPDATE books SET title = COALESCE($2, title), \
                     author = CASE WHEN $3 THEN $4 ELSE author END, \
                     version = nextval('record_versions') \
                     WHERE id = $1 RETURNING id, title, author, version",
                )
                .bind(key)
                .bind(changes.title())
                .bind(author.is_some())
                .bind(author.flatten())
                .fetch_optional(conn)
                .await
                .map_err(plain)?
                .map(book)
                .ok_or_else(|| not_found(id))
            })
        });
        self.guarded("update_book", precondition, guarded(key, id), write)
            .await
    }

    async fn delete_book_if(&self, id: u64, precondition: &Precondition) -> Result<(), StoreError> {
        let key = i64::try_from(id).map_err(|_| not_found(id))?;
        let write = statements(move |conn| {
            Box::pin(async move {
                let deleted = sqlx::query("DELETE FROM books WHERE id = $1")
                    .bind(key)
                    .execute(conn)
                    .await
                    .map_err(plain)?
                    .rows_affected();
                if deleted == 0 {
                    return Err(not_found(id));
                }
                Ok(())
            })
        });
        self.guarded("delete_book", precondition, guarded(key, id), write)
            .await
    }
}

type ThingRow = (String, String, Option<String>);

fn thing((id, name, description): ThingRow) -> Thing {
    Thing {
        id,
        name,
        description,
        // The catalogue never changes after its seed.
        version: Version::default(),
    }
}

#[async_trait]
impl ThingStore for PostgresStore {
    async fn list_things(&self, from: Cursor<String>, n: usize) -> Result<Vec<Thing>, StoreError> {
        let sql = PageSql {
            by_offset: "SELECT id, name, description FROM things \
                        ORDER BY sort_key OFFSET $1 LIMIT $2",
            after: "SELECT id, name, description FROM things \
                    WHERE sort_key > natural_sort_key($1) ORDER BY sort_key LIMIT $2",
        };
        let rows: Vec<ThingRow> = self.page("list_things", sql, from, n).await?;
        Ok(rows.into_iter().map(thing).collect())
    }

    async fn find_things(
        &self,
        query: &ListQuery,
        from: Cursor<Thing>,
        n: usize,
    ) -> Result<Vec<Thing>, StoreError> {
        let rows: Vec<ThingRow> = self
            .find(&queries::THINGS, query, as_rows(&from), n)
            .await?;
        Ok(rows.into_iter().map(thing).collect())
    }

    async fn get_thing(&self, id: &str) -> Result<Thing, StoreError> {
        let _timer = self.timer("get_thing");
        let mut conn = self.conn().await?;
        sqlx::query_as::<_, ThingRow>("SELECT id, name, description FROM things WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(plain)?
            .map(thing)
            .ok_or_else(|| StoreError::NotFound(format!("thing {id}")))
    }
}
