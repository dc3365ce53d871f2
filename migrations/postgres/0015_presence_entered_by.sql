-- The socket whose registration or subscription took the user into an
-- entity room (set with `since` when the row is inserted). Like
-- presence_users.online_by (0014): a registration whose connection ended
-- during its COMMIT may have committed without anyone announcing its
-- presence:joined; the node that made it asks this column once the
-- database answers (src/presence/unsure.rs).
ALTER TABLE presence_user_rooms ADD COLUMN entered_by TEXT;
