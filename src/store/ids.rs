//! String ids in natural order (`bid9` before `bid10`), for every resource keyed by a string.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::StoreError;

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

/// Hands out ids `{prefix}{n}` that do not exist: the next number above the highest ever seen or
/// handed out, so that the counter never hands out an id twice, not even after a delete.
///
/// Why a created id never equals a record's id: only `{prefix}{n}` with `n` in canonical form
/// (no leading zeros) could. Below [`COUNTED_BELOW`], [observing](IdCounter::observe) such an id
/// moves the counter past it, so the counter never reaches it. At or above the cap, ids are not
/// counted, so that one `PUT /users/user18446744073709551615` cannot exhaust the counter; but the
/// counter can still get there (a client puts `user9007199254740991`), so [`IdCounter::next`] asks
/// the table whether each candidate exists and skips taken ones. Every id skipped is a record a
/// client or the seed put above the cap, and the counter only goes up, so each such record is
/// skipped at most once: O(1) amortised.
///
/// One consequence: an uncounted id that a client put and then deleted may later be handed out
/// by the counter; it does not exist then, and the counter never hands it out again.
#[derive(Clone, Debug)]
pub struct IdCounter {
    prefix: &'static str,
    /// What runs out, for [`StoreError::Exhausted`]: `user ids`.
    kind: &'static str,
    highest: u64,
}

/// Numbers at or above this (2^53) are not counted: a client could otherwise
/// `PUT /users/user{u64::MAX}` and exhaust the counter at once.
const COUNTED_BELOW: u64 = 1 << 53;

impl IdCounter {
    /// A counter for ids that start with `prefix`, starting at 1; `kind` names its ids in the
    /// error when they run out (`user ids`).
    pub fn new(prefix: &'static str, kind: &'static str) -> Self {
        Self {
            prefix,
            kind,
            highest: 0,
        }
    }

    /// Records an id as used: a later [`IdCounter::next`] returns a higher number. Only ids that
    /// a generated one could equal count (the prefix, then digits without leading zeros), and
    /// only below [`COUNTED_BELOW`].
    pub fn observe(&mut self, id: &str) {
        if let Some(n) = counted_number(self.prefix, id) {
            self.highest = self.highest.max(n);
        }
    }

    /// The next id for which `exists` is false; it is recorded as used. `Exhausted` once the
    /// number would pass `u64::MAX`: never a wrap, never a panic.
    pub fn next(&mut self, exists: impl Fn(&NaturalId) -> bool) -> Result<NaturalId, StoreError> {
        loop {
            self.highest = self
                .highest
                .checked_add(1)
                .ok_or(StoreError::Exhausted(self.kind))?;
            let id = NaturalId(format!("{}{}", self.prefix, self.highest));
            if !exists(&id) {
                return Ok(id);
            }
        }
    }
}

/// The number of `id` that a counter for `prefix` must move past: `Some(n)` when `id` is
/// `{prefix}{n}` spelled as a generated id would be, with `n` below [`COUNTED_BELOW`].
pub fn counted_number(prefix: &str, id: &str) -> Option<u64> {
    let digits = id.strip_prefix(prefix)?;
    // Only the canonical spelling (`user7`, not `user07`) can equal a generated id.
    // `u64::from_str` refuses an empty string but would take a sign (`+5`).
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().filter(|&n| n < COUNTED_BELOW)
}

/// Compares two strings chunk by chunk, digit runs by numeric value; a total order that falls
/// back to plain string order so that distinct strings (`a01`, `a1`) never compare equal.
///
/// Any other pair of bytes, a digit against a non-digit included, compares as ASCII: in the id
/// alphabet `-` < `0`–`9` < `A`–`Z` < `_` < `a`–`z`, so `u-` < `u1` < `uA` < `u_` < `ua`. A
/// string sorts before any longer string it starts (`u` < `u1`).
pub(super) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    // Ids met in one B-tree mostly share a prefix (`bid`, `user1`): it is skipped, back to the
    // start of the digit run it may end in. Both strings have the same chunks up to there, so
    // comparing the rest chunk by chunk gives the same answer as from the start, at a fraction
    // of the cost (this comparison was 17 % of placing a bid).
    let common = x.iter().zip(y).take_while(|(p, q)| p == q).count();
    let (next_x, next_y) = (x.get(common), y.get(common));
    if !next_x.is_some_and(u8::is_ascii_digit) && !next_y.is_some_and(u8::is_ascii_digit) {
        // Any digit run before `common` ended there in both: the first difference decides, and
        // a string that ended sorts first.
        return next_x.cmp(&next_y);
    }
    let run_start = x[..common]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    chunk_cmp(&x[run_start..], &y[run_start..])
}

