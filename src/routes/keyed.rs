//! Collections sent as a JSON object keyed by id, in the order the store gives (natural id
//! order), as the original bid tracker's clients expect.

use serde::Serialize;
use serde::ser::SerializeMap;

/// Records keyed by id, written as one JSON object in the order given.
#[derive(Debug)]
pub struct Keyed<T>(pub Vec<(String, T)>);

impl<T> FromIterator<(String, T)> for Keyed<T> {
    fn from_iter<I: IntoIterator<Item = (String, T)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl<T: Serialize> Serialize for Keyed<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}
