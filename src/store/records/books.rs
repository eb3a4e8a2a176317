//! Books: the record as every store returns it, and the checked fields that create, replace and
//! update store.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{Version, Violation, check_text};

/// A book as stored and sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": 1, "title": "Java book", "author": "Jane Doe"}))]
pub struct Book {
    /// Assigned by the server; never reused.
    #[schema(minimum = 1, example = 1)]
    pub id: u64,
    /// 1 to 200 characters, not blank.
    #[schema(min_length = 1, max_length = 200, example = "Java book")]
    pub title: String,
    /// At most 200 characters, not blank; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200, example = "Jane Doe")]
    pub author: Option<String>,
    /// Not sent: the `ETag`.
    #[serde(skip)]
    #[schema(ignore)]
    pub version: Version,
}

/// A book's fields, checked against the rules: what create and replace store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookFields {
    title: String,
    author: Option<String>,
}

impl BookFields {
    /// Checks `title` and `author`; every broken rule is reported, not just the first.
    pub fn parse(title: String, author: Option<String>) -> Result<Self, Vec<Violation>> {
        Self::check(&title, author.as_deref())?;
        Ok(Self { title, author })
    }

    /// Checks `title` and `author` without taking them: what a seed's books go through, with no
    /// copy of a million titles.
    pub fn check(title: &str, author: Option<&str>) -> Result<(), Vec<Violation>> {
        let mut violations = Vec::new();
        violations.extend(check_text("title", title));
        if let Some(author) = author {
            violations.extend(check_text("author", author));
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The author, if known.
    pub fn author(&self) -> Option<&str> {
        self.author.as_deref()
    }

    /// The checked title and author, for a store to keep.
    pub(in crate::store) fn into_parts(self) -> (String, Option<String>) {
        (self.title, self.author)
    }
}

/// A partial change to a book, checked against the rules: what PATCH applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BookChanges {
    title: Option<String>,
    /// `Some(None)` removes the author.
    author: Option<Option<String>>,
}

impl BookChanges {
    /// Checks the fields that are present.
    pub fn parse(
        title: Option<String>,
        author: Option<Option<String>>,
    ) -> Result<Self, Vec<Violation>> {
        let mut violations = Vec::new();
        if let Some(title) = &title {
            violations.extend(check_text("title", title));
        }
        if let Some(Some(author)) = &author {
            violations.extend(check_text("author", author));
        }
        if violations.is_empty() {
            Ok(Self { title, author })
        } else {
            Err(violations)
        }
    }

    /// The new title, if it changes.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The new author if it changes: `Some(None)` removes it.
    pub fn author(&self) -> Option<Option<&str>> {
        self.author.as_ref().map(Option::as_deref)
    }

    /// The checked changes, for a store to apply: the new title, and the new author
    /// (`Some(None)` removes it).
    pub(in crate::store) fn into_parts(self) -> (Option<String>, Option<Option<String>>) {
        (self.title, self.author)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_rules_report_every_violation() {
        let long = "x".repeat(201);
        let errs = BookFields::parse(" ".into(), Some(long)).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].field, "title");
        assert_eq!(errs[1].field, "author");
        // 200 characters is the limit, counted in characters, not bytes.
        assert!(BookFields::parse("é".repeat(200), Some("ü".repeat(200))).is_ok());
    }
}
