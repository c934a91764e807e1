-- The seed format's TimerStartNode (trigger.timer): a schedule may fire once
-- at a time (`once`), at most `max_fires` times (counted in `fired`), and a
-- failed run it started is retried up to `retries` times. SQLite cannot
-- change a CHECK constraint in place, so the table is rebuilt.
CREATE TABLE schedules_v6 (
    workflow_id    INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    node_id        TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('cron', 'interval', 'once')),
    spec           TEXT NOT NULL,
    timezone       TEXT,
    missed_policy  TEXT NOT NULL DEFAULT 'skip',
    overlap_policy TEXT NOT NULL DEFAULT 'allow',
    enabled        INTEGER NOT NULL DEFAULT 1,
    next_fire_at   INTEGER,
    last_fired_at  INTEGER,
    max_fires      INTEGER,
    fired          INTEGER NOT NULL DEFAULT 0,
    retries        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow_id, node_id)
);
INSERT INTO schedules_v6 (workflow_id, node_id, kind, spec, timezone, missed_policy,
    overlap_policy, enabled, next_fire_at, last_fired_at)
SELECT workflow_id, node_id, kind, spec, timezone, missed_policy, overlap_policy,
    enabled, next_fire_at, last_fired_at FROM schedules;
DROP TABLE schedules;
ALTER TABLE schedules_v6 RENAME TO schedules;
