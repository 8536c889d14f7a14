"""Procrastinate, run the way its documentation shows: an ``App`` on a
``PsycopgConnector`` with a task, served by ``procrastinate worker``.

The DSN comes from $PROCRASTINATE_DSN.
"""

from __future__ import annotations

import os
import time
from importlib.metadata import version
from typing import Any

import procrastinate
import psycopg

from bench.peers.base import Peer, bin_path, wait_for_sessions
from bench.peers.starts import record_start


async def noop(**payload: Any) -> None:
    record_start(payload)


def build_app(conninfo: str) -> procrastinate.App:
    """The app with its one task (the benchmark's own client builds one too)."""
    built = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))
    built.task(name="noop")(noop)
    return built


app = build_app(os.environ.get("PROCRASTINATE_DSN", ""))


class ProcrastinatePeer(Peer):
    name = "Procrastinate"
    key = "procrastinate"

    def __init__(self, *args: Any, concurrency: int = 16, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.concurrency = concurrency
        self._app: procrastinate.App | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    def version(self) -> str:
        return version("procrastinate")

    def settings(self) -> str:
        return (
            f"`procrastinate --app=bench.peers.procrastinate_peer.app worker "
            f"--concurrency={self.concurrency}` x {self.processes} (psycopg connector, one "
            "async task, otherwise its defaults: LISTEN/NOTIFY, 5 s fetch polling); schema "
            "from `procrastinate schema --apply`; enqueue with one `batch_defer_async` call"
        )

    async def _client(self) -> procrastinate.App:
        if self._app is None:
            self._app = build_app(self.url)
            await self._app.open_async()
        return self._app

    async def setup(self) -> None:
        await super().setup()
        client = await self._client()
        await client.schema_manager.apply_schema_async()

    async def _execute(self, sql: str) -> Any:
        if self._conn is None:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        cursor = await self._conn.execute(sql.encode())
        return await cursor.fetchone() if cursor.description else None

    async def reset(self) -> None:
        await self._execute("TRUNCATE procrastinate_jobs CASCADE")
        await self._execute("VACUUM ANALYZE procrastinate_jobs")

    def worker_command(self) -> list[str]:
        return [
            bin_path("procrastinate"),
            "--app=bench.peers.procrastinate_peer.app",
            "worker",
            f"--concurrency={self.concurrency}",
        ]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "PROCRASTINATE_DSN": self.url}

    async def wait_ready(self) -> None:
        await wait_for_sessions(self.url, self.processes, "LISTEN%")

    async def enqueue_batch(self, count: int) -> None:
        client = await self._client()
        await client.tasks["noop"].batch_defer_async(*[{} for _ in range(count)])

    async def drained(self, count: int) -> bool:
        row = await self._execute(
            "SELECT count(*) FILTER (WHERE status IN ('todo', 'doing')), count(*) "
            "FROM procrastinate_jobs"
        )
        return bool(row and row[0] == 0 and row[1] >= count)

    async def enqueue_sample(self, sample: int) -> None:
        client = await self._client()
        await client.tasks["noop"].defer_async(t0=time.time(), sample=sample)

    async def close(self) -> None:
        if self._app is not None:
            await self._app.close_async()
        if self._conn is not None:
            await self._conn.close()
