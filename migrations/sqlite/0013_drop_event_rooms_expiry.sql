-- event_rooms_expiry (0001) is read by no query: retention deletes from
-- `events` by `events_expiry` and the room rows go with their event (ON
-- DELETE CASCADE, through `event_rooms_event`); replay reads a room's rows
-- by its primary key and only filters on `expires_at`. Every append paid one
-- more index insert per event and room for it.
DROP INDEX IF EXISTS event_rooms_expiry;
