-- See migrations/postgres/0012_command_announce.sql.
ALTER TABLE commands ADD COLUMN announced INTEGER NOT NULL DEFAULT 4;
ALTER TABLE commands ADD COLUMN announce_due INTEGER;
CREATE INDEX commands_announce_due ON commands (announce_due)
    WHERE announce_due IS NOT NULL;
