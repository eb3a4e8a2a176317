//! The bid tracker in PostgreSQL: users, items and bids.
//!
//! An item's winner is read through `bids_ranking` (highest value, then lowest placing number)
//! and its `bid_count` is a `count(*)` over `bids_by_item`: O(bids on the item), which keeps
//! placing a bid from updating (and so locking) the item's row, so bids on one hot item do
//! not queue behind each other.
//!
//! Locks are always taken in one order, an item's bid lock (a transaction-scoped advisory lock,
//! see `bid_batches.rs`) → users → items → bids → `user_items`, so that concurrent operations
//! wait for each other instead of deadlocking: placing bids takes the item's bid lock, then
//! locks their users and item (`FOR KEY SHARE`, through the foreign keys) as it inserts;
//! deleting a bid takes its item's bid lock, its user and item (`FOR KEY SHARE`), then the bid,
//! then its `user_items` row; deleting a user or an item locks that row, then cascades to bids,
//! then to `user_items` (no bid lock: it waits for a placer's key share, or the placer for it).

use async_trait::async_trait;

use super::bid_batches::ITEM_BIDS_LOCK;
use super::error::{Context, store_error};
use super::pool::Settle;
use super::{PageSql, PostgresStore, queries, sql_count};
use crate::store::ids::counted_number;
use crate::store::query::{ListQuery, as_rows};
use crate::store::{
    AuctionStore, Bid, Cursor, Item, Name, NewBid, StoreError, Upsert, User, UserItems,
};

fn plain(e: sqlx::Error) -> StoreError {
    store_error(e, Context::PLAIN)
}

fn not_found(kind: &str, id: &str) -> StoreError {
    StoreError::NotFound(format!("{kind} {id}"))
}

type ItemRow = (String, String, Option<String>, i64);

fn item((id, name, winning, bid_count): ItemRow) -> Item {
    Item {
        id,
        name,
        winning,
        bid_count: usize::try_from(bid_count).unwrap_or(usize::MAX),
    }
}

type BidRow = (String, String, String, f64);

fn bid((id, item, user, value): BidRow) -> Bid {
    Bid {
        id,
        item,
        value,
        user,
    }
}

fn upsert(created: bool) -> Upsert {
    if created {
        Upsert::Created
    } else {
        Upsert::Replaced
    }
}

/// The counter number a PUT of `id` moves the `prefix` counter past, as a `bigint`.
fn counted(prefix: &str, id: &str) -> Option<i64> {
    counted_number(prefix, id).and_then(|n| i64::try_from(n).ok())
}

