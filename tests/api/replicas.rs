//! Several monolith processes on one PostgreSQL database, and that database failing under
//! them (issue 10, points 5 and 6). These run real processes and are slow, so they belong to
//! the PostgreSQL half only: without `TEST_DATABASE_URL` each returns at once.

mod plumbing;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::cli::ServerProcess;
use crate::helpers::{DATA_DIR, binary};
use plumbing::{
    API, Answer, FreshSchema, Node, PrivateCluster, Random, assert_unique, bid_ids, id_number,
    start_together, test_database_url, winner_of,
};

/// Generous: these requests queue behind hundreds of others on a small shared machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Two server processes on one fresh schema, started at the same moment, so that their
/// migrations and seeding race.
struct Replicas {
    schema: FreshSchema,
    nodes: [Node; 2],
    servers: Vec<ServerProcess>,
}

impl Replicas {
    /// Starts them and checks that the bundled data was seeded exactly once; `None` when the
    /// PostgreSQL half is off.
    async fn start(test: &str) -> Option<Self> {
        let url = test_database_url(test)?;
        let schema = FreshSchema::create(&url).await;
        // A few of these tests run at once next to the rest of the suite: a small pool each
        // stays well inside PostgreSQL's 100 connections.
        let servers = start_together(
            2,
            &[
                ("DATABASE_URL", &schema.url),
                ("DATABASE_MAX_CONNECTIONS", "8"),
            ],
        );
        let nodes = [
            Node::new(&servers[0].address, CLIENT_TIMEOUT),
            Node::new(&servers[1].address, CLIENT_TIMEOUT),
        ];
        let replicas = Self {
            schema,
            nodes,
            servers,
        };
        replicas.assert_seeded_once().await;
        Some(replicas)
    }

    /// The bundled data (12 books, 4 things, 3 users, 2 items, 2 bids) is there once, as the
    /// database holds it and as both processes see it.
    async fn assert_seeded_once(&self) {
        for (table, seeded) in [
            ("books", 12),
            ("things", 4),
            ("users", 3),
            ("items", 2),
            ("bids", 2),
        ] {
            assert_eq!(self.schema.count(table).await, seeded, "{table}");
        }
        for node in &self.nodes {
            let books = node.get(&format!("{API}/books")).await;
            assert_eq!(books.header("x-total-count"), Some("12"));
            let users = node.get_ok(&format!("{API}/users")).await;
            assert_eq!(users.as_object().unwrap().len(), 3);
            let item = node.get_ok(&format!("{API}/items/item1")).await;
            assert_eq!(item["item"]["winning"], "bid2");
        }
    }

    fn node(&self, n: usize) -> &Node {
        &self.nodes[n % 2]
    }

    /// Stops both processes (each must exit 0 and never have panicked) and drops the schema.
    async fn finish(self) {
        for server in self.servers {
            let (status, logs) = tokio::task::block_in_place(|| server.stop_keeping_logs());
            assert!(status.success(), "{status:?}\n{logs}");
            assert!(!logs.to_lowercase().contains("panic"), "{logs}");
        }
        self.schema.drop_schema().await;
    }
}

/// Full bid body.
fn bid_body(item: &str, user: &str, value: f64) -> Value {
    json!({"bid": {"item": item, "user": user, "value": value}})
}

/// Creates a user through `node`; its id.
async fn create_user(node: &Node, name: &str) -> String {
    let answer = node
        .post(&format!("{API}/users"), &json!({"name": name}))
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    answer.body["user_id"].as_str().unwrap().to_owned()
}

/// Creates an item through `node`; its id.
async fn create_item(node: &Node, name: &str) -> String {
    let body = json!({"item": {"name": name}});
    let answer = node.post(&format!("{API}/items"), &body).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    answer.body["item_id"].as_str().unwrap().to_owned()
}

/// Checks an item as both processes show it: its bids are `expected` (in placing order) and
/// its winner is the highest, earliest among equals. Returns the bids.
async fn assert_item_consistent(replicas: &Replicas, item: &str) -> Vec<Value> {
    let path = format!("{API}/items/{item}/bids");
    let bids = replicas.node(0).get_ok(&path).await;
    assert_eq!(
        replicas.node(1).get_ok(&path).await,
        bids,
        "both processes list the same bids of {item}"
    );
    let bids = bids.as_array().unwrap().clone();
    let ids = bid_ids(&Value::Array(bids.clone()));
    let winner = winner_of(&bids);
    for node in &replicas.nodes {
        let shown = node.get_ok(&format!("{API}/items/{item}")).await;
        assert_eq!(
            shown["item"]["bids"],
            json!(ids),
            "{item} on {}",
            node.origin
        );
        assert_eq!(
            shown["item"]["winning"],
            json!(winner),
            "{item} on {}",
            node.origin
        );
        let winning = node.get(&format!("{API}/items/{item}/winning")).await;
        match &winner {
            Some(id) => assert_eq!(winning.body["bid_id"], json!(id), "{winning:?}"),
            None => assert_eq!(winning.status, 404, "{winning:?}"),
        }
    }
    bids
}

/// One bid as sent, with its answer.
struct PlacedBid {
    user: String,
    value: f64,
    answer: Answer,
}

