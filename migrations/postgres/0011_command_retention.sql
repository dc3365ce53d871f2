-- Command retention (COMMAND_RETENTION): the sweep deletes finished commands
-- (succeeded or failed) by the time they finished, a batch at a time; this
-- partial index finds them without scanning the open ones or the whole table.
CREATE INDEX commands_finished ON commands (finished_at)
    WHERE status IN ('succeeded', 'failed');
