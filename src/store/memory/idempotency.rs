//! The in-memory engine's `Idempotency-Key`s: a map by key, and the keys in claiming order so
//! that the oldest go first when the cap is reached or their retention is over.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::store::idempotency::{Claim, KeepAnswer, KeptAnswer, KeyRules};

#[derive(Debug)]
struct Entry {
    fingerprint: Vec<u8>,
    claimed: Instant,
    answer: Option<KeptAnswer>,
}

/// The keys in use.
#[derive(Debug, Default)]
pub struct KeyTable {
    entries: HashMap<String, Entry>,
    /// Keys by claim time, oldest first; a key claimed again appears twice, and the older
    /// mention is skipped when it comes up.
    order: VecDeque<(Instant, String)>,
}

impl KeyTable {
    /// Claims `key` for a request with `fingerprint`, or says why not.
    pub fn claim(&mut self, key: &str, fingerprint: &[u8], rules: &KeyRules) -> Claim {
        let now = Instant::now();
        self.expire(now, rules);
        if let Some(entry) = self.entries.get(key) {
            let abandoned =
                entry.answer.is_none() && now.duration_since(entry.claimed) > rules.abandoned_after;
            if !abandoned {
                return if entry.fingerprint != fingerprint {
                    Claim::Mismatch
                } else if let Some(answer) = &entry.answer {
                    Claim::Answered(answer.clone())
                } else {
                    Claim::Running
                };
            }
        }
        // At the cap, the oldest answered key makes room; a running one is never dropped.
        while self.entries.len() >= rules.max_keys {
            let Some(position) = self.order.iter().position(|(claimed, key)| {
                self.entries
                    .get(key)
                    .is_some_and(|entry| entry.claimed == *claimed && entry.answer.is_some())
            }) else {
                break;
            };
            if let Some((_, oldest)) = self.order.remove(position) {
                self.entries.remove(&oldest);
            }
        }
        if self.entries.len() >= rules.max_keys {
            return Claim::Running;
        }
        self.entries.insert(
            key.to_owned(),
            Entry {
                fingerprint: fingerprint.to_vec(),
                claimed: now,
                answer: None,
            },
        );
        self.order.push_back((now, key.to_owned()));
        Claim::New
    }

    /// Keeps `answer` for `key`, or lets the key go when there is none to keep.
    pub fn settle(&mut self, key: &str, answer: KeepAnswer) {
        match answer {
            Some(answer) => {
                if let Some(entry) = self.entries.get_mut(key) {
                    entry.answer = Some(answer);
                }
            }
            None => {
                self.entries.remove(key);
            }
        }
    }

    /// Drops the keys whose retention is over.
    fn expire(&mut self, now: Instant, rules: &KeyRules) {
        while let Some((claimed, key)) = self.order.front() {
            if now.duration_since(*claimed) < rules.retention {
                break;
            }
            if self
                .entries
                .get(key)
                .is_some_and(|entry| entry.claimed == *claimed)
            {
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rules(max_keys: usize) -> KeyRules {
        KeyRules {
            retention: Duration::from_secs(60),
            max_keys,
            abandoned_after: Duration::from_secs(60),
        }
    }

    fn answer(status: u16) -> KeptAnswer {
        KeptAnswer {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_key_is_claimed_once_then_replayed_and_refused_for_another_request() {
        let mut table = KeyTable::default();
        let rules = rules(10);
        assert_eq!(table.claim("k", b"a", &rules), Claim::New);
        assert_eq!(table.claim("k", b"a", &rules), Claim::Running);
        assert_eq!(table.claim("k", b"b", &rules), Claim::Mismatch);
        table.settle("k", Some(answer(201)));
        assert_eq!(table.claim("k", b"a", &rules), Claim::Answered(answer(201)));
        // A request that kept nothing lets its key go.
        assert_eq!(table.claim("j", b"a", &rules), Claim::New);
        table.settle("j", None);
        assert_eq!(table.claim("j", b"b", &rules), Claim::New);
    }

    #[test]
    fn at_the_cap_the_oldest_answered_key_goes_and_running_ones_stay() {
        let mut table = KeyTable::default();
        let rules = rules(2);
        assert_eq!(table.claim("running", b"a", &rules), Claim::New);
        assert_eq!(table.claim("done", b"a", &rules), Claim::New);
        table.settle("done", Some(answer(201)));
        assert_eq!(table.claim("new", b"a", &rules), Claim::New);
        assert_eq!(
            table.claim("done", b"a", &rules),
            Claim::Running,
            "cap reached, all running"
        );
        assert_eq!(table.claim("running", b"a", &rules), Claim::Running);
    }
}
