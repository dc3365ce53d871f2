-- See migrations/postgres/0015_presence_entered_by.sql.
ALTER TABLE presence_user_rooms ADD COLUMN entered_by TEXT;
