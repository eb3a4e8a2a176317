//! PostgreSQL store tests. They need a database: set `TEST_DATABASE_URL` (the URL of a role
//! that may create schemas, as in the README's Testing section); without it each test returns
//! early. Every test works in a fresh schema of its own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use sqlx::{Connection, PgConnection};

use super::open::{migrate, open};
use crate::config::{Config, DEFAULT_FEED_HISTORY as HISTORY, DatabaseConfig};
use crate::store::{
    BidValue, BookFields, Cursor, MemoryStore, Name, NaturalId, NewBid, Resource, Store,
    StoreError, Upsert,
};

/// The admin URL, or `None` (with a note) when the tests should skip.
fn admin_url() -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL").ok();
    if url.is_none() {
        eprintln!("TEST_DATABASE_URL is not set: skipping a PostgreSQL test");
    }
    url
}

/// A fresh, empty schema and the store settings whose connections use it.
async fn fresh_schema(admin: &str) -> DatabaseConfig {
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(admin).await.expect("test database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let separator = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{separator}options=-c%20search_path%3D{schema}");
    database_config(&url)
}

/// A connection to a fresh schema with the migrations applied.
async fn migrated_schema(admin: &str) -> PgConnection {
    let config = fresh_schema(admin).await;
    migrate(&config).await.unwrap();
    PgConnection::connect(secrecy::ExposeSecret::expose_secret(&config.url))
        .await
        .unwrap()
}

fn database_config(url: &str) -> DatabaseConfig {
    let url = url.to_owned();
    Config::from_lookup(move |name| (name == "DATABASE_URL").then(|| url.clone()))
        .expect("a valid test configuration")
        .database
        .expect("DATABASE_URL is set")
}

fn bundled_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn empty_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn name(text: &str) -> Name {
    Name::parse("name", text.to_owned()).unwrap()
}

fn new_bid(item: &str, user: &str, value: f64) -> NewBid {
    NewBid {
        item: item.to_owned(),
        user: user.to_owned(),
        value: BidValue::new(value).unwrap(),
    }
}

/// A store on a fresh schema seeded from nothing.
async fn empty_store(admin: &str) -> Store {
    let dir = empty_dir();
    open(&fresh_schema(admin).await, dir.path(), HISTORY)
        .await
        .unwrap()
}

// The rules every backend keeps, on a fresh schema each. Fewer random sequences than in memory:
// each needs a schema of its own, and they check after every step.
crate::store::conformance::conformance_tests!(
    conformance,
    || async { Some(empty_store(&admin_url()?).await) },
    cases = Some(32)
);

#[tokio::test]
async fn natural_sort_key_orders_ids_like_natural_id() {
    let Some(admin) = admin_url() else { return };
    let mut conn = migrated_schema(&admin).await;
    // Random ids from the id alphabet, with digit runs, leading zeros and long numbers.
    let part = prop_oneof![
        "[0-9]{1,3}",
        "0{1,3}[0-9]{0,2}",
        "[0-9]{18,24}",
        "[A-Za-z_-]{1,3}",
    ];
    let id = proptest::collection::vec(part, 1..5).prop_map(|parts| {
        let id: String = parts.concat();
        id.chars().take(64).collect::<String>()
    });
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut ids: BTreeSet<String> = BTreeSet::new();
    while ids.len() < 600 {
        ids.insert(id.new_tree(&mut runner).unwrap().current());
    }
    ids.extend(
        [
            "a01", "a1", "a001", "u", "u-", "u1", "uA", "u_", "ua", "x1y", "x1",
        ]
        .map(String::from),
    );
    let ids: Vec<String> = ids.into_iter().collect();

    let in_sql_order: Vec<String> =
        sqlx::query_scalar("SELECT id FROM UNNEST($1::text[]) AS id ORDER BY natural_sort_key(id)")
            .bind(&ids)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut natural: Vec<NaturalId> = ids.iter().map(NaturalId::new).collect();
    natural.sort();
    let natural: Vec<String> = natural.into_iter().map(|id| id.to_string()).collect();
    assert_eq!(in_sql_order, natural);
}

