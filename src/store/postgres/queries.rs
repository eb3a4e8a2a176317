//! Filtered, searched and sorted lists in SQL: [`ListQuery`]'s rules (`store/query.rs`) written
//! as one `WHERE … ORDER BY` per chunk, so that both engines answer a query alike.
//!
//! - Text orders by code point (`COLLATE "C"`), ids by `natural_sort_key`, and a missing value
//!   last ascending, first descending: PostgreSQL's default `NULLS LAST` / `DESC NULLS FIRST`.
//! - `q` lowercases with ICU's root locale (`und-x-icu`), whose case mapping is Unicode's, as
//!   Rust's `to_lowercase` is; the database's own locale might be `C`, which folds ASCII only.
//!   `strpos` rather than `LIKE`, so that `%` and `_` in the search text are plain characters.
//! - Chunks after the first continue after the last row sent (keyset), spelled out key by key
//!   because the keys may mix directions and hold NULLs.
//!
//! Every value is bound; field names and SQL come only from the tables below, never from input.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};

use super::PostgresStore;
use super::error::{Context, store_error};
use super::pool::Settle;
use crate::store::query::{Fields, Kind, ListQuery, Operand, Row, SortKey, Test, Value};
use crate::store::{Cursor, StoreError};

/// How one list is read: its rows under the alias `r`, with a column per field.
pub(super) struct Listing {
    /// The operation's name in the query-latency metric.
    pub op: &'static str,
    /// `FROM` this (a table or a derived one), aliased `r`.
    pub from: &'static str,
    /// The selected columns, in the order the row type reads them.
    pub select: &'static str,
    /// Per field of the list (same order), its column.
    pub columns: &'static [&'static str],
    /// What orders rows by id: the natural sort key, or the number.
    pub id_order: &'static str,
    /// The list's fields.
    pub fields: Fields,
}

/// The winner, bid count, version and latest bid of item `i`, as `list_items` reads them.
macro_rules! item_columns {
    () => {
        "(SELECT b.id FROM bids b WHERE b.item_id = i.id ORDER BY b.value DESC, b.seq LIMIT 1) \
         AS winning, (SELECT count(*) FROM bids b WHERE b.item_id = i.id) AS bid_count, \
         i.version, COALESCE((SELECT max(b.seq) FROM bids b WHERE b.item_id = i.id), 0) AS latest"
    };
}

pub(super) const BOOKS: Listing = Listing {
    op: "find_books",
    from: "books r",
    select: "r.id, r.title, r.author, r.version",
    columns: &["r.id", "r.title", "r.author"],
    id_order: "r.id",
    fields: crate::store::query::BOOKS,
};

pub(super) const THINGS: Listing = Listing {
    op: "find_things",
    from: "things r",
    select: "r.id, r.name, r.description",
    columns: &["r.id", "r.name", "r.description"],
    id_order: "r.sort_key",
    fields: crate::store::query::THINGS,
};

pub(super) const USERS: Listing = Listing {
    op: "find_users",
    from: "users r",
    select: "r.id, r.name, r.version",
    columns: &["r.id", "r.name"],
    id_order: "r.sort_key",
    fields: crate::store::query::USERS,
};

pub(super) const ITEMS: Listing = Listing {
    op: "find_items",
    from: concat!(
        "(SELECT i.id, i.sort_key, i.name, ",
        item_columns!(),
        " FROM items i) r"
    ),
    select: "r.id, r.name, r.winning, r.bid_count, r.version, r.latest",
    columns: &["r.id", "r.name", "r.winning"],
    id_order: "r.sort_key",
    fields: crate::store::query::ITEMS,
};

pub(super) const BIDS: Listing = Listing {
    op: "find_bids",
    from: "bids r",
    select: "r.id, r.item_id, r.user_id, r.value, r.seq",
    columns: &["r.id", "r.item_id", "r.user_id", "r.value"],
    id_order: "r.sort_key",
    fields: crate::store::query::BIDS,
};

impl Listing {
    /// The expression that orders rows by field `at`.
    fn order_of(&self, at: usize) -> String {
        let column = self.columns[at];
        match self.fields[at].kind {
            _ if at == 0 => self.id_order.to_owned(),
            Kind::Text => format!("{column} COLLATE \"C\""),
            Kind::Id => format!("natural_sort_key({column})"),
            Kind::Integer | Kind::Number => column.to_owned(),
        }
    }

