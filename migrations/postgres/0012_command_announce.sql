-- Announcing command transitions (issue 10, SPEC §13). A transition is
-- committed before its `command_status` event is appended and broadcast; a
-- node that dies (or loses the log) in between would leave watchers without
-- that status forever. Each row now records how far its statuses have been
-- announced, and when another node should take over the announcing:
--   announced     rank of the last status published (0 none, 1 queued,
--                 2 sent, 3 acked, 4 succeeded/failed); rows from before
--                 this migration count as fully announced (the default);
--                 new commands are inserted with 0.
--   announce_due  NULL when every status reached is announced; otherwise
--                 the time (ms) after which any node's sweep re-announces
--                 the missing ones (idempotency keys make a repeat a no-op).
ALTER TABLE commands ADD COLUMN announced SMALLINT NOT NULL DEFAULT 4;
ALTER TABLE commands ADD COLUMN announce_due BIGINT;
CREATE INDEX commands_announce_due ON commands (announce_due)
    WHERE announce_due IS NOT NULL;
