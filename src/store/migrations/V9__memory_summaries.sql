-- memory.summarize (issue 16): what a session's older turns said, in a few
-- sentences, once they have left the window.
CREATE TABLE memory_summaries (
    session    TEXT PRIMARY KEY,
    content    TEXT NOT NULL,
    tokens     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
