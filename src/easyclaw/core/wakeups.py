"""Waking idle workers after submissions have committed, one NOTIFY at a time.

A NOTIFY inside a submission's transaction (the jobs insert trigger's) makes
its commit take PostgreSQL's database-wide notify lock and hold it through the
WAL flush, so concurrent submissions cannot share a flush. A process that
submits a lot (the API) inserts with ``enqueue(..., wake_workers=False)`` and
calls ``soon()`` once the job is committed: ``run()`` then sends one NOTIFY,
and one more for whatever committed while that one was on its way, never two
at a time and at most one per ``min_interval_seconds`` (2 ms): under load a
NOTIFY per submission would double the statements of each, while an idle
worker pool is still woken at once. The wake-up is a latency optimisation: a
job whose wake-up is lost (the database went away in between) is claimed at a
worker's next claim or fallback poll, as with any lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib

from easyclaw.core import queue
from easyclaw.core.backoff import Backoff
from easyclaw.core.db import AsyncPool, pooled
from easyclaw.core.jsonlog import EventLogger

log = EventLogger("easyclaw.wakeups")


class WorkerWakeUps:
    def __init__(
        self,
        pool: AsyncPool,
        *,
        min_interval_seconds: float = 0.002,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._pool = pool
        self._due = asyncio.Event()
        self._min_interval = min_interval_seconds
        self._max_backoff = max_backoff_seconds
        self.sent = 0  # NOTIFYs sent so far

    def soon(self) -> None:
        """A job was committed: wake the workers (now, or right after the wake-up
        already on its way)."""
        self._due.set()

    async def run(self) -> None:
        """Send wake-ups until cancelled."""
        backoff = Backoff(base=0.1, cap=self._max_backoff)
        while True:
            await self._due.wait()
            self._due.clear()
            try:
                await self._send()
            except Exception as error:
                # Still due: try again after a pause, not in a tight loop.
                self._due.set()
                log.warning("wakeup.failed", error=str(error) or type(error).__name__)
                await asyncio.sleep(backoff.next_delay())
            else:
                backoff.reset()
                await asyncio.sleep(self._min_interval)

    async def flush(self) -> None:
        """At shutdown: send the wake-up that is still due, if the database answers."""
        if self._due.is_set():
            self._due.clear()
            with contextlib.suppress(Exception):
                await self._send()

    async def _send(self) -> None:
        async with pooled(self._pool) as conn:
            await queue.notify_jobs_ready(conn, reason="submitted")
        self.sent += 1
