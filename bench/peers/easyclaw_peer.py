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

    def __init__(self, *args: Any, concurrency: int = 256, batch: int = 256, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency
        self.batch = batch
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def version(self) -> str:
        return version("easyclaw")

    def settings(self) -> str:
        return (
            f"`easyclaw worker` x {self.processes}, "
            f"`EASYCLAW_WORKER_CONCURRENCY={self.concurrency}`, "
            f"`EASYCLAW_WORKER_CLAIM_BATCH_SIZE={self.batch}`, `EASYCLAW_LOG_LEVEL=INFO`, "
            "other settings default (NOTIFY wake-up, 5 s fallback poll, heartbeat and "
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

    def worker_command(self) -> list[str]:
        return [python(), "-m", "easyclaw.cli.main", "worker"]

    def worker_env(self) -> dict[str, str]:
        env = super().worker_env()
        env.update(
            DATABASE_URL=self.url,
            EASYCLAW_WORKER_CONCURRENCY=str(self.concurrency),
            EASYCLAW_WORKER_CLAIM_BATCH_SIZE=str(self.batch),
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
        cursor = await conn.execute("SELECT count(*) FROM jobs WHERE status = 'COMPLETED'")
        row = await cursor.fetchone()
        return bool(row and row[0] >= count)

    async def enqueue_sample(self, sample: int) -> None:
        conn = await self._client()
        await queue.enqueue(
            conn, user_id=USER, type="NOOP", payload={"t0": time.time(), "sample": sample}
        )

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
