-- Submitters that wake the workers after their commit. The insert trigger's
-- NOTIFY makes every submission take PostgreSQL's database-wide notify lock at
-- commit and hold it through the commit's WAL flush, so concurrent POST /jobs
-- could not share a flush: the database committed at most one submission per
-- flush time. With each flush 1 ms later (commit_delay, as on networked
-- storage), two API processes took 1,600-1,790 req/s before this change and
-- 1,940-2,280 after (bench/post_jobs.py, same run; level on a local disk).
-- A submitter that sends the wake-up itself once the job is committed (the
-- API, one NOTIFY at a time per process however many jobs committed
-- meanwhile) sets
-- easyclaw.notify_after_commit for its transaction; every other insert (psql,
-- scripts, the operator, plug-ins) still wakes the workers here. The payload
-- says who woke them (workers ignore it): 'inserted' here; 'submitted',
-- 'released', 'reaped' or 'cancelled' from queries.sql.
CREATE OR REPLACE FUNCTION easyclaw_notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('easyclaw.notify_after_commit', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('easyclaw_jobs_ready', 'inserted');
    RETURN NULL;
END;
$$;
