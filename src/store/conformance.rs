//! The rules every backend keeps, tested through the store traits only, so that the memory and
//! the PostgreSQL engines are held to the same suite.
//!
//! Each rule is an async function taking a fresh, empty [`Store`]: it creates what it needs with
//! create and PUT, and assumes no seed. [`conformance_tests!`] runs the whole list against one
//! backend; adding a backend is one invocation:
//!
//! ```ignore
//! conformance_tests!(postgres, || async {
//!     // `None` skips the rule: no database to test against.
//!     let url = std::env::var("TEST_DATABASE_URL").ok()?;
//!     Some(/* a Store on a fresh, empty schema of `url` */)
//! });
//! ```
//!
//! Memory-only rules (the `MAX_RECORDS_PER_RESOURCE` cap, seed checks) stay with the memory
//! tables' unit tests.

use std::collections::BTreeSet;
use std::future::Future;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::{
    BidValue, Book, BookChanges, BookFields, Cursor, MemoryStore, Name, NewBid, Resource, Store,
    StoreError, Upsert,
};

/// Makes a module `$backend` with one test per rule of this suite, each on a fresh store from
/// `$open`: a closure returning a future of a [`Store`], or of an `Option<Store>` where `None`
/// skips the rule (its test passes without running). The store is closed after the rule.
macro_rules! conformance_tests {
    ($backend:ident, $open:expr) => {
        $crate::store::conformance::conformance_tests!($backend, $open, cases = None);
    };
    ($backend:ident, $open:expr, cases = $cases:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;

            $crate::store::conformance::conformance_tests!(@each $open;
                the_highest_bid_wins_and_the_earliest_wins_a_tie,
                bid_ids_are_never_reused_and_sort_naturally,
                a_refused_bid_changes_nothing_and_uses_no_id,
                user_items_are_listed_once_in_order_of_first_remaining_bid,
                deleting_a_user_or_an_item_deletes_their_bids_and_fixes_winners,
                put_creates_or_renames_and_keeps_bids,
                missing_auction_records_are_not_found,
                users_items_and_bids_are_listed_in_natural_order_by_offset_or_after_an_id,
                an_items_bids_are_read_in_placing_order_by_offset_or_after_a_placing_number,
                books_are_numbered_from_one_and_ids_are_never_reused,
                books_are_replaced_updated_and_deleted,
                books_are_listed_in_id_order_by_offset_or_after_an_id,
                an_empty_store_counts_nothing_and_finds_nothing,
            );

            #[test]
            fn winners_and_indexes_always_match_a_brute_force_model() {
                $crate::store::conformance::winners_and_indexes_always_match_a_brute_force_model(
                    $open, $cases,
                );
            }
        }
    };
    (@each $open:expr; $($rule:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $rule() {
                let opened = ($open)().await;
                if let Some(store) = $crate::store::conformance::TestStore::into_store(opened) {
                    $crate::store::conformance::$rule(&store).await;
                    store.close().await;
                }
            }
        )*
    };
}

pub(crate) use conformance_tests;

conformance_tests!(memory, || async { Store::new(MemoryStore::new(1000)) });

/// What a backend's opener gives: a store, or maybe one (`None` skips the rule).
pub trait TestStore {
    /// The store to run a rule on, if any.
    fn into_store(self) -> Option<Store>;
}

impl TestStore for Store {
    fn into_store(self) -> Option<Store> {
        Some(self)
    }
}

impl TestStore for Option<Store> {
    fn into_store(self) -> Option<Store> {
        self
    }
}

/// More than any list in this suite holds, so a read with it sees everything.
const ALL: usize = 10_000;

fn name(text: &str) -> Name {
    Name::parse("name", text.to_owned()).unwrap()
}

fn value(v: f64) -> BidValue {
    BidValue::new(v).unwrap()
}

fn fields(title: &str, author: Option<&str>) -> BookFields {
    BookFields::parse(title.to_owned(), author.map(str::to_owned)).unwrap()
}

/// Users u1..u3 and items i1, i2.
async fn with_users_and_items(store: &Store) {
    for user in ["u1", "u2", "u3"] {
        store.put_user(user, name(user)).await.unwrap();
    }
    for item in ["i1", "i2"] {
        store.put_item(item, name(item)).await.unwrap();
    }
}

