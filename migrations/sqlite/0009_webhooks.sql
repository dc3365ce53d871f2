-- See migrations/postgres/0009_webhooks.sql for the meaning of each column.
CREATE TABLE webhook_endpoints (
    id            TEXT PRIMARY KEY,
    company_id    TEXT NOT NULL,
    url           TEXT NOT NULL,
    secret        TEXT NOT NULL,
    types         TEXT NOT NULL,
    min_priority  TEXT,
    description   TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_company ON webhook_endpoints (company_id, created_at);

CREATE TABLE webhook_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id   TEXT NOT NULL,
    company_id    TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    body          TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending',
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER NOT NULL,
    lease_owner   TEXT,
    schedule_from INTEGER NOT NULL,
    last_status   INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    done_at       INTEGER
);
CREATE UNIQUE INDEX webhook_outbox_once ON webhook_outbox (endpoint_id, event_id);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_state ON webhook_outbox (endpoint_id, state, done_at);
CREATE INDEX webhook_outbox_dead ON webhook_outbox (endpoint_id, done_at) WHERE state = 'dead';
CREATE INDEX webhook_outbox_delivered ON webhook_outbox (done_at) WHERE state = 'delivered';
