"""PgQueuer, run the way its documentation shows: a factory that builds a
``PgQueuer`` on an asyncpg connection and registers entrypoints, served by
``pgqueuer.run(factory)``, which is what ``pgq run`` calls (the ``pgq`` command
itself fails at start with typer 0.29: its ``--log-level`` enum arrives as a str).

``python -m bench.peers.pgqueuer_peer BATCH`` is the worker; the DSN comes
from $PGDSN.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

import asyncpg
import orjson
import pgqueuer
from pgqueuer import Job, PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from bench.peers.base import Peer, python, wait_for_sessions
from bench.peers.starts import record_start

ENTRYPOINT = "noop"


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer.from_asyncpg_connection(connection)

    @pgq.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        if job.payload:
            record_start(orjson.loads(job.payload))

    try:
        yield pgq
    finally:
        await connection.close()


class PgQueuerPeer(Peer):
    name = "PgQueuer"
    key = "pgqueuer"

    def __init__(self, *args: Any, batch: int = 10, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch = batch
        self._conn: asyncpg.Connection | None = None

    def version(self) -> str:
        return version("pgqueuer") + f", asyncpg {version('asyncpg')}"

    def settings(self) -> str:
        return (
            f"`pgqueuer.run(create_pgqueuer, batch_size={self.batch})` "
            f"x {self.processes} (asyncpg driver, one async entrypoint without a concurrency "
            "limit, otherwise its defaults: NOTIFY wake-up, 30 s dequeue timeout, 30 s "
            "heartbeat timeout, buffered acknowledgements); schema from `Queries.install()`; "
            "enqueue with one `Queries.enqueue([...])` call"
        )

    async def _client(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await asyncpg.connect(self.url)
        return self._conn

    async def setup(self) -> None:
        await super().setup()
        await Queries(AsyncpgDriver(await self._client())).install()

    async def reset(self) -> None:
        conn = await self._client()
        await conn.execute("TRUNCATE pgqueuer, pgqueuer_log")
        await conn.execute("VACUUM ANALYZE pgqueuer")

    def worker_command(self) -> list[str]:
        return [python(), "-m", "bench.peers.pgqueuer_peer", str(self.batch)]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "PGDSN": self.url}

    async def wait_ready(self) -> None:
        # One connection per worker does everything, so its last statement is not
        # necessarily its LISTEN: wait for the connections, then for start-up to end.
        await wait_for_sessions(self.url, self.processes, "%")
        await asyncio.sleep(1.0)

    async def enqueue_batch(self, count: int) -> None:
        queries = Queries(AsyncpgDriver(await self._client()))
        await queries.enqueue([ENTRYPOINT] * count, [None] * count, [0] * count)

    async def drained(self, count: int) -> bool:
        conn = await self._client()
        # EXISTS, not count(*): the probe should cost the drain as little as EasyClaw's.
        return bool(await conn.fetchval("SELECT NOT EXISTS (SELECT FROM pgqueuer)"))

    async def enqueue_sample(self, sample: int) -> None:
        queries = Queries(AsyncpgDriver(await self._client()))
        payload = orjson.dumps({"t0": time.time(), "sample": sample})
        await queries.enqueue(ENTRYPOINT, payload)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


if __name__ == "__main__":
    asyncio.run(pgqueuer.run(create_pgqueuer, batch_size=int(sys.argv[1])))
