-- See migrations/postgres/0001_init.sql for the meaning of each table.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    company_id  TEXT NOT NULL,
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    priority    TEXT NOT NULL,
    source      TEXT NOT NULL,
    publisher   TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);

CREATE TABLE event_rooms (
    company_id  TEXT NOT NULL,
    room        TEXT NOT NULL,
    "offset"    INTEGER NOT NULL,
    event_id    TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (company_id, room, "offset")
) WITHOUT ROWID;
CREATE INDEX event_rooms_expiry ON event_rooms (expires_at);
CREATE INDEX event_rooms_event ON event_rooms (event_id);

CREATE TABLE room_offsets (
    company_id  TEXT NOT NULL,
    room        TEXT NOT NULL,
    last_offset INTEGER NOT NULL,
    PRIMARY KEY (company_id, room)
) WITHOUT ROWID;

CREATE TABLE idempotency_keys (
    company_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    result      TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (company_id, key)
) WITHOUT ROWID;
