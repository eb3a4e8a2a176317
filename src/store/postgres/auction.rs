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
use super::{Guarded, Key, PageSql, PostgresStore, queries, sql_count, statements};
use crate::store::ids::counted_number;
use crate::store::query::{ListQuery, as_rows};
use crate::store::{
    AuctionStore, Bid, Cursor, Item, Name, NewBid, Precondition, StoreError, Upsert, User,
    UserItems, Version,
};

fn plain(e: sqlx::Error) -> StoreError {
    store_error(e, Context::PLAIN)
}

fn not_found(kind: &str, id: &str) -> StoreError {
    StoreError::NotFound(format!("{kind} {id}"))
}

/// An item with its winner, bid count, version and latest bid's placing number.
type ItemRow = (String, String, Option<String>, i64, i64, i64);

fn item((id, name, winning, bid_count, version, latest_bid): ItemRow) -> Item {
    Item {
        id,
        name,
        winning,
        bid_count: usize::try_from(bid_count).unwrap_or(usize::MAX),
        // Two's complement keeps seeded bids' negative numbers distinct.
        version: Version {
            record: version as u64,
            latest_bid: latest_bid as u64,
            bid_count: bid_count as u64,
        },
    }
}

/// The columns after an item's id and name that [`ItemRow`] reads, for the item `i`.
macro_rules! item_columns {
    () => {
        "(SELECT b.id FROM bids b WHERE b.item_id = i.id ORDER BY b.value DESC, b.seq LIMIT 1), \
         (SELECT count(*) FROM bids b WHERE b.item_id = i.id), i.version, \
         COALESCE((SELECT max(b.seq) FROM bids b WHERE b.item_id = i.id), 0)"
    };
}

/// A bid with its placing number.
type BidRow = (String, String, String, f64, i64);

fn bid((id, item, user, value, seq): BidRow) -> Bid {
    Bid {
        id,
        item,
        value,
        user,
        version: Version::of(seq as u64),
    }
}

type UserRow = (String, String, i64);

fn user((id, name, version): UserRow) -> User {
    User {
        id,
        name,
        version: Version::of(version as u64),
    }
}

/// An item's version: its own number, its latest bid and its bid count (see `versions.rs`).
const ITEM_VERSION: &str = "SELECT i.version, \
     COALESCE((SELECT max(b.seq) FROM bids b WHERE b.item_id = i.id), 0), \
     (SELECT count(*) FROM bids b WHERE b.item_id = i.id) FROM items i WHERE i.id = $1";

fn guarded_user(id: &str) -> Guarded<'_> {
    Guarded {
        lock: None,
        version: "SELECT version, 0::bigint, 0::bigint FROM users WHERE id = $1 FOR UPDATE",
        key: Key::Text(id),
        what: format!("user {id}"),
        upsert: true,
    }
}

/// The bid locks of the items a user bid on, in one order for every writer (1651074163 is
/// `ITEM_BIDS_LOCK`). A user's delete takes them before the user's row: a placer holds its
/// item's lock while it waits for the user's row (its foreign key), so the other order could
/// close a cycle, and the feed triggers need them (migrations/0004_feeds.sql).
const LOCK_USERS_ITEMS: &str = "SELECT pg_advisory_xact_lock(1651074163, held.h) \
     FROM (SELECT DISTINCT hashtext(item_id) AS h FROM bids WHERE user_id = $1 ORDER BY 1) held";

/// A user's delete under a precondition: the items' bid locks before the user's row.
fn guarded_user_delete(id: &str) -> Guarded<'_> {
    Guarded {
        lock: Some(LOCK_USERS_ITEMS),
        ..guarded_user(id)
    }
}

