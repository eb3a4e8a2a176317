//! The connection pool: deadpool around sqlx connections, so that a connection goes back to
//! the pool without a round trip.
//!
//! sqlx's own pool pings every connection as it is released (a `Sync` and its answer), which
//! doubled the round trips of a point read and cost a quarter of `GET /books/{id}`'s
//! throughput. Here each statement that finishes marks its connection settled ([`Settle`]);
//! only a connection whose operation was cancelled or failed midway, or that sat idle long
//! enough to have died with a database restart, is pinged before it is handed out again (and
//! replaced if the ping fails).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, RecycleResult};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::error::{Context, store_error};
use crate::store::StoreError;

/// A pooled connection last handed out this long ago (deadpool's `last_used`: its idle time
/// plus its last operation's) is pinged before it is handed out again. Shorter than any
/// database restart, so no connection idle across one is handed out unchecked; long enough that
/// under load (a connection idle for microseconds between requests) nothing is pinged.
const IDLE_BEFORE_PING: Duration = Duration::from_millis(100);

/// A connection and whether the operation that last used it ran to its end.
pub struct Session {
    conn: PgConnection,
    settled: bool,
}

/// Opens sessions with the store's options (the password among them: no `Debug`) and checks
/// them on the way out of the pool.
pub struct Manager {
    options: PgConnectOptions,
}

impl managed::Manager for Manager {
    type Type = Session;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Session, sqlx::Error> {
        let conn = PgConnection::connect_with(&self.options).await?;
        Ok(Session {
            conn,
            settled: false,
        })
    }

    async fn recycle(
        &self,
        session: &mut Session,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        // A cancelled operation may have left a reply unread or a transaction open: the ping
        // reads up to the server's ReadyForQuery (sqlx queues the ROLLBACK of a dropped
        // transaction before it), so the next operation starts clean, or fails here.
        if !session.settled || metrics.last_used() >= IDLE_BEFORE_PING {
            session.conn.ping().await?;
        }
        session.settled = false;
        Ok(())
    }
}

pub type Pool = managed::Pool<Manager>;

/// A pool of at most `max` connections opened with `options`; it connects on first use.
pub fn new(options: PgConnectOptions, max: usize) -> Pool {
    Pool::builder(Manager { options })
        .max_size(max)
        .build()
        .expect("no timeouts are set, so no runtime is needed")
}

/// A connection taken from the pool; back in the pool when dropped.
pub struct Conn(Object<Manager>);

impl Conn {
    /// Takes a connection, waiting at most `timeout` for one to be free (or opened).
    pub async fn take(pool: &Pool, timeout: Duration) -> Result<Self, StoreError> {
        match tokio::time::timeout(timeout, pool.get()).await {
            Ok(Ok(object)) => Ok(Self(object)),
            Ok(Err(managed::PoolError::Backend(e))) => Err(store_error(e, Context::PLAIN)),
            Ok(Err(managed::PoolError::Closed)) => Err(StoreError::Unavailable(
                "the store is shutting down".to_owned(),
            )),
            Ok(Err(other)) => Err(StoreError::Internal(format!("connection pool: {other}"))),
            Err(_) => Err(StoreError::Unavailable(
                "no database connection became free in time".to_owned(),
            )),
        }
    }
}

impl Conn {
    /// Closes the connection without a word to the server and keeps it out of the pool: for a
    /// connection whose statement outlived every timeout (a server that froze, a link that
    /// dropped silently), where a ping before its next use would hang as well.
    pub fn discard(self) {
        drop(Object::take(self.0));
    }
}

/// Marks a [`Conn`] settled after a statement on it has finished.
pub trait Settle {
    /// `self`, the statement's result, having marked `conn` settled unless the statement failed
    /// in a way that may have left it broken or mid-reply (an I/O or client-side failure): a
    /// database's own error leaves the connection ready for the next statement.
    fn settle(self, conn: &mut Conn) -> Self;
}

impl Conn {
    /// Marks the connection settled after statements whose errors were already mapped, unless
    /// `broken` (the mapping said the database is unavailable: the link may be mid-reply).
    pub fn settle_unless(&mut self, broken: bool) {
        if !broken {
            self.0.settled = true;
        }
    }
}

impl<T> Settle for Result<T, sqlx::Error> {
    fn settle(self, conn: &mut Conn) -> Self {
        if matches!(&self, Ok(_) | Err(sqlx::Error::Database(_))) {
            conn.0.settled = true;
        }
        self
    }
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.0.conn
    }
}

/// Lending the connection to a statement unsettles it until [`Settle::settle`] sees the
/// statement finish: a connection dropped in between (a cancelled request) is pinged before
/// its next use.
impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.0.settled = false;
        &mut self.0.conn
    }
}

/// Closes the pool: waiting and later operations get [`StoreError::Unavailable`], idle
/// connections are closed politely (a Terminate message), busy ones when they come back.
pub async fn close(pool: &Pool) {
    let idle = pool.retain(|_, _| false).removed;
    pool.close();
    for session in idle {
        session.conn.close().await.ok();
    }
}