async fn place(store: &Store, item: &str, user: &str, amount: f64) -> Result<String, StoreError> {
    let bid = NewBid {
        item: item.into(),
        user: user.into(),
        value: value(amount),
    };
    store.place_bid(bid).await.map(|bid| bid.id)
}

async fn bid(store: &Store, item: &str, user: &str, amount: f64) -> String {
    place(store, item, user, amount).await.unwrap()
}

async fn winner(store: &Store, item: &str) -> Option<String> {
    store.get_item(item).await.unwrap().winning
}

async fn bid_ids_of(store: &Store, item: &str, from: Cursor<u64>, n: usize) -> Vec<String> {
    let (_, bids) = store.item_bids(item, from, n).await.unwrap();
    bids.into_iter().map(|(_, bid)| bid.id).collect()
}

async fn items_of(store: &Store, user: &str) -> Vec<String> {
    let found = store.user_items(user, None, ALL).await.unwrap();
    found.items.into_iter().map(|(_, item)| item).collect()
}

/// Users, items and bids, as counted by the store.
async fn auction_counts(store: &Store) -> (usize, usize, usize) {
    let counts = store.counts().await.unwrap();
    (counts.users, counts.items, counts.bids)
}

fn is_not_found<T>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::NotFound(_)))
}

pub async fn the_highest_bid_wins_and_the_earliest_wins_a_tie(store: &Store) {
    with_users_and_items(store).await;
    assert_eq!(winner(store, "i1").await, None);
    assert!(matches!(
        store.winning_bid("i1").await,
        Err(StoreError::NoBids(_))
    ));
    let b1 = bid(store, "i1", "u1", 500.0).await;
    let b2 = bid(store, "i1", "u2", 1000.0).await;
    let b3 = bid(store, "i1", "u3", 1000.0).await;
    let b4 = bid(store, "i1", "u1", 999.99).await;
    assert_eq!(winner(store, "i1").await, Some(b2.clone()));
    let winning = store.winning_bid("i1").await.unwrap();
    assert_eq!(winning, store.get_bid(&b2).await.unwrap());
    assert_eq!((winning.item.as_str(), winning.value), ("i1", 1000.0));
    store.delete_bid(&b2).await.unwrap();
    assert_eq!(winner(store, "i1").await, Some(b3.clone()));
    store.delete_bid(&b3).await.unwrap();
    store.delete_bid(&b4).await.unwrap();
    assert_eq!(winner(store, "i1").await, Some(b1.clone()));
    store.delete_bid(&b1).await.unwrap();
    assert_eq!(winner(store, "i1").await, None);
    assert!(matches!(
        store.winning_bid("i1").await,
        Err(StoreError::NoBids(_))
    ));
}

pub async fn bid_ids_are_never_reused_and_sort_naturally(store: &Store) {
    with_users_and_items(store).await;
    for _ in 0..10 {
        bid(store, "i1", "u1", 1.0).await;
    }
    store.delete_bid("bid10").await.unwrap();
    assert_eq!(bid(store, "i1", "u1", 1.0).await, "bid11");
    let ids: Vec<_> = store
        .list_bids(Cursor::Offset(0), ALL)
        .await
        .unwrap()
        .into_iter()
        .map(|bid| bid.id)
        .collect();
    assert_eq!(ids[7..], ["bid8", "bid9", "bid11"]);
}

pub async fn a_refused_bid_changes_nothing_and_uses_no_id(store: &Store) {
    with_users_and_items(store).await;
    let missing_user = place(store, "i1", "nobody", 1.0).await;
    assert!(
        matches!(
            &missing_user,
            Err(StoreError::MissingReference {
                field: "bid/user",
                ..
            })
        ),
        "{missing_user:?}"
    );
    let missing_item = place(store, "nothing", "u1", 1.0).await;
    assert!(
        matches!(
            &missing_item,
            Err(StoreError::MissingReference {
                field: "bid/item",
                ..
            })
        ),
        "{missing_item:?}"
    );
    assert_eq!(auction_counts(store).await, (3, 2, 0));
    assert_eq!(store.get_item("i1").await.unwrap().bid_count, 0);
    assert_eq!(bid(store, "i1", "u1", 1.0).await, "bid1");
}

