//! The auction bid tracker's records and their rules: users, items and bids as every store
//! returns them, the checked inputs (names, bid values), and the `auction.json` seed format.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::store::ids::is_valid_id;
use crate::store::seed::UniqueKeys;
use crate::store::{Version, Violation, check_text};

/// The string form of a bid value: a plain decimal greater than 0, up to 15 integer digits and
/// a fraction of up to 9 (or, below 1, up to 17) digits. The original client sends values as
/// strings such as `"100000"`.
pub const DECIMAL_PATTERN: &str =
    r"^(?:[1-9][0-9]{0,14}(?:\.[0-9]{1,9})?|0\.[0-9]{0,8}[1-9][0-9]{0,8})$";

static DECIMAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(DECIMAL_PATTERN).expect("the decimal pattern compiles"));

/// A user's or an item's name, checked: 1–200 characters, not blank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Checks `value`; `field` is its path in the request body, for the error.
    pub fn parse(field: &'static str, value: String) -> Result<Self, Vec<Violation>> {
        match check_text(field, &value) {
            Some(violation) => Err(vec![violation]),
            None => Ok(Self(value)),
        }
    }
}

impl Name {
    /// The checked text, for a store to keep.
    pub(in crate::store) fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A bid's value: finite and greater than 0. Deserializes from a JSON number or from a string
/// holding a decimal number.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct BidValue(f64);

impl BidValue {
    /// Checks a value.
    pub fn new(value: f64) -> Result<Self, &'static str> {
        if value.is_finite() && value > 0.0 {
            Ok(Self(value))
        } else {
            Err("must be a finite number greater than 0")
        }
    }

    /// Reads the string form (see [`DECIMAL_PATTERN`]).
    pub fn from_decimal(text: &str) -> Result<Self, &'static str> {
        const WRONG_FORM: &str =
            "must be a number greater than 0, or a string holding one such as \"100.5\"";
        if !DECIMAL.is_match(text) {
            return Err(WRONG_FORM);
        }
        text.parse::<f64>()
            .map_err(|_| WRONG_FORM)
            .and_then(Self::new)
    }

    /// The value as a number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for BidValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;

        impl Visitor<'_> for ValueVisitor {
            type Value = BidValue;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number greater than 0, or a string holding one")
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<BidValue, E> {
                BidValue::new(v).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<BidValue, E> {
                self.visit_f64(v as f64)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BidValue, E> {
                self.visit_f64(v as f64)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<BidValue, E> {
                BidValue::from_decimal(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The user's id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// What the `ETag` is made of.
    pub version: Version,
}

/// A bid.
#[derive(Clone, Debug, PartialEq)]
pub struct Bid {
    /// The bid's id.
    pub id: String,
    /// The item bid on.
    pub item: String,
    /// The amount, greater than 0.
    pub value: f64,
    /// The bidder.
    pub user: String,
    /// What the `ETag` is made of: bids never change, so their placing number.
    pub version: Version,
}

/// An item with its winning bid.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The item's id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The winning bid's id; `None` without bids.
    pub winning: Option<String>,
    /// How many bids the item has.
    pub bid_count: usize,
    /// What the `ETag` is made of; it moves with the item's bids.
    pub version: Version,
}

/// A user with some of the items they bid on, once each, in order of their first bid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserItems {
    /// The user.
    pub user: User,
    /// Item ids, each with the placing number of the user's first remaining bid on it (the
    /// cursor to read on from).
    pub items: Vec<(u64, String)>,
}

/// Whether a PUT created the record or replaced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    /// It did not exist before.
    Created,
    /// It existed and was replaced.
    Replaced,
}

/// A bid to place, with its references still to check.
#[derive(Clone, Debug, PartialEq)]
pub struct NewBid {
    /// The item's id.
    pub item: String,
    /// The bidder's id.
    pub user: String,
    /// The amount.
    pub value: BidValue,
}

/// `auction.json`: users, items and bids keyed by id. Winners and bid lists are derived.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuctionSeed {
    #[serde(default)]
    pub(in crate::store) users: Option<UniqueKeys<SeedUser>>,
    #[serde(default)]
    pub(in crate::store) items: Option<UniqueKeys<SeedItem>>,
    #[serde(default)]
    pub(in crate::store) bids: Option<UniqueKeys<SeedBid>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct SeedUser {
    pub(in crate::store) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct SeedItem {
    pub(in crate::store) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::store) struct SeedBid {
    pub(in crate::store) item: String,
    pub(in crate::store) value: BidValue,
    pub(in crate::store) user: String,
}

/// The checked name of a seed user or item; `Err` names the record.
pub(in crate::store) fn seed_name(id: &str, kind: &str, name: String) -> Result<Name, String> {
    if !is_valid_id(id) {
        return Err(format!(
            "{kind} {id:?}: ids must match [A-Za-z0-9_-]{{1,64}}"
        ));
    }
    Name::parse("name", name).map_err(|v| format!("{kind} {id}: name {}", v[0].message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_as_numbers_or_decimal_strings() {
        let parse = |json: &str| serde_json::from_str::<BidValue>(json).map(BidValue::get);
        assert_eq!(parse("500.0").unwrap(), 500.0);
        assert_eq!(parse("7").unwrap(), 7.0);
        assert_eq!(parse("\"100000\"").unwrap(), 100000.0);
        assert_eq!(parse("\"100.5\"").unwrap(), 100.5);
        assert_eq!(parse("\"0.01\"").unwrap(), 0.01);
        for bad in [
            "0", "-1", "0.0", "\"0\"", "\"0.00\"", "\"-5\"", "\"abc\"", "\"\"", "\"1e5\"",
            "\" 5\"", "\"NaN\"", "\"inf\"", "\"01\"", "null", "true", "[1]",
        ] {
            assert!(parse(bad).is_err(), "{bad} is refused");
        }
    }
}
