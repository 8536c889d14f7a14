"""The original design, re-implemented faithfully as the baseline: each worker
claims one job per transaction, runs it, marks it done in a second
transaction, and when it finds nothing sleeps 5 s (no NOTIFY, no batching).

``python -m bench.peers.baseline`` runs one such worker on $BASELINE_DATABASE_URL.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.peers.base import Peer, python, wait_for_sessions
from bench.peers.starts import record_start

SCHEMA = """
CREATE TABLE jobs (
    id bigserial PRIMARY KEY,
    status text NOT NULL DEFAULT 'PENDING',
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
);
CREATE INDEX jobs_pending_idx ON jobs (created_at) WHERE status = 'PENDING';
"""
CLAIM_ONE = """
UPDATE jobs SET status = 'RUNNING', started_at = now()
WHERE id = (SELECT id FROM jobs WHERE status = 'PENDING' ORDER BY created_at
            LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, payload
"""
POLL_SECONDS = 5.0


def work_forever(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute(CLAIM_ONE).fetchone()
            if row is None:
                time.sleep(POLL_SECONDS)
                continue
            job_id, payload = row
            record_start(payload)  # the handler: a no-op
            conn.execute(
                "UPDATE jobs SET status = 'COMPLETED', finished_at = now() WHERE id = %s",
                (job_id,),
            )


class Baseline(Peer):
    name = "Baseline (original design)"
    key = "baseline"
    max_latency_samples = 20  # every sample waits for a 5 s poll

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def version(self) -> str:
        return "bench/peers/baseline.py"

    def settings(self) -> str:
        return (
            f"`python -m bench.peers.baseline` x {self.processes}: psycopg, autocommit; "
            "claim one job per statement (`FOR UPDATE SKIP LOCKED`), mark it done in a second "
            f"one, sleep {POLL_SECONDS:g} s when the queue is empty; enqueue with one "
            "`INSERT … SELECT generate_series`"
        )

    async def setup(self) -> None:
        await super().setup()
        conn = await self._client()
        await conn.execute(SCHEMA.encode())

    async def _client(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        return self._conn

    async def reset(self) -> None:
        conn = await self._client()
        await conn.execute("TRUNCATE jobs")
        await conn.execute("VACUUM ANALYZE jobs")

    def worker_command(self) -> list[str]:
        return [python(), "-m", "bench.peers.baseline"]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "BASELINE_DATABASE_URL": self.url}

    async def wait_ready(self) -> None:
        await wait_for_sessions(self.url, self.processes, "%FOR UPDATE SKIP LOCKED%")

    async def enqueue_batch(self, count: int) -> None:
        conn = await self._client()
        await conn.execute(
            "INSERT INTO jobs (payload) SELECT '{}'::jsonb FROM generate_series(1, %s)", (count,)
        )

    async def drained(self, count: int) -> bool:
        conn = await self._client()
        cursor = await conn.execute("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'")
        row = await cursor.fetchone()
        return bool(row and row[0] >= count)

    async def enqueue_sample(self, sample: int) -> None:
        conn = await self._client()
        payload = {"t0": time.time(), "sample": sample}
        await conn.execute("INSERT INTO jobs (payload) VALUES (%s)", (Jsonb(payload),))

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


if __name__ == "__main__":
    work_forever(os.environ["BASELINE_DATABASE_URL"])