pub async fn user_items_are_listed_once_in_order_of_first_remaining_bid(store: &Store) {
    with_users_and_items(store).await;
    let first_on_i2 = bid(store, "i2", "u1", 5.0).await;
    bid(store, "i1", "u1", 5.0).await;
    let second_on_i2 = bid(store, "i2", "u1", 6.0).await;
    assert_eq!(items_of(store, "u1").await, ["i2", "i1"]);

    // Read in chunks: each item carries the cursor to go on from.
    let first = store.user_items("u1", None, 1).await.unwrap();
    assert_eq!(first.user.name, "u1");
    let [(after, ref item)] = first.items[..] else {
        panic!("one item: {first:?}")
    };
    assert_eq!(item, "i2");
    let rest = store.user_items("u1", Some(after), ALL).await.unwrap();
    let rest: Vec<_> = rest.items.into_iter().map(|(_, item)| item).collect();
    assert_eq!(rest, ["i1"]);

    store.delete_bid(&first_on_i2).await.unwrap();
    // The remaining bid on i2 came after the one on i1.
    assert_eq!(items_of(store, "u1").await, ["i1", "i2"]);
    store.delete_bid(&second_on_i2).await.unwrap();
    assert_eq!(items_of(store, "u1").await, ["i1"]);
    assert!(items_of(store, "u2").await.is_empty());
}

pub async fn deleting_a_user_or_an_item_deletes_their_bids_and_fixes_winners(store: &Store) {
    with_users_and_items(store).await;
    let b1 = bid(store, "i1", "u1", 10.0).await;
    bid(store, "i1", "u2", 20.0).await;
    bid(store, "i2", "u2", 30.0).await;
    let b4 = bid(store, "i2", "u1", 5.0).await;
    store.delete_user("u2").await.unwrap();
    assert!(is_not_found(store.get_user("u2").await));
    assert_eq!(winner(store, "i1").await, Some(b1.clone()));
    assert_eq!(winner(store, "i2").await, Some(b4.clone()));
    assert_eq!(auction_counts(store).await, (2, 2, 2));
    store.delete_item("i2").await.unwrap();
    assert!(is_not_found(store.get_item("i2").await));
    assert_eq!(auction_counts(store).await, (2, 1, 1));
    assert_eq!(items_of(store, "u1").await, ["i1"]);
    assert!(is_not_found(store.get_bid(&b4).await));
    for (what, expected) in [
        (Resource::Users, 2),
        (Resource::Items, 1),
        (Resource::Bids, 1),
    ] {
        assert_eq!(store.count(what).await.unwrap(), expected, "{what:?}");
    }
}

pub async fn put_creates_or_renames_and_keeps_bids(store: &Store) {
    with_users_and_items(store).await;
    let b1 = bid(store, "i1", "u1", 1.0).await;
    let (item, upsert) = store.put_item("i1", name("renamed")).await.unwrap();
    assert_eq!(upsert, Upsert::Replaced);
    assert_eq!((item.name.as_str(), item.bid_count), ("renamed", 1));
    assert_eq!(item.winning, Some(b1.clone()));
    assert_eq!(bid_ids_of(store, "i1", Cursor::Offset(0), ALL).await, [b1]);
    let (item, upsert) = store.put_item("item7", name("new")).await.unwrap();
    assert_eq!(upsert, Upsert::Created);
    assert_eq!(
        (item.id.as_str(), item.winning, item.bid_count),
        ("item7", None, 0)
    );
    // Server-assigned ids continue above the client's.
    assert_eq!(store.create_item(name("next")).await.unwrap().id, "item8");
    let (user, upsert) = store.put_user("u1", name("Al")).await.unwrap();
    assert_eq!((user.name.as_str(), upsert), ("Al", Upsert::Replaced));
    assert_eq!(items_of(store, "u1").await, ["i1"]);
    let created = store.create_user(name("x")).await.unwrap();
    assert_eq!((created.id.as_str(), created.name.as_str()), ("user1", "x"));
    assert_eq!(store.get_user("user1").await.unwrap(), created);
    let (_, upsert) = store.put_user("user5", name("y")).await.unwrap();
    assert_eq!(upsert, Upsert::Created);
    assert_eq!(store.create_user(name("z")).await.unwrap().id, "user6");
}