    /// Binds `value` as it compares with [`Listing::order_of`].
    fn push_ordered(sql: &mut QueryBuilder<Postgres>, value: Value<'_>) {
        match value {
            Value::Integer(n) => {
                sql.push_bind(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Value::Number(n) => {
                sql.push_bind(n);
            }
            Value::Id(id) => {
                sql.push("natural_sort_key(")
                    .push_bind(id.to_owned())
                    .push(")");
            }
            Value::Text(text) => {
                sql.push_bind(text.to_owned());
            }
            Value::Null => {
                sql.push("NULL");
            }
        }
    }

    /// ` AND …` for every filter and the search.
    fn push_conditions(&self, sql: &mut QueryBuilder<Postgres>, query: &ListQuery) {
        for filter in &query.filters {
            let column = self.columns[filter.field];
            sql.push(" AND ");
            let operator = match filter.test {
                Test::Equal => "=",
                Test::AtLeast => ">=",
                Test::AtMost => "<=",
            };
            match &filter.operand {
                Operand::Null => {
                    sql.push(format_args!("{column} IS NULL"));
                }
                Operand::Integer(n) if i64::try_from(*n).is_ok() => {
                    sql.push(format_args!("{column} {operator} "))
                        .push_bind(*n as i64);
                }
                // Above every id PostgreSQL can hold.
                Operand::Integer(_) | Operand::AboveAll => {
                    sql.push(if filter.test == Test::AtMost {
                        "TRUE"
                    } else {
                        "FALSE"
                    });
                }
                Operand::Number(n) => {
                    sql.push(format_args!("{column} {operator} ")).push_bind(*n);
                }
                // PostgreSQL text cannot hold NUL, nor can a stored text (no control
                // characters): such a filter matches nothing, as in memory.
                Operand::Text(text) if text.contains('\0') => {
                    sql.push("FALSE");
                }
                Operand::Text(text) => {
                    sql.push(format_args!("{column} {operator} "))
                        .push_bind(text.clone());
                }
            }
        }
        if let Some(text) = &query.search {
            if text.contains('\0') {
                sql.push(" AND FALSE");
                return;
            }
            sql.push(" AND (FALSE");
            for (at, field) in self.fields.iter().enumerate() {
                if field.searched() {
                    let column = self.columns[at];
                    sql.push(format_args!(
                        " OR strpos(lower({column} COLLATE \"und-x-icu\"), "
                    ))
                    .push_bind(text.clone())
                    .push(") > 0");
                }
            }
            sql.push(")");
        }
    }

    /// ` AND (…)`: rows after `last` in the query's order.
    fn push_after(&self, sql: &mut QueryBuilder<Postgres>, query: &ListQuery, last: &dyn Row) {
        let keys: Vec<SortKey> = query
            .sort
            .iter()
            .copied()
            .chain([SortKey::by_id()])
            .collect();
        sql.push(" AND (FALSE");
        for (at, key) in keys.iter().enumerate() {
            sql.push(" OR (TRUE");
            for earlier in &keys[..at] {
                let order = self.order_of(earlier.field);
                match last.value(earlier.field) {
                    Value::Null => {
                        sql.push(format_args!(" AND {order} IS NULL"));
                    }
                    value => {
                        sql.push(format_args!(" AND {order} = "));
                        Self::push_ordered(sql, value);
                    }
                }
            }
            let order = self.order_of(key.field);
            let optional = self.fields[key.field].optional;
            match (last.value(key.field), key.descending) {
                // Nothing sorts after a missing value ascending…
                (Value::Null, false) => {
                    sql.push(" AND FALSE");
                }
                // …and descending, every value does.
                (Value::Null, true) => {
                    sql.push(format_args!(" AND {order} IS NOT NULL"));
                }
                (value, descending) => {
                    sql.push(format_args!(
                        " AND ({order} {} ",
                        if descending { "<" } else { ">" }
                    ));
                    Self::push_ordered(sql, value);
                    if optional && !descending {
                        sql.push(format_args!(" OR {order} IS NULL"));
                    }
                    sql.push(")");
                }
            }
            sql.push(")");
        }
        sql.push(")");
    }

    /// ` ORDER BY …`: the sort keys, then the id.
    fn push_order(&self, sql: &mut QueryBuilder<Postgres>, query: &ListQuery) {
        sql.push(" ORDER BY ");
        for key in &query.sort {
            let direction = if key.descending { " DESC" } else { "" };
            sql.push(format_args!("{}{direction}, ", self.order_of(key.field)));
        }
        sql.push(self.id_order);
    }
}

impl PostgresStore {
    /// At most `n` rows of `listing` in `query`'s list and order, from `from`. The statement
    /// is written before the future starts, so the future holds no borrowed row.
    pub(super) fn find<'a, R>(
        &'a self,
        listing: &'a Listing,
        query: &ListQuery,
        from: Cursor<&dyn Row>,
        n: usize,
    ) -> impl Future<Output = Result<Vec<R>, StoreError>> + Send + 'a
    where
        R: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin + 'a,
    {
        let mut sql = QueryBuilder::new(format!(
            "SELECT {} FROM {} WHERE TRUE",
            listing.select, listing.from
        ));
        listing.push_conditions(&mut sql, query);
        if let Cursor::After(last) = from {
            listing.push_after(&mut sql, query, last);
        }
        listing.push_order(&mut sql, query);
        sql.push(" LIMIT ").push_bind(super::sql_count(n));
        if let Cursor::Offset(offset) = from {
            sql.push(" OFFSET ").push_bind(super::sql_count(offset));
        }
        async move {
            let _timer = self.timer(listing.op);
            let mut conn = self.conn().await?;
            sql.build_query_as::<R>()
                .fetch_all(&mut *conn)
                .await
                .settle(&mut conn)
                .map_err(|e| store_error(e, Context::PLAIN))
        }
    }

    /// How many rows of `listing` are in `query`'s list.
    pub(super) async fn count_matching(
        &self,
        listing: &Listing,
        query: &ListQuery,
    ) -> Result<usize, StoreError> {
        let _timer = self.timer("count_matching");
        let mut sql =
            QueryBuilder::new(format!("SELECT count(*) FROM {} WHERE TRUE", listing.from));
        listing.push_conditions(&mut sql, query);
        let mut conn = self.conn().await?;
        let count: i64 = sql
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await
            .settle(&mut conn)
            .map_err(|e| store_error(e, Context::PLAIN))?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }
}
