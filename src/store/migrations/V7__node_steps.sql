-- Steps inside one node attempt: an agent's model turns and tool calls
-- (issue 16). Each has its input, output or error, timings and tokens, so
-- `fuse runs show` and the dashboard can show the whole trace.
CREATE TABLE node_steps (
    execution_id TEXT NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    node_id      TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('model', 'tool')),
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    input        TEXT,
    output       TEXT,
    error        TEXT,
    started_at   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    tokens       INTEGER,
    PRIMARY KEY (execution_id, node_id, seq)
);

-- Conversation memory of llm.chat and llm.agent, per session (issue 16).
CREATE TABLE memory_messages (
    id         INTEGER PRIMARY KEY,
    session    TEXT NOT NULL,
    role       TEXT NOT NULL,
    content    TEXT NOT NULL,
    tokens     INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX memory_by_session ON memory_messages (session, id);
