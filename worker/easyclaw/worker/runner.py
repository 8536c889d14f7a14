"""The worker process's main loop.

One asyncio loop per process runs:

* the claim loop: claims as many jobs as there are free slots, in one
  statement, whenever it is woken by NOTIFY (or the poll interval passes);
* one task per running attempt;
* the completion recorder (batched, fenced writes of outcomes);
* a heartbeat that extends the leases of held jobs and learns of cancels;
* maintenance: reaping expired leases of dead workers, and retention;
* a listener for ``easyclaw_jobs_ready`` and ``easyclaw_cancel``.

Shutdown (SIGTERM): stop claiming, give running attempts the grace period,
cancel what is left and hand those jobs back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from uuid import UUID

import psycopg

from easyclaw.agents.state import state_store_from_settings
from easyclaw.core import queue
from easyclaw.core.backoff import Backoff
from easyclaw.core.db import AsyncConn, AsyncPool, is_unavailable, pooled
from easyclaw.core.jobtypes import JobContext, JobType, JobTypeRegistry, ProcessResources
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.models import ClaimedJob, JobStatus, Outcome
from easyclaw.core.notifications import CANCEL, JOBS_READY, Listener
from easyclaw.core.scheduling import buckets_of
from easyclaw.worker import metrics
from easyclaw.worker.completions import CompletionRecorder, FinishedAttempt, Recorded
from easyclaw.worker.execution import run_attempt
from easyclaw.worker.settings import WorkerProcessSettings

log = EventLogger("easyclaw.worker")

READY_BUT_LOCKED_RECHECK_SECONDS = 0.05
# Fair-share claims that started nothing but said more may be ready (the ring
# held only users at their limit or waiting for keys) before the idle rule decides.
MAX_EMPTY_CLAIM_ROUNDS = 8
# worker.progress field for each status an outcome was recorded with.
_PROGRESS_KEYS = {
    JobStatus.COMPLETED: "completed",
    JobStatus.PENDING: "retried",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}


class StopReason(Enum):
    USER_CANCEL = "user cancel"
    LEASE_LOST = "lease lost"
    SHUTDOWN = "shutdown"


@dataclass(slots=True)
class RunningAttempt:
    job: ClaimedJob
    job_type: JobType
    task: asyncio.Task[None]
    started: float
    stop_reason: StopReason | None = None


class Worker:
    def __init__(
        self,
        settings: WorkerProcessSettings,
        registry: JobTypeRegistry,
        pool: AsyncPool,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.pool = pool
        # The name says which pod; the suffix makes each process's leases its own,
        # so a restarted container never mistakes its predecessor's jobs for its own.
        self.worker_id = worker_id or f"{settings.worker_name}.{secrets.token_hex(3)}"
        self.types = settings.worker_job_types or registry.names
        for name in self.types:
            registry.get(name)  # fail at start, naming the known types, not at the first job
        self.concurrency = settings.worker_concurrency
        self._attempts: dict[UUID, RunningAttempt] = {}
        # Fair share: the last user this worker's previous claim visited.
        self._ring_cursor = ""
        self._held: set[UUID] = set()  # leases we hold: running or awaiting their write
        self._wakeup = asyncio.Event()
        self._capacity = asyncio.Event()
        self._stop = asyncio.Event()
        self._recorder = CompletionRecorder(
            pool, worker_id=self.worker_id, settings=settings, on_recorded=self._recorded
        )
        self.listener = Listener(
            settings,
            {JOBS_READY: self._on_jobs_ready, CANCEL: self._on_cancel},
            application_name="easyclaw-worker-listener",
            on_connected=self._wakeup.set,
        )
        self.last_db_contact = time.monotonic()
        # Outcomes since the last worker.progress line. One INFO line per finished
        # job cost ~20% of a no-op drain; they are DEBUG, summarised here.
        self._progress: Counter[str] = Counter()
        self._progress_since = time.monotonic()
        self._recorded_since_fold = 0
        self.state_store = state_store_from_settings(settings)
        self.resources = ProcessResources(settings)

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Begin a graceful shutdown (signal handlers call this)."""
        if not self._stop.is_set():
            log.info("worker.stopping", worker_id=self.worker_id, running=len(self._attempts))
        self._stop.set()

    @property
    def busy(self) -> int:
        return len(self._held)

    async def run(self) -> None:
        """Work until ``stop()``; then drain and return."""
        log.info(
            "worker.started",
            worker_id=self.worker_id,
            concurrency=self.concurrency,
            job_types=self.types,
        )
        background = [
            asyncio.create_task(self.listener.run(), name="listener"),
            asyncio.create_task(self._recorder.run(), name="recorder"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._maintenance_loop(), name="maintenance"),
        ]
        claimer = asyncio.create_task(self._claim_loop(), name="claimer")
        try:
            await self._stop.wait()
        finally:
            # Not claimer.cancel(): cancelling it mid-claim could lose the rows a
            # committed claim handed us. It finishes its statement and returns.
            self._wakeup.set()
            self._capacity.set()
            try:
                await claimer
            except asyncio.CancelledError:
                claimer.cancel()  # we ourselves are being cancelled: do not wait
                raise
            finally:
                await self._drain()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._mark_stopped()
            await self.resources.aclose()
            self._log_progress()
            log.info("worker.stopped", worker_id=self.worker_id)

    async def _drain(self) -> None:
        grace = self.settings.worker_shutdown_grace_seconds
        running = [attempt.task for attempt in self._attempts.values()]
        if running:
            log.info("worker.draining", running=len(running), grace_seconds=grace)
            await asyncio.wait(running, timeout=grace)
        leftover = list(self._attempts.values())
        for attempt in leftover:
            self._cancel_attempt(attempt, StopReason.SHUTDOWN)
        if leftover:
            await asyncio.wait([attempt.task for attempt in leftover])
        # Write the outcomes of everything that did finish, then hand back the rest.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(5.0, grace)):
                await self._recorder.wait_empty()
        unfinished = [
            job_id for job_id in self._held if job_id not in self._recorder.pending_job_ids()
        ]
        if unfinished:
            try:
                async with pooled(self.pool) as conn:
                    released = await queue.release_jobs(
                        conn, worker_id=self.worker_id, job_ids=unfinished
                    )
                    if JobStatus.PENDING in released.values():
                        # For the workers that stay.
                        await queue.notify_jobs_ready(conn, reason="released")
                for job_id, status in released.items():
                    log.info("job.released", job_id=str(job_id), status=status.value)
            except Exception as error:
                # Their leases will expire and the reaper will requeue them.
                log.warning("worker.release_failed", jobs=len(unfinished), error=str(error))

    async def _mark_stopped(self) -> None:
        with contextlib.suppress(Exception):
            async with pooled(self.pool) as conn:
                await queue.worker_stopped(conn, worker_id=self.worker_id)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the worker is told to stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    # ------------------------------------------------------------ claiming

    def _on_jobs_ready(self, _payload: str) -> None:
        self._wakeup.set()

    async def _claim_loop(self) -> None:
        backoff = Backoff(base=0.1, cap=5.0)
        empty_rounds = 0  # fair-share claims in a row that started nothing but asked for more
        rate_limits_written = False
        while not self._stop.is_set():
            if not rate_limits_written:
                try:
                    async with pooled(self.pool) as conn:
                        await self._configure_rate_limits(conn)
                    rate_limits_written = True
                except Exception as error:
                    self._log_db_error("rate_limits", error)
                    await self._pause(backoff.next_delay())
                # Look at the stop again: one that arrived while the rate
                # limits were written has already set _wakeup, and the claim
                # below would clear it and sleep a whole poll interval.
                continue
            free = self.concurrency - len(self._held)
            if free <= 0:
                self._capacity.clear()
                await self._capacity.wait()
                continue
            wanted = min(free, self.settings.worker_claim_batch_size)
            self._wakeup.clear()
            try:
                async with pooled(self.pool) as conn:
                    claim = await queue.claim(
                        conn,
                        worker_id=self.worker_id,
                        types=self.types,
                        limit=wanted,
                        lease_seconds=self.settings.worker_lease_seconds,
                        fair_share=self.settings.fair_share,
                        cursor=self._ring_cursor,
                        user_max_running=self.settings.user_max_running,
                    )
                    self.last_db_contact = time.monotonic()
                    if claim.ring_end is not None:
                        self._ring_cursor = claim.ring_end
                    for job in claim.jobs:
                        self._start(job)
                    sleep_for = None
                    if len(claim.jobs) < wanted:
                        # Users with fewer ready jobs than their share left slots
                        # over, or the ring held users that could start nothing:
                        # the next users may have more. A few rounds of nothing
                        # in a row, and the idle rule decides.
                        empty_rounds = 0 if claim.jobs else empty_rounds + 1
                        if claim.more and empty_rounds <= MAX_EMPTY_CLAIM_ROUNDS:
                            continue
                        sleep_for = await self._idle_timeout(conn)
                    empty_rounds = 0
            except psycopg.errors.UniqueViolation as error:
                # Two jobs of one sequential key would have run at once (their
                # submissions committed out of order): the database refused the
                # whole claim. Claim again after a short pause; the rule now sees
                # the running one. Refused again, a later job of the key was
                # started behind the rule's back (by hand): claiming cannot
                # succeed until it finishes or its lease runs out, so the pauses
                # grow rather than a refused claim going out per round trip.
                log.warning("claim.key_conflict", worker_id=self.worker_id, error=str(error))
                await self._pause(backoff.next_delay())
                continue
            except Exception as error:
                self._log_db_error("claim", error)
                await self._pause(backoff.next_delay())
                continue
            backoff.reset()
            if sleep_for is not None and not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sleep_for):
                        await self._wakeup.wait()

    async def _configure_rate_limits(self, conn: AsyncConn) -> None:
        """Write EASYCLAW_RATE_LIMITS, and which of them each of this worker's job types
        takes from, to the database (the fleet shares the buckets)."""
        limits = self.settings.rate_limit_buckets
        buckets_by_type = {}
        for name in self.types:
            job_type = self.registry.get(name)
            providers = job_type.providers(self.settings) if job_type.providers else []
            buckets_by_type[name] = buckets_of(name, providers, limits)
        await queue.configure_rate_limits(conn, limits=limits, buckets_by_type=buckets_by_type)
        log.info(
            "rate_limits.configured",
            buckets={limit.name: f"{limit.rate:g}/s burst {limit.burst:g}" for limit in limits},
            job_types={name: found for name, found in buckets_by_type.items() if found},
        )

    async def _idle_timeout(self, conn: AsyncConn) -> float:
        """Sleep until woken, the poll interval, or the next scheduled job, whichever is first."""
        timeout = self.settings.worker_poll_interval_seconds
        claim_at = await queue.next_claim_at(
            conn,
            types=self.types,
            user_limits=self.settings.fair_share,
            user_max_running=self.settings.user_max_running,
        )
        if claim_at is not None:
            until = (claim_at - datetime.now(UTC)).total_seconds()
            # A ready job we could not claim is locked by another session (a
            # concurrent claim, or a long transaction): look again shortly,
            # without spinning on it. Jobs waiting for their concurrency key do
            # not count: the worker that finishes the job before them wakes up.
            timeout = min(timeout, until if until > 0 else READY_BUT_LOCKED_RECHECK_SECONDS)
        return timeout

    def _start(self, job: ClaimedJob) -> None:
        job_type = self.registry.get(job.type)
        earlier = self._attempts.get(job.id)
        if earlier is not None:
            # Its lease was reaped and we claimed the job again before our heartbeat
            # noticed: the earlier attempt can no longer be recorded, so stop it.
            self._cancel_attempt(earlier, StopReason.LEASE_LOST)
        self._held.add(job.id)
        task = asyncio.create_task(self._run(job, job_type), name=f"job-{job.id}")
        self._attempts[job.id] = RunningAttempt(
            job=job, job_type=job_type, task=task, started=time.monotonic()
        )
        metrics.JOBS_CLAIMED.labels(job.type).inc()
        log.debug("job.claimed", job_id=str(job.id), type=job.type, attempt=job.attempt)

    async def _run(self, job: ClaimedJob, job_type: JobType) -> None:
        ctx = JobContext(
            job=job,
            settings=self.settings,
            pool=self.pool,
            log=log,
            worker_id=self.worker_id,
            resources=self.resources,
        )
        try:
            outcome = await run_attempt(job_type, ctx, self.state_store)
        except asyncio.CancelledError:
            attempt = self._take_attempt(job)
            if attempt is None:
                return  # a later attempt of this job replaced it
            if attempt.stop_reason is StopReason.USER_CANCEL:
                outcome = Outcome(
                    job_id=job.id,
                    attempt=job.attempt,
                    status=JobStatus.CANCELLED,
                    error="cancelled by its user while running",
                )
                self._submit(attempt, outcome, ctx)
            elif attempt.stop_reason is StopReason.LEASE_LOST:
                self._release_slot(job.id)
            # SHUTDOWN: stays held until _drain releases it.
            return
        attempt = self._take_attempt(job)
        if attempt is None:
            return  # a later attempt of this job holds the lease; this outcome would be fenced
        self._submit(attempt, outcome, ctx)

    def _take_attempt(self, job: ClaimedJob) -> RunningAttempt | None:
        """Forget this attempt; None if a later attempt of the same job replaced it."""
        attempt = self._attempts.get(job.id)
        if attempt is None or attempt.job.attempt != job.attempt:
            return None
        return self._attempts.pop(job.id)

    def _submit(self, attempt: RunningAttempt, outcome: Outcome, ctx: JobContext) -> None:
        self._recorder.submit(
            FinishedAttempt(
                job=attempt.job,
                job_type=attempt.job_type,
                outcome=outcome,
                duration_seconds=time.monotonic() - attempt.started,
                effects=ctx.completion_effects if outcome.status is JobStatus.COMPLETED else [],
            )
        )

    def _recorded(self, recorded: Recorded) -> None:
        self._recorded_since_fold += len(recorded)
        for finished, accepted in recorded:
            job = finished.job
            if job.id not in self._attempts:  # else a later attempt of it is running
                self._release_slot(job.id)
            if job.concurrency_key is not None or job.user_limited:
                # The next job of its key, or of its user, may start now; no NOTIFY
                # announces that, so this worker (it has a free slot) claims again.
                self._wakeup.set()
            fields = {
                "job_id": str(job.id),
                "type": job.type,
                "attempt": job.attempt,
                "duration_ms": round(finished.duration_seconds * 1000, 3),
            }
            if accepted is None:
                self._progress["lease_lost"] += 1
                log.warning("job.lease_lost", **fields)
                metrics.JOBS_FINISHED.labels(job.type, "LEASE_LOST").inc()
                continue
            metrics.JOBS_FINISHED.labels(job.type, accepted.value).inc()
            metrics.JOB_DURATION.labels(job.type).observe(finished.duration_seconds)
            outcome = finished.outcome
            self._progress[_PROGRESS_KEYS.get(accepted, accepted.value.lower())] += 1
            if accepted is JobStatus.COMPLETED:
                log.debug("job.completed", **fields)
            elif accepted is JobStatus.PENDING:
                # The retry is due after its backoff, likely before the poll interval
                # ends: let the claim loop recompute how long it may sleep.
                self._wakeup.set()
                log.info(
                    "job.retried",
                    **fields,
                    retry_in_seconds=round(outcome.retry_delay or 0, 3),
                    error=outcome.error,
                )
            elif accepted is JobStatus.CANCELLED:
                log.info("job.cancelled", **fields)
            else:
                log.warning("job.failed", **fields, error=outcome.error)

    def _log_progress(self) -> None:
        """One INFO line with the outcomes recorded since the last one (none if idle)."""
        if not self._progress:
            return
        now = time.monotonic()
        log.info(
            "worker.progress",
            worker_id=self.worker_id,
            seconds=round(now - self._progress_since, 3),
            running=len(self._attempts),
            **{key: self._progress[key] for key in _PROGRESS_KEYS.values()},
            lease_lost=self._progress["lease_lost"],
        )
        self._progress.clear()
        self._progress_since = now

    def _release_slot(self, job_id: UUID) -> None:
        self._held.discard(job_id)
        self._capacity.set()

    # ------------------------------------------------------------ cancels and leases

    def _on_cancel(self, payload: str) -> None:
        try:
            job_id = UUID(payload)
        except ValueError:
            return
        attempt = self._attempts.get(job_id)
        if attempt is not None:
            self._cancel_attempt(attempt, StopReason.USER_CANCEL)

    def _cancel_attempt(self, attempt: RunningAttempt, reason: StopReason) -> None:
        if attempt.stop_reason is None and not attempt.task.done():
            attempt.stop_reason = reason
            attempt.task.cancel(reason.value)
            log.info("job.stopping", job_id=str(attempt.job.id), reason=reason.value)

    async def _heartbeat_loop(self) -> None:
        interval = self.settings.worker_heartbeat_interval_seconds
        while True:
            held = list(self._held)
            try:
                async with pooled(self.pool) as conn:
                    result = await queue.heartbeat(
                        conn,
                        worker_id=self.worker_id,
                        worker_name=self.settings.worker_name,
                        concurrency=self.concurrency,
                        job_ids=held,
                        lease_seconds=self.settings.worker_lease_seconds,
                    )
                self.last_db_contact = time.monotonic()
            except Exception as error:
                self._log_db_error("heartbeat", error)
                await asyncio.sleep(min(interval, 1.0))
                continue
            for job_id in held:
                attempt = self._attempts.get(job_id)
                if attempt is None:
                    continue  # finished meanwhile; its write is fenced anyway
                if job_id not in result.kept:
                    self._cancel_attempt(attempt, StopReason.LEASE_LOST)
                elif job_id in result.cancel_requested:
                    self._cancel_attempt(attempt, StopReason.USER_CANCEL)
            metrics.JOBS_HELD.set(len(self._held))
            self._log_progress()
            await asyncio.sleep(interval)

    # ------------------------------------------------------------ maintenance

    async def _maintenance_loop(self) -> None:
        """Reap leases of dead workers, fold the finished-job counters; delete old
        finished jobs now and then."""
        interval = self.settings.worker_maintenance_interval_seconds
        retention_every = max(1, round(60 / interval))
        rounds = 0
        # Start at a random point of the interval so a fleet started together spreads out.
        await asyncio.sleep(random.uniform(0, min(interval, 1.0)))
        while True:
            try:
                async with pooled(self.pool) as conn:
                    await self._reap(conn)
                    # An idle worker has added nothing to fold: it folds once a
                    # minute (others' cancels, retention), keeping idle load low.
                    if self._recorded_since_fold or rounds % retention_every == 0:
                        self._recorded_since_fold = 0
                        await queue.fold_job_status_changes(conn)
                    if self.settings.retention_hours > 0 and rounds % retention_every == 0:
                        deleted = await queue.delete_finished_jobs(
                            conn,
                            older_than_seconds=self.settings.retention_hours * 3600,
                            batch_size=self.settings.retention_batch_size,
                        )
                        if deleted:
                            log.info("retention.deleted", jobs=deleted)
            except Exception as error:
                self._log_db_error("maintenance", error)
            rounds += 1
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))

    async def _reap(self, conn: AsyncConn) -> None:
        reaped = await queue.reap_expired_leases(conn)
        for job in reaped:
            fields = {
                "job_id": str(job.id),
                "attempts": job.attempts,
                "max_attempts": job.max_attempts,
                "lost_worker_id": job.lost_worker_id,
            }
            if job.status is JobStatus.PENDING:
                log.warning("job.requeued", **fields)
            elif job.status is JobStatus.CANCELLED:
                log.info("job.cancelled", **fields)
            else:
                log.warning("job.failed", **fields, error="lease expired on the last attempt")
        if any(job.status is JobStatus.PENDING for job in reaped):
            # Idle workers (this one too) claim them now.
            await queue.notify_jobs_ready(conn, reason="reaped")

    def _log_db_error(self, during: str, error: BaseException) -> None:
        if is_unavailable(error):
            log.warning("worker.db_unavailable", during=during, error=str(error))
        else:
            log.error("worker.error", exc_info=True, during=during, error=str(error))
