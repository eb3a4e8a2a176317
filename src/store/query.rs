//! List queries: the filters, search and sort a list may ask for, and the rules that decide
//! which records match and in what order — one definition, so that both engines answer alike.
//!
//! Each list's fields are a table ([`BOOKS`], [`THINGS`], [`USERS`], [`ITEMS`], [`BIDS`]) whose
//! first field is the record's id; a record (or an engine's view of one) gives its values by
//! position in that table through [`Row`]. The memory engine filters and orders with
//! [`ListQuery::matches`] and [`ListQuery::compare`]; the PostgreSQL engine writes the same rules
//! in SQL (`postgres/queries.rs`), and a test runs both on the same queries.
//!
//! The order is total: the sort keys, then the id (natural id order, numbers for books). A
//! missing value (a book without author) sorts after every value, so first when descending,
//! as PostgreSQL's default `NULLS LAST` / `DESC NULLS FIRST` does. Text compares by code point
//! (PostgreSQL's `COLLATE "C"`), never by a locale the two engines might not share.

use std::cmp::Ordering;

use super::ids::natural_cmp;
use super::{Bid, Book, Cursor, Item, Thing, User};

/// What a field holds, which decides how it is compared and which tests it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole number (a book id); takes range filters.
    Integer,
    /// A number (a bid value); takes range filters.
    Number,
    /// A string id: natural order (`bid9` before `bid10`), searched by `q`.
    Id,
    /// Free text: code-point order, searched by `q`.
    Text,
}

/// A field a list can be filtered and sorted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its name on the wire and in the query string.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Whether a record may lack it (`author`, `description`, `winning`).
    pub optional: bool,
}

impl Field {
    const fn new(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            optional: false,
        }
    }

    const fn optional(name: &'static str, kind: Kind) -> Self {
        Self {
            name,
            kind,
            optional: true,
        }
    }

    /// Whether `_gte` and `_lte` filters apply: numbers only.
    pub fn ranged(&self) -> bool {
        matches!(self.kind, Kind::Integer | Kind::Number)
    }

    /// Whether `q` searches it: every string field.
    pub fn searched(&self) -> bool {
        matches!(self.kind, Kind::Id | Kind::Text)
    }
}

/// The fields of one list; the first is the id.
pub type Fields = &'static [Field];

/// Books: `id`, `title`, `author`.
pub const BOOKS: Fields = &[
    Field::new("id", Kind::Integer),
    Field::new("title", Kind::Text),
    Field::optional("author", Kind::Text),
];

/// Things: `id`, `name`, `description`.
pub const THINGS: Fields = &[
    Field::new("id", Kind::Id),
    Field::new("name", Kind::Text),
    Field::optional("description", Kind::Text),
];

/// Users: `id`, `name`.
pub const USERS: Fields = &[Field::new("id", Kind::Id), Field::new("name", Kind::Text)];

/// Items: `id`, `name`, `winning` (the winning bid's id; none without bids).
pub const ITEMS: Fields = &[
    Field::new("id", Kind::Id),
    Field::new("name", Kind::Text),
    Field::optional("winning", Kind::Id),
];

/// Bids: `id`, `item`, `user`, `value`.
pub const BIDS: Fields = &[
    Field::new("id", Kind::Id),
    Field::new("item", Kind::Id),
    Field::new("user", Kind::Id),
    Field::new("value", Kind::Number),
];

/// A field's value in a record; `Null` where an optional field is absent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    /// A whole number.
    Integer(u64),
    /// A number.
    Number(f64),
    /// A string id.
    Id(&'a str),
    /// Text.
    Text(&'a str),
    /// No value.
    Null,
}

impl Value<'_> {
    /// The order of two values of one field.
    fn order(self, other: Self) -> Ordering {
        match (self, other) {
            (Value::Integer(a), Value::Integer(b)) => a.cmp(&b),
            (Value::Number(a), Value::Number(b)) => a.total_cmp(&b),
            (Value::Id(a), Value::Id(b)) => natural_cmp(a, b),
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Greater,
            (_, Value::Null) => Ordering::Less,
            // Values of one field share a kind; this only orders a mismatch consistently.
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }

    fn rank(self) -> u8 {
        match self {
            Value::Integer(_) => 0,
            Value::Number(_) => 1,
            Value::Id(_) => 2,
            Value::Text(_) => 3,
            Value::Null => 4,
        }
    }
}

/// A record as a list query sees it: its values by position in its list's [`Fields`].
pub trait Row {
    /// The value of field `field` (an index into the list's fields).
    fn value(&self, field: usize) -> Value<'_>;
}

impl<T: Row + ?Sized> Row for &T {
    fn value(&self, field: usize) -> Value<'_> {
        (**self).value(field)
    }
}

/// `from` with its record seen as a row.
pub fn as_rows<T: Row>(from: &Cursor<T>) -> Cursor<&dyn Row> {
    match from {
        Cursor::Offset(offset) => Cursor::Offset(*offset),
        Cursor::After(last) => Cursor::After(last),
    }
}

