-- The socket whose registration took the user online (set with `since` by
-- that transition, never cleared), and the socket whose registration or
-- subscription took the user into an entity room. A registration whose
-- connection ended during its COMMIT may have committed without anyone
-- announcing user:online or presence:joined; the node that made it asks
-- these columns once the database answers (src/presence/unsure.rs).
ALTER TABLE presence_users ADD COLUMN online_by TEXT;
ALTER TABLE presence_user_rooms ADD COLUMN entered_by TEXT;
