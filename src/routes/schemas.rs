//! Schemas built in code, because `#[schema(..)]` attributes take only literals and these must
//! use the store's own rules (patterns, lengths) so that the spec and the checks cannot drift.

use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use crate::store::{ID_PATTERN, MAX_TEXT_CHARS, NOT_BLANK};

/// A title, author or name: 1–200 characters, not blank; `nullable` adds `null`.
pub fn text_schema(nullable: bool, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(string_type(nullable))
        .description(Some(description))
        .min_length(Some(1))
        .max_length(Some(MAX_TEXT_CHARS))
        .pattern(Some(NOT_BLANK))
        .build()
}

/// A string id of a user, item or bid.
pub fn id_schema(description: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(string_type(false))
        .description(Some(description))
        .pattern(Some(ID_PATTERN))
        .examples([serde_json::Value::from(example)])
        .build()
}

fn string_type(nullable: bool) -> SchemaType {
    if nullable {
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::new(Type::String)
    }
}