pub async fn missing_auction_records_are_not_found(store: &Store) {
    with_users_and_items(store).await;
    assert!(is_not_found(store.get_user("u9").await));
    assert!(is_not_found(store.delete_user("u9").await));
    assert!(is_not_found(store.user_items("u9", None, ALL).await));
    assert!(is_not_found(store.get_item("i9").await));
    assert!(is_not_found(store.delete_item("i9").await));
    assert!(is_not_found(
        store.item_bids("i9", Cursor::Offset(0), ALL).await
    ));
    assert!(is_not_found(store.winning_bid("i9").await));
    assert!(is_not_found(store.get_bid("bid1").await));
    assert!(is_not_found(store.delete_bid("bid1").await));
    let b1 = bid(store, "i1", "u1", 1.0).await;
    store.delete_bid(&b1).await.unwrap();
    assert!(is_not_found(store.delete_bid(&b1).await));
    assert_eq!(auction_counts(store).await, (3, 2, 0));
}

pub async fn users_items_and_bids_are_listed_in_natural_order_by_offset_or_after_an_id(
    store: &Store,
) {
    for id in ["u10", "u2", "u1", "u3"] {
        store.put_user(id, name(id)).await.unwrap();
    }
    for id in ["i10", "i9", "i1"] {
        store.put_item(id, name(id)).await.unwrap();
    }
    store.delete_user("u3").await.unwrap();
    let users = |from, n| async move {
        let users = store.list_users(from, n).await.unwrap();
        users.into_iter().map(|u| u.id).collect::<Vec<_>>()
    };
    assert_eq!(users(Cursor::Offset(0), ALL).await, ["u1", "u2", "u10"]);
    assert_eq!(users(Cursor::Offset(1), 1).await, ["u2"]);
    assert_eq!(users(Cursor::After("u2".into()), ALL).await, ["u10"]);
    // A list goes on after an id deleted since it was sent.
    assert_eq!(users(Cursor::After("u3".into()), ALL).await, ["u10"]);
    assert!(users(Cursor::Offset(3), ALL).await.is_empty());
    assert!(users(Cursor::After("u10".into()), ALL).await.is_empty());
    assert!(users(Cursor::Offset(0), 0).await.is_empty());

    for _ in 0..3 {
        bid(store, "i9", "u1", 2.0).await;
    }
    bid(store, "i10", "u2", 3.0).await;
    let items = store.list_items(Cursor::Offset(0), ALL).await.unwrap();
    let listed: Vec<_> = items
        .iter()
        .map(|item| (item.id.as_str(), item.winning.as_deref(), item.bid_count))
        .collect();
    assert_eq!(
        listed,
        [
            ("i1", None, 0),
            ("i9", Some("bid1"), 3),
            ("i10", Some("bid4"), 1)
        ]
    );
    let after_i1 = store
        .list_items(Cursor::After("i1".into()), 1)
        .await
        .unwrap();
    assert_eq!(after_i1, items[1..2]);

    for _ in 0..6 {
        bid(store, "i1", "u10", 1.0).await;
    }
    let bids = |from, n| async move {
        let bids = store.list_bids(from, n).await.unwrap();
        bids.into_iter().map(|b| b.id).collect::<Vec<_>>()
    };
    assert_eq!(bids(Cursor::Offset(8), ALL).await, ["bid9", "bid10"]);
    assert_eq!(
        bids(Cursor::After("bid1".into()), 2).await,
        ["bid2", "bid3"]
    );
    assert_eq!(bids(Cursor::After("bid9".into()), ALL).await, ["bid10"]);
    let listed = store.list_bids(Cursor::Offset(9), 1).await.unwrap();
    assert_eq!(listed, [store.get_bid("bid10").await.unwrap()]);
    assert_eq!(
        (
            listed[0].item.as_str(),
            listed[0].user.as_str(),
            listed[0].value
        ),
        ("i1", "u10", 1.0)
    );
}