#[tokio::test]
async fn bid_sort_key_is_natural_sort_key_of_a_placed_bids_id() {
    let Some(admin) = admin_url() else { return };
    let mut conn = migrated_schema(&admin).await;
    let numbers: Vec<i64> = (1..=2_000)
        .chain([9, 10, 99, 100, 1 << 31, 1 << 53, i64::MAX])
        .collect();
    let differing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM UNNEST($1::bigint[]) AS n \
         WHERE bid_sort_key(n) <> natural_sort_key('bid' || n)",
    )
    .bind(&numbers)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(differing, 0);
}

#[tokio::test]
async fn bid_sort_key_is_inlined_into_the_statement_that_calls_it() {
    let Some(admin) = admin_url() else { return };
    let mut conn = migrated_schema(&admin).await;
    // Inlined, the plan shows the function's body; called, it shows the call, which parses
    // and plans that body on every bid.
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN VERBOSE SELECT bid_sort_key(n) FROM generate_series(1::bigint, 3) AS n",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(!plan.contains("bid_sort_key"), "{plan}");
    assert!(plan.contains("set_byte"), "{plan}");
}

/// Everything the bundled data answers through the store traits, to compare two stores.
/// Placing numbers are left out: they are opaque cursors (memory counts from 0, PostgreSQL's
/// sequence from 1), only their order matters.
/// `text` (a record's `Debug`) without its versions: each engine numbers them its own way.
fn unversioned(text: String) -> String {
    let version = regex::Regex::new(r"version: Version \{[^}]*\}").unwrap();
    version.replace_all(&text, "version: _").into_owned()
}

/// What `store` answers to every read, versions aside.
async fn answers(store: &Store) -> Vec<String> {
    let all = usize::MAX;
    let mut out = vec![
        format!(
            "{:?}",
            store.list_books(Cursor::Offset(0), all).await.unwrap()
        ),
        format!(
            "{:?}",
            store.list_things(Cursor::Offset(0), all).await.unwrap()
        ),
        format!(
            "{:?}",
            store.list_users(Cursor::Offset(0), all).await.unwrap()
        ),
        format!(
            "{:?}",
            store.list_items(Cursor::Offset(0), all).await.unwrap()
        ),
        format!(
            "{:?}",
            store.list_bids(Cursor::Offset(0), all).await.unwrap()
        ),
        format!("{:?}", store.counts().await.unwrap()),
    ];
    for user in store.list_users(Cursor::Offset(0), all).await.unwrap() {
        let found = store.user_items(&user.id, None, all).await.unwrap();
        let items: Vec<String> = found.items.into_iter().map(|(_, item)| item).collect();
        out.push(format!("{:?} {items:?}", found.user));
    }
    for item in store.list_items(Cursor::Offset(0), all).await.unwrap() {
        let (found, bids) = store
            .item_bids(&item.id, Cursor::Offset(0), all)
            .await
            .unwrap();
        let bids: Vec<_> = bids.into_iter().map(|(_, bid)| bid).collect();
        out.push(format!("{found:?} {bids:?}"));
        out.push(format!(
            "{:?}",
            store.winning_bid(&item.id).await.map_err(|e| e.to_string())
        ));
    }
    out.into_iter().map(unversioned).collect()
}