/// Places `plan`'s bids `(user, item, value)` one after another through `node` (a 503 retried,
/// as [`Node::post_retrying`] does) until the plan ends or `stop` is set; what each got.
async fn place_bids(
    node: Node,
    plan: Vec<(String, String, f64)>,
    stop: Arc<AtomicBool>,
) -> Vec<PlacedBid> {
    let mut placed = Vec::new();
    for (user, item, value) in plan {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let answer = node
            .post_retrying(&format!("{API}/bids"), &bid_body(&item, &user, value))
            .await;
        placed.push(PlacedBid {
            user,
            value,
            answer,
        });
    }
    placed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bids_on_one_item_through_two_replicas_count_once_and_the_winner_is_exact() {
    const TEST: &str = "concurrent_bids_on_one_item";
    let Some(replicas) = Replicas::start(TEST).await else {
        return;
    };
    let mut random = Random::new(TEST);
    let item = create_item(replicas.node(0), "Contested").await;
    let mut users = Vec::new();
    for n in 0..8 {
        users.push(create_user(replicas.node(n), &format!("Bidder {n}")).await);
    }

    // 480 bids from 80 tasks, half through each process; 25 distinct values, so ties are
    // everywhere, the highest value included.
    let (tasks, per_task) = (80, 6);
    let mut plans = Vec::new();
    for task in 0..tasks {
        let plan: Vec<(String, f64)> = (0..per_task)
            .map(|_| {
                let user = users[random.below(users.len() as u64) as usize].clone();
                (user, (1 + random.below(25)) as f64 * 10.0)
            })
            .collect();
        plans.push((replicas.node(task).clone(), plan));
    }
    let running: Vec<_> = plans
        .into_iter()
        .map(|(node, plan)| {
            let plan = plan
                .into_iter()
                .map(|(user, value)| (user, item.clone(), value))
                .collect();
            tokio::spawn(place_bids(node, plan, Arc::new(AtomicBool::new(false))))
        })
        .collect();
    let storm = Instant::now();
    // Readers through both processes watch the winner meanwhile.
    let stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = (0..4)
        .map(|task| {
            let (node, stop) = (replicas.node(task).clone(), Arc::clone(&stop));
            let path = format!("{API}/items/{item}/winning");
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seen.push(node.send_retrying(Method::GET, &path, None).await);
                }
                seen
            })
        })
        .collect();
    let mut placed = Vec::new();
    for task in running {
        placed.extend(task.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let mut watched = Vec::new();
    for watcher in watchers {
        watched.extend(watcher.await.unwrap());
    }

    let retried: u32 = placed.iter().map(|bid| bid.answer.retried).sum();
    eprintln!(
        "{TEST}: {} bids in {:?}; {retried} attempts answered 503 and were retried",
        placed.len(),
        storm.elapsed()
    );
    let refused: Vec<_> = placed
        .iter()
        .filter(|bid| bid.answer.status != 201)
        .map(|bid| &bid.answer)
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} bids were not placed, e.g. {:?}",
        refused.len(),
        placed.len(),
        refused.first()
    );
    let acknowledged: Vec<String> = placed
        .iter()
        .map(|bid| bid.answer.body["bid_id"].as_str().unwrap().to_owned())
        .collect();
    assert_unique(&acknowledged, "bid ids");
    for bid in &placed {
        assert_eq!(
            bid.answer.body["bid"],
            json!({"item": item, "user": bid.user, "value": bid.value})
        );
    }

    // Every acknowledged bid can be read back, through either process, as it was placed.
    let readers: Vec<_> = placed
        .chunks(40)
        .enumerate()
        .map(|(n, chunk)| {
            let node = replicas.node(n + 1).clone();
            let expected: Vec<Value> = chunk.iter().map(|bid| bid.answer.body.clone()).collect();
            tokio::spawn(async move {
                for bid in expected {
                    let id = bid["bid_id"].as_str().unwrap();
                    assert_eq!(node.get_ok(&format!("{API}/bids/{id}")).await, bid);
                }
            })
        })
        .collect();
    for reader in readers {
        reader.await.unwrap();
    }

    // The item lists exactly the acknowledged bids, no more, and its winner is exact.
    let bids = assert_item_consistent(&replicas, &item).await;
    let listed = bid_ids(&Value::Array(bids.clone()));
    assert_eq!(
        listed.len(),
        acknowledged.len(),
        "no bid is missing or extra"
    );
    assert_eq!(
        listed.iter().collect::<HashSet<_>>(),
        acknowledged.iter().collect::<HashSet<_>>()
    );
    let top = placed.iter().map(|bid| bid.value).fold(0.0, f64::max);
    let tied_at_top = placed.iter().filter(|bid| bid.value == top).count();
    assert!(tied_at_top > 1, "the seed gave no tie at the top: rerun");
    let winner = winner_of(&bids).unwrap();
    let first_at_top = bids
        .iter()
        .find(|bid| bid["bid"]["value"] == json!(top))
        .unwrap();
    assert_eq!(winner, first_at_top["bid_id"].as_str().unwrap());

    // Placing order is the order of the bid numbers (one sequence gives both), and it agrees
    // with real time: a bid answered before another was sent is placed before it.
    let numbers: Vec<u64> = listed.iter().map(|id| id_number(id)).collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "{listed:?}"
    );
    let by_id: HashMap<&str, &PlacedBid> = placed
        .iter()
        .map(|bid| (bid.answer.body["bid_id"].as_str().unwrap(), bid))
        .collect();
    for (position, earlier) in listed.iter().enumerate() {
        for later in &listed[position + 1..] {
            let (earlier, later) = (by_id[earlier.as_str()], by_id[later.as_str()]);
            assert!(
                later.answer.received >= earlier.answer.sent,
                "{} was answered before {} was sent, yet placed after it",
                later.answer.body["bid_id"],
                earlier.answer.body["bid_id"]
            );
        }
    }

    // With bids only ever added, the winner seen by one read and by a read that started
    // after it ended never goes down in value, and never moves to another bid of the same
    // value: that bid would have to be placed before the first winner, yet unseen by it.
    let watched: Vec<&Answer> = watched
        .iter()
        .filter(|answer| answer.status != 404)
        .collect();
    for answer in &watched {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    eprintln!("{TEST}: {} reads of the winner", watched.len());
    for earlier in &watched {
        for later in watched.iter().filter(|later| later.sent > earlier.received) {
            let (before, after) = (&earlier.body, &later.body);
            let (low, high) = (
                before["bid"]["value"].as_f64(),
                after["bid"]["value"].as_f64(),
            );
            assert!(
                high > low || before["bid_id"] == after["bid_id"],
                "the winner went from {before} to {after}"
            );
        }
    }

    // Each bidder's items name the contested item once.
    for (n, user) in users.iter().enumerate() {
        let items = replicas
            .node(n)
            .get_ok(&format!("{API}/users/{user}/items"))
            .await;
        let bid_on = placed.iter().any(|bid| &bid.user == user);
        let expected = if bid_on { json!([item]) } else { json!([]) };
        assert_eq!(items["items_bid"], expected, "{user}");
    }
    replicas.finish().await;
}

