-- KEDA's postgresql trigger runs this every pollingInterval: the number of jobs
-- that need a worker right now. Ready PENDING jobs and RUNNING jobs both count,
-- so workers busy with long jobs are not scaled away. Each part reads only its
-- partial index (jobs_pending_idx, jobs_running_idx) and stops at a cap above
-- which the answer no longer changes the replica count (max replicas × target),
-- so it stays cheap however large the backlog or the table of finished jobs.
SELECT
  (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'PENDING' AND run_at <= now() LIMIT :cap) AS ready)
  + (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'RUNNING' LIMIT :cap) AS running)
