-- Every query EasyClaw runs against its queue, by name.
-- Loaded by easyclaw.core.queries; parameters are bound by psycopg, never
-- formatted into the text. A job's lease is fenced by (worker_id, attempts):
-- attempts grows by one on every claim, so a worker that lost its lease can
-- never finish a later attempt of the same job.

-- name: ensure_user
-- Create a user on first use, with the free-tier credit as a FREE_TIER transaction.
WITH inserted AS (
    INSERT INTO users (id, credits_balance)
    VALUES (%(user_id)s, %(free_credits)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING id, credits_balance
), granted AS (
    INSERT INTO transactions (user_id, amount, type, description)
    SELECT id, credits_balance, 'FREE_TIER', 'free tier credit for a new user'
    FROM inserted
    WHERE credits_balance > 0
)
SELECT count(*) AS created FROM inserted;

-- name: insert_job
-- A run_at in the past means now: such a job would otherwise jump the queue
-- (claims order by run_at) and its waiting time (oldest_pending_age_seconds)
-- would count from that past instant, ~2,000 years for year 2.
-- A keyed job's submitter holds lock_concurrency_keys until it commits, so jobs
-- of one key take their seq in the order they become visible.
-- notify_after_commit 'on': the caller wakes the workers itself once its
-- transaction has committed, and the insert trigger does not (migration 0007).
WITH submitter AS (
    SELECT set_config('easyclaw.notify_after_commit', %(notify_after_commit)s::text, true)
)
INSERT INTO jobs (id, user_id, conversation_id, type, input_payload, priority,
                  max_attempts, timeout_seconds, run_at, idempotency_key,
                  concurrency_key, concurrency_limit)
SELECT %(id)s::uuid, %(user_id)s::text, %(conversation_id)s::uuid, %(type)s::text,
       %(payload)s::jsonb, %(priority)s::smallint, %(max_attempts)s::integer,
       %(timeout_seconds)s::double precision,
       greatest(coalesce(%(run_at)s::timestamptz, now()), now()), %(idempotency_key)s::text,
       %(concurrency_key)s::text, %(concurrency_limit)s::smallint
FROM submitter
ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *;

-- name: insert_jobs
-- Bulk enqueue without idempotency keys (benchmarks, batch submitters). Keyed
-- rows must come with lock_concurrency_keys held, in the order of their seq.
INSERT INTO jobs (id, user_id, type, input_payload, priority, max_attempts,
                  concurrency_key, concurrency_limit)
SELECT id, %(user_id)s, %(type)s, payload, %(priority)s, %(max_attempts)s,
       key, CASE WHEN key IS NOT NULL THEN %(concurrency_limit)s::smallint END
FROM unnest(%(ids)s::uuid[], %(payloads)s::jsonb[], %(keys)s::text[])
     WITH ORDINALITY AS batch(id, payload, key, position)
ORDER BY position;

-- name: lock_concurrency_keys
-- Serialises submissions of the same keys until the transaction ends, so a
-- later submission can never commit an earlier seq than one before it (the
-- claim's key rule relies on that). Sorted, so two submitters cannot deadlock.
SELECT key, pg_advisory_xact_lock(hashtextextended(key, 4999404026017374585))
FROM (SELECT DISTINCT key FROM unnest(%(keys)s::text[]) AS key
      WHERE key IS NOT NULL ORDER BY key) AS sorted;

-- name: get_job_by_idempotency_key
SELECT * FROM jobs WHERE user_id = %(user_id)s AND idempotency_key = %(idempotency_key)s;

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: get_job_any_user
SELECT * FROM jobs WHERE id = %(id)s;

-- name: get_jobs
-- Many jobs by id in one round trip (the API's long-poll waiters re-read in batches).
SELECT * FROM jobs WHERE id = ANY(%(ids)s::uuid[]);

-- name: watch_jobs
-- Ask for the job events of these jobs (claims and completions notify only
-- watched jobs). Its own statement, committed before the follower reads the
-- job: a completion that commits after this sees the flag (it waits for this
-- row lock, then re-reads the row), and one that committed before is seen by
-- the read.
UPDATE jobs SET watched = true
WHERE id = ANY(%(ids)s::uuid[]) AND NOT watched AND status IN ('PENDING', 'RUNNING');

-- name: list_jobs
-- A user's jobs, newest first; the cursor is the (created_at, id) of the last row seen.
SELECT * FROM jobs
WHERE user_id = %(user_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(after_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: claim_jobs
-- Take up to `limit` ready jobs, highest priority then oldest first, whoever
-- they belong to (EASYCLAW_FAIR_SHARE=false; claim_jobs_fair is the default).
-- SKIP LOCKED lets any number of workers claim at once without waiting on each
-- other. Rate limits as in claim_jobs_fair (5.), whose columns this returns.
--
-- The key rule (repeated in every claim, in next_claim_at and in the KEDA
-- scaler query): a job with a concurrency key is ready only if fewer than its
-- limit of the key's jobs before it (by seq) are unfinished, PENDING or
-- RUNNING. That bounds the key's RUNNING jobs by the limit: when the newest of
-- them started, fewer than `limit` jobs before it were unfinished, and every
-- older one running now was among them (a job is unfinished from its insert
-- until it finishes, never again after). It needs seq to follow commit order
-- within a key, which lock_concurrency_keys ensures. A retried or
-- reaped job keeps its seq, so it keeps holding back the jobs after it.
-- Unfinished jobs of a key before a given seq are one range of
-- jobs_concurrency_idx per status. (Counting the key's later RUNNING jobs too
-- would cover a job started out of order by hand, but the planner answered
-- that branch from jobs_user_running_idx, reading every running job for each
-- candidate: keyed drains fell from 9,200 to 3,200 jobs/s. The worker backs
-- off from the refused claims instead.)
--
-- started_at is clock_timestamp(), taken after the statement's snapshot: the
-- snapshot saw the key's previous job finished, so its finished_at (its
-- transaction's now()) is earlier. now() is taken before planning and could be
-- earlier than a finish that committed in between.
WITH buckets AS MATERIALIZED (
    -- rate limits: the token buckets these job types take from, refilled to now
    -- (as this claim's snapshot sees them; the debit re-reads the latest row)
    SELECT m.job_type, b.name, b.rate, b.claim_cost,
           least(b.burst, b.tokens + b.rate * extract(epoch FROM clock_timestamp() - b.updated_at))
               AS tokens
    FROM rate_limit_types AS m JOIN rate_limits AS b ON b.name = m.bucket
    WHERE m.job_type = ANY(%(types)s::text[])
), open AS MATERIALIZED (
    -- the job types whose every bucket holds a token
    SELECT t AS type
    FROM unnest(%(types)s::text[]) AS t
    WHERE NOT EXISTS (SELECT FROM buckets WHERE buckets.job_type = t AND buckets.tokens < 1)
), next AS (
    SELECT j.id, j.type, j.priority, j.run_at
    FROM jobs AS j
    WHERE j.status = 'PENDING' AND j.run_at <= now() AND j.type = ANY(ARRAY(SELECT type FROM open))
      -- key rule
      AND (j.concurrency_key IS NULL
           OR (SELECT count(*) FROM (SELECT FROM jobs AS k
                                     WHERE k.concurrency_key = j.concurrency_key
                                       AND k.status IN ('PENDING', 'RUNNING') AND k.seq < j.seq
                                     LIMIT j.concurrency_limit) AS before)
              < j.concurrency_limit)
    ORDER BY j.priority DESC, j.run_at, j.id
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), taking AS MATERIALIZED (
    -- rate limits: each picked job's buckets, numbered in claim order; the n-th
    -- job taking from a bucket needs n * claim_cost of its tokens
    SELECT next.id, b.name, b.claim_cost,
           row_number() OVER (PARTITION BY b.name
                              ORDER BY next.priority DESC, next.run_at, next.id)
               * b.claim_cost <= b.tokens AS affordable
    FROM next JOIN buckets AS b ON b.job_type = next.type
), spent AS (
    SELECT t.name, sum(t.claim_cost) AS amount
    FROM taking AS t
    WHERE t.claim_cost > 0
      AND NOT EXISTS (SELECT FROM taking AS other WHERE other.id = t.id AND NOT other.affordable)
    GROUP BY t.name
), debited AS (
    -- Take the tokens from each bucket's latest row (waiting for a concurrent
    -- claim that holds it). If that claim took them first and too few are left,
    -- take none: the jobs that needed them stay PENDING, no attempt spent.
    UPDATE rate_limits AS b
    SET tokens = least(b.burst, b.tokens + b.rate * extract(epoch FROM clock_timestamp()
                                                                      - b.updated_at))
                 - spent.amount,
        updated_at = clock_timestamp()
    FROM spent
    WHERE b.name = spent.name
      AND least(b.burst, b.tokens + b.rate * extract(epoch FROM clock_timestamp()
                                                              - b.updated_at)) >= spent.amount
    RETURNING b.name
), granted AS MATERIALIZED (
    SELECT next.id
    FROM next
    WHERE next.id NOT IN (SELECT t.id FROM taking AS t
                          WHERE NOT t.affordable
                             OR (t.claim_cost > 0 AND t.name NOT IN (SELECT name FROM debited)))
), claimed AS (
    UPDATE jobs AS j
    SET status = 'RUNNING',
        worker_id = %(worker_id)s,
        attempts = j.attempts + 1,
        locked_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        started_at = clock_timestamp(),  -- after the snapshot: see the key rule
        updated_at = now()
    -- by primary key: a join here may scan the whole table instead
    WHERE j.id = ANY(ARRAY(SELECT id FROM granted))
    RETURNING j.id, j.user_id, j.conversation_id, j.type, j.input_payload, j.priority,
              j.attempts, j.max_attempts, j.timeout_seconds, j.created_at, j.concurrency_key,
              j.watched
), notified AS (
    -- a separate CTE, so the notification is sent once per statement, not per
    -- row; only for watched jobs (see watch_jobs), none at all most of the time
    SELECT easyclaw_notify_job_events(ARRAY(SELECT id FROM claimed WHERE watched)) AS job_count
)
SELECT NULL::text AS ring_end,
       EXISTS (SELECT FROM next WHERE next.id NOT IN (SELECT id FROM granted)) AS more,
       claimed.id, claimed.user_id, claimed.conversation_id, claimed.type,
       claimed.input_payload, claimed.priority, claimed.attempts, claimed.max_attempts,
       claimed.timeout_seconds, claimed.created_at, claimed.concurrency_key,
       false AS user_limited
FROM claimed, notified;

-- name: claim_jobs_fair
-- Fair share: take up to `limit` ready jobs, shared round-robin between the
-- users that have some, each user's in priority then age order.
--
-- 1. The ring: the users with ready jobs of these types, in user_id order,
--    starting after %(cursor)s (the last user this worker's previous claim
--    visited) and wrapping around, at most `limit` of them. Each step is one
--    probe of jobs_user_pending_idx (a loose index scan), so 100,000 waiting
--    users cost a claim no more than 10.
-- 2. Room: a user with a limit (users.max_running, else %(user_max_running)s;
--    0 is none) may start max_running minus its RUNNING jobs. Counting needs a
--    fresh view: the claim locks the user's row (SKIP LOCKED: another claim for
--    that user is running, so skip the user this time) and compares
--    claim_version with what its snapshot saw; every claim that starts jobs of
--    a limited user bumps it, so equal means the snapshot's RUNNING count is
--    exact (finishes since only make it lower). Users without a limit touch
--    nothing.
-- 3. Shares: `limit` split evenly between the users with room, none given
--    more than its room; what a user cannot take goes to the others.
-- 4. Each user's share of their ready jobs (the key rule applies), locked
--    SKIP LOCKED, becomes RUNNING, as far as the rate limits allow (5.).
-- 5. Rate limits (both claims): only job types whose token buckets hold a
--    token are looked at; the picked jobs take their buckets' tokens in claim
--    order, and a bucket is debited only if its latest row still has them (an
--    UPDATE waits for a concurrent claim holding it, then re-checks). So in any
--    window of t seconds a bucket admits at most burst + rate * t starts.
-- One row per claimed job, or one row of NULLs if none; ring_end and more tell
-- the worker where to start next time and whether to claim again at once.
WITH RECURSIVE buckets AS MATERIALIZED (
    -- rate limits: the token buckets these job types take from, refilled to now
    -- (as this claim's snapshot sees them; the debit re-reads the latest row)
    SELECT m.job_type, b.name, b.rate, b.claim_cost,
           least(b.burst, b.tokens + b.rate * extract(epoch FROM clock_timestamp() - b.updated_at))
               AS tokens
    FROM rate_limit_types AS m JOIN rate_limits AS b ON b.name = m.bucket
    WHERE m.job_type = ANY(%(types)s::text[])
), open AS MATERIALIZED (
    -- the job types whose every bucket holds a token
    SELECT t AS type
    FROM unnest(%(types)s::text[]) AS t
    WHERE NOT EXISTS (SELECT FROM buckets WHERE buckets.job_type = t AND buckets.tokens < 1)
), after_cursor (user_id, n) AS (
    -- Each probe reads the first entry of jobs_user_pending_idx after a user (its
    -- ORDER BY is that index's, so no other index can answer it as cheaply).
    SELECT (SELECT j.user_id FROM jobs AS j
            WHERE j.status = 'PENDING' AND j.user_id > %(cursor)s
              AND j.run_at <= now() AND j.type = ANY(ARRAY(SELECT type FROM open))
            ORDER BY j.user_id, j.priority DESC, j.run_at, j.id
            LIMIT 1), 1
    UNION ALL
    SELECT (SELECT j.user_id FROM jobs AS j
            WHERE j.status = 'PENDING' AND j.user_id > visited.user_id
              AND j.run_at <= now() AND j.type = ANY(ARRAY(SELECT type FROM open))
            ORDER BY j.user_id, j.priority DESC, j.run_at, j.id
            LIMIT 1), visited.n + 1
    FROM after_cursor AS visited
    WHERE visited.user_id IS NOT NULL AND visited.n < %(limit)s
), before_cursor (user_id, n) AS (
    SELECT (SELECT j.user_id FROM jobs AS j
            WHERE j.status = 'PENDING' AND j.user_id <= %(cursor)s
              AND j.run_at <= now() AND j.type = ANY(ARRAY(SELECT type FROM open))
            ORDER BY j.user_id, j.priority DESC, j.run_at, j.id
            LIMIT 1), 1
    UNION ALL
    SELECT (SELECT j.user_id FROM jobs AS j
            WHERE j.status = 'PENDING' AND j.user_id > visited.user_id
              AND j.user_id <= %(cursor)s
              AND j.run_at <= now() AND j.type = ANY(ARRAY(SELECT type FROM open))
            ORDER BY j.user_id, j.priority DESC, j.run_at, j.id
            LIMIT 1), visited.n + 1
    FROM before_cursor AS visited
    WHERE visited.user_id IS NOT NULL
      AND visited.n < %(limit)s - (SELECT count(user_id) FROM after_cursor)
), ring AS MATERIALIZED (
    SELECT user_id, row_number() OVER (ORDER BY lap, n) AS position
    FROM (SELECT user_id, 0 AS lap, n FROM after_cursor WHERE user_id IS NOT NULL
          UNION ALL
          SELECT user_id, 1 AS lap, n FROM before_cursor WHERE user_id IS NOT NULL) AS visited
    ORDER BY lap, n
    LIMIT %(limit)s
), ring_users AS MATERIALIZED (
    SELECT ring.user_id, ring.position, u.claim_version,
           coalesce(u.max_running, %(user_max_running)s) AS max_running
    FROM ring JOIN users AS u ON u.id = ring.user_id
), locked_users AS MATERIALIZED (
    SELECT u.id, u.claim_version
    FROM users AS u
    WHERE u.id IN (SELECT user_id FROM ring_users WHERE max_running > 0)
    ORDER BY u.id
    FOR UPDATE OF u SKIP LOCKED
), room AS MATERIALIZED (
    SELECT r.user_id, r.position,
           CASE WHEN r.max_running = 0 THEN %(limit)s
                WHEN l.claim_version IS DISTINCT FROM r.claim_version THEN 0
                ELSE r.max_running
                     - (SELECT count(*) FROM (SELECT FROM jobs AS running
                                              WHERE running.user_id = r.user_id
                                                AND running.status = 'RUNNING'
                                              LIMIT r.max_running) AS counted)
           END AS room
    FROM ring_users AS r LEFT JOIN locked_users AS l ON l.id = r.user_id
), ranked AS MATERIALIZED (
    -- Water-filling `limit` slots over the users' rooms, smallest room first: a
    -- user whose room is within an even split of what the users before it left
    -- gets its room (these users are a prefix of this order), the others share
    -- the rest evenly, the first of them in ring order one more.
    SELECT user_id, position, room,
           room * (count(*) OVER () - row_number() OVER (ORDER BY room, position) + 1)
               <= %(limit)s - coalesce(sum(room) OVER (ORDER BY room, position
                                                      ROWS BETWEEN UNBOUNDED PRECEDING
                                                               AND 1 PRECEDING), 0)
               AS within_room
    FROM room
    WHERE room > 0
), split AS MATERIALIZED (
    SELECT user_id, position, room, within_room,
           (%(limit)s - coalesce(sum(room) FILTER (WHERE within_room) OVER (), 0))::bigint
               AS free,
           count(*) FILTER (WHERE NOT within_room) OVER () AS sharing,
           row_number() OVER (PARTITION BY within_room ORDER BY position) AS turn
    FROM ranked
), shares AS MATERIALIZED (
    SELECT user_id, position, room,
           CASE WHEN within_room THEN room
                ELSE least(room, free / sharing + CASE WHEN turn <= mod(free, sharing)
                                                       THEN 1 ELSE 0 END)
           END AS share
    FROM split
), next AS MATERIALIZED (
    SELECT picked.id, picked.type, picked.priority, picked.run_at, s.user_id, s.position
    FROM shares AS s
    CROSS JOIN LATERAL (
        SELECT j.id, j.type, j.priority, j.run_at
        FROM jobs AS j
        WHERE j.user_id = s.user_id AND j.status = 'PENDING' AND j.run_at <= now()
          AND j.type = ANY(ARRAY(SELECT type FROM open))
          -- key rule
          AND (j.concurrency_key IS NULL
               OR (SELECT count(*) FROM (SELECT FROM jobs AS k
                                         WHERE k.concurrency_key = j.concurrency_key
                                           AND k.status IN ('PENDING', 'RUNNING') AND k.seq < j.seq
                                         LIMIT j.concurrency_limit) AS before)
                  < j.concurrency_limit)
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT s.share
        FOR UPDATE OF j SKIP LOCKED
    ) AS picked
), taking AS MATERIALIZED (
    -- rate limits: each picked job's buckets, numbered in claim order, which is
    -- round-robin (each user's first job taking from the bucket, then each
    -- one's second, ...); the n-th job taking from a bucket needs n * claim_cost
    -- of its tokens
    SELECT id, name, claim_cost,
           row_number() OVER (PARTITION BY name ORDER BY turn, position) * claim_cost
               <= tokens AS affordable
    FROM (SELECT next.id, next.position, b.name, b.claim_cost, b.tokens,
                 row_number() OVER (PARTITION BY b.name, next.user_id
                                    ORDER BY next.priority DESC, next.run_at, next.id) AS turn
          FROM next JOIN buckets AS b ON b.job_type = next.type) AS bucketed
), spent AS (
    SELECT t.name, sum(t.claim_cost) AS amount
    FROM taking AS t
    WHERE t.claim_cost > 0
      AND NOT EXISTS (SELECT FROM taking AS other WHERE other.id = t.id AND NOT other.affordable)
    GROUP BY t.name
), debited AS (
    -- Take the tokens from each bucket's latest row (waiting for a concurrent
    -- claim that holds it). If that claim took them first and too few are left,
    -- take none: the jobs that needed them stay PENDING, no attempt spent.
    UPDATE rate_limits AS b
    SET tokens = least(b.burst, b.tokens + b.rate * extract(epoch FROM clock_timestamp()
                                                                      - b.updated_at))
                 - spent.amount,
        updated_at = clock_timestamp()
    FROM spent
    WHERE b.name = spent.name
      AND least(b.burst, b.tokens + b.rate * extract(epoch FROM clock_timestamp()
                                                              - b.updated_at)) >= spent.amount
    RETURNING b.name
), granted AS MATERIALIZED (
    SELECT next.id
    FROM next
    WHERE next.id NOT IN (SELECT t.id FROM taking AS t
                          WHERE NOT t.affordable
                             OR (t.claim_cost > 0 AND t.name NOT IN (SELECT name FROM debited)))
), claimed AS (
    UPDATE jobs AS j
    SET status = 'RUNNING',
        worker_id = %(worker_id)s,
        attempts = j.attempts + 1,
        locked_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
        started_at = clock_timestamp(),  -- after the snapshot: see the key rule
        updated_at = now()
    -- by primary key: a join here may scan the whole table instead
    WHERE j.id = ANY(ARRAY(SELECT id FROM granted))
    RETURNING j.id, j.user_id, j.conversation_id, j.type, j.input_payload, j.priority,
              j.attempts, j.max_attempts, j.timeout_seconds, j.created_at, j.concurrency_key,
              j.watched
), bumped AS (
    UPDATE users AS u
    SET claim_version = u.claim_version + 1
    FROM locked_users AS l
    WHERE u.id = l.id AND l.id IN (SELECT user_id FROM claimed)
), notified AS (
    -- a separate CTE, so the notification is sent once per statement, not per
    -- row; only for watched jobs (see watch_jobs), none at all most of the time
    SELECT easyclaw_notify_job_events(ARRAY(SELECT id FROM claimed WHERE watched)) AS job_count
), ring_info AS (
    -- More may be ready if the ring was cut at `limit` users, if a user got all
    -- of a share below its room (it may have more jobs than that), or if a rate
    -- limit held back jobs it picked (jobs of other types may be behind them).
    SELECT (SELECT user_id FROM ring ORDER BY position DESC LIMIT 1) AS ring_end,
           (SELECT count(*) FROM ring) >= %(limit)s
           OR EXISTS (SELECT FROM next WHERE next.id NOT IN (SELECT id FROM granted))
           OR EXISTS (SELECT FROM shares
                      WHERE shares.share < shares.room
                        AND shares.share <= (SELECT count(*) FROM claimed
                                             WHERE claimed.user_id = shares.user_id))
               AS more
)
SELECT ring_info.ring_end, ring_info.more, started.*
FROM ring_info
LEFT JOIN (SELECT claimed.id, claimed.user_id, claimed.conversation_id, claimed.type,
                  claimed.input_payload, claimed.priority, claimed.attempts,
                  claimed.max_attempts, claimed.timeout_seconds, claimed.created_at,
                  claimed.concurrency_key,
                  claimed.user_id IN (SELECT id FROM locked_users) AS user_limited
           FROM claimed, notified) AS started ON true;

-- name: next_claim_at
-- When an idle worker should claim again. now() if a job it could start is
-- ready (another claim holds its lock: look again shortly); otherwise when the
-- earliest scheduled job becomes due or an empty rate-limit bucket that a ready
-- job waits for refills, whichever is first; NULL if neither (sleep until
-- NOTIFY or the poll interval). Jobs waiting for their key, and with
-- %(user_limits)s jobs of users at their limit, are not "ready": the worker that
-- finishes the job in their way claims again at once, and a reaped or cancelled
-- one sends NOTIFY.
WITH buckets AS MATERIALIZED (
    SELECT m.job_type, b.name, b.rate,
           least(b.burst, b.tokens + b.rate * extract(epoch FROM clock_timestamp() - b.updated_at))
               AS tokens
    FROM rate_limit_types AS m JOIN rate_limits AS b ON b.name = m.bucket
    WHERE m.job_type = ANY(%(types)s::text[])
), open AS MATERIALIZED (
    SELECT t AS type
    FROM unnest(%(types)s::text[]) AS t
    WHERE NOT EXISTS (SELECT FROM buckets WHERE buckets.job_type = t AND buckets.tokens < 1)
)
SELECT CASE
    WHEN EXISTS (
        SELECT FROM jobs AS j
        LEFT JOIN users AS u
               ON %(user_limits)s AND u.id = j.user_id
              AND coalesce(u.max_running, %(user_max_running)s) > 0
        WHERE j.status = 'PENDING' AND j.run_at <= now()
          AND j.type = ANY(ARRAY(SELECT type FROM open))
          AND (u.id IS NULL
               OR (SELECT count(*) FROM (SELECT FROM jobs AS running
                                         WHERE running.user_id = j.user_id
                                           AND running.status = 'RUNNING'
                                         LIMIT coalesce(u.max_running, %(user_max_running)s))
                                   AS counted)
                  < coalesce(u.max_running, %(user_max_running)s))
          -- key rule
          AND (j.concurrency_key IS NULL
               OR (SELECT count(*) FROM (SELECT FROM jobs AS k
                                         WHERE k.concurrency_key = j.concurrency_key
                                           AND k.status IN ('PENDING', 'RUNNING') AND k.seq < j.seq
                                         LIMIT j.concurrency_limit) AS before)
                  < j.concurrency_limit))
    THEN now()
    ELSE least(
        (SELECT min(run_at) FROM jobs
         WHERE status = 'PENDING' AND run_at > now() AND type = ANY(%(types)s::text[])),
        -- when the first empty bucket that a ready job waits for holds a token again
        (SELECT clock_timestamp() + make_interval(secs => min((1 - b.tokens) / b.rate))
         FROM buckets AS b
         WHERE b.tokens < 1
           AND EXISTS (SELECT FROM jobs AS j
                       WHERE j.status = 'PENDING' AND j.run_at <= now()
                         AND j.type = b.job_type)))
END AS claim_at;

-- name: finish_jobs
-- Record the outcome of a batch of attempts, fenced by lease. A requested retry
-- (status PENDING) of a job whose cancel was requested ends it CANCELLED instead.
-- Rows whose lease this worker no longer holds are left alone and not returned.
-- The outcomes arrive as one JSON array: the client encodes it in one fast call,
-- where six typed arrays cost the worker a sixth of a no-op drain to build.
-- The JSON is decoded once (MATERIALIZED) and the rows are found by primary
-- key: planned as a join, a burst's stale statistics made the planner walk
-- every RUNNING job and decode the whole array again for each (O(n^2)).
WITH outcome AS MATERIALIZED (
    SELECT *
    FROM jsonb_to_recordset(%(outcomes)s::jsonb)
         AS o(id uuid, attempt integer, status text, result jsonb, error text, retry_delay float8)
), finished AS (
    UPDATE jobs AS j
    SET status = CASE WHEN o.status = 'PENDING' AND j.cancel_requested_at IS NOT NULL
                      THEN 'CANCELLED' ELSE o.status END,
        result_payload = o.result,
        error = o.error,
        run_at = CASE WHEN o.status = 'PENDING'
                      THEN now() + make_interval(secs => o.retry_delay) ELSE j.run_at END,
        worker_id = CASE WHEN o.status = 'PENDING' AND j.cancel_requested_at IS NULL
                         THEN NULL ELSE j.worker_id END,
        lease_expires_at = NULL,
        finished_at = CASE WHEN o.status = 'PENDING' AND j.cancel_requested_at IS NULL
                           THEN NULL ELSE now() END,
        updated_at = now()
    FROM outcome AS o
    WHERE j.id = ANY(ARRAY(SELECT id FROM outcome)) AND j.id = o.id
      AND j.attempts = o.attempt
      AND j.worker_id = %(worker_id)s
      AND j.status = 'RUNNING'
    RETURNING j.id, j.status, j.watched
), notified AS (
    -- a separate CTE, so the notification is sent once per statement, not per
    -- row; only for watched jobs (see watch_jobs)
    SELECT easyclaw_notify_job_events(ARRAY(SELECT id FROM finished WHERE watched)) AS job_count
)
SELECT finished.id, finished.status FROM finished, notified;

-- name: attempts_already_finished
-- After an ambiguous commit (the connection broke while committing a
-- finish_jobs), which of these attempts did that write record after all?
SELECT j.id, j.status
FROM jobs AS j
JOIN unnest(%(ids)s::uuid[], %(attempts)s::integer[]) AS a(id, attempt)
  ON j.id = a.id AND j.attempts = a.attempt
WHERE j.worker_id = %(worker_id)s AND j.status IN ('COMPLETED', 'FAILED', 'CANCELLED');

-- name: release_jobs
-- Graceful shutdown: hand unfinished jobs back without spending an attempt.
WITH released AS (
    UPDATE jobs
    SET status = CASE WHEN cancel_requested_at IS NULL THEN 'PENDING' ELSE 'CANCELLED' END,
        attempts = CASE WHEN cancel_requested_at IS NULL THEN attempts - 1 ELSE attempts END,
        worker_id = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE worker_id END,
        lease_expires_at = NULL,
        finished_at = CASE WHEN cancel_requested_at IS NULL THEN NULL ELSE now() END,
        updated_at = now()
    WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker_id)s AND status = 'RUNNING'
    RETURNING id, status
), notified AS (
    -- a separate CTE, so the notification is sent once per statement, not per row
    SELECT easyclaw_notify_job_events(ARRAY(SELECT id FROM released)) AS job_count
)
SELECT released.id, released.status FROM released, notified;

-- name: heartbeat
-- Keep this worker's row alive and extend the leases of the jobs it holds.
-- Jobs not returned were taken from it (lease expired and reaped); the flag
-- tells it which ones a user asked to cancel.
WITH worker AS (
    INSERT INTO workers (id, name, concurrency, running_jobs)
    VALUES (%(worker_id)s, %(worker_name)s, %(concurrency)s, cardinality(%(job_ids)s::uuid[]))
    ON CONFLICT (id) DO UPDATE
    SET last_seen_at = now(), running_jobs = EXCLUDED.running_jobs, stopped_at = NULL
), extended AS (
    UPDATE jobs
    SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
    WHERE id = ANY(%(job_ids)s::uuid[]) AND worker_id = %(worker_id)s AND status = 'RUNNING'
    RETURNING id, cancel_requested_at IS NOT NULL AS cancel_requested
)
SELECT id, cancel_requested FROM extended;

-- name: worker_stopped
UPDATE workers SET stopped_at = now(), running_jobs = 0, last_seen_at = now()
WHERE id = %(worker_id)s;

-- name: reap_expired_leases
-- Jobs whose worker stopped heartbeating: back to PENDING, or FAILED once
-- they have used every attempt, or CANCELLED if a cancel was requested.
WITH expired AS (
    SELECT id, worker_id
    FROM jobs
    WHERE status = 'RUNNING' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), reaped AS (
    UPDATE jobs AS j
    SET status = CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'CANCELLED'
                      WHEN j.attempts >= j.max_attempts THEN 'FAILED'
                      ELSE 'PENDING' END,
        error = CASE WHEN j.cancel_requested_at IS NOT NULL THEN j.error
                     ELSE format('lease expired: worker %%s stopped heartbeating during attempt %%s of %%s',
                                 j.worker_id, j.attempts, j.max_attempts) END,
        worker_id = CASE WHEN j.cancel_requested_at IS NULL AND j.attempts < j.max_attempts
                         THEN NULL ELSE j.worker_id END,
        lease_expires_at = NULL,
        finished_at = CASE WHEN j.cancel_requested_at IS NULL AND j.attempts < j.max_attempts
                           THEN NULL ELSE now() END,
        updated_at = now()
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.status, j.attempts, j.max_attempts, expired.worker_id AS lost_worker_id
), notified AS (
    -- a separate CTE, so the notification is sent once per statement, not per row
    SELECT easyclaw_notify_job_events(ARRAY(SELECT id FROM reaped)) AS job_count
)
SELECT reaped.* FROM reaped, notified;

-- name: notify_jobs_ready
-- The payload says why (workers ignore it): released, reaped, submitted
-- (cancel_job's: cancelled; the insert trigger's: inserted). Sent in a
-- transaction of its own, which need not wait for its WAL flush: it carries no
-- data, and a NOTIFY holds the database-wide notify lock until its commit ends.
SELECT pg_notify('easyclaw_jobs_ready', %(reason)s::text),
       set_config('synchronous_commit', 'off', true);

-- name: lock_rate_limit_configuration
-- Workers starting together write the rate limits one after another.
SELECT pg_advisory_xact_lock(4999404026017374586);

-- name: drop_other_rate_limits
-- The configuration is the fleet's: buckets it no longer names go (with their
-- job types, by cascade).
DELETE FROM rate_limits WHERE NOT name = ANY(%(names)s::text[]);

-- name: upsert_rate_limits
-- A new bucket starts full; a changed one keeps its tokens, up to its new burst.
INSERT INTO rate_limits (name, rate, burst, claim_cost, tokens)
SELECT name, rate, burst, claim_cost, burst
FROM unnest(%(names)s::text[], %(rates)s::float8[], %(bursts)s::float8[], %(costs)s::float8[])
     AS configured(name, rate, burst, claim_cost)
ON CONFLICT (name) DO UPDATE
SET rate = EXCLUDED.rate,
    burst = EXCLUDED.burst,
    claim_cost = EXCLUDED.claim_cost,
    tokens = least(rate_limits.tokens, EXCLUDED.burst);

-- name: clear_rate_limit_types
DELETE FROM rate_limit_types WHERE job_type = ANY(%(types)s::text[]);

-- name: insert_rate_limit_types
-- Which buckets each job type takes from.
INSERT INTO rate_limit_types (job_type, bucket)
SELECT job_type, bucket
FROM unnest(%(job_types)s::text[], %(buckets)s::text[]) AS pairs(job_type, bucket)
ON CONFLICT DO NOTHING;

-- name: debit_rate_limit
-- A job used `amount` of a bucket (a model's tokens, after the call): take them,
-- possibly below zero, which holds further starts until the bucket refills.
UPDATE rate_limits
SET tokens = least(burst, tokens + rate * extract(epoch FROM clock_timestamp() - updated_at))
             - %(amount)s,
    updated_at = clock_timestamp()
WHERE name = %(name)s;

-- name: cancel_job
-- PENDING ends at once; RUNNING is flagged and its worker is told to stop.
-- A cancelled PENDING job with a key may have held back the next job of its
-- key: idle workers are woken to claim it.
WITH cancelled AS (
    UPDATE jobs
    SET status = CASE WHEN status = 'PENDING' THEN 'CANCELLED' ELSE status END,
        finished_at = CASE WHEN status = 'PENDING' THEN now() ELSE finished_at END,
        cancel_requested_at = coalesce(cancel_requested_at, now()),
        updated_at = now()
    WHERE id = %(id)s AND user_id = %(user_id)s AND status IN ('PENDING', 'RUNNING')
    RETURNING *
)
SELECT cancelled.*,
       CASE WHEN cancelled.status = 'RUNNING'
            THEN pg_notify('easyclaw_cancel', cancelled.id::text) END AS told_worker,
       CASE WHEN cancelled.status = 'CANCELLED' AND cancelled.concurrency_key IS NOT NULL
            THEN pg_notify('easyclaw_jobs_ready', 'cancelled') END AS woke_workers,
       easyclaw_notify_job_events(ARRAY[cancelled.id]) AS notified
FROM cancelled;

-- name: delete_finished_jobs
-- Retention: one small batch of old finished jobs; the caller repeats until none are left.
WITH old AS (
    SELECT id
    FROM jobs
    WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED')
      AND finished_at < now() - make_interval(secs => %(older_than_seconds)s)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs AS j USING old WHERE j.id = old.id;

-- name: queue_stats
-- The numbers the autoscaler, `easyclaw stats` and the metrics mirror report,
-- at the same cost whatever the table holds. PENDING and RUNNING are counted
-- from their partial indexes (only unfinished jobs are in them); finished
-- totals and recent counts are sums over job_status_totals and the short
-- job_status_changes log (migration 0005). "Recent" is to the second: a job
-- that finished in the second the window starts in is counted.
WITH changes AS (
    SELECT status,
           sum(delta) AS delta,
           sum(delta) FILTER (
               WHERE finished_second >= date_trunc('second', now() - interval '5 minutes')
           ) AS last_5_minutes,
           sum(delta) FILTER (
               WHERE finished_second >= date_trunc('second', now() - interval '1 minute')
           ) AS last_minute
    FROM job_status_changes
    GROUP BY status
), finished AS (
    SELECT s.status,
           (coalesce(t.total, 0) + coalesce(c.delta, 0))::bigint AS total,
           coalesce(c.last_5_minutes, 0)::bigint AS last_5_minutes,
           coalesce(c.last_minute, 0)::bigint AS last_minute
    FROM (VALUES ('COMPLETED'), ('FAILED'), ('CANCELLED')) AS s (status)
    LEFT JOIN job_status_totals AS t ON t.status = s.status
    LEFT JOIN changes AS c ON c.status = s.status
), unfinished AS (
    -- one pass over the pending index for all three of its numbers
    SELECT count(*) AS pending,
           count(*) FILTER (WHERE run_at <= now()) AS ready,
           coalesce(extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now())),
                    0)::float8 AS oldest_pending_age_seconds
    FROM jobs
    WHERE status = 'PENDING'
)
SELECT
    (SELECT pending FROM unfinished) AS pending,
    (SELECT ready FROM unfinished) AS ready,
    (SELECT count(*) FROM jobs WHERE status = 'RUNNING') AS running,
    (SELECT total FROM finished WHERE status = 'COMPLETED') AS completed,
    (SELECT total FROM finished WHERE status = 'FAILED') AS failed,
    (SELECT total FROM finished WHERE status = 'CANCELLED') AS cancelled,
    (SELECT last_5_minutes FROM finished WHERE status = 'FAILED') AS recent_failures,
    (SELECT last_minute FROM finished WHERE status = 'COMPLETED') AS completed_last_minute,
    (SELECT oldest_pending_age_seconds FROM unfinished) AS oldest_pending_age_seconds,
    (SELECT count(*) FROM workers
     WHERE stopped_at IS NULL
       AND last_seen_at > now() - make_interval(secs => %(worker_alive_seconds)s)) AS live_workers;

-- name: fold_job_status_changes
-- Keep the job_status_changes log short (migration 0005): changes older than
-- any "recent" window move into job_status_totals, and recent seconds that have
-- several rows become one. Rows of transactions still in flight are not visible
-- here and wait for the next fold, so nothing is lost or counted twice. One
-- session folds at a time; the others skip ("EasyClaw" + 2 as the lock key).
WITH fold_lock AS (
    SELECT pg_try_advisory_xact_lock(4999404026017374585) AS acquired
), moved AS (
    DELETE FROM job_status_changes AS c
    WHERE (SELECT acquired FROM fold_lock)
      AND (c.finished_second IS NULL
           OR c.finished_second < now() - interval '6 minutes'
           OR (c.status, c.finished_second) IN (
               SELECT status, finished_second
               FROM job_status_changes
               WHERE finished_second >= now() - interval '6 minutes'
               GROUP BY status, finished_second
               HAVING count(*) > 1))
    RETURNING c.status, c.finished_second, c.delta
), totalled AS (
    INSERT INTO job_status_totals AS t (status, total)
    SELECT status, sum(delta)
    FROM moved
    WHERE finished_second IS NULL OR finished_second < now() - interval '6 minutes'
    GROUP BY status
    ON CONFLICT (status) DO UPDATE SET total = t.total + EXCLUDED.total
), compacted AS (
    INSERT INTO job_status_changes (status, finished_second, delta)
    SELECT status, finished_second, sum(delta)
    FROM moved
    WHERE finished_second >= now() - interval '6 minutes'
    GROUP BY status, finished_second
    HAVING sum(delta) <> 0
)
SELECT count(*) AS folded FROM moved;

-- name: readiness_write_probe
-- Proof that the database takes writes: not read-only, not a standby, room to
-- extend a table on disk. The caller rolls the transaction back (and the
-- table goes with it); run unprepared, as it is DDL.
CREATE TEMP TABLE easyclaw_readiness_probe ON COMMIT DROP AS SELECT 1 AS written;

-- name: metrics_mirror_try_lock
-- Exactly one metrics mirror publishes: the one whose session holds this lock
-- ("EasyClaw" + 1 as a key, next to the migrations' lock). PostgreSQL releases
-- it when that session ends, so a standby takes over within one interval.
SELECT pg_try_advisory_lock(4999404026017374584) AS acquired;

-- name: get_user_balance
SELECT credits_balance FROM users WHERE id = %(user_id)s;

-- name: charge_usage
-- A job's USAGE transaction and the balance it lowers, together. The unique
-- index transactions_usage_once_idx makes a second charge of the same job a
-- no-op (nothing inserted, so the balance is not touched either).
WITH charged AS (
    INSERT INTO transactions (user_id, amount, type, description, meta, job_id)
    VALUES (%(user_id)s, -%(cost)s::numeric, 'USAGE', %(description)s, %(meta)s, %(job_id)s)
    ON CONFLICT (job_id) WHERE type = 'USAGE' DO NOTHING
    RETURNING user_id, amount
)
UPDATE users
SET credits_balance = users.credits_balance + charged.amount, updated_at = now()
FROM charged
WHERE users.id = charged.user_id
RETURNING users.credits_balance;

-- name: get_user_conversation
SELECT id FROM conversations WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: recent_messages
-- The last `limit` messages of a conversation, oldest first.
SELECT role, content
FROM (
    SELECT role, content, created_at, id
    FROM messages
    WHERE conversation_id = %(conversation_id)s
    ORDER BY created_at DESC, id DESC
    LIMIT %(limit)s
) AS recent
ORDER BY created_at, id;

-- name: create_conversation
INSERT INTO conversations (id, user_id, title)
VALUES (%(id)s, %(user_id)s, %(title)s)
ON CONFLICT (id) DO NOTHING;

-- name: attach_job_to_conversation
UPDATE jobs SET conversation_id = %(conversation_id)s
WHERE id = %(job_id)s AND conversation_id IS NULL;

-- name: append_exchange
-- A user message and the reply to it. The reply is stamped one microsecond
-- later so that it sorts after the question however fast the insert runs.
WITH stamp AS (SELECT clock_timestamp() AS at)
INSERT INTO messages (conversation_id, role, content, tokens_usage, job_id, created_at)
SELECT %(conversation_id)s, 'user', %(question)s, NULL, %(job_id)s, stamp.at FROM stamp
UNION ALL
SELECT %(conversation_id)s, 'assistant', %(reply)s, %(tokens_usage)s, %(job_id)s,
       stamp.at + interval '1 microsecond'
FROM stamp;

-- name: touch_conversation
UPDATE conversations SET updated_at = now() WHERE id = %(id)s;

-- name: latest_state_snapshot
-- The newest snapshot of a user's state (served by UNIQUE (user_id, version)).
SELECT version, s3_key, size_bytes, sha256
FROM state_snapshots
WHERE user_id = %(user_id)s
ORDER BY version DESC
LIMIT 1;

-- name: insert_state_snapshot
-- Runs in the job's completion transaction. No row back means another job of
-- the same user already committed this version: the caller raises a conflict.
INSERT INTO state_snapshots (user_id, job_id, s3_key, version, base_version, size_bytes, sha256)
VALUES (%(user_id)s, %(job_id)s, %(key)s, %(base_version)s + 1, %(base_version)s,
        %(size_bytes)s, %(sha256)s)
ON CONFLICT DO NOTHING
RETURNING version;
