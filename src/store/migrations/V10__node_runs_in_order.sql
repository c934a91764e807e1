-- node_runs gets one row per node a run runs, so what each insert costs is
-- what history costs per node. Two things made it dear (issue 20):
--
-- * CHECK (status IN (five names)): SQLite checks an IN list of three or
--   more by building a temporary b-tree of the list, on every insert. The
--   same check written with `=` and OR builds nothing.
-- * The index on (execution_id, node_id): ids like "n10" sort apart from the
--   order nodes finish in, so each row went to a random place in its run's
--   part of the index. The one query that reads node_runs wants all of a
--   run's rows, as does deleting a run; nothing looks a row up by node id.
--   Keyed by execution_id (and the rowid, implicitly), a run's rows are
--   appended in order.
--
-- SQLite cannot change a CHECK in place, so the table is copied once (rows
-- whose run no longer exists could not be shown or pruned, and are left out).
CREATE TABLE node_runs_v10 (
    id           INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    node_id      TEXT NOT NULL,
    node_type    TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    item_index   INTEGER,
    status       TEXT NOT NULL CHECK (status = 'running' OR status = 'succeeded'
                   OR status = 'failed' OR status = 'skipped' OR status = 'cancelled'),
    input        TEXT,
    output       TEXT,
    error        TEXT,
    started_at   INTEGER,
    finished_at  INTEGER,
    duration_ms  INTEGER
);
INSERT INTO node_runs_v10 (id, execution_id, node_id, node_type, attempt, item_index, status,
                           input, output, error, started_at, finished_at, duration_ms)
    SELECT id, execution_id, node_id, node_type, attempt, item_index, status,
           input, output, error, started_at, finished_at, duration_ms
    FROM node_runs
    WHERE execution_id IN (SELECT id FROM executions);
DROP TABLE node_runs;
ALTER TABLE node_runs_v10 RENAME TO node_runs;
CREATE INDEX node_runs_by_run ON node_runs (execution_id);
