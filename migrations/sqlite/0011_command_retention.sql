-- See migrations/postgres/0011_command_retention.sql.
CREATE INDEX commands_finished ON commands (finished_at)
    WHERE status IN ('succeeded', 'failed');
