//! Schemas built in code, because `#[schema(..)]` attributes take only literals and these must
//! use the store's own rules (patterns, lengths) so that the spec and the checks cannot drift.

use utoipa::openapi::Ref;
use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};

use crate::store::{DECIMAL_PATTERN, ID_PATTERN, MAX_TEXT_CHARS, TEXT_PATTERN};

/// A title, author or name: 1–200 characters, not blank, no control characters but tab and
/// newline; `nullable` adds `null`.
pub fn text_schema(nullable: bool, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(string_type(nullable))
        .description(Some(format!(
            "{description} Whitespace and invisible characters (Unicode \
             Default_Ignorable_Code_Point) alone count as blank; no control characters but tab \
             and newline."
        )))
        .min_length(Some(1))
        .max_length(Some(MAX_TEXT_CHARS))
        .pattern(Some(TEXT_PATTERN.as_str()))
        .build()
}

/// A string id of a user, item or bid.
pub fn id_schema(description: &str, example: &str) -> Object {
    id_schema_of(false, description, example)
}

/// An optional string id in a request body (`null` allowed).
pub fn nullable_id_schema(description: &str, example: &str) -> Object {
    id_schema_of(true, description, example)
}

fn id_schema_of(nullable: bool, description: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(string_type(nullable))
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

/// A bid value in a request: a number greater than 0, or a string holding one.
pub fn bid_value_schema() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::Number))
                .exclusive_minimum(Some(0.0))
                .examples([serde_json::json!(100.5)]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(SchemaType::new(Type::String))
                .pattern(Some(DECIMAL_PATTERN))
                .examples([serde_json::json!("100000")]),
        )
        .description(Some(
            "The amount: a number greater than 0, or a string holding a decimal number \
             greater than 0 (`\"100000\"`, as the original client sends it)",
        ))
        .build()
        .into()
}

/// An item's bids: ids, or full bids (`complete=1`). `anyOf`, not `oneOf`: an empty list is both.
pub fn bid_list_schema() -> Schema {
    AnyOfBuilder::new()
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
        .item(ArrayBuilder::new().items(Ref::from_schema_name("Bid")))
        .description(Some(
            "Bid ids in the order placed, or full bids with `complete=1`; absent with \
             `winningOnly=1`",
        ))
        .build()
        .into()
}
