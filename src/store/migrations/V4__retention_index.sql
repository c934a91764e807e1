-- Deleting a run sets `retry_of` to NULL in the runs that retried it: without
-- an index every deleted run scanned the whole table (retention and prune
-- slowed down with the size of the history).
CREATE INDEX executions_by_retry_of ON executions (retry_of) WHERE retry_of IS NOT NULL;
