-- Presence in entity rooms (SPEC §7: presence:joined / presence:left).
-- One row per (user, entity room) while the user is in the room: inserted by
-- the transaction that registers the user's first socket in it (joined),
-- deleted by the one that settles its departure after the grace period
-- (left). Written only under the user's presence_users row lock, like the
-- user's own state; see src/presence/mod.rs for the protocol.
CREATE TABLE presence_user_rooms (
    company_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    room        TEXT NOT NULL,
    -- When the user entered the room (ms since the epoch).
    since       BIGINT NOT NULL,
    -- When a socket of the user last left the room (NULL: none since entering).
    left_at     BIGINT,
    PRIMARY KEY (company_id, user_id, room)
);
CREATE INDEX presence_user_rooms_room ON presence_user_rooms (company_id, room);

-- Every socket already in a room gets its user's state row, so that a
-- database upgraded with sockets connected stays consistent.
INSERT INTO presence_user_rooms (company_id, user_id, room, since)
SELECT s.company_id, s.user_id, r.room, min(r.joined_at)
FROM presence_rooms r
JOIN presence_sockets s ON s.company_id = r.company_id AND s.socket_id = r.socket_id
GROUP BY s.company_id, s.user_id, r.room;