pub async fn an_items_bids_are_read_in_placing_order_by_offset_or_after_a_placing_number(
    store: &Store,
) {
    with_users_and_items(store).await;
    let mut placed = Vec::new();
    for (user, amount) in [("u1", 3.0), ("u2", 5.0), ("u3", 4.0), ("u1", 5.0)] {
        placed.push(bid(store, "i1", user, amount).await);
        bid(store, "i2", user, 1.0).await;
    }
    assert_eq!(
        bid_ids_of(store, "i1", Cursor::Offset(0), ALL).await,
        placed
    );
    assert_eq!(
        bid_ids_of(store, "i1", Cursor::Offset(1), 2).await,
        placed[1..3]
    );
    assert!(
        bid_ids_of(store, "i1", Cursor::Offset(4), ALL)
            .await
            .is_empty()
    );

    let (item, first) = store.item_bids("i1", Cursor::Offset(0), 2).await.unwrap();
    assert_eq!(item, store.get_item("i1").await.unwrap());
    assert_eq!((item.winning, item.bid_count), (Some(placed[1].clone()), 4));
    assert_eq!(first[0].1, store.get_bid(&placed[0]).await.unwrap());
    // Placing numbers grow in placing order and are the cursor to go on from.
    assert!(first[0].0 < first[1].0);
    let after = first[1].0;
    assert_eq!(
        bid_ids_of(store, "i1", Cursor::After(after), ALL).await,
        placed[2..]
    );
    // Also after a bid deleted since it was sent.
    store.delete_bid(&placed[1]).await.unwrap();
    assert_eq!(
        bid_ids_of(store, "i1", Cursor::After(after), ALL).await,
        placed[2..]
    );
    let (item, _) = store
        .item_bids("i1", Cursor::After(after), 1)
        .await
        .unwrap();
    assert_eq!((item.winning, item.bid_count), (Some(placed[3].clone()), 3));
}

pub async fn books_are_numbered_from_one_and_ids_are_never_reused(store: &Store) {
    for (expected, title) in [(1, "a"), (2, "b"), (3, "c")] {
        let book = store.create_book(fields(title, None)).await.unwrap();
        assert_eq!(book.id, expected);
    }
    store.delete_book(3).await.unwrap();
    store.delete_book(2).await.unwrap();
    let book = store.create_book(fields("d", Some("D"))).await.unwrap();
    assert_eq!(
        book,
        Book {
            id: 4,
            title: "d".into(),
            author: Some("D".into()),
            version: book.version,
        }
    );
    assert_eq!(store.get_book(4).await.unwrap(), book);
    assert_eq!(store.count(Resource::Books).await.unwrap(), 2);
}

pub async fn books_are_replaced_updated_and_deleted(store: &Store) {
    let book = store.create_book(fields("t", Some("a"))).await.unwrap();
    let id = book.id;

    let same = store.update_book(id, BookChanges::default()).await.unwrap();
    assert_eq!((&same.title, &same.author), (&book.title, &book.author));
    let retitled = BookChanges::parse(Some("t2".into()), None).unwrap();
    let changed = store.update_book(id, retitled).await.unwrap();
    assert_eq!(
        (changed.title.as_str(), changed.author.as_deref()),
        ("t2", Some("a"))
    );
    let no_author = BookChanges::parse(None, Some(None)).unwrap();
    let changed = store.update_book(id, no_author).await.unwrap();
    assert_eq!((changed.title.as_str(), changed.author), ("t2", None));
    let with_author = BookChanges::parse(None, Some(Some("b".into()))).unwrap();
    let changed = store.update_book(id, with_author).await.unwrap();
    assert_eq!(changed.author.as_deref(), Some("b"));
    assert_eq!(store.get_book(id).await.unwrap(), changed);

    // A replace without an author removes it.
    let replaced = store.replace_book(id, fields("r", None)).await.unwrap();
    assert_eq!(
        replaced,
        Book {
            id,
            title: "r".into(),
            author: None,
            version: replaced.version,
        }
    );
    let replaced = store
        .replace_book(id, fields("s", Some("c")))
        .await
        .unwrap();
    assert_eq!(store.get_book(id).await.unwrap(), replaced);

    store.delete_book(id).await.unwrap();
    assert!(is_not_found(store.get_book(id).await));
    assert!(is_not_found(store.delete_book(id).await));
    assert!(is_not_found(
        store.replace_book(id, fields("x", None)).await
    ));
    assert!(is_not_found(
        store.update_book(id, BookChanges::default()).await
    ));
    assert_eq!(store.count(Resource::Books).await.unwrap(), 0);
}

