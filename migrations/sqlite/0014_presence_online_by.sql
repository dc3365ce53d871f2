-- See migrations/postgres/0014_presence_online_by.sql.
ALTER TABLE presence_users ADD COLUMN online_by TEXT;
