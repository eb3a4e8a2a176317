//! Things: the read-only catalogue's record.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::Version;

/// One entry of the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "1", "name": "Thing 1", "description": "The first thing."}))]
pub struct Thing {
    /// The thing's id, the same as its key in the catalogue.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "1")]
    pub id: String,
    /// Display name.
    #[schema(example = "Thing 1")]
    pub name: String,
    /// Free text; absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Not sent: the `ETag` (the catalogue never changes, so every thing has the first one).
    #[serde(skip)]
    #[schema(ignore)]
    pub version: Version,
}