#[tokio::test]
async fn the_bundled_data_seeds_exactly_as_memory_once() {
    let Some(admin) = admin_url() else { return };
    let config = fresh_schema(&admin).await;
    let store = open(&config, &bundled_data(), HISTORY).await.unwrap();
    let memory = Store::new(MemoryStore::load(&bundled_data(), usize::MAX).unwrap());
    assert_eq!(answers(&store).await, answers(&memory).await);
    let seeded = store.counts().await.unwrap();
    assert!(seeded.books > 0 && seeded.bids > 0, "{seeded:?}");

    // Ids go on above the seeded ones, as in memory.
    let fields = BookFields::parse("t".into(), None).unwrap();
    assert_eq!(
        store.create_book(fields.clone()).await.unwrap().id,
        memory.create_book(fields).await.unwrap().id
    );
    assert_eq!(
        store.create_user(name("n")).await.unwrap().id,
        memory.create_user(name("n")).await.unwrap().id
    );
    assert_eq!(
        store
            .place_bid(new_bid("item1", "user1", 7.0))
            .await
            .unwrap()
            .id,
        memory
            .place_bid(new_bid("item1", "user1", 7.0))
            .await
            .unwrap()
            .id
    );
    store.close().await;

    // Opening again does not seed again: the records created above are still the only change.
    let again = open(&config, &bundled_data(), HISTORY).await.unwrap();
    assert_eq!(answers(&again).await, answers(&memory).await);

    // Nor when every record was deleted since.
    for user in again
        .list_users(Cursor::Offset(0), usize::MAX)
        .await
        .unwrap()
    {
        again.delete_user(&user.id).await.unwrap();
    }
    for book in again
        .list_books(Cursor::Offset(0), usize::MAX)
        .await
        .unwrap()
    {
        again.delete_book(book.id).await.unwrap();
    }
    again.close().await;
    let third = open(&config, &bundled_data(), HISTORY).await.unwrap();
    assert_eq!(third.count(Resource::Users).await.unwrap(), 0);
    assert_eq!(third.count(Resource::Books).await.unwrap(), 0);
}

#[tokio::test]
async fn two_replicas_opening_one_fresh_schema_at_once_migrate_and_seed_once() {
    let Some(admin) = admin_url() else { return };
    let config = fresh_schema(&admin).await;
    let data = bundled_data();
    let (a, b) = tokio::join!(open(&config, &data, HISTORY), open(&config, &data, HISTORY));
    let (a, b) = (a.unwrap(), b.unwrap());
    let memory = MemoryStore::load(&data, usize::MAX).unwrap();
    assert_eq!(
        a.counts().await.unwrap(),
        crate::store::Backend::counts(&memory).await.unwrap()
    );
    assert_eq!(b.counts().await.unwrap(), a.counts().await.unwrap());
}

