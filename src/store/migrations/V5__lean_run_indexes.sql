-- Every run changes status three times (queued, running, finished) and most
-- runs have no parent: full indexes on status and parent_id were rewritten on
-- every change for lookups that only ever look for unfinished runs and for
-- sub-runs. Partial indexes keep just those rows.
DROP INDEX executions_by_status;
CREATE INDEX executions_unfinished ON executions (status, created_at)
    WHERE status IN ('queued', 'running');
DROP INDEX executions_by_parent;
CREATE INDEX executions_by_parent ON executions (parent_id) WHERE parent_id IS NOT NULL;
