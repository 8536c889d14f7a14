-- Finished-job totals that cost the same at any table size.
--
-- queue_stats used to count COMPLETED, FAILED and CANCELLED rows: an index
-- scan over every finished job still in the table (220 ms at 1M rows). Now
-- statement-level triggers record each statement's net change per status in
-- job_status_changes, an append-only log: concurrent writers never update a
-- shared row, so the fleet does not serialise on a hot counter. A fold
-- (run by the workers' maintenance) moves old changes into job_status_totals
-- and compacts recent ones to one row per (status, second), so a reader sums a
-- few thousand rows at most. Both tables are changed only by these triggers
-- and the fold, in the same transactions as the jobs they count: totals are
-- exact, whatever wrote the jobs (API, workers, retention, psql).
--
-- finished_second is the second the jobs finished in, kept while it is recent
-- (10 minutes) so "finished in the last N minutes" is a sum too; NULL means
-- older, which only the totals need.

CREATE TABLE IF NOT EXISTS job_status_totals (
    status text PRIMARY KEY CHECK (status IN ('COMPLETED', 'FAILED', 'CANCELLED')),
    total  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS job_status_changes (
    status          text NOT NULL,
    finished_second timestamptz,
    delta           bigint NOT NULL
);
-- Deleted by every fold: vacuum it early so readers meet few dead rows.
ALTER TABLE job_status_changes SET (
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_scale_factor = 0
);

CREATE OR REPLACE FUNCTION easyclaw_count_finished_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO job_status_changes (status, finished_second, delta)
        SELECT status,
               CASE WHEN finished_at > now() - interval '10 minutes'
                    THEN date_trunc('second', finished_at) END,
               count(*)
        FROM inserted_jobs
        WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
        GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO job_status_changes (status, finished_second, delta)
        SELECT status,
               CASE WHEN finished_at > now() - interval '10 minutes'
                    THEN date_trunc('second', finished_at) END,
               -count(*)
        FROM deleted_jobs
        WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
        GROUP BY 1, 2;
    ELSE
        INSERT INTO job_status_changes (status, finished_second, delta)
        SELECT status, second, sum(delta)
        FROM (
            SELECT status,
                   CASE WHEN finished_at > now() - interval '10 minutes'
                        THEN date_trunc('second', finished_at) END AS second,
                   1 AS delta
            FROM new_jobs
            WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
            UNION ALL
            SELECT status,
                   CASE WHEN finished_at > now() - interval '10 minutes'
                        THEN date_trunc('second', finished_at) END,
                   -1
            FROM old_jobs
            WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
        ) AS change
        GROUP BY 1, 2
        HAVING sum(delta) <> 0;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION easyclaw_reset_job_status_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_status_changes;
    DELETE FROM job_status_totals;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER jobs_inserted_count
    AFTER INSERT ON jobs REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION easyclaw_count_finished_jobs();
CREATE OR REPLACE TRIGGER jobs_updated_count
    AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION easyclaw_count_finished_jobs();
CREATE OR REPLACE TRIGGER jobs_deleted_count
    AFTER DELETE ON jobs REFERENCING OLD TABLE AS deleted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION easyclaw_count_finished_jobs();
CREATE OR REPLACE TRIGGER jobs_truncated_count
    AFTER TRUNCATE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION easyclaw_reset_job_status_counts();

-- The jobs already in the table. The triggers above hold a lock on jobs that
-- writers wait for, so no finished job is missed or counted twice.
INSERT INTO job_status_changes (status, finished_second, delta)
SELECT status,
       CASE WHEN finished_at > now() - interval '10 minutes'
            THEN date_trunc('second', finished_at) END,
       count(*)
FROM jobs
WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
  AND NOT EXISTS (SELECT 1 FROM job_status_totals)
  AND NOT EXISTS (SELECT 1 FROM job_status_changes)
GROUP BY 1, 2;
