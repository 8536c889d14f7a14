-- Per-user state snapshots: optimistic concurrency between jobs of one user.
-- A job records the version it started from (base_version); its snapshot is
-- version = base_version + 1, and the existing UNIQUE (user_id, version)
-- makes a second job that started from the same base conflict instead of
-- silently replacing the first one's write. One snapshot per job at most.

ALTER TABLE state_snapshots
    ADD COLUMN IF NOT EXISTS base_version integer
        CHECK (base_version IS NULL OR base_version = version - 1);

-- Replaces 0001's plain index on job_id.
CREATE UNIQUE INDEX IF NOT EXISTS state_snapshots_job_key
    ON state_snapshots (job_id) WHERE job_id IS NOT NULL;
DROP INDEX IF EXISTS state_snapshots_job_idx;
