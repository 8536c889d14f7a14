-- Scheduling: concurrency keys, fair share between users, per-user limits,
-- fleet-wide rate limits. The rules themselves live in the claim queries
-- (sql/queries.sql); this adds what they read.

-- Submission order. Jobs of one concurrency key start in this order; it is
-- assigned by the database at insert (after the submitter took the key's
-- advisory lock), never by the API's clock or its uuid7. Existing rows keep
-- NULL: only keyed jobs are ordered by it, and none existed before.
CREATE SEQUENCE IF NOT EXISTS jobs_seq;
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS seq bigint;
ALTER TABLE jobs ALTER COLUMN seq SET DEFAULT nextval('jobs_seq');
ALTER SEQUENCE jobs_seq OWNED BY jobs.seq;

-- At most concurrency_limit jobs of one key run at once, in seq order
-- (CHAT: conversation:<id>, limit 1).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS concurrency_key text
    CHECK (char_length(concurrency_key) BETWEEN 1 AND 200);
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS concurrency_limit smallint
    CHECK (concurrency_limit BETWEEN 1 AND 1000);

-- The key rule: a key's RUNNING jobs, and its PENDING jobs in seq order.
CREATE INDEX IF NOT EXISTS jobs_concurrency_idx
    ON jobs (concurrency_key, status, seq)
    WHERE concurrency_key IS NOT NULL AND status IN ('PENDING', 'RUNNING');
-- Belt and braces for sequential keys: whatever happens to submission order,
-- the database refuses a second RUNNING job of a limit-1 key (the claim that
-- would start it fails as a whole and the worker claims again).
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_running_per_key_idx
    ON jobs (concurrency_key)
    WHERE status = 'RUNNING' AND concurrency_limit = 1;

-- Fair share: the claim visits users with ready jobs one by one (a loose
-- index scan) and takes each one's jobs in priority order.
CREATE INDEX IF NOT EXISTS jobs_user_pending_idx
    ON jobs (user_id, priority DESC, run_at, id) WHERE status = 'PENDING';
-- Per-user limits count a user's RUNNING jobs.
CREATE INDEX IF NOT EXISTS jobs_user_running_idx
    ON jobs (user_id) WHERE status = 'RUNNING';

-- Per-user limit: NULL follows EASYCLAW_USER_MAX_RUNNING, 0 is unlimited.
ALTER TABLE users ADD COLUMN IF NOT EXISTS max_running integer CHECK (max_running >= 0);
-- Bumped by every claim that starts jobs of a limited user. A claim locks the
-- user's row and compares this with the value its snapshot saw: equal means no
-- claim for the user committed since, so its count of RUNNING jobs is exact.
ALTER TABLE users ADD COLUMN IF NOT EXISTS claim_version bigint NOT NULL DEFAULT 0;

-- Fleet-wide token buckets (EASYCLAW_RATE_LIMITS). Refilled lazily by the
-- claim: tokens = least(burst, tokens + rate * seconds since updated_at). A job
-- is claimed only while each of its buckets holds at least one token, and takes
-- claim_cost from each: 1 for request buckets, 0 for buckets of model tokens,
-- which the job debits with what it used (and may take below zero).
CREATE TABLE IF NOT EXISTS rate_limits (
    name       text PRIMARY KEY,                -- type:CHAT, provider:openai, ...
    rate       double precision NOT NULL CHECK (rate > 0),   -- tokens per second
    burst      double precision NOT NULL CHECK (burst >= 1),
    claim_cost double precision NOT NULL DEFAULT 1 CHECK (claim_cost >= 0),
    tokens     double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Which buckets a job of each type takes a token from when it is claimed.
CREATE TABLE IF NOT EXISTS rate_limit_types (
    job_type text NOT NULL,
    bucket   text NOT NULL REFERENCES rate_limits (name) ON DELETE CASCADE,
    PRIMARY KEY (job_type, bucket)
);
