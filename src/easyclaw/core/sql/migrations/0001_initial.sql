-- EasyClaw initial schema.
-- Statements are idempotent (IF NOT EXISTS / OR REPLACE) so that the
-- generated schema.sql can be fed to psql on a database that already has it.
-- Status and type columns are text with CHECK constraints rather than enums:
-- adding a value later is a plain ALTER, and psql users read them as text.

CREATE TABLE IF NOT EXISTS users (
    id              text PRIMARY KEY,                -- external auth subject (JWT sub)
    email           text,
    credits_balance numeric(16, 6) NOT NULL DEFAULT 0,
    meta            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS conversations (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text,
    state      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS conversations_user_idx ON conversations (user_id, updated_at DESC);

CREATE TABLE IF NOT EXISTS messages (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text NOT NULL,
    tokens_usage    jsonb,
    job_id          uuid,                           -- the job that wrote it, if any
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS messages_conversation_idx
    ON messages (conversation_id, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS jobs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             text NOT NULL REFERENCES users (id),
    conversation_id     uuid REFERENCES conversations (id) ON DELETE SET NULL,
    status              text NOT NULL DEFAULT 'PENDING'
                        CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    type                text NOT NULL CHECK (type ~ '^[A-Z][A-Z0-9_]{0,63}$'),
    input_payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    result_payload      jsonb,
    error               text,
    priority            smallint NOT NULL DEFAULT 0,
    attempts            integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts        integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout_seconds     double precision CHECK (timeout_seconds > 0),
    run_at              timestamptz NOT NULL DEFAULT now(),   -- not before
    idempotency_key     text,
    worker_id           text,                                  -- holder of the lease
    locked_at           timestamptz,                           -- when the lease was taken
    lease_expires_at    timestamptz,
    cancel_requested_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    CONSTRAINT jobs_lease_held_while_running
        CHECK ((status = 'RUNNING') = (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL)),
    CONSTRAINT jobs_finished_at_when_terminal
        CHECK ((status IN ('COMPLETED', 'FAILED', 'CANCELLED')) = (finished_at IS NOT NULL))
);

-- Claiming: only PENDING rows are in this index, in claim order, so it stays
-- small however many finished rows the table holds.
CREATE INDEX IF NOT EXISTS jobs_pending_idx
    ON jobs (priority DESC, run_at, id) WHERE status = 'PENDING';
-- Lease reaping and the autoscaler's RUNNING count.
CREATE INDEX IF NOT EXISTS jobs_running_idx
    ON jobs (lease_expires_at) WHERE status = 'RUNNING';
-- Retention, recent failures/completions and per-status totals.
CREATE INDEX IF NOT EXISTS jobs_finished_idx
    ON jobs (status, finished_at) WHERE status IN ('COMPLETED', 'FAILED', 'CANCELLED');
-- GET /jobs: a user's jobs, newest first, with keyset pagination.
CREATE INDEX IF NOT EXISTS jobs_user_created_idx
    ON jobs (user_id, created_at DESC, id DESC);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_idx
    ON jobs (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_conversation_idx
    ON jobs (conversation_id) WHERE conversation_id IS NOT NULL;

-- The queue table churns: vacuum it early so claim scans meet few dead tuples.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.05
);

CREATE TABLE IF NOT EXISTS state_snapshots (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    job_id     uuid REFERENCES jobs (id) ON DELETE SET NULL,
    s3_key     text NOT NULL,
    version    integer NOT NULL CHECK (version >= 1),
    size_bytes bigint,
    sha256     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT state_snapshots_user_version_key UNIQUE (user_id, version)
);

CREATE TABLE IF NOT EXISTS transactions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount      numeric(16, 6) NOT NULL,
    type        text NOT NULL CHECK (type IN ('PURCHASE', 'USAGE', 'FREE_TIER', 'REFUND')),
    description text,
    meta        jsonb NOT NULL DEFAULT '{}'::jsonb,
    job_id      uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS transactions_user_idx ON transactions (user_id, created_at DESC);
-- A job is charged at most once, whatever happens to its worker.
CREATE UNIQUE INDEX IF NOT EXISTS transactions_usage_once_idx
    ON transactions (job_id) WHERE type = 'USAGE';

-- Live workers, by heartbeat: for `easyclaw stats` and the metrics mirror.
CREATE TABLE IF NOT EXISTS workers (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    concurrency  integer NOT NULL,
    running_jobs integer NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz
);
CREATE INDEX IF NOT EXISTS workers_last_seen_idx ON workers (last_seen_at);

-- Wake idle workers when jobs are inserted by any client, psql included.
CREATE OR REPLACE FUNCTION easyclaw_notify_jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('easyclaw_jobs_ready', '');
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER jobs_inserted_notify
    AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION easyclaw_notify_jobs_inserted();

-- Tell listeners (long-polls, the operator) which jobs changed state.
-- Payloads stay under PostgreSQL's 8000-byte limit by sending ids in chunks.
CREATE OR REPLACE FUNCTION easyclaw_notify_job_events(job_ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    total integer := coalesce(array_length(job_ids, 1), 0);
    chunk_start integer;
BEGIN
    FOR chunk_start IN 1 .. total BY 150 LOOP
        PERFORM pg_notify('easyclaw_job_events',
                          array_to_string(job_ids[chunk_start:chunk_start + 149], ','));
    END LOOP;
    RETURN total;
END;
$$;

CREATE INDEX IF NOT EXISTS state_snapshots_job_idx ON state_snapshots (job_id) WHERE job_id IS NOT NULL;
