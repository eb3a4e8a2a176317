//! Start-up: connecting (with retries), migrating under an advisory lock, and seeding an empty
//! database from `DATA_DIR`.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::PostgresStore;
use crate::config::DatabaseConfig;
use crate::store::ids::counted_number;
use crate::store::{AuctionStore, BookStore, Cursor, MemoryStore, OpenError, Store, ThingStore};

/// The schema, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Longest one connection attempt may take: a host that drops packets must not eat the whole
/// start-up budget in one try.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The first and the longest pause between start-up connection attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Rows per bulk `INSERT … SELECT FROM UNNEST(…)` while seeding: large enough that a million
/// rows take a hundred statements, small enough that no bind array gets huge.
const SEED_CHUNK: usize = 10_000;

/// Connects (retrying for `startup_timeout`), applies the migrations under an advisory lock,
/// and seeds a database that holds no records and was never seeded from `data_dir`, in one
/// transaction under the same lock.
pub async fn open(
    config: &DatabaseConfig,
    data_dir: &Path,
    feed_history: usize,
) -> Result<Store, OpenError> {
    let options = connect_options(config)?;
    let mut conn = connect_with_retry(config, &options).await?;
    with_schema_lock(&mut conn, async |conn| {
        run_migrations(conn).await?;
        seed_if_empty(conn, data_dir).await
    })
    .await?;
    let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM store_identity")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| OpenError::Database(format!("cannot read the store's epoch: {e}")))?;
    conn.close().await.ok();

    // Generic plans: every statement here is a parameterised lookup or an index-ordered page
    // whose plan does not depend on the values, and a custom plan is planned again on every
    // execution, which was a fifth of a placed bid's time (the CTE is large). EXPLAIN of the
    // generic plans of the list and item statements shows the same index scans.
    let options = options.options([
        (
            "statement_timeout",
            format!("{}ms", config.statement_timeout.as_millis()),
        ),
        ("plan_cache_mode", "force_generic_plan".to_owned()),
        // Read by the feed triggers (migrations/0004_feeds.sql).
        ("monolith.feed_history", feed_history.to_string()),
    ]);
    let pool = super::pool::new(options.clone(), config.max_connections as usize);
    tracing::info!(
        database = %config.redacted_url,
        max_connections = config.max_connections,
        "using the PostgreSQL store"
    );
    let store = PostgresStore::new(pool, config.statement_timeout, epoch.unsigned_abs());
    store.start_listening(options);
    Ok(Store::new(store))
}

/// Connects and applies the migrations, then returns: `monolith migrate`.
pub async fn migrate(config: &DatabaseConfig) -> Result<(), OpenError> {
    let options = connect_options(config)?;
    let mut conn = connect_with_retry(config, &options).await?;
    with_schema_lock(&mut conn, async |conn| run_migrations(conn).await).await?;
    conn.close().await.ok();
    Ok(())
}

fn connect_options(config: &DatabaseConfig) -> Result<PgConnectOptions, OpenError> {
    PgConnectOptions::from_str(config.url.expose_secret())
        .map(|options| options.application_name("monolith"))
        .map_err(|e| {
            OpenError::Database(format!(
                "DATABASE_URL {} is not usable: {e}",
                config.redacted_url
            ))
        })
}

/// One connection, retried with exponential backoff (0.25 s doubling to 4 s) until
/// `startup_timeout` has passed; each failure is logged at warn, the last one is the error.
async fn connect_with_retry(
    config: &DatabaseConfig,
    options: &PgConnectOptions,
) -> Result<PgConnection, OpenError> {
    let deadline = Instant::now() + config.startup_timeout;
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1u32;
    loop {
        // sqlx's error text never holds the password (it names the host, the user, and the
        // server's message), and the URL is only ever logged redacted.
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options))
            .await
        {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OpenError::Database(format!(
                "cannot connect to the database at {} (tried {} time(s) in \
                 DATABASE_STARTUP_TIMEOUT_SECS={}): {error}",
                config.redacted_url,
                attempt,
                config.startup_timeout.as_secs()
            )));
        }
        tracing::warn!(
            database = %config.redacted_url,
            attempt,
            retry_in_ms = backoff.min(left).as_millis() as u64,
            %error,
            "cannot connect to the database yet"
        );
        tokio::time::sleep(backoff.min(left)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

fn database_error(what: &str) -> impl Fn(sqlx::Error) -> OpenError + '_ {
    move |e| OpenError::Database(format!("{what}: {e}"))
}

