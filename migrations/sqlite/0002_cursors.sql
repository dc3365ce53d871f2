-- See migrations/postgres/0002_cursors.sql.
CREATE TABLE cursors (
    company_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    room        TEXT NOT NULL,
    last_offset INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (company_id, user_id, device_id, room)
) WITHOUT ROWID;
CREATE INDEX events_expiry ON events (expires_at);
