-- A run_at in the past now means "now" at submission (insert_job). Pending
-- jobs submitted before with a far-past run_at get their submission time, so
-- that the oldest-pending age in /stats, /metrics and CloudWatch is sane
-- (runAt 0002-01-01 had made it ~2,000 years) and they no longer jump the queue.
UPDATE jobs SET run_at = created_at WHERE status = 'PENDING' AND run_at < created_at;
