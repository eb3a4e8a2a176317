//! Server-assigned ids never collide: a POST never returns an id that exists, whatever ids
//! clients PUT or the seed files hold. Users, items, bids and books, checked through HTTP against
//! a brute-force model.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use monolith::Config;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{TestApp, data_dir_with};

const USERS: &str = "/api/v1/users";
const ITEMS: &str = "/api/v1/items";
const BIDS: &str = "/api/v1/bids";
const BOOKS: &str = "/api/v1/books";

/// Numbers at or above this are not counted by the id counters (see `src/store/ids.rs`).
const CAP: u64 = 1 << 53;

async fn app_on(files: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    let dir = data_dir_with(files);
    (
        TestApp::with_config(Config::for_tests(dir.path())).await,
        dir,
    )
}

// ---- the examples ----

#[tokio::test]
async fn a_created_user_or_item_skips_an_id_a_client_put_above_the_counted_range() {
    let (app, _dir) = app_on(&[]).await;
    // Items wrap their fields in `item`; users do not.
    for (base, prefix, wrapped) in [(USERS, "user", false), (ITEMS, "item", true)] {
        let body = |name: &str| {
            let fields = json!({ "name": name });
            if wrapped {
                json!({ "item": fields })
            } else {
                fields
            }
        };
        let name_in = |v: &Value| {
            if wrapped {
                v["item"]["name"].clone()
            } else {
                v["name"].clone()
            }
        };
        // The sequence: an id at the cap (not counted), then one just below (counted).
        let at_cap = format!("{base}/{prefix}{CAP}");
        let below = format!("{base}/{prefix}{}", CAP - 1);
        for uri in [&at_cap, &below] {
            assert_eq!(
                app.put_json(uri, body("taken")).await.status,
                StatusCode::CREATED
            );
        }

        let res = app.post_json(base, body("new")).await;
        assert_eq!(
            res.assert_json(StatusCode::CREATED)[format!("{prefix}_id")],
            format!("{prefix}{}", CAP + 1)
        );
        assert_eq!(name_in(&app.get(&at_cap).await.body), "taken");
    }
}

#[tokio::test]
async fn a_placed_bid_skips_a_seeded_bid_id_above_the_counted_range() {
    let auction = json!({
        "users": {"u": {"name": "U"}},
        "items": {"i": {"name": "I"}},
        "bids": {
            format!("bid{CAP}"): {"item": "i", "value": 5.0, "user": "u"},
            format!("bid{}", CAP - 1): {"item": "i", "value": 1.0, "user": "u"},
        }
    });
    let (app, _dir) = app_on(&[("auction.json", &auction.to_string())]).await;
    let res = app
        .post_json(
            BIDS,
            json!({"bid": {"item": "i", "value": 2.0, "user": "u"}}),
        )
        .await;
    assert_eq!(
        res.assert_json(StatusCode::CREATED)["bid_id"],
        format!("bid{}", CAP + 1)
    );
    let kept = app.get(&format!("{BIDS}/bid{CAP}")).await;
    assert_eq!(kept.body["bid"]["value"], 5.0);
    assert_eq!(
        app.get(&format!("{ITEMS}/i/winning")).await.body["bid_id"],
        format!("bid{CAP}")
    );
}

// ---- any sequence, against a brute-force model ----

/// Decimal numbers at the counters' edges: small ones, around the cap, at `u64::MAX`, beyond it.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0..12u64).prop_map(|n| n.to_string()),
        4 => (CAP - 2..=CAP + 2).prop_map(|n| n.to_string()),
        1 => prop_oneof![Just(u64::MAX - 1), Just(u64::MAX)].prop_map(|n| n.to_string()),
        1 => Just("18446744073709551616".to_owned()),
    ]
}

/// A string id: mostly the counter's own prefix, sometimes another; sometimes leading zeros.
fn string_id(prefix: &'static str) -> impl Strategy<Value = String> {
    let prefix = prop_oneof![6 => Just(prefix), 1 => Just("x"), 1 => Just(""), 1 => Just("user")];
    let zeros = prop_oneof![5 => Just(""), 1 => Just("0"), 1 => Just("00")];
    (prefix, zeros, number()).prop_map(|(p, z, n)| format!("{p}{z}{n}"))
}

