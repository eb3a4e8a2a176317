//! The one place where a database failure becomes a [`StoreError`].
//!
//! Infrastructure failures (no connection, a lost connection, a statement past its timeout, a
//! server shutting down) are `Unavailable`: nothing is known to have changed and a retry may
//! work, so the client gets 503 with `Retry-After`. Failures that a request can cause are
//! mapped by the operation that knows the ids. Anything else is a bug or a broken schema:
//! `Internal`, a 500 whose cause is logged, never sent.

use sqlx::error::DatabaseError;

use crate::store::StoreError;

/// What an operation knows that turns a database error into the right [`StoreError`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Context<'a> {
    /// The ids this operation hands out (`user ids`), for a counter or sequence that ran out.
    pub exhausts: Option<&'static str>,
    /// The bid being placed: `(user, item)`, for a reference that vanished mid-statement.
    pub bid: Option<(&'a str, &'a str)>,
}

impl<'a> Context<'a> {
    /// An operation that needs no special mapping.
    pub const PLAIN: Context<'static> = Context {
        exhausts: None,
        bid: None,
    };

    /// An operation that takes ids from a counter or sequence.
    pub fn hands_out(ids: &'static str) -> Self {
        Context {
            exhausts: Some(ids),
            bid: None,
        }
    }
}

/// The [`StoreError`] for `err`, raised while running an operation described by `context`.
pub(super) fn store_error(err: sqlx::Error, context: Context<'_>) -> StoreError {
    let unavailable = |reason: &str| StoreError::Unavailable(reason.to_owned());
    match err {
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => {
            unavailable("the connection to the database failed")
        }
        sqlx::Error::Tls(_) => unavailable("the TLS connection to the database failed"),
        sqlx::Error::Database(db) => database_error(db.as_ref(), context),
        other => StoreError::Internal(format!("database client error: {other}")),
    }
}

fn database_error(db: &dyn DatabaseError, context: Context<'_>) -> StoreError {
    let code = db.code().unwrap_or_default();
    let unavailable = |reason: &str| StoreError::Unavailable(reason.to_owned());
    match code.as_ref() {
        // query_canceled: statement_timeout fired (or an operator cancelled it).
        "57014" => unavailable("a statement ran past DATABASE_STATEMENT_TIMEOUT_SECS"),
        // admin_shutdown, crash_shutdown, cannot_connect_now: a restart or failover.
        "57P01" | "57P02" | "57P03" => unavailable("the database server is restarting"),
        // read_only_sql_transaction: connected to a standby, e.g. during a failover.
        "25006" => unavailable("the database is read-only (a standby?)"),
        // serialization_failure, deadlock_detected: nothing changed, a retry succeeds.
        "40001" | "40P01" => unavailable("the database aborted a conflicting operation"),
        // sequence_generator_limit_exceeded, numeric_value_out_of_range (a bigint counter).
        "2200H" | "22003" if context.exhausts.is_some() => {
            StoreError::Exhausted(context.exhausts.expect("checked"))
        }
        // foreign_key_violation: the user or item went away between our check and the insert.
        "23503" if context.bid.is_some() => {
            let (user, item) = context.bid.expect("checked");
            // The constraints PostgreSQL names from the schema's `REFERENCES items`.
            if matches!(
                db.constraint(),
                Some("bids_item_id_fkey" | "user_items_item_id_fkey")
            ) {
                missing_item(item)
            } else {
                missing_user(user)
            }
        }
        // connection_exception (08…) and insufficient_resources (53…: too many connections,
        // disk full, out of memory).
        class if class.starts_with("08") || class.starts_with("53") => {
            unavailable("the database cannot serve requests now")
        }
        _ => StoreError::Internal(format!("database error {code}: {}", db.message())),
    }
}

/// Whether `err` is PostgreSQL's `foreign_key_violation`: a referenced row went away.
pub(super) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23503"))
}

/// The error for a bid whose user does not exist.
pub(super) fn missing_user(user: &str) -> StoreError {
    StoreError::MissingReference {
        field: "bid/user",
        what: format!("user {user}"),
    }
}

/// The error for a bid whose item does not exist.
pub(super) fn missing_item(item: &str) -> StoreError {
    StoreError::MissingReference {
        field: "bid/item",
        what: format!("item {item}"),
    }
}