/// [`natural_cmp`] from the first chunk on.
fn chunk_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut x, mut y) = (a, b);
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

    proptest::proptest! {
        /// The prefix skip changes nothing: the same order as comparing chunk by chunk from
        /// the start, on strings that share prefixes and digit runs, zeros included.
        #[test]
        fn skipping_the_common_prefix_keeps_the_order(
            common in "[a0-9_]{0,6}",
            a in "[a0-9_]{0,5}",
            b in "[a0-9_]{0,5}",
        ) {
            let (a, b) = (format!("{common}{a}"), format!("{common}{b}"));
            proptest::prop_assert_eq!(
                natural_cmp(&a, &b),
                chunk_cmp(a.as_bytes(), b.as_bytes()),
                "{} vs {}", a, b
            );
        }
    }

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
    fn a_digit_against_another_id_byte_sorts_as_ascii() {
        assert_eq!(
            sorted(&["ua", "u_", "uA", "u1", "u-", "u"]),
            ["u", "u-", "u1", "uA", "u_", "ua"]
        );
        // Equal digit runs, then the same rule; unequal runs decide first (`1` < `12`).
        assert_eq!(
            sorted(&["u1a", "u1_", "u1A", "u12", "u1-"]),
            ["u1-", "u1A", "u1_", "u1a", "u12"]
        );
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

    /// The next id of `counter` when no record exists.
    fn next(counter: &mut IdCounter) -> String {
        counter.next(|_| false).unwrap().0
    }

    #[test]
    fn counters_continue_above_the_highest_canonical_id_seen() {
        let mut counter = IdCounter::new("bid", "bid ids");
        assert_eq!(next(&mut counter), "bid1");
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
        assert_eq!(next(&mut counter), "bid10");
        assert_eq!(next(&mut counter), "bid11");
        counter.observe("bid5");
        assert_eq!(next(&mut counter), "bid12");
    }

    #[test]
    fn ids_with_leading_zeros_or_a_sign_do_not_move_the_counter() {
        let mut counter = IdCounter::new("bid", "bid ids");
        // `u64::from_str` would read `+5` as 5.
        for seen in ["bid007", "bid0", "bid00", "bid+5"] {
            counter.observe(seen);
        }
        assert_eq!(next(&mut counter), "bid1");
        counter.observe("bid7");
        assert_eq!(next(&mut counter), "bid8");
    }

    #[test]
    fn ids_at_or_above_the_cap_are_not_counted_and_the_one_below_is() {
        let mut counter = IdCounter::new("bid", "bid ids");
        for seen in [COUNTED_BELOW, COUNTED_BELOW + 1, u64::MAX] {
            counter.observe(&format!("bid{seen}"));
        }
        assert_eq!(next(&mut counter), "bid1");
        counter.observe(&format!("bid{}", COUNTED_BELOW - 1));
        assert_eq!(next(&mut counter), format!("bid{COUNTED_BELOW}"));
        assert_eq!(COUNTED_BELOW, 9_007_199_254_740_992);
    }

    #[test]
    fn next_skips_ids_that_exist() {
        let mut counter = IdCounter::new("user", "user ids");
        counter.observe(&format!("user{}", COUNTED_BELOW - 1));
        let taken = [
            format!("user{COUNTED_BELOW}"),
            format!("user{}", COUNTED_BELOW + 1),
        ];
        let exists = |id: &NaturalId| taken.iter().any(|t| t == id.as_str());
        let id = counter.next(exists).unwrap();
        assert_eq!(id.as_str(), format!("user{}", COUNTED_BELOW + 2));
        // The counter went past the skipped ids for good.
        assert_eq!(next(&mut counter), format!("user{}", COUNTED_BELOW + 3));
    }

    #[test]
    fn a_counter_runs_out_at_u64_max_without_wrapping() {
        let mut counter = IdCounter::new("bid", "bid ids");
        counter.highest = u64::MAX - 2;
        let last = format!("bid{}", u64::MAX);
        assert_eq!(next(&mut counter), format!("bid{}", u64::MAX - 1));
        assert_eq!(next(&mut counter), last);
        for _ in 0..2 {
            let err = counter.next(|_| false).unwrap_err();
            assert!(matches!(err, StoreError::Exhausted("bid ids")), "{err}");
        }
        // Also when the last free number is taken.
        let mut counter = IdCounter::new("bid", "bid ids");
        counter.highest = u64::MAX - 1;
        let err = counter.next(|id| id.as_str() == last).unwrap_err();
        assert!(matches!(err, StoreError::Exhausted("bid ids")), "{err}");
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
