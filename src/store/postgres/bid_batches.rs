//! Placing bids in batches: the bids on one item that arrive while an earlier one is being
//! placed wait, then go in together, in the order they arrived, in one statement and one commit.
//!
//! Every bid takes its item's lock (see [`insert_bids`]), so the bids on one item are placed one
//! after another whatever we do; what batching saves is a round trip, a statement and a durable
//! commit per bid, and the hand-over of the lock between sessions. `pgbench` on this schema,
//! 10 items: one bid per statement with 64 clients 2 480–2 580 bids/s; six per statement with 10
//! clients (one per item, as here) 6 700–8 600. A bid whose item is idle is placed at once, on
//! its own: batching adds no wait, it only gathers the bids that would have queued anyway.
//!
//! Each bid stays all or nothing: its batch commits, or fails, as a whole, and every bid of it
//! gets that outcome. A bid refused for its own reason (an unknown user) is refused alone; a
//! user or item deleted while the batch runs fails the statement, and its bids are then placed
//! one at a time to find whose reference went away.
//!
//! What a placer must not do, and does not: place a bid whose caller went away before its
//! statement was sent (a batch is taken only once the placer holds a connection, and gone
//! callers are dropped then); wait for a database that stopped answering longer than the
//! statement timeout and a second (the statement is given up on this side and its connection
//! discarded, so the item's next bids get a fresh one); let bids pile up behind a held-up
//! placer (at most [`MAX_WAITING`] wait per item; more are answered 503 at once).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgConnection;
use tokio::sync::oneshot;

use super::PostgresStore;
use super::error::{Context, is_foreign_key_violation, missing_item, missing_user, store_error};
use super::pool::{Conn, Settle};
use crate::store::{Bid, NewBid, StoreError, Version};

/// The first key of the transaction-scoped advisory lock that serialises the bids of one item
/// (the second is a hash of its id; a collision only makes two items wait for each other).
pub(super) const ITEM_BIDS_LOCK: i32 = 0x6269_6473; // "bids"

/// Most bids in one statement: keeps a statement well inside the statement timeout.
const MAX_BATCH: usize = 64;

/// Most bids that may wait for one item's placer; more are answered 503 at once.
const MAX_WAITING: usize = 4096;

/// Longer than the server's `statement_timeout` by this much, a batch's statement is given up
/// from this side: a server that froze, or a link that dropped without a word, cannot fire its
/// own timeout, and the item's bids would wait for it.
const STATEMENT_GRACE: Duration = Duration::from_secs(1);

/// Where a waiting bid's outcome goes.
type Reply = oneshot::Sender<Result<Bid, StoreError>>;

/// The bids waiting for their item's placer, per item.
#[derive(Debug, Default)]
pub(super) struct BidQueues {
    /// An entry exists while a placer runs for the item; its bids wait in it, oldest first.
    waiting: Mutex<HashMap<String, Vec<(NewBid, Reply)>>>,
}

impl BidQueues {
    /// Queues `bid`; `Ok(true)` when its item had no placer running, so the caller must start
    /// one. Refused when [`MAX_WAITING`] bids already wait for the item: a placer held up (a
    /// database that stopped answering) must not make the queue grow without bound.
    fn push(&self, bid: NewBid, reply: Reply) -> Result<bool, StoreError> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        match waiting.entry(bid.item.clone()) {
            Entry::Occupied(mut queue) => {
                let queue = queue.get_mut();
                if queue.len() >= MAX_WAITING {
                    queue.retain(|(_, reply)| !reply.is_closed());
                }
                if queue.len() >= MAX_WAITING {
                    return Err(StoreError::Unavailable(format!(
                        "{MAX_WAITING} bids are waiting for item {} already",
                        bid.item
                    )));
                }
                queue.push((bid, reply));
                Ok(false)
            }
            Entry::Vacant(slot) => {
                slot.insert(vec![(bid, reply)]);
                Ok(true)
            }
        }
    }

    /// Up to [`MAX_BATCH`] of `item`'s waiting bids, oldest first; none when none wait, and then
    /// the item has no placer any more (the next bid starts one). A bid whose caller went away
    /// before it was taken (client gone, request timed out) is dropped unplaced, as it would
    /// have been had it not waited.
    fn take(&self, item: &str) -> Vec<(NewBid, Reply)> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queue) = waiting.get_mut(item) else {
            return Vec::new();
        };
        queue.retain(|(_, reply)| !reply.is_closed());
        if queue.is_empty() {
            waiting.remove(item);
            return Vec::new();
        }
        let n = queue.len().min(MAX_BATCH);
        queue.drain(..n).collect()
    }

    /// Forgets `item`'s placer and its waiting bids (whose callers then get an error).
    fn abandon(&self, item: &str) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.remove(item);
    }
}

