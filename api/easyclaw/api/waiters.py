"""Long-poll support: ``GET /jobs/{id}?wait=N`` without a database connection per waiter.

A waiting request holds no pooled connection and never queues for one. Per API
process there is one listener (``LISTEN easyclaw_job_events`` on its own
connection) and one reader: the listener marks the jobs it hears about as
*due*, and the reader re-reads every due job in batches (one query for up to
``batch_size`` ids) and answers the waiters whose job finished. A new waiter is
due at once (its first read), every waiter is due again at least every
``recheck_seconds``, and all are due after the listener (re)connects, so a
missed notification costs latency, never a wrong answer. Ten thousand waiters
cost the pool one connection for a few queries every few seconds.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from uuid import UUID

from easyclaw.api.settings import ApiProcessSettings
from easyclaw.core import queue
from easyclaw.core.db import AsyncPool, is_unavailable, pooled
from easyclaw.core.errors import DatabaseUnavailableError
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.models import Job
from easyclaw.core.notifications import JOB_EVENTS, Listener

log = EventLogger("easyclaw.api")

READ_BATCH_SIZE = 1000
RECHECK_SECONDS = 5.0


@dataclass(eq=False, kw_only=True)
class _Waiter:
    user_id: str
    answer: asyncio.Future[Job | None]
    """Settled with the finished job, None (no such job of this user), or an error."""
    latest: Job | None = None
    """The job as last read while it was unfinished."""
    read: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the first read answered or failed."""


class JobWaiters:
    """The long-poll waiters of one API process; ``run()`` serves them until cancelled."""

    def __init__(
        self,
        settings: ApiProcessSettings,
        pool: AsyncPool,
        *,
        batch_size: int = READ_BATCH_SIZE,
        recheck_seconds: float = RECHECK_SECONDS,
    ) -> None:
        self._pool = pool
        self._batch_size = batch_size
        self._recheck_seconds = recheck_seconds
        self._waiting: dict[str, set[_Waiter]] = {}
        # Job ids to read, oldest first (a dict keeps insertion order and dedups).
        self._due: dict[str, None] = {}
        # Jobs read while unfinished and unchanged since (no event, no reconnect):
        # a new waiter of one of them starts from that reading instead of a read.
        self._fresh: dict[str, Job] = {}
        self._has_due = asyncio.Event()
        self.batches_read = 0
        self.listener = Listener(
            settings,
            {JOB_EVENTS: self._on_job_events},
            application_name="easyclaw-api-listener",
            on_connected=self._all_due,
        )

    @property
    def count(self) -> int:
        """Requests waiting right now."""
        return sum(len(waiters) for waiters in self._waiting.values())

    async def run(self) -> None:
        """Listen, re-read and re-check until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.listener.run(), name="api-job-events-listener")
            tasks.create_task(self._read_due_jobs(), name="api-long-poll-reader")
            tasks.create_task(self._recheck_periodically(), name="api-long-poll-recheck")

    async def wait(self, job_id: UUID, *, user_id: str, seconds: float) -> Job | None:
        """The job once it is finished, or as it is after ``seconds``; None if
        the user has no such job. Raises DatabaseUnavailableError if even the first
        read fails."""
        key = str(job_id)
        waiter = _Waiter(user_id=user_id, answer=asyncio.get_running_loop().create_future())
        self._waiting.setdefault(key, set()).add(waiter)
        fresh = self._fresh.get(key) if self.listener.connected.is_set() else None
        if fresh is None:
            self._make_due(key)
        else:
            # Read after the listener connected, and no event since: had the job
            # changed, the notification would have made the key due.
            if fresh.user_id == waiter.user_id:
                waiter.latest = fresh
            else:
                waiter.answer.set_result(None)
            waiter.read.set()
        try:
            try:
                async with asyncio.timeout(seconds):
                    return await asyncio.shield(waiter.answer)
            except TimeoutError:
                pass
            if waiter.latest is None and not waiter.answer.done():
                # Not read even once yet (a very short wait, a slow database): the
                # first read decides between the job and "not found".
                await waiter.read.wait()
            if waiter.answer.done():
                return waiter.answer.result()
            return waiter.latest
        finally:
            waiters = self._waiting.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiting[key]
                    self._fresh.pop(key, None)
            if not waiter.answer.done():
                waiter.answer.cancel()
            elif not waiter.answer.cancelled():
                waiter.answer.exception()  # retrieved, even if the request went away

    def _make_due(self, key: str) -> None:
        self._fresh.pop(key, None)
        self._due[key] = None
        self._has_due.set()

    def _all_due(self) -> None:
        self._fresh.clear()
        for key in self._waiting:
            self._due[key] = None
        if self._due:
            self._has_due.set()

    def _on_job_events(self, payload: str) -> None:
        if not self._waiting:
            return
        for key in payload.split(","):
            if key in self._waiting:
                self._make_due(key)

    async def _recheck_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._recheck_seconds)
            self._all_due()

    async def _read_due_jobs(self) -> None:
        while True:
            await self._has_due.wait()
            self._has_due.clear()
            while self._due:
                keys = list(itertools.islice(self._due, self._batch_size))
                for key in keys:
                    del self._due[key]
                keys = [key for key in keys if key in self._waiting]
                if keys:
                    await self._read(keys)

    async def _read(self, keys: list[str]) -> None:
        listening = self.listener.connected.is_set()
        try:
            async with pooled(self._pool) as conn:
                ids = [UUID(key) for key in keys]
                await queue.watch_jobs(conn, ids)
                jobs = await queue.get_jobs(conn, ids)
        except Exception as error:
            if not is_unavailable(error):
                log.error("api.long_poll_read_failed", exc_info=True, error=str(error))
            reason = str(error) or type(error).__name__
            # Waiters that have a reading keep it (the re-check tries again); the
            # others cannot answer without one. Each gets its own exception object,
            # so that a thousand requests do not grow one shared traceback.
            for key in keys:
                for waiter in self._waiting.get(key, ()):
                    if waiter.latest is None and not waiter.answer.done():
                        waiter.answer.set_exception(
                            DatabaseUnavailableError(reason)
                            if is_unavailable(error)
                            else RuntimeError(f"long-poll read failed: {reason}")
                        )
                    waiter.read.set()
            return
        self.batches_read += 1
        found = {str(job.id): job for job in jobs}
        for key in keys:
            job = found.get(key)
            for waiter in self._waiting.get(key, ()):
                if waiter.answer.done():
                    pass
                elif job is None or job.user_id != waiter.user_id:
                    waiter.answer.set_result(None)
                elif job.status.is_terminal:
                    waiter.answer.set_result(job)
                else:
                    waiter.latest = job
                waiter.read.set()
            if (
                job is not None
                and not job.status.is_terminal
                and listening
                and key in self._waiting
                and key not in self._due
            ):
                self._fresh[key] = job