/// The highest book id the store under test keeps: PostgreSQL's are `bigint`, so 2^63−1
/// (README); a path id above it is simply not found.
fn max_book_id() -> u64 {
    if crate::helpers::on_postgres() {
        i64::MAX.unsigned_abs()
    } else {
        u64::MAX
    }
}

fn book_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 1..12u64,
        3 => CAP - 2..=CAP + 2,
        1 => Just(max_book_id() - 1),
        1 => Just(u64::MAX - 1),
    ]
}

/// A record to act on: one the model holds (by index) if `held` and there is one, else `any`,
/// which is probably absent.
#[derive(Clone, Debug)]
struct Target<T> {
    held: Option<usize>,
    any: T,
}

fn target<T: Clone + std::fmt::Debug>(
    absent: impl Strategy<Value = T>,
) -> impl Strategy<Value = Target<T>> {
    let held = prop_oneof![1 => Just(None), 3 => any::<usize>().prop_map(Some)];
    (held, absent).prop_map(|(held, any)| Target { held, any })
}

impl<T: Clone> Target<T> {
    fn resolve<'a>(&self, mut held: impl ExactSizeIterator<Item = &'a T>) -> T
    where
        T: 'a,
    {
        let count = held.len();
        match self.held {
            Some(i) if count > 0 => held.nth(i % count).cloned().expect("in range"),
            _ => self.any.clone(),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    PostUser,
    PutUser(Target<String>),
    DeleteUser(Target<String>),
    PostItem,
    PutItem(Target<String>),
    DeleteItem(Target<String>),
    PostBid {
        item: Target<String>,
        user: Target<String>,
    },
    DeleteBid(Target<String>),
    PostBook,
    PutBook(Target<u64>),
    PatchBook(Target<u64>),
    DeleteBook(Target<u64>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::PostUser),
        4 => target(string_id("user")).prop_map(Op::PutUser),
        1 => target(string_id("user")).prop_map(Op::DeleteUser),
        3 => Just(Op::PostItem),
        4 => target(string_id("item")).prop_map(Op::PutItem),
        1 => target(string_id("item")).prop_map(Op::DeleteItem),
        4 => (target(string_id("item")), target(string_id("user")))
            .prop_map(|(item, user)| Op::PostBid { item, user }),
        1 => target(string_id("bid")).prop_map(Op::DeleteBid),
        2 => Just(Op::PostBook),
        1 => target(book_id()).prop_map(Op::PutBook),
        1 => target(book_id()).prop_map(Op::PatchBook),
        1 => target(book_id()).prop_map(Op::DeleteBook),
    ]
}

/// Seed records: users, items, bids (by user and item index) and books, at the edges too.
#[derive(Clone, Debug)]
struct Seed {
    users: BTreeSet<String>,
    items: BTreeSet<String>,
    bids: BTreeMap<String, (usize, usize)>,
    books: BTreeSet<u64>,
}

fn seed() -> impl Strategy<Value = Seed> {
    use proptest::collection::{btree_map, btree_set};
    (
        btree_set(string_id("user"), 1..4),
        btree_set(string_id("item"), 1..4),
        btree_map(string_id("bid"), (any::<usize>(), any::<usize>()), 0..5),
        // The highest id only rarely: it leaves no book id to assign. Seeds hold only ids the
        // store keeps.
        btree_set(
            prop_oneof![30 => book_id(), 1 => Just(max_book_id())]
                .prop_filter("a book id the store keeps", |&id| id <= max_book_id()),
            0..4,
        ),
    )
        .prop_map(|(users, items, bids, books)| Seed {
            users,
            items,
            bids,
            books,
        })
}