/// Removes an item's placer from the queues if it panics, so that the item's later bids start a
/// new one instead of waiting for a placer that is gone.
struct AbandonOnPanic<'a> {
    queues: &'a BidQueues,
    item: &'a str,
}

impl Drop for AbandonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.queues.abandon(self.item);
        }
    }
}

impl PostgresStore {
    /// Places `new`, in a batch with the other bids on its item that wait when it is taken.
    pub(super) async fn place_bid_batched(&self, new: NewBid) -> Result<Bid, StoreError> {
        let (reply, answer) = oneshot::channel();
        let item = new.item.clone();
        if self.bid_queues.push(new, reply)? {
            // A task of its own: a caller that goes away (client gone, timeout) must not cancel
            // the placing of the other callers' bids.
            let store = self.clone();
            tokio::spawn(async move { store.place_waiting_bids(&item).await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Internal(
                "the bid placer stopped without an answer".to_owned(),
            ))
        })
    }

    /// The placer of `item`: places its waiting bids, batch after batch, until none wait.
    ///
    /// Each batch is taken only once a connection is in hand, just before its statement is
    /// sent: a caller that goes away while the placer waits for a connection (a busy pool) is
    /// not placed, as it would not have been without batching.
    async fn place_waiting_bids(&self, item: &str) {
        let _abandon = AbandonOnPanic {
            queues: &self.bid_queues,
            item,
        };
        loop {
            let mut conn = self.conn().await;
            loop {
                let batch = self.bid_queues.take(item);
                if batch.is_empty() {
                    return;
                }
                let (bids, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let (outcomes, lost) = match &mut conn {
                    Ok(conn) => self.place_batch(conn, item, &bids).await,
                    Err(e) => (bids.iter().map(|_| Err(e.clone())).collect(), true),
                };
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that went away does not take its answer; the bid stands.
                    reply.send(outcome).ok();
                }
                if lost {
                    break;
                }
            }
            if let Ok(conn) = conn {
                conn.discard();
            }
        }
    }

    /// Places `bids` (all on `item`, in arrival order) through `conn`: one outcome per bid, in
    /// their order, and whether `conn` is lost (its statement outlived the statement timeout,
    /// or the link failed), so that it must not be used again.
    async fn place_batch(
        &self,
        conn: &mut Conn,
        item: &str,
        bids: &[NewBid],
    ) -> (Vec<Result<Bid, StoreError>>, bool) {
        let mut outcomes: Vec<Option<Result<Bid, StoreError>>> =
            bids.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..bids.len()).collect();
        let mut one_at_a_time = false;
        let mut lost = false;
        while let Some(&first) = pending.first() {
            let now = if one_at_a_time {
                vec![first]
            } else {
                pending.clone()
            };
            let placing: Vec<&NewBid> = now.iter().map(|&i| &bids[i]).collect();
            let limit = self.acquire_timeout + STATEMENT_GRACE;
            let Ok(placed) = tokio::time::timeout(limit, insert_bids(conn, item, &placing)).await
            else {
                let error = StoreError::Unavailable(
                    "the database did not answer within DATABASE_STATEMENT_TIMEOUT_SECS".to_owned(),
                );
                for &i in &pending {
                    outcomes[i] = Some(Err(error.clone()));
                }
                return (finished(outcomes), true);
            };
            match placed.settle(conn) {
                Ok(rows) if rows.len() == now.len() => {
                    for (&i, (user_found, item_found, id, seq)) in now.iter().zip(rows) {
                        let bid = &bids[i];
                        outcomes[i] = match id {
                            Some(id) => Some(Ok(Bid {
                                id,
                                item: bid.item.clone(),
                                value: bid.value.get(),
                                user: bid.user.clone(),
                                version: Version::of(seq.unwrap_or_default() as u64),
                            })),
                            // Checked in the memory store's order: the user first.
                            None if !user_found => Some(Err(missing_user(&bid.user))),
                            None if !item_found => Some(Err(missing_item(&bid.item))),
                            // `bid{n}` was taken by a seeded bid: the number is spent; the bid
                            // stays pending and gets the next.
                            None => None,
                        };
                    }
                }
                Ok(_) => {
                    let error = StoreError::Internal("a bid batch lost a row".to_owned());
                    for &i in &pending {
                        outcomes[i] = Some(Err(error.clone()));
                    }
                }
                // A user or the item went away mid-statement: whose bid it was is found by
                // placing them one at a time.
                Err(e) if now.len() > 1 && is_foreign_key_violation(&e) => one_at_a_time = true,
                Err(e) => {
                    // Only the database's own errors leave the connection fit for more.
                    lost |= !matches!(e, sqlx::Error::Database(_));
                    let alone = placing[0];
                    let context = Context {
                        exhausts: Some("bid ids"),
                        bid: (now.len() == 1).then_some((&alone.user, &alone.item)),
                    };
                    match store_error(e, context) {
                        // This bid's own reference is gone: the others go on.
                        refused @ StoreError::MissingReference { .. } => {
                            outcomes[first] = Some(Err(refused));
                        }
                        // The database failed: the same answer for every bid still pending.
                        error => {
                            for &i in &pending {
                                outcomes[i] = Some(Err(error.clone()));
                            }
                        }
                    }
                }
            }
            pending.retain(|&i| outcomes[i].is_none());
        }
        (finished(outcomes), lost)
    }
}