#[tokio::test]
async fn winners_ids_and_cascades_follow_the_memory_rules() {
    let Some(admin) = admin_url() else { return };
    let store = empty_store(&admin).await;
    for user in ["u1", "u2", "u3"] {
        assert_eq!(
            store.put_user(user, name(user)).await.unwrap().1,
            Upsert::Created
        );
    }
    for item in ["i1", "i2"] {
        store.put_item(item, name(item)).await.unwrap();
    }
    let winner = async |item: &str| store.get_item(item).await.unwrap().winning;

    // Highest value wins; the earliest wins a tie.
    assert_eq!(winner("i1").await, None);
    assert!(matches!(
        store.winning_bid("i1").await,
        Err(StoreError::NoBids(_))
    ));
    let b1 = store
        .place_bid(new_bid("i1", "u1", 500.0))
        .await
        .unwrap()
        .id;
    let b2 = store
        .place_bid(new_bid("i1", "u2", 1000.0))
        .await
        .unwrap()
        .id;
    store.place_bid(new_bid("i1", "u3", 1000.0)).await.unwrap();
    store.place_bid(new_bid("i1", "u1", 999.99)).await.unwrap();
    assert_eq!((b1.as_str(), b2.as_str()), ("bid1", "bid2"));
    assert_eq!(winner("i1").await.as_deref(), Some("bid2"));
    assert_eq!(store.winning_bid("i1").await.unwrap().value, 1000.0);
    store.delete_bid("bid2").await.unwrap();
    assert_eq!(winner("i1").await.as_deref(), Some("bid3"));
    assert_eq!(store.get_item("i1").await.unwrap().bid_count, 3);

    // A refused bid changes nothing and uses no id; the user is checked first.
    let refused = store.place_bid(new_bid("nothing", "nobody", 1.0)).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::MissingReference {
                field: "bid/user",
                ..
            })
        ),
        "{refused:?}"
    );
    let refused = store.place_bid(new_bid("nothing", "u1", 1.0)).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::MissingReference {
                field: "bid/item",
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        store.place_bid(new_bid("i2", "u1", 5.0)).await.unwrap().id,
        "bid5"
    );

    // Bid ids are never reused and list in natural order.
    for _ in 0..6 {
        store.place_bid(new_bid("i2", "u2", 1.0)).await.unwrap();
    }
    store.delete_bid("bid11").await.unwrap();
    assert_eq!(
        store.place_bid(new_bid("i2", "u2", 1.0)).await.unwrap().id,
        "bid12"
    );
    let ids: Vec<String> = store
        .list_bids(Cursor::Offset(0), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(
        ids,
        [
            "bid1", "bid3", "bid4", "bid5", "bid6", "bid7", "bid8", "bid9", "bid10", "bid12"
        ]
    );
    let after: Vec<String> = store
        .list_bids(Cursor::After("bid9".into()), 1)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(after, ["bid10"]);

    // A user's items: once each, in order of their first remaining bid.
    let items_of = async |user: &str| -> Vec<String> {
        let found = store.user_items(user, None, usize::MAX).await.unwrap();
        found.items.into_iter().map(|(_, item)| item).collect()
    };
    store.put_user("v", name("v")).await.unwrap();
    let first_on_i2 = store.place_bid(new_bid("i2", "v", 5.0)).await.unwrap().id;
    store.place_bid(new_bid("i1", "v", 5.0)).await.unwrap();
    let later_on_i2 = store.place_bid(new_bid("i2", "v", 6.0)).await.unwrap().id;
    assert_eq!(items_of("v").await, ["i2", "i1"]);
    store.delete_bid(&first_on_i2).await.unwrap();
    assert_eq!(items_of("v").await, ["i1", "i2"]);
    let page = store.user_items("v", None, 1).await.unwrap().items;
    let next = store
        .user_items("v", Some(page[0].0), 10)
        .await
        .unwrap()
        .items;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, "i2");
    store.delete_bid(&later_on_i2).await.unwrap();
    assert_eq!(items_of("v").await, ["i1"]);

    // Item bids: a page at an offset, or after a placing number, with the winner.
    let (item, page) = store.item_bids("i2", Cursor::Offset(1), 2).await.unwrap();
    assert_eq!(item.bid_count, 7);
    assert_eq!(
        page.iter().map(|(_, b)| b.id.as_str()).collect::<Vec<_>>(),
        ["bid6", "bid7"]
    );
    let (_, after) = store
        .item_bids("i2", Cursor::After(page[1].0), 1)
        .await
        .unwrap();
    assert_eq!(after[0].1.id, "bid8");
    assert!(matches!(
        store.item_bids("none", Cursor::Offset(0), 1).await,
        Err(StoreError::NotFound(_))
    ));

    // Cascades: a user's bids go with them, winners are recomputed.
    store.delete_user("u2").await.unwrap();
    assert_eq!(winner("i1").await.as_deref(), Some("bid3"));
    assert_eq!(winner("i2").await.as_deref(), Some("bid5"));
    store.delete_item("i2").await.unwrap();
    assert!(matches!(
        store.get_bid("bid5").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(items_of("u1").await, ["i1"]);
    assert!(matches!(
        store.delete_item("i2").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn put_ids_move_the_counters_and_creates_skip_taken_ids() {
    let Some(admin) = admin_url() else { return };
    let store = empty_store(&admin).await;
    let (item, upsert) = store.put_item("item7", name("new")).await.unwrap();
    assert_eq!((item.bid_count, upsert), (0, Upsert::Created));
    assert_eq!(store.create_item(name("next")).await.unwrap().id, "item8");
    let (renamed, upsert) = store.put_item("item7", name("renamed")).await.unwrap();
    assert_eq!(
        (renamed.name.as_str(), upsert),
        ("renamed", Upsert::Replaced)
    );
    // Leading zeros and numbers at or above 2^53 do not move a counter.
    store.put_user("user007", name("x")).await.unwrap();
    store
        .put_user("user9007199254740992", name("x"))
        .await
        .unwrap();
    assert_eq!(store.create_user(name("x")).await.unwrap().id, "user1");
    // A counter that reaches an id a client put is moved past it.
    store
        .put_user("user9007199254740991", name("x"))
        .await
        .unwrap();
    store
        .put_user("user9007199254740993", name("x"))
        .await
        .unwrap();
    assert_eq!(
        store.create_user(name("x")).await.unwrap().id,
        "user9007199254740994"
    );
}

#[tokio::test]
async fn books_keep_their_ids_and_huge_ids_are_not_found() {
    let Some(admin) = admin_url() else { return };
    let store = empty_store(&admin).await;
    let fields = |title: &str| BookFields::parse(title.into(), Some("a".into())).unwrap();
    let one = store.create_book(fields("one")).await.unwrap();
    let two = store.create_book(fields("two")).await.unwrap();
    assert_eq!((one.id, two.id), (1, 2));
    store.delete_book(2).await.unwrap();
    assert_eq!(store.create_book(fields("three")).await.unwrap().id, 3);
    let changes = crate::store::BookChanges::parse(None, Some(None)).unwrap();
    let changed = store.update_book(1, changes).await.unwrap();
    assert_eq!((changed.title.as_str(), changed.author), ("one", None));
    let replaced = store.replace_book(3, fields("3")).await.unwrap();
    assert_eq!(replaced.author.as_deref(), Some("a"));
    assert!(matches!(
        store.get_book(u64::MAX).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_book(2).await,
        Err(StoreError::NotFound(_))
    ));
    let ids: Vec<u64> = store
        .list_books(Cursor::After(1), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, [3]);
    assert!(
        store
            .list_books(Cursor::Offset(5), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.ping().await.is_ok());
}

#[tokio::test]
async fn concurrent_bids_get_unique_ids_and_an_exact_winner() {
    let Some(admin) = admin_url() else { return };
    let store = empty_store(&admin).await;
    store.put_user("u", name("u")).await.unwrap();
    store.put_item("i", name("i")).await.unwrap();
    let bids = (0..200).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let value = f64::from(n % 37 + 1);
            (
                store.place_bid(new_bid("i", "u", value)).await.unwrap().id,
                value,
            )
        })
    });
    let placed: Vec<(String, f64)> = futures_util::future::join_all(bids)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let ids: BTreeSet<&str> = placed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), 200);
    // The winner: the highest value, the lowest placing number among those.
    let (_, bids) = store
        .item_bids("i", Cursor::Offset(0), usize::MAX)
        .await
        .unwrap();
    assert_eq!(bids.len(), 200);
    let best = bids
        .iter()
        .max_by(|(sa, a), (sb, b)| a.value.total_cmp(&b.value).then(sb.cmp(sa)))
        .unwrap();
    assert_eq!(
        store.get_item("i").await.unwrap().winning,
        Some(best.1.id.clone())
    );
    let first = store.user_items("u", None, 10).await.unwrap().items;
    assert_eq!(first, [(bids[0].0, "i".to_owned())]);
}

