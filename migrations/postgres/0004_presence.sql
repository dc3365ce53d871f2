-- Presence (SPEC §7). Lives in the database so that every node counts the
-- sockets of every other node; see src/presence/mod.rs for the protocol.

-- One row per user that has ever been present: the state machine whose
-- transitions emit user:online / user:offline. Writers lock this row first
-- (SELECT … FOR UPDATE), so exactly one transaction performs each transition.
CREATE TABLE presence_users (
    company_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL,
    online      BOOLEAN NOT NULL,
    -- When the user came online (ms since the epoch).
    since       BIGINT NOT NULL,
    -- When a socket of the user last left (NULL: none since coming online).
    left_at     BIGINT,
    PRIMARY KEY (company_id, user_id)
);
CREATE INDEX presence_users_online ON presence_users (company_id) WHERE online;
CREATE INDEX presence_users_unsettled ON presence_users (left_at) WHERE online;

-- One row per connected socket, owned by the node process serving it, which
-- refreshes heartbeat_at of all its rows in one UPDATE every WS_PRESENCE_TTL/3.
-- Rows whose heartbeat is older than WS_PRESENCE_TTL belong to a dead node.
CREATE TABLE presence_sockets (
    company_id   TEXT NOT NULL,
    socket_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    role         TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    since        BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    PRIMARY KEY (company_id, socket_id)
);
CREATE INDEX presence_sockets_user ON presence_sockets (company_id, user_id);
CREATE INDEX presence_sockets_node ON presence_sockets (node_id);
CREATE INDEX presence_sockets_heartbeat ON presence_sockets (heartbeat_at);

-- The entity rooms each socket is subscribed to, for presence:list { room }.
CREATE TABLE presence_rooms (
    company_id  TEXT NOT NULL,
    room        TEXT NOT NULL,
    socket_id   TEXT NOT NULL,
    joined_at   BIGINT NOT NULL,
    PRIMARY KEY (company_id, room, socket_id),
    FOREIGN KEY (company_id, socket_id)
        REFERENCES presence_sockets (company_id, socket_id) ON DELETE CASCADE
);
CREATE INDEX presence_rooms_socket ON presence_rooms (company_id, socket_id);
