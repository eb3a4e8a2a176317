-- The monolith schema: books, the things catalogue, and the auction bid tracker.
--
-- Rules that have no direct SQL twin are spelled out here:
-- * Natural id order (`bid9` before `bid10`): every string-keyed table stores
--   `natural_sort_key(id)`, a byte string whose byte order is the natural order of the ids, so
--   no collation is trusted. Its indexes are not UNIQUE (the key is a function of the id, which
--   is): a second unique index would make `INSERT … ON CONFLICT (id)` fail, rather than update,
--   when two transactions insert one id at once. `src/store/ids.rs` holds the same order for
--   the memory store; a PostgreSQL test checks that the two agree.
-- * Ids are never reused, PUT ids included: `counters` holds the highest number ever used per
--   prefix for users and items (updated in the transaction that uses it); books and bids are
--   only ever numbered by the server, so sequences suffice.
-- * An item's winner (highest value, earliest placed on a tie) is read through
--   `bids_ranking`; each user's items in order of their first remaining bid through
--   `user_items`; both O(log n).

CREATE FUNCTION natural_sort_key(id text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    key bytea := ''::bytea;
    part text;
    digits text;
BEGIN
    -- A run of digits becomes '0', the length of its value without leading zeros, then that
    -- value: runs compare by number, and against any other id byte ('-' < '0'..'9' < 'A')
    -- as a digit does. Other bytes stay themselves. The id itself follows a 0x00, so that ids
    -- equal in value (`a01`, `a1`) still differ, in plain byte order.
    FOR part IN SELECT m[1] FROM regexp_matches(id, '[0-9]+|[^0-9]', 'g') AS m LOOP
        IF part ~ '^[0-9]' THEN
            digits := ltrim(part, '0');
            key := key || '\x30'::bytea || set_byte('\x00'::bytea, 0, length(digits))
                || convert_to(digits, 'UTF8');
        ELSE
            key := key || convert_to(part, 'UTF8');
        END IF;
    END LOOP;
    RETURN key || '\x00'::bytea || convert_to(id, 'UTF8');
END
$$;

CREATE TABLE counters (
    prefix text PRIMARY KEY,
    highest bigint NOT NULL CHECK (highest >= 0)
);
INSERT INTO counters (prefix, highest) VALUES ('user', 0), ('item', 0);

CREATE SEQUENCE book_ids AS bigint MINVALUE 1;
-- Bids: the number gives both the id (`bid{n}`) and the placing order (`bids.seq`); seeded
-- bids are placed before all others, with the negative numbers -n..-1.
CREATE SEQUENCE bid_numbers AS bigint MINVALUE 1;

CREATE TABLE books (
    id bigint PRIMARY KEY CHECK (id > 0),
    title text NOT NULL,
    author text
);

CREATE TABLE things (
    id text PRIMARY KEY,
    sort_key bytea NOT NULL GENERATED ALWAYS AS (natural_sort_key(id)) STORED,
    name text NOT NULL,
    description text
);
CREATE INDEX things_in_order ON things (sort_key);

CREATE TABLE users (
    id text PRIMARY KEY,
    sort_key bytea NOT NULL GENERATED ALWAYS AS (natural_sort_key(id)) STORED,
    name text NOT NULL
);
CREATE INDEX users_in_order ON users (sort_key);

CREATE TABLE items (
    id text PRIMARY KEY,
    sort_key bytea NOT NULL GENERATED ALWAYS AS (natural_sort_key(id)) STORED,
    name text NOT NULL
);
CREATE INDEX items_in_order ON items (sort_key);

-- `natural_sort_key('bid' || n)` without the PL/pgSQL loop, for the ids the server gives bids:
-- placing a bid is the hot write, and the loop is a tenth of its cost. A test checks that the
-- two agree.
CREATE FUNCTION bid_sort_key(n bigint) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT '\x626964'::bytea || '\x30'::bytea || set_byte('\x00'::bytea, 0, length(n::text))
        || convert_to(n::text, 'UTF8') || '\x00'::bytea || convert_to('bid' || n, 'UTF8')
$$;

-- `sort_key` is written by the inserts (`bid_sort_key` for placed bids, `natural_sort_key` for
-- seeded ones) rather than generated, so that placing a bid does not run the loop. `seq` is
-- unique by construction (one sequence, or the seed's count), so it needs no unique index.
CREATE TABLE bids (
    id text PRIMARY KEY,
    sort_key bytea NOT NULL,
    item_id text NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    value double precision NOT NULL CHECK (value > 0 AND value < 'Infinity'),
    seq bigint NOT NULL
);
CREATE INDEX bids_in_order ON bids (sort_key);
-- The winner: the first row per item.
CREATE INDEX bids_ranking ON bids (item_id, value DESC, seq);
-- An item's bids in placing order.
CREATE INDEX bids_by_item ON bids (item_id, seq);
-- A user's bids per item: the next first bid when the first is deleted.
CREATE INDEX bids_by_user ON bids (user_id, item_id, seq);

-- Per user and item they bid on, the placing of the user's first remaining bid on it.
CREATE TABLE user_items (
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    item_id text NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    first_seq bigint NOT NULL,
    PRIMARY KEY (user_id, item_id)
);
CREATE INDEX user_items_in_order ON user_items (user_id, first_seq);
CREATE INDEX user_items_by_item ON user_items (item_id);

-- One row per seeding from DATA_DIR: a database that was seeded once is never seeded again,
-- even after every record was deleted.
CREATE TABLE seedings (
    loaded_at timestamptz NOT NULL DEFAULT now()
);
