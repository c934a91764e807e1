-- Named API tokens with a scope. Only the SHA-256 of a token is kept; the
-- token itself is shown once, when it is made.
CREATE TABLE api_tokens (
    name         TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'run', 'admin')),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
