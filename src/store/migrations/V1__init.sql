-- fuse schema v1. Times are Unix milliseconds (INTEGER); JSON is TEXT.
-- Later issues add columns and tables with new migrations; never edit this file.

-- Key/value facts about this home (which key store holds the master key, ...).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Workflows known to the daemon, by name; each deploy adds a version.
CREATE TABLE workflows (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    enabled         INTEGER NOT NULL DEFAULT 1,
    current_version INTEGER,
    source_path     TEXT,
    keep_runs       INTEGER,
    keep_days       INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE workflow_versions (
    workflow_id INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    definition  TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, version)
);

-- One row per run of a workflow, whatever started it.
CREATE TABLE executions (
    id               TEXT PRIMARY KEY,
    workflow_id      INTEGER REFERENCES workflows(id) ON DELETE SET NULL,
    workflow_name    TEXT NOT NULL,
    workflow_version INTEGER,
    workflow_hash    TEXT,
    source_path      TEXT,
    status           TEXT NOT NULL CHECK (status IN
                       ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
    trigger_kind     TEXT NOT NULL,
    input            TEXT,
    output           TEXT,
    error            TEXT,
    parent_id        TEXT REFERENCES executions(id) ON DELETE CASCADE,
    retry_of         TEXT REFERENCES executions(id) ON DELETE SET NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    duration_ms      INTEGER
);
CREATE INDEX executions_by_workflow ON executions (workflow_name, created_at);
CREATE INDEX executions_by_status ON executions (status, created_at);
CREATE INDEX executions_by_created ON executions (created_at);
CREATE INDEX executions_by_parent ON executions (parent_id);

-- Workflow definitions a run used, by content hash (runs of `fuse run FILE` have no
-- deployed version, yet `fuse runs retry` must find exactly what ran).
CREATE TABLE definitions (
    hash       TEXT PRIMARY KEY,
    definition TEXT NOT NULL
);

-- One row per attempt of a node (and per item of a foreach node).
CREATE TABLE node_runs (
    id           INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    node_id      TEXT NOT NULL,
    node_type    TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    item_index   INTEGER,
    status       TEXT NOT NULL CHECK (status IN
                   ('running', 'succeeded', 'failed', 'skipped', 'cancelled')),
    input        TEXT,
    output       TEXT,
    error        TEXT,
    started_at   INTEGER,
    finished_at  INTEGER,
    duration_ms  INTEGER
);
CREATE INDEX node_runs_by_execution ON node_runs (execution_id, node_id);

-- Log lines of runs (node_id NULL: the run itself) and of the daemon (execution_id NULL).
CREATE TABLE logs (
    id           INTEGER PRIMARY KEY,
    execution_id TEXT REFERENCES executions(id) ON DELETE CASCADE,
    node_id      TEXT,
    level        TEXT NOT NULL,
    message      TEXT NOT NULL,
    ts           INTEGER NOT NULL
);
CREATE INDEX logs_by_execution ON logs (execution_id, id);

-- Payloads larger than history.blob_threshold live in blobs/<hash>; rows point to them
-- as {"$blob": hash}. blob_refs says which runs use a blob, so pruning runs frees it.
CREATE TABLE blobs (
    hash       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE blob_refs (
    hash         TEXT NOT NULL REFERENCES blobs(hash) ON DELETE CASCADE,
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    PRIMARY KEY (hash, execution_id)
);
CREATE INDEX blob_refs_by_execution ON blob_refs (execution_id);

-- Encrypted credentials: only nonce + ciphertext, never plaintext.
CREATE TABLE credentials (
    name         TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    fields       TEXT NOT NULL,
    nonce        BLOB NOT NULL,
    ciphertext   BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

-- Cron and interval triggers of deployed workflows, with the next fire time stored
-- so a restart neither loses nor doubles a fire.
CREATE TABLE schedules (
    workflow_id    INTEGER NOT NULL REFERENCES workflows(id) ON DELETE CASCADE,
    node_id        TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('cron', 'interval')),
    spec           TEXT NOT NULL,
    timezone       TEXT,
    missed_policy  TEXT NOT NULL DEFAULT 'skip',
    overlap_policy TEXT NOT NULL DEFAULT 'allow',
    enabled        INTEGER NOT NULL DEFAULT 1,
    next_fire_at   INTEGER,
    last_fired_at  INTEGER,
    PRIMARY KEY (workflow_id, node_id)
);
