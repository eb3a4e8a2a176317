//! The PostgreSQL implementation of the store traits (`DATABASE_URL`).
//!
//! The schema lives in `migrations/` and is embedded in the binary. Every store operation is one
//! statement or one transaction.

pub mod metrics;

use std::path::Path;

use crate::config::DatabaseConfig;

use super::{OpenError, Store};

/// Connects (retrying for `startup_timeout`), applies the migrations under an advisory lock,
/// and seeds an empty database from `data_dir` in one transaction.
pub async fn open(config: &DatabaseConfig, data_dir: &Path) -> Result<Store, OpenError> {
    let _ = (config, data_dir);
    Err(OpenError::Database(
        "the PostgreSQL store is not built yet".to_owned(),
    ))
}

/// Connects and applies the migrations, then returns: `monolith migrate`.
pub async fn migrate(config: &DatabaseConfig) -> Result<(), OpenError> {
    let _ = config;
    Err(OpenError::Database(
        "the PostgreSQL store is not built yet".to_owned(),
    ))
}
