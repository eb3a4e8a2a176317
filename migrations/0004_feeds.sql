-- Live feeds of items (`GET /items/{id}/events`; src/store/feed.rs, src/store/postgres/feeds.rs).
--
-- Triggers turn every bid placed or deleted, every change of an item's winner and every item
-- deleted into an event, in the transaction that made the change: an event exists if and only
-- if its change committed. Each event is kept in `item_events` (the last `monolith.feed_history`
-- of each item, a setting of each session, for clients that reconnect with `Last-Event-ID`) and
-- announced with NOTIFY on the schema's channel (`feed_channel()`: NOTIFY is database-wide, so
-- two stores in two schemas of one database must not hear each other), which every replica
-- LISTENs to. PostgreSQL delivers notifications in commit order.
--
-- Ids come from one sequence, drawn while the item's bid lock is held (the advisory lock every
-- bid takes), and that lock is held to commit, so an item's ids grow in its commit order. The
-- triggers take the lock too, for any writer that did not (it is re-entrant).
--
-- `items.events_floor`: events of the item with this id or lower are not kept. An item starts
-- with a fresh id, so a `Last-Event-ID` from an earlier item of the same id is below it.

CREATE SEQUENCE item_event_ids AS bigint MINVALUE 1;

CREATE TABLE item_events (
    item_id text NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    id bigint NOT NULL,
    kind text NOT NULL,
    data text NOT NULL,
    PRIMARY KEY (item_id, id)
);

ALTER TABLE items ADD COLUMN events_floor bigint NOT NULL DEFAULT nextval('item_event_ids');

-- The channel of this schema's feeds, as seen from a session whose search_path leads here.
CREATE FUNCTION feed_channel() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'monolith_feed_' || left(md5(current_schema()), 16)
$$;

-- A bid in the original tracker's shape, as `GET /bids/{id}` sends it.
CREATE FUNCTION feed_bid(bid_id text, item_id text, user_id text, value float8) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object('bid_id', bid_id,
                             'bid', json_build_object('item', item_id, 'value', value, 'user', user_id))
$$;

-- Records one event of `item` and announces it.
CREATE FUNCTION feed_emit(item text, kind text, data text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    event_id bigint := nextval('item_event_ids');
BEGIN
    INSERT INTO item_events (item_id, id, kind, data) VALUES (item, event_id, kind, data);
    PERFORM pg_notify(feed_channel(), item || E'\n' || event_id || E'\n' || kind || E'\n' || data);
END $$;

-- Announces `item`'s winner if it is no longer the bid `before`.
CREATE FUNCTION feed_winner_change(item text, before text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    winner record;
BEGIN
    SELECT id, user_id, value INTO winner FROM bids
    WHERE item_id = item ORDER BY value DESC, seq LIMIT 1;
    IF winner.id IS DISTINCT FROM before THEN
        PERFORM feed_emit(item, 'winner', json_build_object('item_id', item, 'winning_bid',
            CASE WHEN winner.id IS NULL THEN NULL
                 ELSE feed_bid(winner.id, item, winner.user_id, winner.value) END)::text);
    END IF;
END $$;

-- Keeps the last `monolith.feed_history` events of `item` (100 if the session did not say).
CREATE FUNCTION feed_prune(item text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    keep integer := coalesce(nullif(current_setting('monolith.feed_history', true), ''), '100')::integer;
    cut bigint;
BEGIN
    SELECT id INTO cut FROM item_events WHERE item_id = item ORDER BY id DESC OFFSET keep LIMIT 1;
    IF cut IS NOT NULL THEN
        DELETE FROM item_events WHERE item_id = item AND id <= cut;
        UPDATE items SET events_floor = cut WHERE id = item AND events_floor < cut;
    END IF;
END $$;

-- The seed is the starting state, not a stream of events.
CREATE FUNCTION feed_off() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('monolith.seeding', true), '') = 'on'
$$;

CREATE FUNCTION feed_bids_placed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    item text;
    best float8;
    bid record;
BEGIN
    IF feed_off() THEN
        RETURN NULL;
    END IF;
    FOR item IN SELECT DISTINCT p.item_id COLLATE "C" FROM placed p ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1651074163, hashtext(item));
        -- Every bid on the item placed before these has a lower placing number.
        SELECT b.value INTO best FROM bids b
        WHERE b.item_id = item AND b.seq < (SELECT min(p.seq) FROM placed p WHERE p.item_id = item)
        ORDER BY b.value DESC, b.seq LIMIT 1;
        FOR bid IN SELECT * FROM placed p WHERE p.item_id = item ORDER BY p.seq LOOP
            PERFORM feed_emit(item, 'bid', feed_bid(bid.id, item, bid.user_id, bid.value)::text);
            -- Highest value wins, the earliest on a tie.
            IF best IS NULL OR bid.value > best THEN
                best := bid.value;
                PERFORM feed_emit(item, 'winner', json_build_object('item_id', item,
                    'winning_bid', feed_bid(bid.id, item, bid.user_id, bid.value))::text);
            END IF;
        END LOOP;
        PERFORM feed_prune(item);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER feed_bids_placed AFTER INSERT ON bids
REFERENCING NEW TABLE AS placed FOR EACH STATEMENT EXECUTE FUNCTION feed_bids_placed();

CREATE FUNCTION feed_bids_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    item text;
    before text;
    bid record;
BEGIN
    IF feed_off() THEN
        RETURN NULL;
    END IF;
    FOR item IN SELECT DISTINCT g.item_id COLLATE "C" FROM gone g ORDER BY 1 LOOP
        -- Deleted with its item: the item's feeds get `item_deleted` alone.
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM items i WHERE i.id = item);
        PERFORM pg_advisory_xact_lock(1651074163, hashtext(item));
        SELECT w.id INTO before FROM (
            SELECT b.id, b.value, b.seq FROM bids b WHERE b.item_id = item
            UNION ALL
            SELECT g.id, g.value, g.seq FROM gone g WHERE g.item_id = item
        ) w ORDER BY w.value DESC, w.seq LIMIT 1;
        FOR bid IN SELECT * FROM gone g WHERE g.item_id = item ORDER BY g.seq LOOP
            PERFORM feed_emit(item, 'bid_deleted', feed_bid(bid.id, item, bid.user_id, bid.value)::text);
        END LOOP;
        PERFORM feed_winner_change(item, before);
        PERFORM feed_prune(item);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER feed_bids_deleted AFTER DELETE ON bids
REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION feed_bids_deleted();

-- The last event of an item's feeds; not kept (the item's events go with it), only announced.
CREATE FUNCTION feed_item_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF feed_off() THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify(feed_channel(), OLD.id || E'\n' || nextval('item_event_ids')
        || E'\nitem_deleted\n' || json_build_object('item_id', OLD.id)::text);
    RETURN NULL;
END $$;

CREATE TRIGGER feed_item_deleted AFTER DELETE ON items
FOR EACH ROW EXECUTE FUNCTION feed_item_deleted();
