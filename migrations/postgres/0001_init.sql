-- Durable event log (SPEC §5). One row per event; one row per (room, offset)
-- the event was addressed to, so "everything after offset N in room R" is a
-- primary-key range scan.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL,
    type        TEXT NOT NULL,
    payload     JSONB NOT NULL,
    priority    TEXT NOT NULL,
    source      TEXT NOT NULL,
    publisher   TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE event_rooms (
    company_id  TEXT NOT NULL,
    room        TEXT NOT NULL,
    "offset"    BIGINT NOT NULL,
    event_id    TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (company_id, room, "offset")
);
CREATE INDEX event_rooms_expiry ON event_rooms (expires_at);
CREATE INDEX event_rooms_event ON event_rooms (event_id);

-- The last offset handed out per room. Offsets are assigned by an upsert on
-- this row inside the append transaction: the row lock serialises writers of
-- the same room until commit, so offsets are gapless and in commit order.
CREATE TABLE room_offsets (
    company_id  TEXT NOT NULL,
    room        TEXT NOT NULL,
    last_offset BIGINT NOT NULL,
    PRIMARY KEY (company_id, room)
);

-- Idempotency keys (clientEventId / idempotencyKey) and the first result.
CREATE TABLE idempotency_keys (
    company_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    result      JSONB,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (company_id, key)
);