/// Bids on one item arriving together are placed in batches (`bid_batches.rs`): each still gets
/// its own answer, unknown users are refused one by one, and a user deleted mid-storm fails only
/// their own bids (the batch that hits the vanished reference is placed again bid by bid).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_bids_each_get_their_own_answer() {
    let Some(admin) = admin_url() else { return };
    let store = empty_store(&admin).await;
    for user in ["u1", "u2", "u3", "doomed"] {
        store.put_user(user, name(user)).await.unwrap();
    }
    store.put_item("i", name("i")).await.unwrap();
    let users = ["u1", "u2", "ghost", "u3", "doomed"];
    let bids = (0..300).map(|n| {
        let store = store.clone();
        let user = users[n % users.len()];
        tokio::spawn(async move {
            if n == 150 {
                store.delete_user("doomed").await.unwrap();
            }
            let value = f64::from(u32::try_from(n % 41).unwrap() + 1);
            (user, store.place_bid(new_bid("i", user, value)).await)
        })
    });
    let answers = futures_util::future::join_all(bids).await;
    let mut placed = BTreeSet::new();
    for answer in answers {
        let (user, answer) = answer.unwrap();
        match (user, answer) {
            ("ghost", Err(StoreError::MissingReference { field, what })) => {
                assert_eq!((field, what.as_str()), ("bid/user", "user ghost"));
            }
            (
                "doomed",
                Ok(_)
                | Err(StoreError::MissingReference {
                    field: "bid/user", ..
                }),
            ) => {}
            (user, Ok(bid)) if user != "ghost" => {
                assert_eq!((bid.user.as_str(), bid.item.as_str()), (user, "i"));
                assert!(placed.insert(bid.id.clone()), "{} answered twice", bid.id);
            }
            (user, other) => panic!("{user}: {other:?}"),
        }
    }
    assert_eq!(placed.len(), 180, "every bid of u1, u2 and u3 is placed");
    // The doomed user's bids went with them; every other answered bid is stored, once.
    let (_, stored) = store
        .item_bids("i", Cursor::Offset(0), usize::MAX)
        .await
        .unwrap();
    let stored_ids: BTreeSet<String> = stored.iter().map(|(_, bid)| bid.id.clone()).collect();
    assert_eq!(stored_ids, placed);
    // Each user's first bid on the item is the one `user_items` keeps.
    for user in ["u1", "u2", "u3"] {
        let first = stored.iter().find(|(_, bid)| bid.user == user).unwrap().0;
        let items = store.user_items(user, None, 10).await.unwrap().items;
        assert_eq!(items, [(first, "i".to_owned())], "{user}");
    }
}