/// The row lock keeps bids off the item (placing share-locks it) while its version is read;
/// the item's bid lock is taken before it (the function runs below the row-locking step), in
/// the order placing takes them.
fn guarded_item(id: &str) -> Guarded<'_> {
    Guarded {
        lock: Some(
            "SELECT 1 FROM items, pg_advisory_xact_lock(1651074163, hashtext($1)) held \
             WHERE id = $1 FOR UPDATE OF items",
        ),
        version: ITEM_VERSION,
        key: Key::Text(id),
        what: format!("item {id}"),
        upsert: true,
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
            by_offset: "SELECT id, name, version FROM users ORDER BY sort_key OFFSET $1 LIMIT $2",
            after: "SELECT id, name, version FROM users WHERE sort_key > natural_sort_key($1) \
                    ORDER BY sort_key LIMIT $2",
        };
        let rows: Vec<UserRow> = self.page("list_users", sql, from, n).await?;
        Ok(rows.into_iter().map(user).collect())
    }

    async fn find_users(
        &self,
        query: &ListQuery,
        from: Cursor<User>,
        n: usize,
    ) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = self.find(&queries::USERS, query, as_rows(&from), n).await?;
        Ok(rows.into_iter().map(user).collect())
    }

    async fn get_user(&self, id: &str) -> Result<User, StoreError> {
        let _timer = self.timer("get_user");
        let mut conn = self.conn().await?;
        let row: Option<UserRow> =
            sqlx::query_as("SELECT id, name, version FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .settle(&mut conn)
                .map_err(plain)?;
        row.map(user).ok_or_else(|| not_found("user", id))
    }

    async fn create_user(&self, name: Name) -> Result<User, StoreError> {
        let _timer = self.timer("create_user");
        let mut conn = self.conn().await?;
        // The counter row's lock orders concurrent creates. A number whose id a client already
        // put above the counted range is skipped: the statement inserts nothing, the counter
        // stays past it, and the next number is tried, as `IdCounter::next` does.
        loop {
            let row: Option<UserRow> = sqlx::query_as(
                "WITH counter AS (UPDATE counters SET highest = highest + 1 \
                                  WHERE prefix = 'user' RETURNING highest) \
                 INSERT INTO users (id, name) SELECT 'user' || highest, $1 FROM counter \
                 ON CONFLICT (id) DO NOTHING RETURNING id, name, version",
            )
            .bind(name.as_ref())
            .fetch_optional(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(|e| store_error(e, Context::hands_out("user ids")))?;
            if let Some(row) = row {
                return Ok(user(row));
            }
        }
    }

    async fn put_user_if(
        &self,
        id: &str,
        name: Name,
        precondition: &Precondition,
    ) -> Result<(User, Upsert), StoreError> {
        let counted = counted("user", id);
        let key = id.to_owned();
        let write = statements(move |conn| {
            Box::pin(async move {
                // The insert reads from `bump`, so the counter row is locked first, as in a
                // create: a create and a PUT of the id it is about to hand out wait for each
                // other in order.
                let (id, name, version, created): (String, String, i64, bool) = sqlx::query_as(
                    "WITH bump AS (UPDATE counters SET highest = GREATEST(highest, $3::bigint) \
                                   WHERE prefix = 'user' AND $3::bigint IS NOT NULL RETURNING 1) \
                     INSERT INTO users (id, name) \
                     SELECT $1, $2 FROM (SELECT count(*) FROM bump) AS bumped \
                     ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, \
                     version = nextval('record_versions') \
                     RETURNING id, name, version, xmax = 0",
                )
                .bind(key)
                .bind(name.as_ref())
                .bind(counted)
                .fetch_one(conn)
                .await
                .map_err(plain)?;
                Ok((user((id, name, version)), upsert(created)))
            })
        });
        self.guarded("put_user", precondition, guarded_user(id), write)
            .await
    }

    async fn delete_user_if(
        &self,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), StoreError> {
        let key = id.to_owned();
        let write = statements(move |conn| {
            Box::pin(async move {
                // The user's row first (new bids of the user wait for it: their foreign key),
                // then the items they bid on, whose versions move because each lists its bids,
                // then the user, with bids and `user_items` rows by ON DELETE CASCADE: the
                // order placing and deleting a bid take the same rows in, so no cycle forms.
                // A transaction of its own (a savepoint inside a guarded one).
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(plain)?;
                for sql in [
                    LOCK_USERS_ITEMS,
                    "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
                    "UPDATE items SET version = nextval('record_versions') \
                     WHERE id IN (SELECT item_id FROM bids WHERE user_id = $1)",
                    "DELETE FROM users WHERE id = $1",
                ] {
                    let done = sqlx::query(sql)
                        .bind(&key)
                        .execute(&mut *tx)
                        .await
                        .map_err(plain)?;
                    if sql.starts_with("SELECT 1") && done.rows_affected() == 0 {
                        // Now, not when the connection is next used: until then its locks
                        // (the items' bid locks) would stay held in the pool.
                        tx.rollback().await.map_err(plain)?;
                        return Err(not_found("user", &key));
                    }
                }
                tx.commit().await.map_err(plain)
            })
        });
        self.guarded("delete_user", precondition, guarded_user_delete(id), write)
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
        let rows: Vec<(String, String, i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT u.id, u.name, u.version, page.first_seq, page.item_id FROM users u \
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
        let Some((user_id, user_name, version, ..)) = rows.first() else {
            return Err(not_found("user", id));
        };
        let user = user((user_id.clone(), user_name.clone(), *version));
        let items = rows
            .into_iter()
            .filter_map(|(_, _, _, seq, item)| Some((seq_cursor(seq?), item?)))
            .collect();
        Ok(UserItems { user, items })
    }

    async fn list_items(&self, from: Cursor<String>, n: usize) -> Result<Vec<Item>, StoreError> {
        let sql = PageSql {
            by_offset: concat!(
                "SELECT i.id, i.name, ",
                item_columns!(),
                " FROM items i ORDER BY i.sort_key OFFSET $1 LIMIT $2"
            ),
            after: concat!(
                "SELECT i.id, i.name, ",
                item_columns!(),
                " FROM items i WHERE i.sort_key > natural_sort_key($1) \
                 ORDER BY i.sort_key LIMIT $2"
            ),
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
        let row: Option<ItemRow> = sqlx::query_as(concat!(
            "SELECT i.id, i.name, ",
            item_columns!(),
            " FROM items i WHERE i.id = $1"
        ))
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
            let row: Option<(String, String, i64)> = sqlx::query_as(
                "WITH counter AS (UPDATE counters SET highest = highest + 1 \
                                  WHERE prefix = 'item' RETURNING highest) \
                 INSERT INTO items (id, name) SELECT 'item' || highest, $1 FROM counter \
                 ON CONFLICT (id) DO NOTHING RETURNING id, name, version",
            )
            .bind(name.as_ref())
            .fetch_optional(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(|e| store_error(e, Context::hands_out("item ids")))?;
            if let Some((id, name, version)) = row {
                return Ok(item((id, name, None, 0, version, 0)));
            }
        }
    }

    async fn put_item_if(
        &self,
        id: &str,
        name: Name,
        precondition: &Precondition,
    ) -> Result<(Item, Upsert), StoreError> {
        let counted = counted("item", id);
        let key = id.to_owned();
        let write = statements(move |conn| {
            Box::pin(async move {
                // See `put_user`. The item's bids stay; the statement's snapshot shows them
                // all.
                let (id, name, winning, bid_count, version, latest, created): (
                    String,
                    String,
                    Option<String>,
                    i64,
                    i64,
                    i64,
                    bool,
                ) = sqlx::query_as(
                    "WITH bump AS (UPDATE counters SET highest = GREATEST(highest, $3::bigint) \
                                   WHERE prefix = 'item' AND $3::bigint IS NOT NULL RETURNING 1), \
                     saved AS (INSERT INTO items (id, name) \
                               SELECT $1, $2 FROM (SELECT count(*) FROM bump) AS bumped \
                               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, \
                               version = nextval('record_versions') \
                               RETURNING id, name, version, xmax = 0 AS created) \
                     SELECT s.id, s.name, \
                     (SELECT b.id FROM bids b WHERE b.item_id = s.id \
                      ORDER BY b.value DESC, b.seq LIMIT 1), \
                     (SELECT count(*) FROM bids b WHERE b.item_id = s.id), s.version, \
                     COALESCE((SELECT max(b.seq) FROM bids b WHERE b.item_id = s.id), 0), \
                     s.created FROM saved s",
                )
                .bind(key)
                .bind(name.as_ref())
                .bind(counted)
                .fetch_one(conn)
                .await
                .map_err(plain)?;
                let row = (id, name, winning, bid_count, version, latest);
                Ok((item(row), upsert(created)))
            })
        });
        self.guarded("put_item", precondition, guarded_item(id), write)
            .await
    }

    async fn delete_item_if(
        &self,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), StoreError> {
        let key = id.to_owned();
        let write = statements(move |conn| {
            Box::pin(async move {
                // The item's bid lock first, as placing takes it (then the item's row, by the
                // delete): the feed trigger announces the delete in the item's order.
                let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(plain)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                    .bind(ITEM_BIDS_LOCK)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await
                    .map_err(plain)?;
                let deleted = sqlx::query("DELETE FROM items WHERE id = $1")
                    .bind(&key)
                    .execute(&mut *tx)
                    .await
                    .map_err(plain)?
                    .rows_affected();
                if deleted == 0 {
                    // Now, not when the connection is next used: until then the item's bid
                    // lock would stay held in the pool.
                    tx.rollback().await.map_err(plain)?;
                    return Err(not_found("item", &key));
                }
                tx.commit().await.map_err(plain)
            })
        });
        self.guarded("delete_item", precondition, guarded_item(id), write)
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
            i64,
            i64,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<f64>,
        )> = sqlx::query_as(
            "SELECT i.id, i.name, winner.id, total.n, i.version, \
             COALESCE((SELECT max(b.seq) FROM bids b WHERE b.item_id = i.id), 0), \
             page.seq, page.id, page.user_id, page.value \
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
        let Some((item_id, name, winning, bid_count, version, latest, ..)) = rows.first() else {
            return Err(not_found("item", id));
        };
        let found = item((
            item_id.clone(),
            name.clone(),
            winning.clone(),
            *bid_count,
            *version,
            *latest,
        ));
        let bids = rows
            .into_iter()
            .filter_map(|(item_id, _, _, _, _, _, seq, bid_id, user, value)| {
                let seq = seq?;
                Some((seq_cursor(seq), bid((bid_id?, item_id, user?, value?, seq))))
            })
            .collect();
        Ok((found, bids))
    }

    async fn winning_bid(&self, id: &str) -> Result<Bid, StoreError> {
        let _timer = self.timer("winning_bid");
        let mut conn = self.conn().await?;
        let row: Option<(Option<String>, Option<String>, Option<f64>, Option<i64>)> =
            sqlx::query_as(
                "SELECT winner.id, winner.user_id, winner.value, winner.seq FROM items i \
             LEFT JOIN LATERAL (SELECT b.id, b.user_id, b.value, b.seq FROM bids b \
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
            Some((Some(bid_id), Some(user), Some(value), Some(seq))) => {
                Ok(bid((bid_id, id.to_owned(), user, value, seq)))
            }
            Some(_) => Err(StoreError::NoBids(format!("item {id}"))),
        }
    }

    async fn list_bids(&self, from: Cursor<String>, n: usize) -> Result<Vec<Bid>, StoreError> {
        let sql = PageSql {
            by_offset: "SELECT id, item_id, user_id, value, seq FROM bids \
                        ORDER BY sort_key OFFSET $1 LIMIT $2",
            after: "SELECT id, item_id, user_id, value, seq FROM bids \
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
            sqlx::query_as("SELECT id, item_id, user_id, value, seq FROM bids WHERE id = $1")
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

    async fn delete_bid_if(&self, id: &str, precondition: &Precondition) -> Result<(), StoreError> {
        let _timer = self.timer("delete_bid");
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(plain)?;
        // Locks in the order placing takes them (the item's bid lock, then the user's and the
        // item's rows for the foreign keys) and then the bid's row: taking the bid's row first
        // closed a cycle with a placer and a user's delete (holding the user, waiting for the
        // bid), which PostgreSQL broke by failing one of them with a 503. A bid's user and item
        // never change, so they can be read before anything is locked.
        // Its placing number is its version, and never changes, so the precondition is
        // checked here, before any lock.
        let owner: Option<(String, String, i64)> =
            sqlx::query_as("SELECT user_id, item_id, seq FROM bids WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(plain)?;
        let Some((user, item, seq)) = owner else {
            return Err(not_found("bid", id));
        };
        precondition.check(|| format!("bid {id}"), Some(Version::of(seq as u64)))?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(ITEM_BIDS_LOCK)
            .bind(&item)
            .execute(&mut *tx)
            .await
            .map_err(plain)?;
        for (lock, key) in [
            ("SELECT 1 FROM users WHERE id = $1 FOR KEY SHARE", &user),
            // Not only shared: the item's version moves below (placers' share locks allow it).
            ("SELECT 1 FROM items WHERE id = $1 FOR NO KEY UPDATE", &item),
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
        // The item lists its bids: its version moves.
        sqlx::query("UPDATE items SET version = nextval('record_versions') WHERE id = $1")
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