/// Runs `work` holding a session advisory lock keyed by this database and schema, so that
/// replicas starting together migrate and seed one after the other (sqlx's migrator locks
/// too, per database, but not around seeding). Schemas in one database (the tests') do not
/// wait for each other.
async fn with_schema_lock<T>(
    conn: &mut PgConnection,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, OpenError>,
) -> Result<T, OpenError> {
    sqlx::query(
        "SELECT pg_advisory_lock(hashtext('monolith schema ' || current_database() || '.' \
         || coalesce(current_schema(), '')))",
    )
    .execute(&mut *conn)
    .await
    .map_err(database_error("cannot take the migration lock"))?;
    let result = work(conn).await;
    // On an error the connection is closed right after, which releases the lock anyway.
    sqlx::query(
        "SELECT pg_advisory_unlock(hashtext('monolith schema ' || current_database() || '.' \
         || coalesce(current_schema(), '')))",
    )
    .execute(&mut *conn)
    .await
    .map_err(database_error("cannot release the migration lock"))?;
    result
}

async fn run_migrations(conn: &mut PgConnection) -> Result<(), OpenError> {
    MIGRATOR
        .run_direct(None, conn, false)
        .await
        .map_err(|e| OpenError::Database(format!("cannot apply the database migrations: {e}")))
}

/// Seeds from `data_dir` when the database holds no record and was never seeded; logs which.
async fn seed_if_empty(conn: &mut PgConnection, data_dir: &Path) -> Result<(), OpenError> {
    let (holds_data, seeded_before): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM books) OR EXISTS (SELECT 1 FROM things) \
                OR EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM items) \
                OR EXISTS (SELECT 1 FROM bids), \
                EXISTS (SELECT 1 FROM seedings)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(database_error("cannot read the database"))?;
    if holds_data {
        tracing::info!("the database already holds data; DATA_DIR not loaded");
        return Ok(());
    }
    if seeded_before {
        // Every record was deleted since: bringing the seed back would resurrect them.
        tracing::info!("the database was seeded before and is now empty; DATA_DIR not loaded");
        return Ok(());
    }
    // No record cap: records live on disk. The seed is held in memory once while copied.
    let dir = data_dir.to_owned();
    let seed = tokio::task::spawn_blocking(move || MemoryStore::load(&dir, usize::MAX))
        .await
        .map_err(|e| OpenError::Database(format!("reading DATA_DIR failed: {e}")))??;
    let counts = copy_seed(conn, &seed).await?;
    tracing::info!(
        data_dir = %data_dir.display(),
        books = counts[0],
        things = counts[1],
        users = counts[2],
        items = counts[3],
        bids = counts[4],
        "seeded the database from DATA_DIR"
    );
    Ok(())
}

