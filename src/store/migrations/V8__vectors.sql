-- Retrieval (issue 16): named vector collections and their items, and the
-- embedding cache of llm.embed. Embeddings are little-endian f32, normalised
-- to length 1 so a dot product is the cosine similarity.
CREATE TABLE vector_collections (
    name       TEXT PRIMARY KEY,
    dims       INTEGER NOT NULL,
    -- Bumped by every write, so a process's in-memory copy knows it is stale.
    version    INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE vectors (
    collection TEXT NOT NULL REFERENCES vector_collections(name) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    text       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    embedding  BLOB NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;

-- llm.embed's cache: the vector of a text under a model (by sha256 of both).
CREATE TABLE embedding_cache (
    key        TEXT PRIMARY KEY,
    embedding  BLOB NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
