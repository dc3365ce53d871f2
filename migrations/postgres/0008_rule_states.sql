-- Telemetry-rule thresholds (issue 15 item 2): where each threshold of each
-- stream stands, shared by every node. Every change is an UPDATE guarded by
-- the state it leaves (`WHERE NOT raised …`), so when readings reach several
-- nodes at once exactly one of them raises (or clears) an alarm, and a
-- restarted node finds the alarm still raised. See src/rules/mod.rs.
CREATE TABLE rule_states (
    company_id    TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    threshold_id  TEXT NOT NULL,
    -- The value of the rule's key field ('' when the rule has none).
    stream_key    TEXT NOT NULL,
    raised        BOOLEAN NOT NULL,
    -- When the reading went out of range (hold time), while not raised.
    armed_at      BIGINT,
    -- The id of the raised alarm, carried by its clearing event too.
    alarm_id      TEXT,
    changed_at    BIGINT NOT NULL,
    PRIMARY KEY (company_id, rule_id, threshold_id, stream_key)
);
