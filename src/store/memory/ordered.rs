//! Ordered maps with O(log n) rank, and the chunk reader every in-memory table lists through.
//!
//! `indexset`'s map keeps its entries in sorted vectors of up to 1024 with a Fenwick tree of
//! their lengths, so the entry at a position, and the position of a key, are found in O(log n):
//! a list that starts at `offset=500000` does not walk half a million entries to get there. It
//! is also denser than `std`'s B-tree, which matters at a million records.

use crate::store::Cursor;
use crate::store::ids::NaturalId;
use crate::store::query::{ListQuery, Row, select};

/// A sorted map whose entries can be reached by position in O(log n).
pub type RankedMap<K, V> = indexset::BTreeMap<K, V>;

/// At most `n` entries of `map` in key order from `from`, each turned into a `T` by `view`.
pub fn read_chunk<K: Ord, V, T>(
    map: &RankedMap<K, V>,
    from: &Cursor<K>,
    n: usize,
    view: impl FnMut(&K, &V) -> T,
) -> Vec<T> {
    let start = match from {
        Cursor::Offset(offset) => *offset,
        Cursor::After(key) => rank_after(map, key),
    };
    read_positions(map, start, map.len(), n, view)
}

/// A cursor over string ids, in the natural order the tables keep them in.
pub fn natural_cursor(from: &Cursor<String>) -> Cursor<NaturalId> {
    match from {
        Cursor::Offset(offset) => Cursor::Offset(*offset),
        Cursor::After(id) => Cursor::After(NaturalId::new(id.as_str())),
    }
}

/// The position just after `key`: where a list that already sent `key` goes on.
pub fn rank_after<K: Ord, V>(map: &RankedMap<K, V>, key: &K) -> usize {
    let rank = map.rank(key);
    match map.get_index(rank) {
        Some((found, _)) if found == key => rank + 1,
        _ => rank,
    }
}

/// At most `n` entries at positions `start..end`, each turned into a `T` by `view`.
pub fn read_positions<K: Ord, V, T>(
    map: &RankedMap<K, V>,
    start: usize,
    end: usize,
    n: usize,
    mut view: impl FnMut(&K, &V) -> T,
) -> Vec<T> {
    let end = end.min(map.len()).min(start.saturating_add(n));
    if start >= end {
        return Vec::new();
    }
    // Inclusive bounds only: `indexset` computes `end - 1` for an exclusive end.
    map.range_idx(start..=end - 1)
        .map(|(key, value)| view(key, value))
        .collect()
}

/// At most `n` of `map`'s entries in `query`'s list and order, from `from`, each seen as a row
/// by `row` and turned into a `T` by `view`. `resume` is the key of `from`'s last row: a list in
/// id order starts right after it instead of walking the entries before it.
pub fn find<'m, K: Ord, V, R: Row, T>(
    map: &'m RankedMap<K, V>,
    query: &ListQuery,
    from: &Cursor<&dyn Row>,
    resume: Option<&K>,
    n: usize,
    row: impl Fn(&'m K, &'m V) -> R,
    view: impl Fn(&R) -> T,
) -> Vec<T> {
    let start = match resume {
        Some(key) if query.in_id_order() => rank_after(map, key),
        _ => 0,
    };
    if query.is_plain() {
        // Every entry is in the list: an offset is a position, reached in O(log n).
        let start = match from {
            Cursor::Offset(offset) => *offset,
            Cursor::After(_) => start,
        };
        let end = map.len().min(start.saturating_add(n));
        if start >= end {
            return Vec::new();
        }
        return map
            .range_idx(start..=end - 1)
            .map(|(key, value)| view(&row(key, value)))
            .collect();
    }
    let rows = (start < map.len())
        .then(|| map.range_idx(start..=map.len() - 1))
        .into_iter()
        .flatten()
        .map(|(key, value)| row(key, value));
    select(rows, query, from, n, view)
}

/// How many of `map`'s entries, each seen as a row by `row`, are in `query`'s list.
pub fn count<'m, K: Ord, V, R: Row>(
    map: &'m RankedMap<K, V>,
    query: &ListQuery,
    row: impl Fn(&'m K, &'m V) -> R,
) -> usize {
    map.iter()
        .filter(|(key, value)| query.matches(&row(key, value)))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(keys: impl IntoIterator<Item = u64>) -> RankedMap<u64, ()> {
        keys.into_iter().map(|k| (k, ())).collect()
    }

    fn keys(map: &RankedMap<u64, ()>, from: Cursor<u64>, n: usize) -> Vec<u64> {
        read_chunk(map, &from, n, |k, ()| *k)
    }

    #[test]
    fn chunks_start_at_an_offset_or_after_a_key_present_or_not() {
        let m = map((1..=10).map(|k| k * 10));
        assert_eq!(keys(&m, Cursor::Offset(0), 3), [10, 20, 30]);
        assert_eq!(keys(&m, Cursor::Offset(8), 5), [90, 100]);
        assert!(keys(&m, Cursor::Offset(10), 5).is_empty());
        assert!(keys(&m, Cursor::Offset(usize::MAX), 5).is_empty());
        assert_eq!(keys(&m, Cursor::After(30), 2), [40, 50]);
        // A key deleted since it was sent: go on with the next one after it.
        assert_eq!(keys(&m, Cursor::After(35), 2), [40, 50]);
        assert_eq!(keys(&m, Cursor::After(0), 1), [10]);
        assert!(keys(&m, Cursor::After(100), 5).is_empty());
        assert!(keys(&m, Cursor::Offset(2), 0).is_empty());
        assert!(keys(&map([]), Cursor::Offset(0), 5).is_empty());
        assert!(keys(&map([]), Cursor::After(1), 5).is_empty());
    }

    #[test]
    fn chunks_agree_with_a_plain_walk_across_node_boundaries() {
        // More than one 1024-entry node, with holes from deletes.
        let mut m = map(0..5000);
        for k in (0..5000).step_by(7) {
            m.remove(&k);
        }
        let all: Vec<u64> = m.keys().copied().collect();
        for offset in [0, 1, 1000, 1023, 1024, 2047, 4000, all.len() - 1] {
            assert_eq!(
                keys(&m, Cursor::Offset(offset), 300),
                all[offset..][..300.min(all.len() - offset)]
            );
        }
        let mut sent = Vec::new();
        let mut from = Cursor::Offset(0);
        loop {
            let chunk = keys(&m, from, 256);
            let Some(&last) = chunk.last() else { break };
            sent.extend(chunk);
            from = Cursor::After(last);
        }
        assert_eq!(sent, all);
    }
}