/// The outcomes of a batch whose every bid has one (the placing loop ends when none is pending).
fn finished(outcomes: Vec<Option<Result<Bid, StoreError>>>) -> Vec<Result<Bid, StoreError>> {
    outcomes
        .into_iter()
        .map(|outcome| {
            outcome
                .unwrap_or_else(|| Err(StoreError::Internal("a bid without an outcome".to_owned())))
        })
        .collect()
}

/// Places `bids` on `item` in one statement, in their order: per bid, whether its user and the
/// item exist, and the new bid's id (`None` if a reference is missing, or if the id the
/// sequence gave is taken).
///
/// The item's bid lock comes first, so an item's bids are numbered and committed one statement
/// at a time: the numbers (the placing order, which breaks ties) are committed in order, so an
/// equal bid can never overtake one already seen winning, and a user's first bid on the item is
/// always the one that created their `user_items` row (later bids leave it alone, without a row
/// lock). Bids on different items do not wait for each other. Numbers are drawn only for bids
/// whose user and item are found, so a refused bid uses none; if one is deleted meanwhile, the
/// foreign keys refuse the insert. `bid_numbers` gives the id and the placing order in one
/// `nextval`, drawn in the bids' order.
async fn insert_bids(
    conn: &mut PgConnection,
    item: &str,
    bids: &[&NewBid],
) -> Result<Vec<(bool, bool, Option<String>, Option<i64>)>, sqlx::Error> {
    let users: Vec<&str> = bids.iter().map(|bid| bid.user.as_str()).collect();
    let values: Vec<f64> = bids.iter().map(|bid| bid.value.get()).collect();
    sqlx::query_as(
        "WITH locked AS (SELECT pg_advisory_xact_lock($4, hashtext($1))), \
         item AS (SELECT EXISTS (SELECT 1 FROM items WHERE id = $1) AS item_found FROM locked), \
         wanted AS (SELECT w.ord, w.user_id, w.value, \
                           EXISTS (SELECT 1 FROM users WHERE id = w.user_id) AS user_found \
                    FROM unnest($2::text[], $3::float8[]) WITH ORDINALITY AS w(user_id, value, ord)), \
         numbered AS (SELECT o.ord, o.user_id, o.value, nextval('bid_numbers') AS n \
                      FROM (SELECT wanted.* FROM wanted, item \
                            WHERE user_found AND item_found ORDER BY ord) AS o), \
         placed AS (INSERT INTO bids (id, sort_key, user_id, item_id, value, seq) \
                    SELECT 'bid' || n, bid_sort_key(n), user_id, $1, value, n FROM numbered \
                    ON CONFLICT (id) DO NOTHING RETURNING id, seq), \
         first AS (INSERT INTO user_items (user_id, item_id, first_seq) \
                   SELECT numbered.user_id, $1, min(placed.seq) \
                   FROM placed JOIN numbered ON numbered.n = placed.seq \
                   GROUP BY numbered.user_id \
                   ON CONFLICT (user_id, item_id) DO NOTHING) \
         SELECT wanted.user_found, item.item_found, placed.id, placed.seq \
         FROM wanted CROSS JOIN item \
         LEFT JOIN numbered ON numbered.ord = wanted.ord \
         LEFT JOIN placed ON placed.seq = numbered.n \
         ORDER BY wanted.ord",
    )
    .bind(item)
    .bind(users)
    .bind(values)
    .bind(ITEM_BIDS_LOCK)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BidValue;

    /// A bid and its reply; the caller's end of the reply is leaked (kept open) unless kept.
    fn bid(item: &str, user: &str) -> (NewBid, Reply) {
        let (new, reply, answer) = bid_with_answer(item, user);
        std::mem::forget(answer);
        (new, reply)
    }

    fn bid_with_answer(item: &str, user: &str) -> (NewBid, Reply, Answer) {
        let new = NewBid {
            item: item.to_owned(),
            user: user.to_owned(),
            value: BidValue::new(1.0).unwrap(),
        };
        let (reply, answer) = oneshot::channel();
        (new, reply, answer)
    }

    type Answer = oneshot::Receiver<Result<Bid, StoreError>>;

    fn users(batch: &[(NewBid, Reply)]) -> Vec<&str> {
        batch.iter().map(|(bid, _)| bid.user.as_str()).collect()
    }

    #[test]
    fn bids_that_arrive_while_their_item_is_placed_wait_and_go_together_in_order() {
        let queues = BidQueues::default();
        let push = |item, user| {
            let (new, reply) = bid(item, user);
            queues.push(new, reply).unwrap()
        };
        assert!(
            push("i", "a"),
            "an idle item: the first bid starts its placer"
        );
        assert!(push("j", "x"), "items have placers of their own");
        assert_eq!(users(&queues.take("i")), ["a"]);
        // While `a` is placed, three more arrive: no new placer, one batch next, in order.
        assert!(!push("i", "b") && !push("i", "c") && !push("i", "d"));
        assert_eq!(users(&queues.take("i")), ["b", "c", "d"]);
        // None waits: the placer ends, and the next bid starts a new one.
        assert!(queues.take("i").is_empty());
        assert!(push("i", "e"));
        assert_eq!(users(&queues.take("j")), ["x"]);
    }

    #[test]
    fn a_bid_whose_caller_went_away_before_it_was_taken_is_not_placed() {
        let queues = BidQueues::default();
        let (first, reply, _answer) = bid_with_answer("i", "a");
        assert!(queues.push(first, reply).unwrap());
        assert_eq!(users(&queues.take("i")), ["a"]);
        let (gone, reply, answer) = bid_with_answer("i", "gone");
        queues.push(gone, reply).unwrap();
        let (kept, reply, _answer) = bid_with_answer("i", "kept");
        queues.push(kept, reply).unwrap();
        drop(answer);
        assert_eq!(users(&queues.take("i")), ["kept"]);
        // Only gone callers waiting: the placer ends, and the next bid starts a new one.
        let (gone, reply, answer) = bid_with_answer("i", "gone");
        queues.push(gone, reply).unwrap();
        drop(answer);
        assert!(queues.take("i").is_empty());
        let (next, reply, _answer) = bid_with_answer("i", "next");
        assert!(queues.push(next, reply).unwrap());
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_bids() {
        let queues = BidQueues::default();
        for n in 0..MAX_BATCH + 5 {
            let (new, reply) = bid("i", &format!("u{n}"));
            queues.push(new, reply).unwrap();
        }
        assert_eq!(queues.take("i").len(), MAX_BATCH);
        assert_eq!(
            users(&queues.take("i")),
            ["u64", "u65", "u66", "u67", "u68"]
        );
    }

    #[test]
    fn at_most_max_waiting_bids_wait_for_one_item() {
        let queues = BidQueues::default();
        let mut answers = Vec::new();
        for n in 0..MAX_WAITING {
            let (new, reply, answer) = bid_with_answer("i", &format!("u{n}"));
            queues.push(new, reply).unwrap();
            answers.push(answer);
        }
        let (new, reply, _answer) = bid_with_answer("i", "over");
        assert!(matches!(
            queues.push(new, reply),
            Err(StoreError::Unavailable(_))
        ));
        // Callers that went away make room again; other items are not affected.
        answers.truncate(MAX_WAITING - 1);
        let (new, reply, _answer) = bid_with_answer("i", "room");
        assert!(!queues.push(new, reply).unwrap());
        let (new, reply, _answer) = bid_with_answer("j", "other");
        assert!(queues.push(new, reply).unwrap());
    }
}
