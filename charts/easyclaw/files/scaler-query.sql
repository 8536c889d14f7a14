-- KEDA's postgresql trigger runs this every pollingInterval: the number of jobs
-- that need a worker right now. RUNNING jobs count, so workers busy with long
-- jobs are not scaled away; PENDING jobs count only if a worker could start
-- them now, so blocked work does not scale the fleet out for nothing:
--   * a job waiting for its concurrency key (a conversation's next message
--     while the one before runs) is not counted;
--   * a user counts no more jobs than its limit leaves it (users.max_running,
--     else :user_max_running, the chart's worker.userMaxRunning; 0 is none);
--   * a rate-limited job type counts no more jobs than its token buckets
--     hold now, and none while one of them is empty.
-- Users are visited one by one (a loose index scan of jobs_user_pending_idx),
-- each counted up to :cap, and the walk stops once :cap jobs are counted:
-- above it (max replicas x target) the replica count no longer changes, so it
-- stays cheap however large the backlog or the table of finished jobs.
WITH RECURSIVE
bucket AS (
  SELECT m.job_type, b.claim_cost,
         least(b.burst, b.tokens + b.rate * extract(epoch FROM clock_timestamp() - b.updated_at)) AS tokens
  FROM rate_limit_types AS m JOIN rate_limits AS b ON b.name = m.bucket
),
limited AS (
  SELECT job_type,
         CASE WHEN min(tokens) < 1 THEN 0
              ELSE coalesce(floor(min(tokens / nullif(claim_cost, 0))), :cap) END AS tokens
  FROM bucket
  GROUP BY job_type
),
walk (user_id, counted) AS (
  SELECT ''::text, 0::bigint
  UNION ALL
  SELECT next.user_id, walk.counted + next.startable
  FROM walk
  CROSS JOIN LATERAL (
    SELECT first.user_id,
           least(
             CASE WHEN coalesce(u.max_running, :user_max_running) = 0 THEN :cap
                  ELSE greatest(0, coalesce(u.max_running, :user_max_running)
                                   - (SELECT count(*) FROM jobs AS r
                                      WHERE r.user_id = first.user_id AND r.status = 'RUNNING'))
             END,
             (SELECT count(*) FROM (
                SELECT FROM jobs AS j
                WHERE j.user_id = first.user_id AND j.status = 'PENDING' AND j.run_at <= now()
                  AND j.type NOT IN (SELECT job_type FROM limited)
                  AND (j.concurrency_key IS NULL
                       OR (SELECT count(*) FROM (SELECT FROM jobs AS k
                                                 WHERE k.concurrency_key = j.concurrency_key
                                                   AND k.status IN ('PENDING', 'RUNNING') AND k.seq < j.seq
                                                 LIMIT j.concurrency_limit) AS before)
                          < j.concurrency_limit)
                LIMIT :cap) AS ready)
           ) AS startable
    FROM (SELECT j.user_id FROM jobs AS j
          WHERE j.status = 'PENDING' AND j.run_at <= now() AND j.user_id > walk.user_id
          ORDER BY j.user_id, j.priority DESC, j.run_at, j.id
          LIMIT 1) AS first
    LEFT JOIN users AS u ON u.id = first.user_id
  ) AS next
  WHERE walk.counted < :cap
),
rate_limited AS (
  SELECT coalesce(sum(least(limited.tokens, (
           SELECT count(*) FROM (
             SELECT FROM jobs AS j
             WHERE j.type = limited.job_type AND j.status = 'PENDING' AND j.run_at <= now()
               AND (j.concurrency_key IS NULL
                    OR (SELECT count(*) FROM (SELECT FROM jobs AS k
                                              WHERE k.concurrency_key = j.concurrency_key
                                                AND k.status IN ('PENDING', 'RUNNING') AND k.seq < j.seq
                                              LIMIT j.concurrency_limit) AS before)
                       < j.concurrency_limit)
             LIMIT :cap) AS ready))), 0) AS startable
  FROM limited
)
SELECT
  least(:cap, (SELECT max(counted) FROM walk) + (SELECT startable FROM rate_limited))
  + (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'RUNNING' LIMIT :cap) AS running)
