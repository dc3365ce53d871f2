-- See migrations/postgres/0004_presence.sql for the meaning of each table.
CREATE TABLE presence_users (
    company_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    role        TEXT NOT NULL,
    online      BOOLEAN NOT NULL,
    since       INTEGER NOT NULL,
    left_at     INTEGER,
    PRIMARY KEY (company_id, user_id)
) WITHOUT ROWID;
CREATE INDEX presence_users_online ON presence_users (company_id) WHERE online;
CREATE INDEX presence_users_unsettled ON presence_users (left_at) WHERE online;

CREATE TABLE presence_sockets (
    company_id   TEXT NOT NULL,
    socket_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    role         TEXT NOT NULL,
    node_id      TEXT NOT NULL,
    since        INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    PRIMARY KEY (company_id, socket_id)
) WITHOUT ROWID;
CREATE INDEX presence_sockets_user ON presence_sockets (company_id, user_id);
CREATE INDEX presence_sockets_node ON presence_sockets (node_id);
CREATE INDEX presence_sockets_heartbeat ON presence_sockets (heartbeat_at);

CREATE TABLE presence_rooms (
    company_id  TEXT NOT NULL,
    room        TEXT NOT NULL,
    socket_id   TEXT NOT NULL,
    joined_at   INTEGER NOT NULL,
    PRIMARY KEY (company_id, room, socket_id),
    FOREIGN KEY (company_id, socket_id)
        REFERENCES presence_sockets (company_id, socket_id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX presence_rooms_socket ON presence_rooms (company_id, socket_id);