/// What a create answered: the new id, or the refusal.
async fn create(node: &Node, kind: &str, n: usize) -> Answer {
    let (path, body) = match kind {
        "books" => ("books", json!({"title": format!("Replicated book {n}")})),
        "users" => ("users", json!({"name": format!("Replicated user {n}")})),
        _ => (
            "items",
            json!({"item": {"name": format!("Replicated item {n}")}}),
        ),
    };
    node.post_retrying(&format!("{API}/{path}"), &body).await
}

/// The id in a create's answer, as text.
fn created_id(kind: &str, answer: &Answer) -> String {
    match kind {
        "books" => answer.body["id"].as_u64().unwrap().to_string(),
        "users" => answer.body["user_id"].as_str().unwrap().to_owned(),
        _ => answer.body["item_id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_through_two_replicas_get_unique_ids_and_all_persist() {
    const TEST: &str = "concurrent_creates";
    let Some(replicas) = Replicas::start(TEST).await else {
        return;
    };
    let kinds = ["books", "users", "items"];
    let (tasks, per_task) = (36, 10);
    let running: Vec<_> = (0..tasks)
        .map(|task| {
            let node = replicas.node(task).clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in 0..per_task {
                    let kind = kinds[(task + n) % 3];
                    answers.push((kind, create(&node, kind, task * per_task + n).await));
                }
                answers
            })
        })
        .collect();
    // In the middle of the storm, ids chosen by clients: later creates must number above them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let put_user = replicas
        .node(1)
        .send_retrying(
            Method::PUT,
            &format!("{API}/users/user5000"),
            Some(&json!({"name": "Chosen"})),
        )
        .await;
    let put_item = replicas
        .node(0)
        .send_retrying(
            Method::PUT,
            &format!("{API}/items/item7000"),
            Some(&json!({"item": {"name": "Chosen"}})),
        )
        .await;
    assert_eq!(put_user.status, 201, "{put_user:?}");
    assert_eq!(put_item.status, 201, "{put_item:?}");
    let mut answers = Vec::new();
    for task in running {
        answers.extend(task.await.unwrap());
    }

    let mut created: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (kind, answer) in &answers {
        assert_eq!(answer.status, 201, "{kind}: {answer:?}");
        let id = created_id(kind, answer);
        let location = format!("{API}/{kind}/{id}");
        assert_eq!(answer.header("location"), Some(location.as_str()));
        created.entry(kind).or_default().push(id);
        for (chosen, put) in [("users", &put_user), ("items", &put_item)] {
            if *kind == chosen && answer.sent > put.received {
                let (number, above) = (id_number(&created_id(kind, answer)), 5000);
                assert!(number > above, "{kind}: {number} created after the PUT");
            }
        }
    }
    for (kind, ids) in &created {
        assert_unique(ids, kind);
        // Seeded ids are never handed out again.
        let seeded = match *kind {
            "books" => 12,
            "users" => 3,
            _ => 2,
        };
        for id in ids {
            assert!(id_number(id) > seeded, "{kind} {id}");
        }
    }

    // Every create is there, through the other process, and nothing else is.
    for (n, (kind, answer)) in answers.iter().enumerate() {
        let id = created_id(kind, answer);
        let shown = replicas
            .node(n + 1)
            .get_ok(&format!("{API}/{kind}/{id}"))
            .await;
        assert_eq!(&shown, &answer.body, "{kind} {id}");
    }
    for node in &replicas.nodes {
        let books = node.get(&format!("{API}/books")).await;
        let expected = 12 + created["books"].len();
        assert_eq!(books.header("x-total-count"), Some(&*expected.to_string()));
        assert_eq!(books.body.as_array().unwrap().len(), expected);
        let users = node.get_ok(&format!("{API}/users")).await;
        assert_eq!(
            users.as_object().unwrap().len(),
            3 + created["users"].len() + 1
        );
        let items = node.get_ok(&format!("{API}/items")).await;
        assert_eq!(
            items.as_object().unwrap().len(),
            2 + created["items"].len() + 1
        );
    }

    // The same new id PUT through both processes at once is created once; deleted at once,
    // it is deleted once.
    for (path, body) in [
        ("users/user9000", json!({"name": "Raced"})),
        ("users/alice", json!({"name": "Raced"})),
        ("items/lamp", json!({"item": {"name": "Raced"}})),
    ] {
        let path = format!("{API}/{path}");
        let statuses = concurrently(&replicas, 16, |node| {
            let (path, body) = (path.clone(), body.clone());
            async move {
                node.send_retrying(Method::PUT, &path, Some(&body))
                    .await
                    .status
            }
        })
        .await;
        assert_eq!(
            (count(&statuses, 201), count(&statuses, 200)),
            (1, 15),
            "PUT {path}: {statuses:?}"
        );
        let statuses = concurrently(&replicas, 16, |node| {
            let path = path.clone();
            async move { node.send_retrying(Method::DELETE, &path, None).await.status }
        })
        .await;
        assert_eq!(
            (count(&statuses, 204), count(&statuses, 404)),
            (1, 15),
            "DELETE {path}: {statuses:?}"
        );
    }
    replicas.finish().await;
}

