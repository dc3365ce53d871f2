-- The socket whose registration took the user online (set with `since` by
-- that transition, never cleared). A registration whose connection ended
-- during its COMMIT may have committed without anyone announcing
-- user:online; the node that made it asks this column once the database
-- answers (src/presence/unsure.rs).
ALTER TABLE presence_users ADD COLUMN online_by TEXT;
