-- See migrations/postgres/0007_commands.sql for the meaning of each column.
CREATE TABLE commands (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    company_id       TEXT NOT NULL,
    target           TEXT NOT NULL,
    name             TEXT NOT NULL,
    args             TEXT NOT NULL,
    sender           TEXT,
    status           TEXT NOT NULL,
    timeout_ms       INTEGER NOT NULL,
    deadline_at      INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    sent_at          INTEGER,
    acked_at         INTEGER,
    finished_at      INTEGER,
    actual_value     TEXT,
    error_code       TEXT,
    error_message    TEXT,
    answered_by      TEXT,
    idempotency_key  TEXT
);
CREATE UNIQUE INDEX commands_idempotency ON commands (company_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX commands_target ON commands (company_id, target, created_at);
CREATE INDEX commands_open ON commands (deadline_at)
    WHERE status IN ('queued', 'sent', 'acked');
