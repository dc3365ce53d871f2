-- Device commands (issue 15, SPEC §13); see src/commands/mod.rs for the
-- protocol. Every transition is an UPDATE guarded by the states it may leave
-- (`WHERE status IN (...)`), so when several nodes race (two acks, the
-- timeout sweep of every node) exactly one of them performs it.
CREATE TABLE commands (
    -- Delivery order for a reconnecting device.
    seq              BIGSERIAL NOT NULL,
    id               TEXT PRIMARY KEY,
    company_id       TEXT NOT NULL,
    target           TEXT NOT NULL,
    name             TEXT NOT NULL,
    args             JSONB NOT NULL,
    -- The sending user (NULL: sent through the HTTP API).
    sender           TEXT,
    status           TEXT NOT NULL,
    timeout_ms       BIGINT NOT NULL,
    -- When the command fails with TIMEOUT unless it moves on (ms).
    deadline_at      BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    sent_at          BIGINT,
    acked_at         BIGINT,
    finished_at      BIGINT,
    actual_value     JSONB,
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