/// A filter's operand, checked against its field's kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// For an `Integer` field.
    Integer(u64),
    /// For an `Integer` field: a whole number above every one a record can hold.
    AboveAll,
    /// For a `Number` field.
    Number(f64),
    /// For an `Id` or `Text` field.
    Text(String),
    /// "Has no value", for an optional field.
    Null,
}

/// How a filter compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Equal (`field=`).
    Equal,
    /// At least (`field_gte=`).
    AtLeast,
    /// At most (`field_lte=`).
    AtMost,
}

/// One filter: records whose `field` passes `test` against `operand`.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// The field's index.
    pub field: usize,
    /// The comparison.
    pub test: Test,
    /// What the field is compared with.
    pub operand: Operand,
}

impl Filter {
    fn passes(&self, value: Value<'_>) -> bool {
        let order = match (&self.operand, value) {
            (Operand::Null, value) => return value == Value::Null,
            (_, Value::Null) => return false,
            (Operand::AboveAll, _) => Ordering::Less,
            (Operand::Integer(a), Value::Integer(b)) => b.cmp(a),
            (Operand::Number(a), Value::Number(b)) => b.total_cmp(a),
            (Operand::Text(a), Value::Id(b) | Value::Text(b)) => {
                // Ids and texts are filtered by equality only.
                return b == a;
            }
            _ => return false,
        };
        match self.test {
            Test::Equal => order == Ordering::Equal,
            Test::AtLeast => order != Ordering::Less,
            Test::AtMost => order != Ordering::Greater,
        }
    }
}

/// One sort key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// The field's index.
    pub field: usize,
    /// Highest first.
    pub descending: bool,
}

/// What a list asks for beyond paging: records that pass every filter and contain the search
/// text, in the order of the sort keys, ties by id. The default query is the plain list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ListQuery {
    /// Every one must pass.
    pub filters: Vec<Filter>,
    /// Lowercase text that some searched field must contain, case-insensitively.
    pub search: Option<String>,
    /// The order; the id breaks ties. Never ends with the id ascending (that is the default).
    pub sort: Vec<SortKey>,
    /// The list's fields.
    pub fields: Fields,
}

impl ListQuery {
    /// The plain list of `fields`: everything, in id order.
    pub fn all(fields: Fields) -> Self {
        Self {
            fields,
            ..Self::default()
        }
    }

    /// Sets the search text; an empty one searches nothing out.
    pub fn search(mut self, text: &str) -> Self {
        self.search = (!text.is_empty()).then(|| text.to_lowercase());
        self
    }

    /// Sets the order. A field's second key never decides, nor does any key after the id (it
    /// is unique), so they are dropped, and so is a final ascending id (it is the tie-break
    /// anyway): a query has at most one key per field, however long its `sort`.
    pub fn sorted(mut self, mut keys: Vec<SortKey>) -> Self {
        let mut seen = 0_u64;
        keys.retain(|key| {
            let bit = 1 << key.field.min(63);
            let first = seen & bit == 0;
            seen |= bit;
            first
        });
        if let Some(at) = keys.iter().position(|key| key.field == 0) {
            keys.truncate(at + 1);
        }
        if keys.last() == Some(&SortKey::by_id()) {
            keys.pop();
        }
        self.sort = keys;
        self
    }

    /// Whether this is the plain list: no filter, no search, id order.
    pub fn is_plain(&self) -> bool {
        self.filters.is_empty() && self.search.is_none() && self.sort.is_empty()
    }

    /// Whether the order is plain id order (whatever the filters), so that a list can be
    /// walked in its stored order and stop early.
    pub fn in_id_order(&self) -> bool {
        self.sort.is_empty()
    }

    /// Whether `row` is in the list.
    pub fn matches(&self, row: &(impl Row + ?Sized)) -> bool {
        self.filters
            .iter()
            .all(|filter| filter.passes(row.value(filter.field)))
            && self
                .search
                .as_deref()
                .is_none_or(|text| self.found(row, text))
    }

    fn found(&self, row: &(impl Row + ?Sized), text: &str) -> bool {
        self.fields.iter().enumerate().any(|(at, field)| {
            field.searched()
                && match row.value(at) {
                    Value::Id(value) | Value::Text(value) => contains_folded(value, text),
                    _ => false,
                }
        })
    }