/// Copies every record of `seed` into the empty database in one transaction; returns the
/// counts of books, things, users, items and bids.
async fn copy_seed(conn: &mut PgConnection, seed: &MemoryStore) -> Result<[usize; 5], OpenError> {
    let unexpected = |e| OpenError::Database(format!("reading the seed failed: {e}"));
    let books = seed
        .list_books(Cursor::Offset(0), usize::MAX)
        .await
        .map_err(unexpected)?;
    let things = seed
        .list_things(Cursor::Offset(0), usize::MAX)
        .await
        .map_err(unexpected)?;
    let users = seed
        .list_users(Cursor::Offset(0), usize::MAX)
        .await
        .map_err(unexpected)?;
    let items = seed
        .list_items(Cursor::Offset(0), usize::MAX)
        .await
        .map_err(unexpected)?;
    // In natural id order: placing numbers 1..n, so ties resolve as in memory.
    let bids = seed
        .list_bids(Cursor::Offset(0), usize::MAX)
        .await
        .map_err(unexpected)?;

    let book_ids = books
        .iter()
        .map(|book| {
            i64::try_from(book.id).map_err(|_| {
                OpenError::Database(format!(
                    "books.json: book {}: the PostgreSQL store keeps book ids up to 2^63-1",
                    book.id
                ))
            })
        })
        .collect::<Result<Vec<i64>, _>>()?;

    let failed = database_error("seeding the database failed");
    let mut tx = conn.begin().await.map_err(&failed)?;
    // The seed is the starting state: the feed triggers make no events of it.
    sqlx::query("SELECT set_config('monolith.seeding', 'on', true)")
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    for (ids, books) in book_ids.chunks(SEED_CHUNK).zip(books.chunks(SEED_CHUNK)) {
        sqlx::query(
            "INSERT INTO books (id, title, author) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[])",
        )
        .bind(ids)
        .bind(books.iter().map(|b| b.title.as_str()).collect::<Vec<_>>())
        .bind(
            books
                .iter()
                .map(|b| b.author.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    }
    for things in things.chunks(SEED_CHUNK) {
        sqlx::query(
            "INSERT INTO things (id, name, description) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])",
        )
        .bind(things.iter().map(|t| t.id.as_str()).collect::<Vec<_>>())
        .bind(things.iter().map(|t| t.name.as_str()).collect::<Vec<_>>())
        .bind(
            things
                .iter()
                .map(|t| t.description.as_deref())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    }
    for users in users.chunks(SEED_CHUNK) {
        sqlx::query("INSERT INTO users (id, name) SELECT * FROM UNNEST($1::text[], $2::text[])")
            .bind(users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>())
            .bind(users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
    }
    for items in items.chunks(SEED_CHUNK) {
        sqlx::query("INSERT INTO items (id, name) SELECT * FROM UNNEST($1::text[], $2::text[])")
            .bind(items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>())
            .bind(items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
    }
    for (chunk, bids_chunk) in bids.chunks(SEED_CHUNK).enumerate() {
        // Seeded bids are placed before any other, in natural id order, with the negative
        // numbers -n..-1: the sequence, which also names placed bids, stays free for them.
        let total = i64::try_from(bids.len()).expect("fewer than 2^63 bids");
        let first_seq = i64::try_from(chunk * SEED_CHUNK).expect("fewer than 2^63 bids") - total;
        let seqs: Vec<i64> = (first_seq..).take(bids_chunk.len()).collect();
        sqlx::query(
            "INSERT INTO bids (id, sort_key, user_id, item_id, value, seq) \
             SELECT id, natural_sort_key(id), user_id, item_id, value, seq \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::float8[], $5::bigint[]) \
                  AS seed (id, user_id, item_id, value, seq)",
        )
        .bind(bids_chunk.iter().map(|b| b.id.as_str()).collect::<Vec<_>>())
        .bind(
            bids_chunk
                .iter()
                .map(|b| b.user.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            bids_chunk
                .iter()
                .map(|b| b.item.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(bids_chunk.iter().map(|b| b.value).collect::<Vec<_>>())
        .bind(seqs)
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    }
    sqlx::query(
        "INSERT INTO user_items (user_id, item_id, first_seq) \
         SELECT user_id, item_id, min(seq) FROM bids GROUP BY user_id, item_id",
    )
    .execute(&mut *tx)
    .await
    .map_err(&failed)?;

    // Server-assigned ids continue above every seeded id they could collide with.
    let highest = |prefix: &str, ids: &mut dyn Iterator<Item = &str>| {
        ids.filter_map(|id| counted_number(prefix, id))
            .max()
            .map_or(0, |n| {
                i64::try_from(n).expect("counted numbers are below 2^53")
            })
    };
    let user_high = highest("user", &mut users.iter().map(|u| u.id.as_str()));
    let item_high = highest("item", &mut items.iter().map(|i| i.id.as_str()));
    let bid_high = highest("bid", &mut bids.iter().map(|b| b.id.as_str()));
    let book_high = book_ids.iter().copied().max().unwrap_or(0);
    sqlx::query(
        "WITH u AS (UPDATE counters SET highest = $1 WHERE prefix = 'user'), \
              i AS (UPDATE counters SET highest = $2 WHERE prefix = 'item') \
         SELECT CASE WHEN $3 > 0 THEN setval('book_ids', $3) END, \
                CASE WHEN $4 > 0 THEN setval('bid_numbers', $4) END",
    )
    .bind(user_high)
    .bind(item_high)
    .bind(book_high)
    .bind(bid_high)
    .execute(&mut *tx)
    .await
    .map_err(&failed)?;
    sqlx::query("INSERT INTO seedings DEFAULT VALUES")
        .execute(&mut *tx)
        .await
        .map_err(&failed)?;
    tx.commit().await.map_err(&failed)?;
    Ok([
        books.len(),
        things.len(),
        users.len(),
        items.len(),
        bids.len(),
    ])
}
