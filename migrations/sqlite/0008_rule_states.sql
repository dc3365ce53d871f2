-- See migrations/postgres/0008_rule_states.sql for the meaning of each column.
CREATE TABLE rule_states (
    company_id    TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    threshold_id  TEXT NOT NULL,
    stream_key    TEXT NOT NULL,
    raised        INTEGER NOT NULL,
    armed_at      INTEGER,
    alarm_id      TEXT,
    changed_at    INTEGER NOT NULL,
    PRIMARY KEY (company_id, rule_id, threshold_id, stream_key)
) WITHOUT ROWID;
