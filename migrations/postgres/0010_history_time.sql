-- History by time range (issue 15 item 4): GET /api/v1/events?from=&to=.
-- Keyset order is (created_at, id); a room's range reads event_rooms, which
-- now carries the event's time so that a one-day range of one room is an
-- index range scan, not a scan of the room's whole log.
ALTER TABLE event_rooms ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
UPDATE event_rooms r SET created_at = e.created_at FROM events e WHERE e.id = r.event_id;
CREATE INDEX event_rooms_time ON event_rooms (company_id, room, created_at, event_id);
CREATE INDEX events_time ON events (company_id, created_at, id);
CREATE INDEX events_type_time ON events (company_id, type, created_at, id);