#[async_trait]
impl AuctionStore for PostgresStore {
    async fn list_users(&self, from: Cursor<String>, n: usize) -> Result<Vec<User>, StoreError> {
        let sql = PageSql {
            by_offset: "SELECT id, name FROM users ORDER BY sort_key OFFSET $1 LIMIT $2",
            after: "SELECT id, name FROM users WHERE sort_key > natural_sort_key($1) \
                    ORDER BY sort_key LIMIT $2",
        };
        let rows: Vec<(String, String)> = self.page("list_users", sql, from, n).await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| User { id, name })
            .collect())
    }

    async fn find_users(
        &self,
        query: &ListQuery,
        from: Cursor<User>,
        n: usize,
    ) -> Result<Vec<User>, StoreError> {
        let rows: Vec<(String, String)> =
            self.find(&queries::USERS, query, as_rows(&from), n).await?;
        Ok(rows
            .into_iter()
            .map(|(id, name)| User { id, name })
            .collect())
    }

    async fn get_user(&self, id: &str) -> Result<User, StoreError> {
        let _timer = self.timer("get_user");
        let mut conn = self.conn().await?;
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, name FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .settle(&mut conn)
                .map_err(plain)?;
        row.map(|(id, name)| User { id, name })
            .ok_or_else(|| not_found("user", id))
    }

    async fn create_user(&self, name: Name) -> Result<User, StoreError> {
        let _timer = self.timer("create_user");
        let mut conn = self.conn().await?;
        // The counter row's lock orders concurrent creates. A number whose id a client already
        // put above the counted range is skipped: the statement inserts nothing, the counter
        // stays past it, and the next number is tried, as `IdCounter::next` does.
        loop {
            let row: Option<(String, String)> = sqlx::query_as(
                "WITH counter AS (UPDATE counters SET highest = highest + 1 \
                                  WHERE prefix = 'user' RETURNING highest) \
                 INSERT INTO users (id, name) SELECT 'user' || highest, $1 FROM counter \
                 ON CONFLICT (id) DO NOTHING RETURNING id, name",
            )
            .bind(name.as_ref())
            .fetch_optional(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(|e| store_error(e, Context::hands_out("user ids")))?;
            if let Some((id, name)) = row {
                return Ok(User { id, name });
            }
        }
    }

    async fn put_user(&self, id: &str, name: Name) -> Result<(User, Upsert), StoreError> {
        let _timer = self.timer("put_user");
        let mut conn = self.conn().await?;
        // The insert reads from `bump`, so the counter row is locked first, as in a create:
        // a create and a PUT of the id it is about to hand out wait for each other in order.
        let (id, name, created): (String, String, bool) = sqlx::query_as(
            "WITH bump AS (UPDATE counters SET highest = GREATEST(highest, $3::bigint) \
                           WHERE prefix = 'user' AND $3::bigint IS NOT NULL RETURNING 1) \
             INSERT INTO users (id, name) SELECT $1, $2 FROM (SELECT count(*) FROM bump) AS bumped \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name \
             RETURNING id, name, xmax = 0",
        )
        .bind(id)
        .bind(name.as_ref())
        .bind(counted("user", id))
        .fetch_one(&mut *conn)
        .await
        .settle(&mut conn)
        .map_err(plain)?;
        Ok((User { id, name }, upsert(created)))
    }

    async fn delete_user(&self, id: &str) -> Result<(), StoreError> {
        // Bids and `user_items` rows go by ON DELETE CASCADE, in the same statement.
        let sql = "DELETE FROM users WHERE id = $1";
        self.delete_by_id("delete_user", sql, id, || not_found("user", id))
            .await
    }

    async fn user_items(
        &self,
        id: &str,
        after: Option<u64>,
        n: usize,
    ) -> Result<UserItems, StoreError> {
        let _timer = self.timer("user_items");
        let after = after.map_or(i64::MIN, cursor_seq);
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT u.id, u.name, page.first_seq, page.item_id FROM users u \
             LEFT JOIN LATERAL (SELECT first_seq, item_id FROM user_items \
                                WHERE user_id = u.id AND first_seq > $2 \
                                ORDER BY first_seq LIMIT $3) page ON true \
             WHERE u.id = $1 ORDER BY page.first_seq",
        )
        .bind(id)
        .bind(after)
        .bind(sql_count(n))
        .fetch_all(&mut *conn)
        .await
        .settle(&mut conn)
        .map_err(plain)?;
        let Some((user_id, user_name, ..)) = rows.first() else {
            return Err(not_found("user", id));
        };
        let user = User {
            id: user_id.clone(),
            name: user_name.clone(),
        };
        let items = rows
            .into_iter()
            .filter_map(|(_, _, seq, item)| Some((seq_cursor(seq?), item?)))
            .collect();
        Ok(UserItems { user, items })
    }

    async fn list_items(&self, from: Cursor<String>, n: usize) -> Result<Vec<Item>, StoreError> {
        let sql = PageSql {
            by_offset: "SELECT i.id, i.name, \
                        (SELECT b.id FROM bids b WHERE b.item_id = i.id \
                         ORDER BY b.value DESC, b.seq LIMIT 1), \
                        (SELECT count(*) FROM bids b WHERE b.item_id = i.id) \
                        FROM items i ORDER BY i.sort_key OFFSET $1 LIMIT $2",
            after: "SELECT i.id, i.name, \
                    (SELECT b.id FROM bids b WHERE b.item_id = i.id \
                     ORDER BY b.value DESC, b.seq LIMIT 1), \
                    (SELECT count(*) FROM bids b WHERE b.item_id = i.id) \
                    FROM items i WHERE i.sort_key > natural_sort_key($1) \
                    ORDER BY i.sort_key LIMIT $2",
        };
        let rows: Vec<ItemRow> = self.page("list_items", sql, from, n).await?;
        Ok(rows.into_iter().map(item).collect())
    }

    async fn find_items(
        &self,
        query: &ListQuery,
        from: Cursor<Item>,
        n: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let rows: Vec<ItemRow> = self.find(&queries::ITEMS, query, as_rows(&from), n).await?;
        Ok(rows.into_iter().map(item).collect())
    }

    async fn get_item(&self, id: &str) -> Result<Item, StoreError> {
        let _timer = self.timer("get_item");
        let mut conn = self.conn().await?;
        let row: Option<ItemRow> = sqlx::query_as(
            "SELECT i.id, i.name, \
             (SELECT b.id FROM bids b WHERE b.item_id = i.id \
              ORDER BY b.value DESC, b.seq LIMIT 1), \
             (SELECT count(*) FROM bids b WHERE b.item_id = i.id) \
             FROM items i WHERE i.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .settle(&mut conn)
        .map_err(plain)?;
        row.map(item).ok_or_else(|| not_found("item", id))
    }

    async fn create_item(&self, name: Name) -> Result<Item, StoreError> {
        let _timer = self.timer("create_item");
        let mut conn = self.conn().await?;
        // As in `create_user`; a new item has no bids (they would need it to exist).
        loop {
            let row: Option<(String, String)> = sqlx::query_as(
                "WITH counter AS (UPDATE counters SET highest = highest + 1 \
                                  WHERE prefix = 'item' RETURNING highest) \
                 INSERT INTO items (id, name) SELECT 'item' || highest, $1 FROM counter \
                 ON CONFLICT (id) DO NOTHING RETURNING id, name",
            )
            .bind(name.as_ref())
            .fetch_optional(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(|e| store_error(e, Context::hands_out("item ids")))?;
            if let Some((id, name)) = row {
                return Ok(item((id, name, None, 0)));
            }
        }
    }

    async fn put_item(&self, id: &str, name: Name) -> Result<(Item, Upsert), StoreError> {
        let _timer = self.timer("put_item");
        let mut conn = self.conn().await?;
        // See `put_user`. The item's bids stay; the statement's snapshot shows them all.
        let (id, name, winning, bid_count, created): (String, String, Option<String>, i64, bool) =
            sqlx::query_as(
                "WITH bump AS (UPDATE counters SET highest = GREATEST(highest, $3::bigint) \
                               WHERE prefix = 'item' AND $3::bigint IS NOT NULL RETURNING 1), \
                 saved AS (INSERT INTO items (id, name) \
                           SELECT $1, $2 FROM (SELECT count(*) FROM bump) AS bumped \
                           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name \
                           RETURNING id, name, xmax = 0 AS created) \
                 SELECT s.id, s.name, \
                 (SELECT b.id FROM bids b WHERE b.item_id = s.id \
                  ORDER BY b.value DESC, b.seq LIMIT 1), \
                 (SELECT count(*) FROM bids b WHERE b.item_id = s.id), \
                 s.created FROM saved s",
            )
            .bind(id)
            .bind(name.as_ref())
            .bind(counted("item", id))
            .fetch_one(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(plain)?;
        Ok((item((id, name, winning, bid_count)), upsert(created)))
    }

    async fn delete_item(&self, id: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM items WHERE id = $1";
        self.delete_by_id("delete_item", sql, id, || not_found("item", id))
            .await
    }

    async fn item_bids(
        &self,
        id: &str,
        from: Cursor<u64>,
        n: usize,
    ) -> Result<(Item, Vec<(u64, Bid)>), StoreError> {
        let _timer = self.timer("item_bids");
        // One statement, so one snapshot: the winner, the count and the page agree.
        let (after, offset) = match from {
            Cursor::Offset(offset) => (i64::MIN, sql_count(offset)),
            Cursor::After(seq) => (cursor_seq(seq), 0),
        };
        let mut conn = self.conn().await?;
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            String,
            String,
            Option<String>,
            i64,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<f64>,
        )> = sqlx::query_as(
            "SELECT i.id, i.name, winner.id, total.n, page.seq, page.id, page.user_id, page.value \
             FROM items i \
             LEFT JOIN LATERAL (SELECT b.id FROM bids b WHERE b.item_id = i.id \
                                ORDER BY b.value DESC, b.seq LIMIT 1) winner ON true \
             CROSS JOIN LATERAL (SELECT count(*) AS n FROM bids b WHERE b.item_id = i.id) total \
             LEFT JOIN LATERAL (SELECT b.seq, b.id, b.user_id, b.value FROM bids b \
                                WHERE b.item_id = i.id AND b.seq > $2 \
                                ORDER BY b.seq OFFSET $3 LIMIT $4) page ON true \
             WHERE i.id = $1 ORDER BY page.seq",
        )
        .bind(id)
        .bind(after)
        .bind(offset)
        .bind(sql_count(n))
        .fetch_all(&mut *conn)
        .await
        .settle(&mut conn)
        .map_err(plain)?;
        let Some((item_id, name, winning, bid_count, ..)) = rows.first() else {
            return Err(not_found("item", id));
        };
        let found = item((item_id.clone(), name.clone(), winning.clone(), *bid_count));
        let bids = rows
            .into_iter()
            .filter_map(|(item_id, _, _, _, seq, bid_id, user, value)| {
                Some((seq_cursor(seq?), bid((bid_id?, item_id, user?, value?))))
            })
            .collect();
        Ok((found, bids))
    }

    async fn winning_bid(&self, id: &str) -> Result<Bid, StoreError> {
        let _timer = self.timer("winning_bid");
        let mut conn = self.conn().await?;
        let row: Option<(Option<String>, Option<String>, Option<f64>)> = sqlx::query_as(
            "SELECT winner.id, winner.user_id, winner.value FROM items i \
             LEFT JOIN LATERAL (SELECT b.id, b.user_id, b.value FROM bids b \
                                WHERE b.item_id = i.id \
                                ORDER BY b.value DESC, b.seq LIMIT 1) winner ON true \
             WHERE i.id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .settle(&mut conn)
        .map_err(plain)?;
        match row {
            None => Err(not_found("item", id)),
            Some((Some(bid_id), Some(user), Some(value))) => {
                Ok(bid((bid_id, id.to_owned(), user, value)))
            }
            Some(_) => Err(StoreError::NoBids(format!("item {id}"))),
        }
    }

    async fn list_bids(&self, from: Cursor<String>, n: usize) -> Result<Vec<Bid>, StoreError> {
        let sql = PageSql {
            by_offset: "SELECT id, item_id, user_id, value FROM bids \
                        ORDER BY sort_key OFFSET $1 LIMIT $2",
            after: "SELECT id, item_id, user_id, value FROM bids \
                    WHERE sort_key > natural_sort_key($1) ORDER BY sort_key LIMIT $2",
        };
        let rows: Vec<BidRow> = self.page("list_bids", sql, from, n).await?;
        Ok(rows.into_iter().map(bid).collect())
    }

    async fn find_bids(
        &self,
        query: &ListQuery,
        from: Cursor<Bid>,
        n: usize,
    ) -> Result<Vec<Bid>, StoreError> {
        let rows: Vec<BidRow> = self.find(&queries::BIDS, query, as_rows(&from), n).await?;
        Ok(rows.into_iter().map(bid).collect())
    }

    async fn get_bid(&self, id: &str) -> Result<Bid, StoreError> {
        let _timer = self.timer("get_bid");
        let mut conn = self.conn().await?;
        let row: Option<BidRow> =
            sqlx::query_as("SELECT id, item_id, user_id, value FROM bids WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .settle(&mut conn)
                .map_err(plain)?;
        row.map(bid).ok_or_else(|| not_found("bid", id))
    }

    async fn place_bid(&self, new: NewBid) -> Result<Bid, StoreError> {
        let _timer = self.timer("place_bid");
        self.place_bid_batched(new).await
    }

    async fn delete_bid(&self, id: &str) -> Result<(), StoreError> {
        let _timer = self.timer("delete_bid");
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(plain)?;
        // Locks in the order placing takes them (the item's bid lock, then the user's and the
        // item's rows for the foreign keys) and then the bid's row: taking the bid's row first
        // closed a cycle with a placer and a user's delete (holding the user, waiting for the
        // bid), which PostgreSQL broke by failing one of them with a 503. A bid's user and item
        // never change, so they can be read before anything is locked.
        let owner: Option<(String, String)> =
            sqlx::query_as("SELECT user_id, item_id FROM bids WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(plain)?;
        let Some((user, item)) = owner else {
            return Err(not_found("bid", id));
        };
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(ITEM_BIDS_LOCK)
            .bind(&item)
            .execute(&mut *tx)
            .await
            .map_err(plain)?;
        for (lock, key) in [
            ("SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE", &user),
            ("SELECT 1 FROM items WHERE id = $1 FOR KEY SHARE", &item),
        ] {
            sqlx::query(lock)
                .bind(key)
                .execute(&mut *tx)
                .await
                .map_err(plain)?;
        }
        // Gone meanwhile (deleted with its user or item, or by another delete): not found.
        let deleted = sqlx::query("DELETE FROM bids WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(plain)?
            .rows_affected();
        if deleted == 0 {
            return Err(not_found("bid", id));
        }
        // A new statement, a new snapshot: with the item's lock held, no bid on it is being
        // placed, and the user's remaining bids are all seen.
        sqlx::query(
            "WITH remaining AS (SELECT min(seq) AS first FROM bids \
                                WHERE user_id = $1 AND item_id = $2), \
             dropped AS (DELETE FROM user_items WHERE user_id = $1 AND item_id = $2 \
                         AND (SELECT first FROM remaining) IS NULL) \
             UPDATE user_items SET first_seq = remaining.first FROM remaining \
             WHERE user_id = $1 AND item_id = $2 AND remaining.first IS NOT NULL \
             AND first_seq <> remaining.first",
        )
        .bind(&user)
        .bind(&item)
        .execute(&mut *tx)
        .await
        .map_err(plain)?;
        tx.commit().await.settle(&mut conn).map_err(plain)
    }
}

/// A placing number (`bids.seq`) as the store traits' cursor. Seeded bids have negative
/// numbers (so that the sequence, which also names placed bids, starts where the memory store's
/// counter would), placed bids positive ones: flipping the sign bit maps `i64` onto `u64` in
/// order.
fn seq_cursor(seq: i64) -> u64 {
    (seq as u64) ^ (1 << 63)
}

/// The placing number a cursor from [`seq_cursor`] stands for.
fn cursor_seq(cursor: u64) -> i64 {
    (cursor ^ (1 << 63)) as i64
}