/// What the server should hold, and the id counters' rules, by brute force.
#[derive(Debug, Default)]
struct Model {
    users: BTreeMap<String, String>,
    items: BTreeMap<String, String>,
    /// Bid id → (item, user).
    bids: BTreeMap<String, (String, String)>,
    books: BTreeMap<u64, String>,
    /// Per prefix: the highest number counted so far (ids seen in canonical form below the
    /// cap, and every id handed out).
    highest: BTreeMap<&'static str, u64>,
    highest_book: u64,
}

/// The number of `id` if it is `prefix` and a number in canonical form below the cap.
fn counted(prefix: &str, id: &str) -> Option<u64> {
    let digits = id.strip_prefix(prefix)?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().filter(|&n| n < CAP)
}

/// The id a POST must return: the first number above the highest counted whose id is free.
fn next_id(
    highest: &mut BTreeMap<&'static str, u64>,
    prefix: &'static str,
    taken: impl Fn(&str) -> bool,
) -> Option<String> {
    let highest = highest.entry(prefix).or_default();
    loop {
        *highest = highest.checked_add(1)?;
        let id = format!("{prefix}{highest}");
        if !taken(&id) {
            return Some(id);
        }
    }
}

impl Model {
    fn observe(&mut self, prefix: &'static str, id: &str) {
        if let Some(n) = counted(prefix, id) {
            let highest = self.highest.entry(prefix).or_default();
            *highest = (*highest).max(n);
        }
    }

    fn from_seed(seed: &Seed) -> Self {
        let mut model = Self::default();
        for id in &seed.users {
            model.observe("user", id);
            model.users.insert(id.clone(), format!("seed {id}"));
        }
        for id in &seed.items {
            model.observe("item", id);
            model.items.insert(id.clone(), format!("seed {id}"));
        }
        let users: Vec<&String> = seed.users.iter().collect();
        let items: Vec<&String> = seed.items.iter().collect();
        for (id, (item, user)) in &seed.bids {
            model.observe("bid", id);
            let item = items[item % items.len()].clone();
            let user = users[user % users.len()].clone();
            model.bids.insert(id.clone(), (item, user));
        }
        for &id in &seed.books {
            model.highest_book = model.highest_book.max(id);
            model.books.insert(id, format!("seed {id}"));
        }
        model
    }