/// Runs `request` from `tasks` tasks at once, alternating between the two processes; the
/// results.
async fn concurrently<F, T>(
    replicas: &Replicas,
    tasks: usize,
    request: impl Fn(Node) -> F,
) -> Vec<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let running: Vec<_> = (0..tasks)
        .map(|n| tokio::spawn(request(replicas.node(n).clone())))
        .collect();
    let mut results = Vec::new();
    for task in running {
        results.push(task.await.unwrap());
    }
    results
}

/// How many of `statuses` are `status`.
fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_while_their_bids_arrive_on_two_replicas_leaves_no_orphans() {
    const TEST: &str = "deleting_a_user_while_bidding";
    let Some(replicas) = Replicas::start(TEST).await else {
        return;
    };
    let mut random = Random::new(TEST);
    let leaving = create_user(replicas.node(0), "Leaving").await;
    let staying = create_user(replicas.node(1), "Staying").await;
    let mut items = Vec::new();
    for n in 0..4 {
        items.push(create_item(replicas.node(n), &format!("Lot {n}")).await);
    }

    // 16 bidders, mostly as the leaving user, through both processes, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let running: Vec<_> = (0..16)
        .map(|task| {
            let node = replicas.node(task).clone();
            let stop = Arc::clone(&stop);
            let plan: Vec<(String, String, f64)> = (0..1000)
                .map(|_| {
                    let user = if random.below(4) == 0 {
                        &staying
                    } else {
                        &leaving
                    };
                    let item = &items[random.below(items.len() as u64) as usize];
                    let value = (1 + random.below(20)) as f64;
                    (user.clone(), item.clone(), value)
                })
                .collect();
            tokio::spawn(place_bids(node, plan, stop))
        })
        .collect();
    // Readers through both processes watch the items with their bids in full meanwhile.
    let readers: Vec<_> = (0..4)
        .map(|task| {
            let (node, stop, items) = (
                replicas.node(task).clone(),
                Arc::clone(&stop),
                items.clone(),
            );
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for item in &items {
                        let path = format!("{API}/items/{item}?complete=1");
                        seen.push(node.send_retrying(Method::GET, &path, None).await);
                    }
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deleted = replicas
        .node(1)
        .send_retrying(Method::DELETE, &format!("{API}/users/{leaving}"), None)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut placed = Vec::new();
    for task in running {
        placed.extend(task.await.unwrap());
    }
    assert_eq!(deleted.status, 204, "{deleted:?}");

    // Every item read showed a winner that follows from the bids it listed (one snapshot),
    // and none read after the delete was answered showed a bid of the deleted user.
    let mut reads = 0;
    for reader in readers {
        for answer in reader.await.unwrap() {
            assert_eq!(answer.status, 200, "{answer:?}");
            let bids = answer.body["item"]["bids"].as_array().unwrap();
            assert!(
                bids.len() < 256,
                "more bids than one chunk: the check below needs one"
            );
            assert_eq!(
                answer.body["item"]["winning"],
                json!(winner_of(bids)),
                "{answer:?}"
            );
            if answer.sent > deleted.received {
                assert!(
                    bids.iter().all(|bid| bid["bid"]["user"] != json!(leaving)),
                    "a bid of the deleted user, read after the delete: {answer:?}"
                );
            }
            reads += 1;
        }
    }
    eprintln!(
        "{TEST}: {} bids placed or refused, {reads} item reads",
        placed.len()
    );

    // The staying user's bids are all placed; the leaving user's are placed, or refused as a
    // missing reference, and always refused once the delete was answered.
    let mut leaving_placed = Vec::new();
    let mut staying_placed = HashSet::new();
    let mut refused_after_delete = 0;
    for bid in &placed {
        let answer = &bid.answer;
        if bid.user == staying {
            assert_eq!(answer.status, 201, "{answer:?}");
            staying_placed.insert(answer.body["bid_id"].as_str().unwrap().to_owned());
        } else if answer.status == 201 {
            assert!(
                answer.sent < deleted.received,
                "a bid sent after the user's delete was answered got 201: {answer:?}"
            );
            leaving_placed.push(answer.body["bid_id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(answer.status, 422, "{answer:?}");
            assert_eq!(answer.body["errors"][0]["pointer"], "/bid/user");
            if answer.sent > deleted.received {
                refused_after_delete += 1;
            }
        }
    }
    assert!(
        !leaving_placed.is_empty() && refused_after_delete > 0,
        "the delete did not land among the bids: {} placed, {refused_after_delete} refused",
        leaving_placed.len()
    );

    // The user and every bid of theirs are gone, on both processes; the other bids all stay.
    for node in &replicas.nodes {
        let user = node.get(&format!("{API}/users/{leaving}")).await;
        assert_eq!(user.status, 404, "{user:?}");
        let all = node.get_ok(&format!("{API}/bids")).await;
        let all = all.as_object().unwrap();
        let remaining: HashSet<String> = all.keys().cloned().collect();
        let by_leaving: Vec<_> = all
            .iter()
            .filter(|(_, bid)| bid["bid"]["user"] == json!(leaving))
            .collect();
        assert!(by_leaving.is_empty(), "orphans: {by_leaving:?}");
        let mut expected: HashSet<String> = staying_placed.clone();
        expected.extend(["bid1".to_owned(), "bid2".to_owned()]);
        assert_eq!(remaining, expected);
    }
    for (n, id) in leaving_placed.iter().enumerate() {
        let answer = replicas.node(n).get(&format!("{API}/bids/{id}")).await;
        assert_eq!(answer.status, 404, "{answer:?}");
    }

    // Each item's winner follows from its remaining bids; the staying user's items follow
    // their first bids.
    let mut first_bids: Vec<(u64, String)> = Vec::new();
    for item in &items {
        let bids = assert_item_consistent(&replicas, item).await;
        assert!(bids.iter().all(|bid| bid["bid"]["user"] == json!(staying)));
        if let Some(first) = bids.first() {
            first_bids.push((id_number(first["bid_id"].as_str().unwrap()), item.clone()));
        }
    }
    first_bids.sort();
    let in_order: Vec<&String> = first_bids.iter().map(|(_, item)| item).collect();
    for node in &replicas.nodes {
        let shown = node.get_ok(&format!("{API}/users/{staying}/items")).await;
        assert_eq!(shown["items_bid"], json!(in_order));
    }

    // Inside the database: no bid without its user, and each user's item list is exactly
    // their first remaining bid per item.
    let orphans = replicas
        .schema
        .rows("SELECT id FROM bids WHERE user_id NOT IN (SELECT id FROM users)")
        .await;
    assert!(orphans.is_empty(), "{orphans:?}");
    let mismatched = replicas
        .schema
        .rows(
            "SELECT concat_ws(' ', coalesce(b.user_id, u.user_id), coalesce(b.item_id, u.item_id),
                              b.first_seq, u.first_seq)
             FROM (SELECT user_id, item_id, min(seq) AS first_seq FROM bids
                   GROUP BY user_id, item_id) b
             FULL JOIN user_items u ON u.user_id = b.user_id AND u.item_id = b.item_id
             WHERE b.first_seq IS DISTINCT FROM u.first_seq",
        )
        .await;
    assert!(
        mismatched.is_empty(),
        "user_items disagrees: {mismatched:?}"
    );
    replicas.finish().await;
}

/// Runs the binary with `env` (and no other), waits at most `limit`; exit code, stdout,
/// stderr and how long it ran.
fn run_binary(env: &[(&str, &str)], limit: Duration) -> (Option<i32>, String, String, Duration) {
    let cwd = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(binary())
        .current_dir(cwd.path())
        .env_clear()
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    (
        status.code(),
        out.join().unwrap(),
        err.join().unwrap(),
        elapsed,
    )
}

#[test]
fn an_unreachable_database_at_start_up_is_retried_then_exit_1_with_one_line_and_no_password() {
    const TEST: &str = "an_unreachable_database_at_start_up";
    if test_database_url(TEST).is_none() {
        return;
    }
    // Percent-encoded in the URL: neither spelling may leak.
    let (password, decoded) = ("Sw0rd%40fish-9c1e4", "Sw0rd@fish-9c1e4");
    let url = format!("postgres://monolith:{password}@127.0.0.1:1/monolith");
    let (code, stdout, stderr, elapsed) = run_binary(
        &[
            ("DATA_DIR", DATA_DIR),
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("LOG_FORMAT", "json"),
            ("DATABASE_URL", &url),
            ("DATABASE_STARTUP_TIMEOUT_SECS", "2"),
        ],
        Duration::from_secs(15),
    );
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    // It kept trying for the start-up timeout, and gave up soon after.
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_secs(6),
        "{elapsed:?}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].starts_with("monolith: "), "{stderr}");
    assert!(lines[0].to_lowercase().contains("database"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains(password), "the password leaked: {text}");
        assert!(!text.contains(decoded), "the password leaked: {text}");
    }
    // The attempts before giving up are logged, one warning each.
    let warnings = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["level"] == "WARN")
        .count();
    assert!(warnings >= 2, "{stdout}");
    assert!(!stdout.contains("listening"), "{stdout}");
}

/// Every write of the load, with its answer or its failure.
struct Write {
    kind: &'static str,
    title: String,
    answer: Result<Answer, String>,
}

/// Books and bids, from `tasks` writers through `node`, until `stop`.
fn write_load(
    node: &Node,
    tasks: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Write>>> {
    (0..tasks)
        .map(|task| {
            let (node, stop) = (node.clone(), Arc::clone(stop));
            tokio::spawn(async move {
                let mut writes = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let title = format!("Durable {task}-{n}");
                    let (kind, path, body) = if n % 2 == 0 {
                        ("books", "books", json!({"title": title}))
                    } else {
                        ("bids", "bids", bid_body("item1", "user3", n as f64))
                    };
                    let answer = node
                        .try_send(Method::POST, &format!("{API}/{path}"), Some(&body))
                        .await;
                    let failed = !matches!(&answer, Ok(a) if a.status < 300);
                    writes.push(Write {
                        kind,
                        title,
                        answer,
                    });
                    if failed {
                        // Refusals come at once while the database is down: don't spin.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                writes
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_lost_under_a_write_load_is_a_503_then_recovers_and_no_acknowledged_write_is_lost()
 {
    const TEST: &str = "the_database_lost_under_a_write_load";
    if test_database_url(TEST).is_none() {
        return;
    }
    let began = Instant::now();
    let Some(cluster) = tokio::task::block_in_place(|| PrivateCluster::start(TEST)) else {
        return;
    };
    eprintln!("{TEST}: private cluster up after {:?}", began.elapsed());
    let request_timeout = Duration::from_secs(3);
    let password = "Tr0ub4dor-3e7a"; // pragma: allowlist secret
    let url = cluster.url_with_password(password);
    let server = tokio::task::block_in_place(|| {
        ServerProcess::start(&[
            ("DATABASE_URL", &url),
            ("REQUEST_TIMEOUT_SECS", "3"),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", "1"),
            ("DATABASE_STARTUP_TIMEOUT_SECS", "10"),
        ])
    });
    eprintln!("{TEST}: monolith up after {:?}", began.elapsed());
    // An answer later than the request timeout (plus slack for a busy machine) is a hang.
    let node = Node::new(&server.address, request_timeout + Duration::from_secs(2));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_load(&node, 6, &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let crashed = Instant::now();
    tokio::task::block_in_place(|| cluster.crash());
    // Readiness notices within a few seconds.
    loop {
        let ready = node.get("/readyz").await;
        if ready.status == 503 {
            break;
        }
        assert!(crashed.elapsed() < Duration::from_secs(5), "{ready:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{TEST}: /readyz 503 {:?} after the crash began ({:?} in)",
        crashed.elapsed(),
        began.elapsed()
    );
    // While it is down, everything that needs it is a prompt 503 problem.
    let down_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < down_until {
        let ready = node.get("/readyz").await;
        assert_eq!(ready.status, 503, "{ready:?}");
        let book = json!({"title": "Not now"});
        for answer in [
            node.post(&format!("{API}/books"), &book).await,
            node.get(&format!("{API}/books/1")).await,
            node.get(&format!("{API}/items/item1")).await,
        ] {
            assert!(answer.is_unavailable_problem(), "{answer:?}");
            assert!(answer.latency() <= request_timeout, "{answer:?}");
            assert!(!answer.body.to_string().contains(password), "{answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let restarted = Instant::now();
    tokio::task::block_in_place(|| cluster.restart());
    loop {
        let ready = node.get("/readyz").await;
        if ready.status == 200 {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "not ready again: {ready:?}\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_again = Instant::now();
    eprintln!(
        "{TEST}: ready again {:?} after the restart began ({:?} in)",
        ready_again - restarted,
        began.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    for writer in writers {
        writes.extend(writer.await.unwrap());
    }

    // Every write was answered in time, with success or a 503 problem; all succeed again soon
    // after readiness returns.
    let mut acknowledged = Vec::new();
    let (mut before, mut refused, mut after) = (0, 0, 0);
    for write in &writes {
        let answer = write
            .answer
            .as_ref()
            .unwrap_or_else(|e| panic!("a write hung or failed: {e}"));
        assert!(
            answer.latency() <= request_timeout + Duration::from_millis(500),
            "{answer:?}"
        );
        if answer.status == 201 {
            acknowledged.push(write);
            if answer.received < crashed {
                before += 1;
            }
            if answer.sent > ready_again {
                after += 1;
            }
        } else {
            assert!(answer.is_unavailable_problem(), "{answer:?}");
            refused += 1;
            assert!(
                answer.sent < ready_again + Duration::from_secs(1),
                "a write still failed a second after readiness: {answer:?}"
            );
        }
    }
    assert!(
        before > 0 && refused > 0 && after > 0,
        "{before} {refused} {after}"
    );

    // Durability: every acknowledged write is there, as it was answered (read in two lists:
    // thousands of single reads would take longer than the rest of the test).
    let books = node.get_ok(&format!("{API}/books")).await;
    let books: HashMap<String, &Value> = books
        .as_array()
        .unwrap()
        .iter()
        .map(|book| (book["id"].to_string(), book))
        .collect();
    let bids = node.get_ok(&format!("{API}/bids")).await;
    let bids = bids.as_object().unwrap();
    eprintln!("{TEST}: {} writes acknowledged", acknowledged.len());
    for write in acknowledged {
        let answer = write.answer.as_ref().unwrap();
        let stored = match write.kind {
            "books" => books.get(&answer.body["id"].to_string()).copied(),
            _ => bids.get(answer.body["bid_id"].as_str().unwrap()),
        };
        assert_eq!(stored, Some(&answer.body), "{} {}", write.kind, write.title);
    }
    eprintln!("{TEST}: checked after {:?}", began.elapsed());
    let (status, logs) = tokio::task::block_in_place(|| server.stop_keeping_logs());
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(!logs.to_lowercase().contains("panic"), "{logs}");
    assert!(!logs.contains(password), "the password leaked: {logs}");
    eprintln!("{TEST}: stopped after {:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_database_is_back_after_a_quiet_restart_requests_succeed() {
    const TEST: &str = "once_the_database_is_back_after_a_quiet_restart";
    if test_database_url(TEST).is_none() {
        return;
    }
    let Some(cluster) = tokio::task::block_in_place(|| PrivateCluster::start(TEST)) else {
        return;
    };
    let url = cluster.url_with_password("unused-8d1f");
    let server = tokio::task::block_in_place(|| {
        ServerProcess::start(&[
            ("DATABASE_URL", &url),
            ("DATABASE_MAX_CONNECTIONS", "4"),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", "2"),
        ])
    });
    let node = Node::new(&server.address, CLIENT_TIMEOUT);
    let concurrently = |path: &'static str, body: Option<Value>| {
        let requests: Vec<_> = (0..8)
            .map(|_| {
                let (node, body) = (node.clone(), body.clone());
                tokio::spawn(async move {
                    let method = if body.is_some() {
                        Method::POST
                    } else {
                        Method::GET
                    };
                    node.send(method, &format!("{API}{path}"), body.as_ref())
                        .await
                })
            })
            .collect();
        async move {
            let mut answers = Vec::new();
            for request in requests {
                answers.push(request.await.unwrap());
            }
            answers
        }
    };
    // Every pooled connection gets used, then sits idle while PostgreSQL restarts: nobody
    // asks anything during the outage.
    for answer in concurrently("/books/1", None).await {
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    tokio::task::block_in_place(|| {
        cluster.crash();
        cluster.restart();
    });
    // PostgreSQL accepts connections again (`pg_ctl start -w` waited for that): requests must
    // not stumble on a pooled connection that the restart broke.
    let book = json!({"title": "After the restart"});
    let failed: Vec<Answer> = concurrently("/books", Some(book))
        .await
        .into_iter()
        .filter(|answer| answer.status != 201)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 8 writes failed with the database back: {:?}",
        failed.len(),
        failed.first().map(|answer| &answer.body)
    );
    let ready = node.get("/readyz").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let (status, logs) = tokio::task::block_in_place(|| server.stop_keeping_logs());
    assert!(status.success(), "{status:?}\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_stuck_behind_a_lock_is_a_prompt_503_and_changes_nothing() {
    const TEST: &str = "a_statement_stuck_behind_a_lock";
    let Some(url) = test_database_url(TEST) else {
        return;
    };
    let schema = FreshSchema::create(&url).await;
    let server = tokio::task::block_in_place(|| {
        ServerProcess::start(&[
            ("DATABASE_URL", &schema.url),
            ("DATABASE_MAX_CONNECTIONS", "4"),
            ("DATABASE_STATEMENT_TIMEOUT_SECS", "1"),
            ("REQUEST_TIMEOUT_SECS", "5"),
        ])
    });
    let node = Node::new(&server.address, CLIENT_TIMEOUT);
    // Open every pooled connection first: on a busy machine, opening one can take longer than
    // the 1 s this test gives a request to get one.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let node = node.clone();
            tokio::spawn(async move { node.get(&format!("{API}/users/user1")).await })
        })
        .collect();
    for answer in warm {
        assert_eq!(answer.await.unwrap().status, 200);
    }
    let lock = schema.lock("books").await;

    // Requests stuck on the lock are each a 503 once the statement timeout runs out, long
    // before the request timeout; one on another table, with a connection free, is served.
    let stuck = |count: usize| -> Vec<_> {
        (0..count)
            .map(|n| {
                let node = node.clone();
                tokio::spawn(async move {
                    if n % 2 == 0 {
                        node.get(&format!("{API}/books/1")).await
                    } else {
                        node.post(&format!("{API}/books"), &json!({"title": "Stuck"}))
                            .await
                    }
                })
            })
            .collect()
    };
    let first_wave = stuck(3);
    let user = node.get(&format!("{API}/users/user1")).await;
    assert_eq!(user.status, 200, "{user:?}");
    // More stuck requests than pooled connections: the ones left waiting for a connection
    // are a prompt 503 too.
    let second_wave = stuck(8);
    for answer in first_wave.into_iter().chain(second_wave) {
        let answer = answer.await.unwrap();
        assert!(answer.is_unavailable_problem(), "{answer:?}");
        assert!(answer.latency() < Duration::from_secs(3), "{answer:?}");
    }
    assert_eq!(node.get("/readyz").await.status, 200);

    lock.rollback().await.unwrap();
    assert_eq!(node.get_ok(&format!("{API}/books/1")).await["id"], 1);
    let created = node
        .post(&format!("{API}/books"), &json!({"title": "Unstuck"}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    // The refused creates left nothing behind.
    assert_eq!(schema.count("books").await, 13);
    let (status, logs) = tokio::task::block_in_place(|| server.stop_keeping_logs());
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(!logs.to_lowercase().contains("panic"), "{logs}");
    schema.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bid_seen_winning_is_never_overtaken_by_an_equal_bid() {
    const TEST: &str = "a_bid_seen_winning";
    let Some(url) = test_database_url(TEST) else {
        return;
    };
    let schema = FreshSchema::create(&url).await;
    let server =
        tokio::task::block_in_place(|| ServerProcess::start(&[("DATABASE_URL", &schema.url)]));
    let node = Node::new(&server.address, CLIENT_TIMEOUT);
    let bids = format!("{API}/bids");
    let winning = format!("{API}/items/item1/winning");
    // Another transaction holds user1's row of item1 for a moment, as deleting one of their
    // bids does; meanwhile user1 and user3 bid the same value on item1 (seeded winner: 1000).
    let held = schema
        .hold("SELECT 1 FROM user_items WHERE user_id = 'user1' AND item_id = 'item1' FOR UPDATE")
        .await;
    let bid = |user: &str| {
        let (node, bids, body) = (node.clone(), bids.clone(), bid_body("item1", user, 2000.0));
        tokio::spawn(async move { node.post(&bids, &body).await })
    };
    let first = bid("user1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = bid("user3");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = node.get_ok(&winning).await;
    held.rollback().await.unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!((first.status, second.status), (201, 201));

    // Whichever bid of 2000 a client saw winning keeps winning: the other one came later.
    let now = node.get_ok(&winning).await;
    if seen["bid"]["value"] == json!(2000.0) {
        assert_eq!(
            now["bid_id"],
            seen["bid_id"],
            "seen winning: {seen}; then: {now}; the bids: {:?}",
            node.get_ok(&format!("{API}/items/item1/bids")).await
        );
    }
    let (status, logs) = tokio::task::block_in_place(|| server.stop_keeping_logs());
    assert!(status.success(), "{status:?}\n{logs}");
    schema.drop_schema().await;
}

/// Issue 13, point 3: a feed on each replica; 100 bids placed at once through the other one.
/// Both feeds send every bid, in the store's placing order, with the same ids, and the winner
/// changes a brute-force model computes from that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_on_every_replica_see_every_bid_placed_through_another_in_the_stores_order() {
    use crate::feeds::SseReader;
    const TEST: &str = "feeds_on_every_replica";
    let Some(replicas) = Replicas::start(TEST).await else {
        return;
    };
    let item = create_item(replicas.node(0), "Watched from both sides").await;
    let user = create_user(replicas.node(0), "Bidder").await;
    let feed_url = |n: usize| {
        format!(
            "http://{}{API}/items/{item}/events",
            replicas.servers[n].address
        )
    };
    let mut feeds = [
        SseReader::open(&feed_url(0), None).await,
        SseReader::open(&feed_url(1), None).await,
    ];
    for feed in &mut feeds {
        assert_eq!(feed.next().await.unwrap().event, "state");
    }

    let placing: Vec<_> = (0..100)
        .map(|n| {
            let node = replicas.node(1).clone();
            let body = bid_body(&item, &user, ((n * 41) % 17 + 1) as f64);
            tokio::spawn(async move { node.post_retrying(&format!("{API}/bids"), &body).await })
        })
        .collect();
    for task in placing {
        assert_eq!(task.await.unwrap().status, 201);
    }

    let stored = replicas
        .node(0)
        .get_ok(&format!("{API}/items/{item}/bids"))
        .await;
    let stored = stored.as_array().unwrap().clone();
    let stored_ids = bid_ids(&Value::Array(stored.clone()));
    let mut model = Vec::new();
    for (n, _) in stored.iter().enumerate() {
        let winner = winner_of(&stored[..=n]);
        if model.last() != winner.as_ref() {
            model.extend(winner);
        }
    }

    let mut seen = Vec::new();
    for feed in &mut feeds {
        let mut events = Vec::new();
        let mut bids = Vec::new();
        let mut winners = Vec::new();
        while bids.len() < 100 || winners.last() != model.last() {
            let event = feed.next().await.expect("the feed goes on");
            match event.event.as_str() {
                "bid" => bids.push(event.data["bid_id"].as_str().unwrap().to_owned()),
                "winner" => winners.push(
                    event.data["winning_bid"]["bid_id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ),
                other => panic!("unexpected {other} event"),
            }
            events.push((event.id, event.event));
        }
        assert_eq!(bids, stored_ids, "every bid, in the store's order");
        assert_eq!(winners, model, "the winners of the store's order");
        seen.push(events);
    }
    assert_eq!(seen[0], seen[1], "both replicas send the same events");
    replicas.finish().await;
}
