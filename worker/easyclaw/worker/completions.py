"""Record attempt outcomes in as few transactions as possible.

Outcomes are queued as handlers finish; one flusher writes everything that
accumulated while its previous write was in flight (group commit). At low load
each outcome is written at once; under load hundreds share one statement.
Effects registered with ``JobContext.on_completion`` run in the same
transaction as the fenced status update, and only for accepted completions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from easyclaw.core import queue
from easyclaw.core.backoff import Backoff
from easyclaw.core.db import AsyncConn, AsyncPool, is_unavailable, pooled
from easyclaw.core.jobtypes import Effect, JobType
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.models import ClaimedJob, JobStatus, Outcome
from easyclaw.worker.execution import describe, failure_outcome
from easyclaw.worker.settings import WorkerProcessSettings

log = EventLogger("easyclaw.worker")


@dataclass(slots=True)
class FinishedAttempt:
    job: ClaimedJob
    job_type: JobType
    outcome: Outcome
    duration_seconds: float
    effects: list[Effect] = field(default_factory=list)
    write_was_interrupted: bool = False
    """An earlier write of this outcome failed in a way that may have committed."""


# (attempt, status the database accepted, or None if the lease was lost)
Recorded = list[tuple[FinishedAttempt, JobStatus | None]]


class CompletionRecorder:
    def __init__(
        self,
        pool: AsyncPool,
        *,
        worker_id: str,
        settings: WorkerProcessSettings,
        on_recorded: Callable[[Recorded], None],
        max_batch: int = 500,
    ) -> None:
        self._pool = pool
        self._worker_id = worker_id
        self._settings = settings
        self._on_recorded = on_recorded
        self._max_batch = max_batch
        self._queue: deque[FinishedAttempt] = deque()
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def submit(self, attempt: FinishedAttempt) -> None:
        self._queue.append(attempt)
        self._empty.clear()
        self._ready.set()

    async def wait_empty(self) -> None:
        """Until every submitted outcome has been written (or given up with the lease)."""
        await self._empty.wait()

    async def run(self) -> None:
        backoff = Backoff(base=0.05, cap=2.0)
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))
                ]
                try:
                    recorded = await self._record(batch)
                except Exception as error:
                    if not is_unavailable(error):
                        log.error("worker.record_failed", exc_info=True, error=str(error))
                    else:
                        log.warning("worker.db_unavailable", during="record", error=str(error))
                    # Keep the outcomes and try again: the lease fence makes a
                    # late or repeated write harmless.
                    for attempt in batch:
                        attempt.write_was_interrupted = True
                    self._queue.extendleft(reversed(batch))
                    await asyncio.sleep(backoff.next_delay())
                    continue
                backoff.reset()
                self._on_recorded(recorded)
            self._empty.set()

    async def _record(self, batch: Sequence[FinishedAttempt]) -> Recorded:
        async with pooled(self._pool) as conn:
            recorded = await self._record_batch(conn, batch)
            unsure = [a for a, status in recorded if status is None and a.write_was_interrupted]
            if not unsure:
                return recorded
            # Rejected now, but an interrupted earlier write may have committed:
            # then the outcome is ours after all, not a lost lease.
            earlier = await queue.attempts_already_finished(
                conn, worker_id=self._worker_id, outcomes=[a.outcome for a in unsure]
            )
            return [(a, status or earlier.get(a.job.id)) for a, status in recorded]

    async def _record_batch(self, conn: AsyncConn, batch: Sequence[FinishedAttempt]) -> Recorded:
        try:
            return await self._write(conn, batch)
        except Exception as error:
            if is_unavailable(error):
                raise
            if len(batch) == 1:
                return await self._record_alone(conn, batch[0], error)
            log.warning("worker.batch_rejected", jobs=len(batch), error=str(error))
        # One attempt (an effect that fails, an outcome the database refuses)
        # rolled the batch back: write each alone, so that only that attempt is
        # turned into a failure and the others are recorded as they are.
        recorded: Recorded = []
        for attempt in batch:
            try:
                recorded += await self._write(conn, [attempt])
            except Exception as error:
                if is_unavailable(error):
                    raise
                recorded += await self._record_alone(conn, attempt, error)
        return recorded

    async def _write(self, conn: AsyncConn, batch: Sequence[FinishedAttempt]) -> Recorded:
        """One fenced write of the batch; its effects in the same transaction."""
        if not any(attempt.effects for attempt in batch):
            accepted = await queue.finish_jobs(
                conn, worker_id=self._worker_id, outcomes=[a.outcome for a in batch]
            )
            return [(attempt, accepted.get(attempt.job.id)) for attempt in batch]
        async with conn.transaction():
            accepted = await queue.finish_jobs(
                conn, worker_id=self._worker_id, outcomes=[a.outcome for a in batch]
            )
            for attempt in batch:
                if accepted.get(attempt.job.id) is JobStatus.COMPLETED:
                    for effect in attempt.effects:
                        await effect(conn)
        return [(attempt, accepted.get(attempt.job.id)) for attempt in batch]

    async def _record_alone(
        self, conn: AsyncConn, attempt: FinishedAttempt, error: Exception
    ) -> Recorded:
        """Record an attempt whose write failed (``error``) as a failure instead.

        A failed effect is an ordinary failure of the attempt (retried if
        attempts remain); an outcome the database refuses ends the job FAILED
        with the reason. Should even that be refused, a bare FAILED is written;
        should that be refused too, the attempt is given up and its lease left
        to expire, so one bad outcome can never hold up the others.
        """
        fields: dict[str, Any] = {"job_id": str(attempt.job.id), "type": attempt.job.type}
        if attempt.effects:
            log.warning("job.effect_failed", **fields, error=str(error))
            outcome = failure_outcome(attempt.job, attempt.job_type, error, self._settings)
        else:
            log.warning("job.outcome_unstorable", **fields, error=str(error))
            outcome = self._failed(attempt, f"its outcome could not be stored: {describe(error)}")
        attempt.effects = []
        for fallback in (outcome, self._failed(attempt, "its outcome could not be stored")):
            attempt.outcome = fallback
            try:
                return await self._write(conn, [attempt])
            except Exception as again:
                if is_unavailable(again):
                    raise
                error = again
        log.error("job.outcome_dropped", **fields, error=str(error))
        return [(attempt, None)]

    @staticmethod
    def _failed(attempt: FinishedAttempt, reason: str) -> Outcome:
        return Outcome(
            job_id=attempt.job.id,
            attempt=attempt.job.attempt,
            status=JobStatus.FAILED,
            error=reason,
        )

    def pending_job_ids(self) -> list[UUID]:
        return [attempt.job.id for attempt in self._queue]