pub async fn books_are_listed_in_id_order_by_offset_or_after_an_id(store: &Store) {
    for title in ["a", "b", "c", "d", "e"] {
        store.create_book(fields(title, None)).await.unwrap();
    }
    store.delete_book(3).await.unwrap();
    let ids = |from, n| async move {
        let books = store.list_books(from, n).await.unwrap();
        books.into_iter().map(|b| b.id).collect::<Vec<_>>()
    };
    assert_eq!(ids(Cursor::Offset(0), ALL).await, [1, 2, 4, 5]);
    assert_eq!(ids(Cursor::Offset(1), 2).await, [2, 4]);
    assert_eq!(ids(Cursor::After(2), ALL).await, [4, 5]);
    // A list goes on after an id deleted since it was sent.
    assert_eq!(ids(Cursor::After(3), 1).await, [4]);
    assert_eq!(ids(Cursor::After(0), 1).await, [1]);
    assert!(ids(Cursor::After(5), ALL).await.is_empty());
    assert!(ids(Cursor::Offset(4), ALL).await.is_empty());
    assert!(ids(Cursor::Offset(0), 0).await.is_empty());
    let listed = store.list_books(Cursor::After(4), 1).await.unwrap();
    assert_eq!(listed, [store.get_book(5).await.unwrap()]);
}

