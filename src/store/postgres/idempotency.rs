//! `Idempotency-Key`s in PostgreSQL (`migrations/0005_idempotency.sql`), shared by replicas.
//!
//! A claim is one `INSERT … ON CONFLICT`: the first request with a key inserts its row; a later
//! one finds it, unless its retention is over or it was claimed so long ago without an answer
//! that its process must have died, when the claim takes the row over. Expired rows, and the
//! oldest answered ones past `IDEMPOTENCY_MAX_KEYS`, are deleted by the claims themselves, a
//! few at a time.

use super::PostgresStore;
use super::error::{Context, store_error};
use super::pool::Settle;
use crate::store::StoreError;
use crate::store::idempotency::{Claim, KeepAnswer, KeptAnswer, KeyRules};

/// Most old rows one claim deletes: the sweeping stays a small part of each claim.
const SWEEP_BATCH: i64 = 16;

impl PostgresStore {
    pub(super) async fn claim_idempotency_key(
        &self,
        key: &str,
        fingerprint: &[u8],
        rules: &KeyRules,
    ) -> Result<Claim, StoreError> {
        let _timer = self.timer("claim_key");
        let plain = |e| store_error(e, Context::PLAIN);
        let mut conn = self.conn().await?;
        let retention = rules.retention.as_secs_f64();
        let abandoned = rules.abandoned_after.as_secs_f64();
        // A claim sees the row as it is once any other claim of the key has committed (the
        // conflict waits for it), and returns what it found when it did not take the row.
        let claimed: Option<(bool,)> = sqlx::query_as(
            "WITH swept AS (DELETE FROM idempotency_keys WHERE key IN ( \
                 SELECT key FROM idempotency_keys \
                 WHERE claimed < clock_timestamp() - make_interval(secs => $3) AND key <> $1 \
                 ORDER BY claimed LIMIT $5)) \
             INSERT INTO idempotency_keys AS k (key, fingerprint) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
                 claimed = clock_timestamp(), answer = NULL \
             WHERE k.claimed < clock_timestamp() - make_interval(secs => $3) \
                OR (k.answer IS NULL AND k.claimed < clock_timestamp() - make_interval(secs => $4)) \
             RETURNING true",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(retention)
        .bind(abandoned)
        .bind(SWEEP_BATCH)
        .fetch_optional(&mut *conn)
        .await
        .settle(&mut conn)
        .map_err(plain)?;
        if claimed.is_some() {
            self.trim_keys(&mut conn, rules.max_keys).await?;
            return Ok(Claim::New);
        }
        let found: Option<(Vec<u8>, Option<String>)> =
            sqlx::query_as("SELECT fingerprint, answer FROM idempotency_keys WHERE key = $1")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await
                .settle(&mut conn)
                .map_err(plain)?;
        Ok(match found {
            // Let go between the two statements: the next try claims it.
            None => Claim::Running,
            Some((kept, _)) if kept != fingerprint => Claim::Mismatch,
            Some((_, None)) => Claim::Running,
            Some((_, Some(answer))) => match serde_json::from_str::<KeptAnswer>(&answer) {
                Ok(answer) => Claim::Answered(answer),
                Err(e) => return Err(StoreError::Internal(format!("a kept answer: {e}"))),
            },
        })
    }

    /// Deletes the oldest answered keys beyond `max_keys`, a few at a time.
    async fn trim_keys(
        &self,
        conn: &mut super::pool::Conn,
        max_keys: usize,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE key IN ( \
                 SELECT key FROM idempotency_keys WHERE answer IS NOT NULL \
                 ORDER BY claimed DESC OFFSET $1 LIMIT $2)",
        )
        .bind(max_keys as i64)
        .bind(SWEEP_BATCH)
        .execute(&mut **conn)
        .await
        .settle(conn)
        .map_err(|e| store_error(e, Context::PLAIN))?;
        Ok(())
    }

    pub(super) async fn settle_idempotency_key(
        &self,
        key: &str,
        answer: KeepAnswer,
    ) -> Result<(), StoreError> {
        let _timer = self.timer("settle_key");
        let mut conn = self.conn().await?;
        let result = match answer {
            Some(answer) => {
                let answer = serde_json::to_string(&answer)
                    .map_err(|e| StoreError::Internal(format!("keeping an answer: {e}")))?;
                sqlx::query("UPDATE idempotency_keys SET answer = $2 WHERE key = $1")
                    .bind(key)
                    .bind(answer)
                    .execute(&mut *conn)
                    .await
            }
            None => {
                sqlx::query("DELETE FROM idempotency_keys WHERE key = $1 AND answer IS NULL")
                    .bind(key)
                    .execute(&mut *conn)
                    .await
            }
        };
        result
            .settle(&mut conn)
            .map_err(|e| store_error(e, Context::PLAIN))?;
        Ok(())
    }
}