#[tokio::test]
async fn an_unreachable_database_fails_start_up_with_one_line_and_no_password() {
    let config = database_config("postgres://someone:sup3r-s3cret@127.0.0.1:9/nothing");
    let config = DatabaseConfig {
        startup_timeout: std::time::Duration::from_millis(600),
        ..config
    };
    let started = std::time::Instant::now();
    let err = open(&config, empty_dir().path(), HISTORY)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(!err.contains("sup3r-s3cret"), "{err}");
    assert!(
        err.contains("cannot connect") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn a_lost_database_is_unavailable_not_an_internal_error() {
    let Some(admin) = admin_url() else { return };
    let store = empty_store(&admin).await;
    store.close().await;
    let err = store.get_book(1).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_vanished_reference_of_a_bid_names_the_right_field() {
    let Some(admin) = admin_url() else { return };
    let mut conn = migrated_schema(&admin).await;
    sqlx::query("INSERT INTO users (id, name) VALUES ('u', 'u')")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO items (id, name) VALUES ('i', 'i')")
        .execute(&mut conn)
        .await
        .unwrap();
    let context = super::error::Context {
        exhausts: None,
        bid: Some(("u", "i")),
    };
    // Each foreign key a placed bid writes through, violated for real.
    for (insert, field) in [
        ("INSERT INTO user_items VALUES ('gone', 'i', 1)", "bid/user"),
        ("INSERT INTO user_items VALUES ('u', 'gone', 1)", "bid/item"),
        (
            "INSERT INTO bids (id, sort_key, item_id, user_id, value, seq) \
             VALUES ('b', 'b', 'i', 'gone', 1, 1)",
            "bid/user",
        ),
        (
            "INSERT INTO bids (id, sort_key, item_id, user_id, value, seq) \
             VALUES ('b', 'b', 'gone', 'u', 1, 1)",
            "bid/item",
        ),
    ] {
        let err = sqlx::query(insert).execute(&mut conn).await.unwrap_err();
        match super::error::store_error(err, context) {
            StoreError::MissingReference { field: got, .. } => assert_eq!(got, field, "{insert}"),
            other => panic!("{insert}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_of_one_new_id_create_it_once_and_never_fail() {
    let Some(admin) = admin_url() else { return };
    let store = empty_store(&admin).await;
    for round in 0..20 {
        let id = format!("user{}", 1000 + round);
        let puts = (0..16).map(|_| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.put_user(&id, name("n")).await })
        });
        let results = futures_util::future::join_all(puts).await;
        let created = results
            .into_iter()
            .map(|joined| joined.unwrap().expect("a PUT never fails"))
            .filter(|(_, upsert)| *upsert == Upsert::Created)
            .count();
        assert_eq!(created, 1, "round {round}");
    }
}
