//! Record versions, and the preconditions a write may carry (RFC 9110 `If-Match`,
//! `If-None-Match`), checked by each engine in the same step as the write it guards.
//!
//! A version changes whenever its record's representation does, and never comes back: each
//! engine takes versions from one counter that only goes up (memory: per table; PostgreSQL: the
//! `record_versions` sequence). An item's representation holds its bids, so its version moves
//! with them: in memory one number is bumped on every change; in PostgreSQL, where placing a bid
//! must not lock the item's row (bids are placed in batches that only share-lock it), an item's
//! version is its own number (bumped by renames and bid deletes) with its latest bid's placing
//! number and its bid count, which together change on every placement.
//!
//! Versions are only compared within one store: the routes add the store's random epoch, so a
//! version from another store (a restart of the in-memory one, another database) never matches.

use std::fmt;

use super::StoreError;

/// What changes whenever a record's representation changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Version {
    /// The record's own number.
    pub record: u64,
    /// PostgreSQL items: the placing number of the latest bid (0 without, or elsewhere).
    pub latest_bid: u64,
    /// PostgreSQL items: how many bids the item has (0 elsewhere).
    pub bid_count: u64,
}

impl Version {
    /// A version that is one number.
    pub const fn of(record: u64) -> Self {
        Self {
            record,
            latest_bid: 0,
            bid_count: 0,
        }
    }

    /// Reads the text [`Version`]'s `Display` writes; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let mut number = || u64::from_str_radix(parts.next()?, 16).ok();
        let record = number()?;
        let version = match (number(), number()) {
            (None, None) => Self::of(record),
            (Some(latest_bid), Some(bid_count)) => Self {
                record,
                latest_bid,
                bid_count,
            },
            _ => return None,
        };
        (parts.next().is_none() && version.to_string() == text).then_some(version)
    }
}

/// Hex, and the item parts only where they are used: `1f`, `1f.2a.3`.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.record)?;
        if (self.latest_bid, self.bid_count) != (0, 0) {
            write!(f, ".{:x}.{:x}", self.latest_bid, self.bid_count)?;
        }
        Ok(())
    }
}

/// The same text: a version is written in hex.
impl fmt::LowerHex for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A set of versions a condition names: any existing record (`*`), or these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Versions {
    /// `*`: whatever the version, if the record exists.
    Any,
    /// Exactly these (none: a list of tags that no version of this store has).
    Listed(Vec<Version>),
}

impl Versions {
    fn contain(&self, current: Option<Version>) -> bool {
        match (self, current) {
            (_, None) => false,
            (Versions::Any, Some(_)) => true,
            (Versions::Listed(listed), Some(current)) => listed.contains(&current),
        }
    }
}

/// What a write requires of the record's current version; the default requires nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Precondition {
    /// `If-Match`: the record must exist with one of these versions.
    pub if_match: Option<Versions>,
    /// `If-None-Match`: the record must not exist with one of these (`*`: must not exist).
    pub if_none_match: Option<Versions>,
}

impl Precondition {
    /// Whether it requires nothing.
    pub fn is_none(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// `Ok` if a record whose current version is `current` (`None`: it does not exist) may be
    /// written; else [`StoreError::PreconditionFailed`] naming `what`.
    pub fn check(
        &self,
        what: impl FnOnce() -> String,
        current: Option<Version>,
    ) -> Result<(), StoreError> {
        let matched = self.if_match.as_ref().is_none_or(|v| v.contain(current));
        let unmatched = self
            .if_none_match
            .as_ref()
            .is_none_or(|v| !v.contain(current));
        if matched && unmatched {
            Ok(())
        } else {
            Err(StoreError::PreconditionFailed(what()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_back_what_they_write_and_nothing_else() {
        let item = Version {
            record: 31,
            latest_bid: 42,
            bid_count: 3,
        };
        for version in [Version::of(0), Version::of(u64::MAX), item] {
            assert_eq!(Version::parse(&version.to_string()), Some(version));
        }
        assert_eq!(item.to_string(), "1f.2a.3");
        for bad in [
            "",
            "1f.",
            "1f.2a",
            "1F",
            "01f",
            "1f.2a.3.4",
            "x",
            "+1",
            "1f.0.0",
        ] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn preconditions_follow_rfc_9110() {
        let (v1, v2) = (Version::of(1), Version::of(2));
        let what = || "book 1".to_owned();
        let if_match = |versions| Precondition {
            if_match: Some(versions),
            if_none_match: None,
        };
        let if_none_match = |versions| Precondition {
            if_match: None,
            if_none_match: Some(versions),
        };
        assert!(Precondition::default().check(what, None).is_ok());
        assert!(
            if_match(Versions::Listed(vec![v1]))
                .check(what, Some(v1))
                .is_ok()
        );
        assert!(
            if_match(Versions::Listed(vec![v1]))
                .check(what, Some(v2))
                .is_err()
        );
        assert!(
            if_match(Versions::Listed(vec![]))
                .check(what, Some(v1))
                .is_err()
        );
        assert!(if_match(Versions::Any).check(what, Some(v2)).is_ok());
        assert!(if_match(Versions::Any).check(what, None).is_err());
        assert!(if_none_match(Versions::Any).check(what, None).is_ok());
        assert!(if_none_match(Versions::Any).check(what, Some(v1)).is_err());
        assert!(
            if_none_match(Versions::Listed(vec![v1]))
                .check(what, Some(v2))
                .is_ok()
        );
        assert!(
            if_none_match(Versions::Listed(vec![v1]))
                .check(what, Some(v1))
                .is_err()
        );
    }
}
