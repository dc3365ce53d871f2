-- See migrations/postgres/0010_history_time.sql.
ALTER TABLE event_rooms ADD COLUMN created_at INTEGER NOT NULL DEFAULT 0;
UPDATE event_rooms SET created_at = COALESCE((SELECT e.created_at FROM events e WHERE e.id = event_rooms.event_id), 0);
CREATE INDEX event_rooms_time ON event_rooms (company_id, room, created_at, event_id);
CREATE INDEX events_time ON events (company_id, created_at, id);
CREATE INDEX events_type_time ON events (company_id, type, created_at, id);
