-- `Idempotency-Key` on POST (src/idempotency.rs, src/store/postgres/idempotency.rs): shared by
-- every replica. A row is claimed by the first request with its key (`answer` NULL while it
-- runs) and holds its answer once it succeeded; a request that failed deletes its row.
CREATE TABLE idempotency_keys (
    key text PRIMARY KEY,
    fingerprint bytea NOT NULL,
    claimed timestamptz NOT NULL DEFAULT clock_timestamp(),
    answer text
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (claimed);
