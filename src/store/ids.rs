//! String ids in natural order (`bid9` before `bid10`), for every resource keyed by a string.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A string id that sorts naturally: runs of digits compare as numbers.
///
/// The original bid tracker ordered ids as plain strings, which put `bid10` before `bid9`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NaturalId(String);

impl NaturalId {
    /// Wraps an id; the form is checked by [`is_valid_id`] where ids come in.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NaturalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for NaturalId {
    fn cmp(&self, other: &Self) -> Ordering {
        natural_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for NaturalId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The allowed form of a string id, as a JSON Schema pattern.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Whether `id` has the allowed form of a string id: `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Hands out ids `{prefix}{n}`: the next number above the highest ever seen, so that no id is
/// handed out twice, not even after a delete.
#[derive(Clone, Debug)]
pub struct IdCounter {
    prefix: &'static str,
    highest: u64,
}

/// Numbers at or above this are not counted: a client could otherwise `PUT /users/user{u64::MAX}`
/// and exhaust the counter. Such ids cannot collide with generated ones before the counter
/// reaches them, which it never will.
const COUNTED_BELOW: u64 = 1 << 53;

impl IdCounter {
    /// A counter for ids that start with `prefix`, starting at 1.
    pub fn new(prefix: &'static str) -> Self {
        Self { prefix, highest: 0 }
    }

    /// Records an id as used: a later [`IdCounter::next`] returns a higher number.
    pub fn observe(&mut self, id: &str) {
        let Some(digits) = id.strip_prefix(self.prefix) else {
            return;
        };
        // Only the canonical spelling (`user7`, not `user07`) can equal a generated id.
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return;
        }
        if let Ok(n) = digits.parse::<u64>()
            && n < COUNTED_BELOW
        {
            self.highest = self.highest.max(n);
        }
    }

    /// The next id; it is also recorded as used.
    pub fn next(&mut self) -> NaturalId {
        self.highest += 1;
        NaturalId(format!("{}{}", self.prefix, self.highest))
    }
}

/// Compares two strings chunk by chunk, digit runs by numeric value; a total order that falls
/// back to plain string order so that distinct strings (`a01`, `a1`) never compare equal.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while let (Some(&cx), Some(&cy)) = (x.first(), y.first()) {
        let ordering = if cx.is_ascii_digit() && cy.is_ascii_digit() {
            let (dx, rest_x) = split_digits(x);
            let (dy, rest_y) = split_digits(y);
            (x, y) = (rest_x, rest_y);
            let (tx, ty) = (trim_zeros(dx), trim_zeros(dy));
            tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty))
        } else {
            (x, y) = (&x[1..], &y[1..]);
            cx.cmp(&cy)
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    x.len().cmp(&y.len()).then_with(|| a.cmp(b))
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let end = s
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    s.split_at(end)
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&b| b != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(ids: &[&str]) -> Vec<String> {
        let mut v: Vec<NaturalId> = ids.iter().map(|s| NaturalId::new(*s)).collect();
        v.sort();
        v.into_iter().map(|id| id.0).collect()
    }

    #[test]
    fn digit_runs_compare_as_numbers() {
        assert_eq!(
            sorted(&["bid10", "bid9", "bid1", "bid100", "bid2"]),
            ["bid1", "bid2", "bid9", "bid10", "bid100"]
        );
        assert_eq!(sorted(&["10", "9", "1"]), ["1", "9", "10"]);
    }

    #[test]
    fn letters_then_numbers_and_distinct_strings_never_tie() {
        assert_eq!(sorted(&["item2", "bid1", "a"]), ["a", "bid1", "item2"]);
        assert_ne!(
            NaturalId::new("a01").cmp(&NaturalId::new("a1")),
            Ordering::Equal
        );
        assert_eq!(sorted(&["x1y", "x1"]), ["x1", "x1y"]);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        assert_eq!(
            sorted(&["n99999999999999999999999", "n100000000000000000000000"]),
            ["n99999999999999999999999", "n100000000000000000000000"]
        );
    }

    #[test]
    fn counters_continue_above_the_highest_canonical_id_seen() {
        let mut counter = IdCounter::new("bid");
        assert_eq!(counter.next().as_str(), "bid1");
        for seen in [
            "bid9",
            "bid007",
            "other99",
            "bid",
            "bidx5",
            "bid99999999999999999999",
        ] {
            counter.observe(seen);
        }
        assert_eq!(counter.next().as_str(), "bid10");
        assert_eq!(counter.next().as_str(), "bid11");
        counter.observe("bid5");
        assert_eq!(counter.next().as_str(), "bid12");
    }

    #[test]
    fn id_form_is_checked() {
        assert!(is_valid_id("user1"));
        assert!(is_valid_id("a_b-C9"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("ü"));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(is_valid_id(&"x".repeat(64)));
    }
}