    fn seed_files(&self) -> (String, String) {
        let named = |records: &BTreeMap<String, String>| -> Value {
            records
                .iter()
                .map(|(id, name)| (id.clone(), json!({"name": name})))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let bids: serde_json::Map<_, _> = self
            .bids
            .iter()
            .map(|(id, (item, user))| {
                (
                    id.clone(),
                    json!({"item": item, "value": 1.0, "user": user}),
                )
            })
            .collect();
        let auction =
            json!({"users": named(&self.users), "items": named(&self.items), "bids": bids});
        let books: Vec<Value> = self
            .books
            .iter()
            .map(|(id, title)| json!({"id": id, "title": title}))
            .collect();
        (auction.to_string(), Value::from(books).to_string())
    }

    fn bids_on(&self, item: &str) -> BTreeSet<String> {
        self.bids
            .iter()
            .filter(|(_, (i, _))| i == item)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn keys(body: &Value) -> BTreeSet<String> {
    body.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Runs `ops` on a server seeded from `seed`, checking every answer against the model; `Err`
/// says where they first differ.
async fn run(seed: Seed, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut model = Model::from_seed(&seed);
    let (auction, books) = model.seed_files();
    let (app, _dir) = app_on(&[("auction.json", &auction), ("books.json", &books)]).await;

    for (step, op) in ops.into_iter().enumerate() {
        let name = format!("name {step}");
        match op {
            Op::PostUser => {
                let res = app.post_json(USERS, json!({"name": name})).await;
                let id = next_id(&mut model.highest, "user", |id| {
                    model.users.contains_key(id)
                });
                let id = id.expect("the counter cannot run out in a test");
                prop_assert_eq!(res.status, StatusCode::CREATED, "POST user: {}", res.text);
                prop_assert!(fresh(&res.body["user_id"], &model.users), "{}", res.text);
                prop_assert_eq!(&res.body, &json!({"user_id": id, "name": name}));
                model.users.insert(id, name);
            }
            Op::PutUser(target) => {
                let id = target.resolve(model.users.keys());
                let res = app
                    .put_json(&format!("{USERS}/{id}"), json!({"name": name}))
                    .await;
                let expected = if model.users.contains_key(&id) {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                prop_assert_eq!(res.status, expected, "PUT user {}: {}", id, res.text);
                prop_assert_eq!(&res.body, &json!({"user_id": id, "name": name}));
                model.observe("user", &id);
                model.users.insert(id, name);
            }
            Op::DeleteUser(target) => {
                let id = target.resolve(model.users.keys());
                let res = app.delete(&format!("{USERS}/{id}")).await;
                let existed = model.users.remove(&id).is_some();
                prop_assert_eq!(res.status, deleted(existed), "DELETE user {}", id);
                model.bids.retain(|_, (_, user)| *user != id);
            }
            Op::PostItem => {
                let res = app.post_json(ITEMS, json!({"item": {"name": name}})).await;
                let id = next_id(&mut model.highest, "item", |id| {
                    model.items.contains_key(id)
                });
                let id = id.expect("the counter cannot run out in a test");
                prop_assert_eq!(res.status, StatusCode::CREATED, "POST item: {}", res.text);
                prop_assert!(fresh(&res.body["item_id"], &model.items), "{}", res.text);
                prop_assert_eq!(&res.body["item_id"], &json!(id));
                prop_assert_eq!(&res.body["item"]["bids"], &json!([]));
                model.items.insert(id, name);
            }
            Op::PutItem(target) => {
                let id = target.resolve(model.items.keys());
                let res = app
                    .put_json(&format!("{ITEMS}/{id}"), json!({"item": {"name": name}}))
                    .await;
                let expected = if model.items.contains_key(&id) {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                prop_assert_eq!(res.status, expected, "PUT item {}: {}", id, res.text);
                prop_assert_eq!(&res.body["item_id"], &json!(id));
                prop_assert_eq!(&res.body["item"]["name"], &json!(name));
                model.observe("item", &id);
                model.items.insert(id, name);
            }
            Op::DeleteItem(target) => {
                let id = target.resolve(model.items.keys());
                let res = app.delete(&format!("{ITEMS}/{id}")).await;
                let existed = model.items.remove(&id).is_some();
                prop_assert_eq!(res.status, deleted(existed), "DELETE item {}", id);
                model.bids.retain(|_, (item, _)| *item != id);
            }
            Op::PostBid { item, user } => {
                let item = item.resolve(model.items.keys());
                let user = user.resolve(model.users.keys());
                let res = app
                    .post_json(
                        BIDS,
                        json!({"bid": {"item": item, "value": 2.0, "user": user}}),
                    )
                    .await;
                if model.users.contains_key(&user) && model.items.contains_key(&item) {
                    let id = next_id(&mut model.highest, "bid", |id| model.bids.contains_key(id));
                    let id = id.expect("the counter cannot run out in a test");
                    prop_assert_eq!(res.status, StatusCode::CREATED, "POST bid: {}", res.text);
                    prop_assert!(fresh(&res.body["bid_id"], &model.bids), "{}", res.text);
                    prop_assert_eq!(
                        &res.body,
                        &json!({"bid_id": id, "bid": {"item": item, "value": 2.0, "user": user}})
                    );
                    model.bids.insert(id, (item, user));
                } else {
                    prop_assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
                }
            }
            Op::DeleteBid(target) => {
                let id = target.resolve(model.bids.keys());
                let res = app.delete(&format!("{BIDS}/{id}")).await;
                let existed = model.bids.remove(&id).is_some();
                prop_assert_eq!(res.status, deleted(existed), "DELETE bid {}", id);
            }
            Op::PostBook => {
                let res = app.post_json(BOOKS, json!({"title": name})).await;
                match model
                    .highest_book
                    .checked_add(1)
                    .filter(|&id| id <= max_book_id())
                {
                    Some(id) => {
                        prop_assert_eq!(res.status, StatusCode::CREATED, "POST book: {}", res.text);
                        prop_assert_eq!(&res.body, &json!({"id": id, "title": name}));
                        prop_assert!(!model.books.contains_key(&id));
                        model.highest_book = id;
                        model.books.insert(id, name);
                    }
                    // Every id was used: nothing is created, nothing overwritten.
                    None => prop_assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR),
                }
            }
            Op::PutBook(ref target) | Op::PatchBook(ref target) => {
                let id = target.resolve(model.books.keys());
                let uri = format!("{BOOKS}/{id}");
                let res = if matches!(op, Op::PutBook(_)) {
                    app.put_json(&uri, json!({"title": name})).await
                } else {
                    app.patch_json(&uri, json!({"title": name})).await
                };
                if let Some(title) = model.books.get_mut(&id) {
                    prop_assert_eq!(res.status, StatusCode::OK, "PUT/PATCH book {}", id);
                    prop_assert_eq!(&res.body, &json!({"id": id, "title": name}));
                    *title = name;
                } else {
                    // A PUT never creates a book, so it cannot take an id the counter will give.
                    prop_assert_eq!(res.status, StatusCode::NOT_FOUND, "PUT/PATCH book {}", id);
                }
            }
            Op::DeleteBook(target) => {
                let id = target.resolve(model.books.keys());
                let res = app.delete(&format!("{BOOKS}/{id}")).await;
                let existed = model.books.remove(&id).is_some();
                prop_assert_eq!(res.status, deleted(existed), "DELETE book {}", id);
            }
        }
    }
    check_everything(&app, &model).await
}

/// Whether a returned id is a string the model does not hold yet.
fn fresh<V>(id: &Value, held: &BTreeMap<String, V>) -> bool {
    id.as_str().is_some_and(|id| !held.contains_key(id))
}

fn deleted(existed: bool) -> StatusCode {
    if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// Every list holds exactly the model's ids, and every record reads back as the model says.
async fn check_everything(app: &TestApp, model: &Model) -> Result<(), TestCaseError> {
    let users = app.get(USERS).await;
    prop_assert_eq!(keys(&users.body), model.users.keys().cloned().collect());
    let items = app.get(ITEMS).await;
    prop_assert_eq!(keys(&items.body), model.items.keys().cloned().collect());
    let bids = app.get(BIDS).await;
    prop_assert_eq!(keys(&bids.body), model.bids.keys().cloned().collect());
    let books = app.get(BOOKS).await;
    let book_ids: Vec<u64> = books
        .body
        .as_array()
        .map(|a| a.iter().filter_map(|b| b["id"].as_u64()).collect())
        .unwrap_or_default();
    prop_assert_eq!(book_ids, model.books.keys().copied().collect::<Vec<_>>());
    let total = model.books.len().to_string();
    prop_assert_eq!(books.header("x-total-count"), Some(total.as_str()));

    for (id, name) in &model.users {
        let res = app.get(&format!("{USERS}/{id}")).await;
        prop_assert_eq!(&res.body, &json!({"user_id": id, "name": name}));
    }
    for (id, name) in &model.items {
        let res = app.get(&format!("{ITEMS}/{id}")).await;
        prop_assert_eq!(&res.body["item"]["name"], &json!(name), "item {}", id);
        let bids: BTreeSet<String> = res.body["item"]["bids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|b| b.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        prop_assert_eq!(bids, model.bids_on(id), "bids of item {}", id);
    }
    for (id, (item, user)) in &model.bids {
        let res = app.get(&format!("{BIDS}/{id}")).await;
        prop_assert_eq!(&res.body["bid"]["item"], &json!(item), "bid {}", id);
        prop_assert_eq!(&res.body["bid"]["user"], &json!(user), "bid {}", id);
    }
    for (id, title) in &model.books {
        let res = app.get(&format!("{BOOKS}/{id}")).await;
        prop_assert_eq!(&res.body, &json!({"id": id, "title": title}));
    }
    Ok(())
}

proptest! {
    // Each case builds a server and sends up to ~100 requests: keep the count modest.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_post_never_returns_an_existing_id_whatever_was_put_or_seeded(
        seed in seed(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(seed, ops))?;
    }
}
