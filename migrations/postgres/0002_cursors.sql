-- Offline-queue cursors (SPEC §5): per user and device, the last offset
-- delivered in each automatic room. device_id is '' when the client sends none.
CREATE TABLE cursors (
    company_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    room        TEXT NOT NULL,
    last_offset BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (company_id, user_id, device_id, room)
);
CREATE INDEX events_expiry ON events (expires_at);