    /// The list's order of two rows: the sort keys, then the id.
    pub fn compare(&self, a: &(impl Row + ?Sized), b: &(impl Row + ?Sized)) -> Ordering {
        for key in self.sort.iter().chain([&SortKey::by_id()]) {
            let order = a.value(key.field).order(b.value(key.field));
            let order = if key.descending {
                order.reverse()
            } else {
                order
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        Ordering::Equal
    }
}

impl SortKey {
    /// The id, ascending: every order's last word.
    pub const fn by_id() -> Self {
        Self {
            field: 0,
            descending: false,
        }
    }
}

/// Whether `haystack`, lowercased, contains `needle` (lowercase already). ASCII text, by far the
/// most common, is compared in place without lowercasing a copy.
fn contains_folded(haystack: &str, needle: &str) -> bool {
    if haystack.is_ascii() && needle.is_ascii() {
        let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
        needle.is_empty()
            || haystack
                .windows(needle.len())
                .any(|window| window.eq_ignore_ascii_case(needle))
    } else {
        haystack.to_lowercase().contains(needle)
    }
}

/// From `rows` (in id order), those in `query`'s list, in its order, from `from` (how many
/// matches to skip, or the last row already sent), at most `n`, each turned into a `T` by `view`.
/// Walks every row unless the list is in id order, in which case it stops at the `n`th match.
pub fn select<R: Row, T>(
    rows: impl Iterator<Item = R>,
    query: &ListQuery,
    from: &Cursor<&dyn Row>,
    n: usize,
    view: impl Fn(&R) -> T,
) -> Vec<T> {
    let after = |row: &R| match from {
        Cursor::Offset(_) => true,
        Cursor::After(last) => query.compare(row, *last) == Ordering::Greater,
    };
    let skip = match from {
        Cursor::Offset(offset) => *offset,
        Cursor::After(_) => 0,
    };
    let matching = rows.filter(|row| query.matches(row) && after(row));
    if query.in_id_order() {
        return matching.skip(skip).take(n).map(|row| view(&row)).collect();
    }
    let mut found: Vec<R> = matching.collect();
    let wanted = skip.saturating_add(n).min(found.len());
    if wanted < found.len() {
        found.select_nth_unstable_by(wanted, |a, b| query.compare(a, b));
        found.truncate(wanted);
    }
    found.sort_unstable_by(|a, b| query.compare(a, b));
    found.iter().skip(skip).map(view).collect()
}

impl Row for Book {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Integer(self.id),
            1 => Value::Text(&self.title),
            _ => self.author.as_deref().map_or(Value::Null, Value::Text),
        }
    }
}

impl Row for Thing {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Id(&self.id),
            1 => Value::Text(&self.name),
            _ => self.description.as_deref().map_or(Value::Null, Value::Text),
        }
    }
}

impl Row for User {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Id(&self.id),
            _ => Value::Text(&self.name),
        }
    }
}

impl Row for Item {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Id(&self.id),
            1 => Value::Text(&self.name),
            _ => self.winning.as_deref().map_or(Value::Null, Value::Id),
        }
    }
}

impl Row for Bid {
    fn value(&self, field: usize) -> Value<'_> {
        match field {
            0 => Value::Id(&self.id),
            1 => Value::Id(&self.item),
            2 => Value::Id(&self.user),
            _ => Value::Number(self.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(id: u64, title: &str, author: Option<&str>) -> Book {
        Book {
            id,
            title: title.to_owned(),
            author: author.map(str::to_owned),
            version: Default::default(),
        }
    }

    #[test]
    fn keys_after_the_id_and_a_final_ascending_id_are_dropped() {
        let key = |field, descending| SortKey { field, descending };
        let sorted = |keys| ListQuery::all(BOOKS).sorted(keys).sort;
        assert_eq!(sorted(vec![key(1, false), key(0, false)]), [key(1, false)]);
        assert_eq!(sorted(vec![key(0, true), key(1, false)]), [key(0, true)]);
        assert!(sorted(vec![key(0, false), key(2, true)]).is_empty());
        assert!(ListQuery::all(BOOKS).sorted(vec![key(0, false)]).is_plain());
        let repeated = sorted([key(1, true), key(2, false)].repeat(500));
        assert_eq!(repeated, [key(1, true), key(2, false)]);
    }

    #[test]
    fn a_missing_value_sorts_last_ascending_and_first_descending() {
        let (with, without) = (book(1, "a", Some("z")), book(2, "a", None));
        let by_author = |descending| {
            ListQuery::all(BOOKS).sorted(vec![SortKey {
                field: 2,
                descending,
            }])
        };
        assert_eq!(by_author(false).compare(&with, &without), Ordering::Less);
        assert_eq!(by_author(true).compare(&with, &without), Ordering::Greater);
        // Ties go by id, ascending, whatever the direction of the keys.
        let twin = book(3, "a", Some("z"));
        assert_eq!(by_author(true).compare(&with, &twin), Ordering::Less);
    }

    #[test]
    fn search_ignores_case_in_any_script_and_takes_wildcards_literally() {
        let query = |text| ListQuery::all(BOOKS).search(text);
        let book = book(1, "Éclair au café", Some("50% of_it"));
        assert!(query("ÉCLAIR").matches(&book));
        assert!(query("CAFÉ").matches(&book));
        assert!(query("% of_").matches(&book));
        assert!(!query("%_").matches(&book));
        assert!(
            !query("1").matches(&book),
            "a book's id is a number, not searched text"
        );
        assert!(query("").is_plain());
    }
}