pub async fn an_empty_store_counts_nothing_and_finds_nothing(store: &Store) {
    let counts = store.counts().await.unwrap();
    assert_eq!(counts, Default::default());
    assert!(
        store
            .list_books(Cursor::Offset(0), ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_things(Cursor::Offset(0), ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_users(Cursor::Offset(0), ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_items(Cursor::Offset(0), ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_bids(Cursor::Offset(0), ALL)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(is_not_found(store.get_book(1).await));
    assert!(is_not_found(store.get_thing("1").await));
    assert!(is_not_found(store.get_user("user1").await));
    assert!(store.ping().await.is_ok());
}

/// One step of the brute-force comparison: few users, items and values, so that references
/// hit, ties happen and deletes find something.
#[derive(Clone, Debug)]
enum Op {
    PutUser(u8),
    PutItem(u8),
    Bid { item: u8, user: u8, value: u8 },
    DeleteBid(u16),
    DeleteUser(u8),
    DeleteItem(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..4u8).prop_map(Op::PutUser),
        1 => (0..3u8).prop_map(Op::PutItem),
        6 => (0..3u8, 0..4u8, 1..6u8)
            .prop_map(|(item, user, value)| Op::Bid { item, user, value }),
        3 => any::<u16>().prop_map(Op::DeleteBid),
        1 => (0..4u8).prop_map(Op::DeleteUser),
        1 => (0..3u8).prop_map(Op::DeleteItem),
    ]
}

/// The brute-force model: every live bid in placing order.
#[derive(Default)]
struct Model {
    users: BTreeSet<String>,
    items: BTreeSet<String>,
    bids: Vec<(String, String, String, f64)>, // id, item, user, value
}

impl Model {
    fn winner(&self, item: &str) -> Option<String> {
        let mut best: Option<&(String, String, String, f64)> = None;
        for bid in self.bids.iter().filter(|b| b.1 == item) {
            if best.is_none_or(|top| bid.3 > top.3) {
                best = Some(bid);
            }
        }
        best.map(|b| b.0.clone())
    }

    fn user_items(&self, user: &str) -> Vec<String> {
        let mut items: Vec<String> = Vec::new();
        for bid in self.bids.iter().filter(|b| b.2 == user) {
            if !items.contains(&bid.1) {
                items.push(bid.1.clone());
            }
        }
        items
    }
}

/// Random sequences of puts, bids and deletes, each on a fresh store from `open`: after every
/// step, each item's winner, bids (also a page of them) and count, each user's items, and the
/// counts agree with the model. `cases` (else `PROPTEST_CASES`, else 256) sets how many
/// sequences; an opener that gives `None` skips them all.
pub fn winners_and_indexes_always_match_a_brute_force_model<F, Fut>(open: F, cases: Option<u32>)
where
    F: Fn() -> Fut,
    Fut: Future<Output: TestStore>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(store) = runtime.block_on(open()).into_store() else {
        return;
    };
    runtime.block_on(store.close());
    let defaults = Config::default();
    let config = Config {
        cases: cases.unwrap_or(defaults.cases),
        // Failures are kept in proptest-regressions/store/conformance.txt and re-run first.
        source_file: Some(file!()),
        test_name: Some(concat!(
            module_path!(),
            "::winners_and_indexes_always_match_a_brute_force_model"
        )),
        ..defaults
    };
    let mut runner = TestRunner::new(config);
    let ops = proptest::collection::vec(op(), 1..120);
    let result = runner.run(&ops, |ops| {
        runtime.block_on(async {
            let store = open()
                .await
                .into_store()
                .expect("the opener gave a store before");
            let outcome = run_against_model(&store, ops).await;
            store.close().await;
            outcome
        })
    });
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
}

async fn run_against_model(store: &Store, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::PutUser(u) => {
                let id = format!("u{u}");
                store.put_user(&id, name("n")).await.unwrap();
                model.users.insert(id);
            }
            Op::PutItem(i) => {
                let id = format!("i{i}");
                store.put_item(&id, name("n")).await.unwrap();
                model.items.insert(id);
            }
            Op::Bid { item, user, value } => {
                let (item, user) = (format!("i{item}"), format!("u{user}"));
                let placed = place(store, &item, &user, f64::from(value)).await;
                let known = model.users.contains(&user) && model.items.contains(&item);
                prop_assert_eq!(placed.is_ok(), known);
                if let Ok(id) = placed {
                    model.bids.push((id, item, user, f64::from(value)));
                }
            }
            Op::DeleteBid(pick) => {
                if !model.bids.is_empty() {
                    let index = usize::from(pick) % model.bids.len();
                    let (id, ..) = model.bids.remove(index);
                    prop_assert!(store.delete_bid(&id).await.is_ok());
                }
            }
            Op::DeleteUser(u) => {
                let id = format!("u{u}");
                let deleted = store.delete_user(&id).await.is_ok();
                prop_assert_eq!(deleted, model.users.remove(&id));
                model.bids.retain(|b| b.2 != id);
            }
            Op::DeleteItem(i) => {
                let id = format!("i{i}");
                let deleted = store.delete_item(&id).await.is_ok();
                prop_assert_eq!(deleted, model.items.remove(&id));
                model.bids.retain(|b| b.1 != id);
            }
        }
        for item in &model.items {
            let found = store.get_item(item).await.unwrap();
            prop_assert_eq!(&found.winning, &model.winner(item), "winner of {}", item);
            let expected: Vec<String> = model
                .bids
                .iter()
                .filter(|b| &b.1 == item)
                .map(|b| b.0.clone())
                .collect();
            prop_assert_eq!(found.bid_count, expected.len());
            prop_assert_eq!(
                bid_ids_of(store, item, Cursor::Offset(0), ALL).await,
                expected.clone()
            );
            // Any page of the item's bids is the model's slice, also past the end.
            let offset = expected.len() / 2;
            let page = bid_ids_of(store, item, Cursor::Offset(offset), 2).await;
            let slice: Vec<String> = expected.iter().skip(offset).take(2).cloned().collect();
            prop_assert_eq!(page, slice);
        }
        for user in &model.users {
            prop_assert_eq!(items_of(store, user).await, model.user_items(user));
        }
        let expected = (model.users.len(), model.items.len(), model.bids.len());
        prop_assert_eq!(auction_counts(store).await, expected);
    }
    Ok(())
}
