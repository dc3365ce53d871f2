-- See migrations/postgres/0005_presence_rooms.sql for the meaning of the table.
CREATE TABLE presence_user_rooms (
    company_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    room        TEXT NOT NULL,
    since       INTEGER NOT NULL,
    left_at     INTEGER,
    PRIMARY KEY (company_id, user_id, room)
) WITHOUT ROWID;
CREATE INDEX presence_user_rooms_room ON presence_user_rooms (company_id, room);

INSERT INTO presence_user_rooms (company_id, user_id, room, since)
SELECT s.company_id, s.user_id, r.room, min(r.joined_at)
FROM presence_rooms r
JOIN presence_sockets s ON s.company_id = r.company_id AND s.socket_id = r.socket_id
GROUP BY s.company_id, s.user_id, r.room;
