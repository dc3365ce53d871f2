-- Webhooks (issue 15 item 3). Endpoints an operator registered through the
-- admin API, and the durable outbox their deliveries are retried from.
CREATE TABLE webhook_endpoints (
    id            TEXT PRIMARY KEY,
    company_id    TEXT NOT NULL,
    url           TEXT NOT NULL,
    -- Needed in clear to sign each delivery (HMAC); never returned after creation.
    secret        TEXT NOT NULL,
    -- JSON array of event type names; [] = any type (then min_priority filters).
    types         JSONB NOT NULL,
    min_priority  TEXT,
    description   TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_company ON webhook_endpoints (company_id, created_at);

-- One row per (endpoint, event): written in the event's append transaction
-- (durable events) or just after publishing (ephemeral and lifecycle events).
-- No foreign key to the endpoint: a node whose endpoint cache is a few
-- seconds stale must not fail an append; rows of deleted endpoints are
-- deleted with them and never claimed (the claim joins the endpoint).
CREATE TABLE webhook_outbox (
    id            BIGSERIAL PRIMARY KEY,
    endpoint_id   TEXT NOT NULL,
    company_id    TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    body          TEXT NOT NULL,
    -- pending | delivered | dead
    state         TEXT NOT NULL DEFAULT 'pending',
    attempts      INT NOT NULL DEFAULT 0,
    -- When the row is next due; a claim moves it to the lease's end, so a
    -- node that dies mid-attempt leaves a row that is due again later.
    next_at       BIGINT NOT NULL,
    lease_owner   TEXT,
    -- Start of the retry window (creation, or the last manual redelivery).
    schedule_from BIGINT NOT NULL,
    last_status   INT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    done_at       BIGINT
);
CREATE UNIQUE INDEX webhook_outbox_once ON webhook_outbox (endpoint_id, event_id);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_state ON webhook_outbox (endpoint_id, state, done_at);
CREATE INDEX webhook_outbox_dead ON webhook_outbox (endpoint_id, done_at) WHERE state = 'dead';
CREATE INDEX webhook_outbox_delivered ON webhook_outbox (done_at) WHERE state = 'delivered';
