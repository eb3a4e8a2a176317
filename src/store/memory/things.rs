//! The in-memory catalogue of things: loaded once and never changed.

use std::collections::BTreeMap;

use super::ordered::{self, RankedMap, natural_cursor, read_chunk};
use crate::store::ids::{NaturalId, is_valid_id};
use crate::store::query::{ListQuery, as_rows};
use crate::store::{Cursor, StoreError, Thing};

/// The catalogue in natural id order.
#[derive(Debug, Default)]
pub struct ThingTable {
    rows: RankedMap<NaturalId, Thing>,
}

impl ThingTable {
    /// Builds the catalogue from the seed's `{id: thing}` object; `Err` names the first entry
    /// whose key is not a valid id or differs from its `id` field.
    pub fn from_seed(entries: BTreeMap<String, Thing>) -> Result<Self, String> {
        let mut rows = RankedMap::new();
        for (key, thing) in entries {
            if !is_valid_id(&key) {
                return Err(format!(
                    "thing {key:?}: ids must match [A-Za-z0-9_-]{{1,64}}"
                ));
            }
            if key != thing.id {
                return Err(format!(
                    "thing {key:?}: its id field is {:?}; it must equal the key",
                    thing.id
                ));
            }
            rows.insert(NaturalId::new(key), thing);
        }
        Ok(Self { rows })
    }

    /// How many things there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// At most `n` things in natural id order from `from`.
    pub fn list(&self, from: &Cursor<String>, n: usize) -> Vec<Thing> {
        read_chunk(&self.rows, &natural_cursor(from), n, |_, thing| {
            thing.clone()
        })
    }

    /// At most `n` things in `query`'s list and order from `from`.
    pub fn find(&self, query: &ListQuery, from: &Cursor<Thing>, n: usize) -> Vec<Thing> {
        let resume = match from {
            Cursor::After(thing) => Some(NaturalId::new(thing.id.as_str())),
            Cursor::Offset(_) => None,
        };
        let (rows, from) = (&self.rows, &as_rows(from));
        let view = |thing: &&Thing| (*thing).clone();
        ordered::find(
            rows,
            query,
            from,
            resume.as_ref(),
            n,
            |_, thing| thing,
            view,
        )
    }

    /// How many things are in `query`'s list.
    pub fn count(&self, query: &ListQuery) -> usize {
        ordered::count(&self.rows, query, |_, thing| thing)
    }

    /// One thing.
    pub fn get(&self, id: &str) -> Result<Thing, StoreError> {
        self.rows
            .get(&NaturalId::new(id))
            .cloned()
            .ok_or_else(|| StoreError::NotFound(format!("thing {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thing(id: &str) -> Thing {
        Thing {
            id: id.to_owned(),
            name: format!("Thing {id}"),
            description: None,
            version: Default::default(),
        }
    }

    #[test]
    fn catalogue_is_listed_in_natural_order() {
        let seed = ["10", "2", "1"]
            .into_iter()
            .map(|id| (id.to_owned(), thing(id)))
            .collect();
        let table = ThingTable::from_seed(seed).unwrap();
        let ids: Vec<_> = table
            .list(&Cursor::Offset(0), 10)
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["1", "2", "10"]);
        let after: Vec<_> = table.list(&Cursor::After("1".into()), 1);
        assert_eq!(after[0].id, "2");
        assert_eq!(table.get("2").unwrap().name, "Thing 2");
        assert!(matches!(table.get("3"), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn keys_must_match_ids_and_the_id_form() {
        let mismatched = BTreeMap::from([("1".to_owned(), thing("2"))]);
        assert!(ThingTable::from_seed(mismatched).is_err());
        let bad = BTreeMap::from([("a b".to_owned(), thing("a b"))]);
        assert!(ThingTable::from_seed(bad).is_err());
    }
}
