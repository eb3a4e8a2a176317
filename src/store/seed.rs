//! Reading the seed files of `DATA_DIR`, with errors that name the file and the place.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::json::ObjectsOnly;

/// Why the seed data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The seed file.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// The file is not JSON, or not of the expected shape; the message has line and column.
    #[error("{}: {kind}{at}: {source}", path.display())]
    Parse {
        /// The seed file.
        path: PathBuf,
        /// `invalid JSON` or `unexpected content`.
        kind: &'static str,
        /// Where in the document a shape error is (` in bids.bid1.value`), or empty.
        at: String,
        /// The parser's message, ending in `at line L column C`.
        source: serde_json::Error,
    },
    /// The file parsed but breaks a rule (duplicate id, bad reference, bad value).
    #[error("{}: {reason}", path.display())]
    Rule {
        /// The seed file.
        path: PathBuf,
        /// Which record breaks which rule.
        reason: String,
    },
}

/// Reads and parses `dir/name`; `Ok(None)` when the file does not exist.
pub(super) fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, SeedError> {
    let path = dir.join(name);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::warn!(file = %path.display(), "seed file missing; starting with none");
            return Ok(None);
        }
        Err(source) => return Err(SeedError::Read { path, source }),
    };
    // Parsed first without tracking the path (a tenth of a large seed's load time), from a `str`
    // checked as UTF-8 in one pass rather than string by string; only a seed that fails is
    // parsed again, tracking it, for the message.
    if let Ok(utf8) = std::str::from_utf8(&text) {
        let mut deserializer = serde_json::Deserializer::from_str(utf8);
        if let Ok(value) = T::deserialize(ObjectsOnly(&mut deserializer))
            && deserializer.end().is_ok()
        {
            return Ok(Some(value));
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(&text);
    let parsed = serde_path_to_error::deserialize(ObjectsOnly(&mut deserializer))
        .map_err(|err| {
            let record = err.path().to_string();
            (record, err.into_inner())
        })
        .and_then(|value| {
            deserializer.end().map_err(|e| (String::new(), e))?;
            Ok(value)
        });
    parsed.map(Some).map_err(|(record, source)| {
        let is_data = source.is_data();
        SeedError::Parse {
            path,
            kind: if is_data {
                "unexpected content"
            } else {
                "invalid JSON"
            },
            // The record's path (`bids.bid1.value`) names it for a shape error.
            at: if is_data && record != "." {
                format!(" in {record}")
            } else {
                String::new()
            },
            source,
        }
    })
}

/// A rule error for `dir/name`.
pub(super) fn rule_error(dir: &Path, name: &str, reason: String) -> SeedError {
    SeedError::Rule {
        path: dir.join(name),
        reason,
    }
}

/// A JSON object read in order that refuses repeated keys (plain maps keep the last silently,
/// which would hide a duplicate id in a seed file).
#[derive(Debug)]
pub(super) struct UniqueKeys<T>(pub BTreeMap<String, T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for UniqueKeys<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for UniqueVisitor<T> {
            type Value = UniqueKeys<T>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object keyed by id")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate id {key:?}")));
                    }
                    let value = map.next_value()?;
                    entries.insert(key, value);
                }
                Ok(UniqueKeys(entries))
            }
        }

        deserializer.deserialize_map(UniqueVisitor(PhantomData))
    }
}
