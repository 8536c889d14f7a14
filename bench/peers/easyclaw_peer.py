"""EasyClaw itself: real ``easyclaw worker`` processes and a no-op job type."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version
from typing import Any

import psycopg

from bench.peers.base import Peer, python, wait_for_sessions
from bench.peers.starts import record_start
from easyclaw.core import queue
from easyclaw.core.jobtypes import JobContext, JobType
from easyclaw.core.migrations import migrate

USER = "bench"


async def run_noop(ctx: JobContext) -> None:
    record_start(ctx.payload)


NOOP = JobType(name="NOOP", handler=run_noop, description="does nothing (benchmarks)")


class EasyClaw(Peer):
    name = "EasyClaw"
    key = "easyclaw"

    def __init__(
        self, *args: Any, concurrency: int | None = 256, batch: int | None = 256, **kwargs: Any
    ):
        """``concurrency`` and ``batch`` None: the worker's own defaults."""
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency
        self.batch = batch
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def version(self) -> str:
        return version("easyclaw")

    def settings(self) -> str:
        tuned = "".join(f"`{name}={value}`, " for name, value in self._tuning().items())
        return (
            f"`easyclaw worker` x {self.processes}, {tuned}`EASYCLAW_LOG_LEVEL=INFO`, "
            "other settings default (NOTIFY wake-up, 30 s fallback poll, heartbeat and "
            "reaper every 10 s); enqueue with `easyclaw.core.queue.enqueue_many` (one statement)"
        )

    async def setup(self) -> None:
        await super().setup()
        await migrate(self.url)

    async def _client(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            await queue.ensure_user(self._conn, USER)
        return self._conn

    async def reset(self) -> None:
        conn = await self._client()
        await conn.execute("TRUNCATE jobs, workers CASCADE")
        await conn.execute("VACUUM ANALYZE jobs")
        await queue.ensure_user(conn, USER)

    def _tuning(self) -> dict[str, str]:
        tuning = {}
        if self.concurrency is not None:
            tuning["EASYCLAW_WORKER_CONCURRENCY"] = str(self.concurrency)
        if self.batch is not None:
            tuning["EASYCLAW_WORKER_CLAIM_BATCH_SIZE"] = str(self.batch)
        return tuning

    def worker_command(self) -> list[str]:
        return [python(), "-m", "easyclaw.cli.main", "worker"]

    def worker_env(self) -> dict[str, str]:
        env = super().worker_env()
        env.update(
            self._tuning(),
            DATABASE_URL=self.url,
            EASYCLAW_LOG_LEVEL="INFO",
            EASYCLAW_JOB_TYPE_MODULES="bench.peers.easyclaw_peer",
            EASYCLAW_WORKER_JOB_TYPES="NOOP",
        )
        return env

    async def wait_ready(self) -> None:
        conn = await self._client()
        deadline = time.monotonic() + 60
        while True:
            cursor = await conn.execute("SELECT count(*) FROM workers WHERE stopped_at IS NULL")
            row = await cursor.fetchone()
            if row and row[0] >= self.processes:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("EasyClaw workers did not start")
            await asyncio.sleep(0.05)
        await wait_for_sessions(self.url, self.processes, "LISTEN%")

    async def enqueue_batch(self, count: int) -> None:
        conn = await self._client()
        await queue.enqueue_many(conn, user_id=USER, type="NOOP", payloads=[{}] * count)

    async def drained(self, count: int) -> bool:
        conn = await self._client()
        # Whole batches are enqueued at once, so none unfinished means all done. A
        # count of the COMPLETED rows, polled every 10 ms, cost ~5 ms each time
        # at 20,000 rows: a third of a core taken from the drain it measures.
        cursor = await conn.execute(
            "SELECT NOT EXISTS (SELECT FROM jobs WHERE status IN ('PENDING', 'RUNNING'))"
        )
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def enqueue_sample(self, sample: int) -> None:
        conn = await self._client()
        await queue.enqueue(
            conn, user_id=USER, type="NOOP", payload={"t0": time.time(), "sample": sample}
        )

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
