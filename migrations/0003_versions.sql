-- Versions for conditional requests (`ETag`, `If-Match`; `src/store/versions.rs`).
--
-- * Books, users and items carry a version from one sequence, taken again by every write that
--   changes the record (an item's also by every bid deleted from it). Placing a bid does not
--   touch its item's row (bids are placed in batches that only share-lock it), so an item's
--   version as sent is this number with its latest bid's placing number and its bid count.
-- * Bids never change: their placing number is their version. Things never change after the
--   seed.
-- * `store_identity.epoch`, random per database, tells these versions from another database's
--   (a recreated one starts its sequence again).

CREATE SEQUENCE record_versions AS bigint MINVALUE 1;

ALTER TABLE books ADD COLUMN version bigint NOT NULL DEFAULT nextval('record_versions');
ALTER TABLE users ADD COLUMN version bigint NOT NULL DEFAULT nextval('record_versions');
ALTER TABLE items ADD COLUMN version bigint NOT NULL DEFAULT nextval('record_versions');

CREATE TABLE store_identity (
    epoch bigint NOT NULL
);
INSERT INTO store_identity (epoch) SELECT floor(random() * 9007199254740991)::bigint;
