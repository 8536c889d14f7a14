"""Real ``easyclaw worker`` processes: concurrency, crashes, graceful shutdown, logs, NOTIFY.

Each test starts subprocesses through the ``worker_processes`` fixture, talks to
them only through the database, signals and their JSON logs, and stops them
at the end (SIGTERM, then SIGKILL after 20 s).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from easyclaw.core import queue
from easyclaw.core.models import JobStatus
from tests.support.processes import WorkerProcesses
from tests.support.waiting import wait_for
from tests.worker.helpers import (
    USER,
    Conn,
    db_now,
    effects_per_job,
    enqueue,
    fetch_all,
    fetch_value,
    get,
    log_events,
    parse_json_lines,
    registered_worker,
    wait_all_finished,
    wait_status,
)

pytestmark = pytest.mark.slow


def log_of(workers: WorkerProcesses, index: int) -> str:
    path: Path = workers.log_dir / f"worker-{index}.log"
    return path.read_text()


@contextmanager
def paused(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Freeze a worker process (SIGSTOP), so that another one claims everything."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


async def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    return await asyncio.to_thread(process.wait, timeout)


@pytest.mark.usefixtures("effects_table")
async def test_four_processes_run_2000_jobs_each_exactly_once(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    total = 2000
    processes = worker_processes.start(4)
    worker_ids = {await registered_worker(conn, f"test-worker-{i}") for i in range(4)}
    await queue.ensure_user(conn, USER)
    assert (
        await queue.enqueue_many(
            conn, user_id=USER, type="EFFECT", payloads=[{"i": i} for i in range(total)]
        )
        == total
    )
    counts = await wait_all_finished(conn, total, timeout=120)
    assert counts == {"COMPLETED": total}
    per_job = await effects_per_job(conn)
    assert len(per_job) == total
    assert set(per_job.values()) == {1}
    assert await fetch_value(conn, "SELECT count(*) FROM jobs WHERE attempts <> 1") == 0
    # Each effect was written by the worker whose completion was accepted.
    mismatched = await fetch_value(
        conn,
        "SELECT count(*) FROM jobs j JOIN job_effects e ON e.job_id = j.id "
        "WHERE e.worker_id <> j.worker_id OR e.attempt <> j.attempts",
    )
    assert mismatched == 0
    shares = dict(await fetch_all(conn, "SELECT worker_id, count(*) FROM jobs GROUP BY 1"))
    assert set(shares) <= worker_ids
    assert len(shares) >= 2, f"only one worker did any work: {shares}"
    assert all(process.poll() is None for process in processes)


@pytest.mark.usefixtures("effects_table")
async def test_jobs_of_a_killed_worker_are_requeued_and_completed_once_by_another(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    lease, maintenance = 2.0, 1.0
    env = {
        "EASYCLAW_WORKER_LEASE_SECONDS": str(lease),
        "EASYCLAW_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "EASYCLAW_WORKER_MAINTENANCE_INTERVAL_SECONDS": str(maintenance),
        "EASYCLAW_WORKER_CONCURRENCY": "20",
    }
    victim, survivor = worker_processes.start(2, **env)
    victim_id = await registered_worker(conn, "test-worker-0")
    survivor_id = await registered_worker(conn, "test-worker-1")
    await queue.ensure_user(conn, USER)
    with paused(survivor):
        await queue.enqueue_many(
            conn, user_id=USER, type="EFFECT", payloads=[{"seconds": 2, "i": i} for i in range(20)]
        )
        await wait_for(
            lambda: fetch_value(
                conn,
                "SELECT count(*) = 20 FROM jobs WHERE status = 'RUNNING' AND worker_id = %s",
                (victim_id,),
            ),
            timeout=10,
        )
    killed_at = await db_now(conn)
    victim.kill()
    assert await wait_exit(victim, 10) == -signal.SIGKILL

    counts = await wait_all_finished(conn, 20, timeout=lease + maintenance + 15)
    assert counts == {"COMPLETED": 20}
    rows = await fetch_all(conn, "SELECT worker_id, attempts, started_at FROM jobs")
    assert {(worker_id, attempts) for worker_id, attempts, _ in rows} == {(survivor_id, 2)}
    # Requeued once the lease ran out and the survivor's reaper ran, and claimed at once.
    requeue_delay = (max(started for *_, started in rows) - killed_at).total_seconds()
    assert requeue_delay < lease + maintenance * 1.2 + 1.5, f"took {requeue_delay:.2f} s"
    effects = await fetch_all(conn, "SELECT DISTINCT attempt, worker_id FROM job_effects")
    assert effects == [(2, survivor_id)]
    per_job = await effects_per_job(conn)
    assert len(per_job) == 20
    assert set(per_job.values()) == {1}
    requeued = log_events(log_of(worker_processes, 1), "job.requeued")
    assert len(requeued) == 20
    assert {line["lost_worker_id"] for line in requeued} == {victim_id}
    assert survivor.poll() is None


async def test_sigterm_finishes_what_fits_in_the_grace_period_and_hands_back_the_rest(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    grace = 2.0
    env = {"EASYCLAW_WORKER_SHUTDOWN_GRACE_SECONDS": str(grace)}
    leaving, staying = worker_processes.start(2, **env)
    leaving_id = await registered_worker(conn, "test-worker-0")
    staying_id = await registered_worker(conn, "test-worker-1")
    with paused(staying):
        short = [await enqueue(conn, "SLEEP", {"seconds": 1}, max_attempts=1) for _ in range(2)]
        long = [await enqueue(conn, "SLEEP", {"seconds": 4}, max_attempts=1) for _ in range(2)]
        for job in short + long:
            running = await wait_status(conn, job.id, JobStatus.RUNNING)
            assert running.worker_id == leaving_id
    terminated_at = await db_now(conn)
    leaving.send_signal(signal.SIGTERM)
    assert await wait_exit(leaving, grace + 10) == 0

    for job in short:
        done = await get(conn, job.id)
        assert (done.status, done.worker_id, done.attempts) == (
            JobStatus.COMPLETED,
            leaving_id,
            1,
        )
        assert done.finished_at is not None
        assert done.finished_at > terminated_at
    # Handed back without spending an attempt (max_attempts is 1), then taken by the
    # other worker as soon as they were released, not at its next poll.
    for job in long:
        taken = await wait_status(conn, job.id, JobStatus.RUNNING, JobStatus.COMPLETED, timeout=2)
        assert taken.worker_id == staying_id
    for job in long:
        done = await wait_status(conn, job.id, JobStatus.COMPLETED, timeout=10)
        assert (done.worker_id, done.attempts, done.error) == (staying_id, 1, None)
    stuck = await fetch_value(
        conn, "SELECT count(*) FROM jobs WHERE status = 'RUNNING' AND worker_id = %s", (leaving_id,)
    )
    assert stuck == 0
    stopped_at = await fetch_value(
        conn, "SELECT stopped_at FROM workers WHERE id = %s", (leaving_id,)
    )
    assert stopped_at is not None
    text = log_of(worker_processes, 0)
    names = [line["event"] for line in parse_json_lines(text)]
    assert names.index("worker.stopping") < names.index("worker.stopped")
    released = log_events(text, "job.released")
    assert {line["job_id"] for line in released} == {str(job.id) for job in long}
    assert {line["status"] for line in released} == {"PENDING"}
    assert staying.poll() is None


async def test_listener_reconnects_after_its_connection_is_terminated(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    # With a one-minute poll, only NOTIFY can make pickups fast.
    worker_processes.start(1, EASYCLAW_WORKER_POLL_INTERVAL_SECONDS="60")
    await registered_worker(conn, "test-worker-0")
    listener_pid_sql = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'easyclaw-worker-listener'"
    )

    async def listener_pids() -> list[int]:
        return [pid for (pid,) in await fetch_all(conn, listener_pid_sql)]

    [first_pid] = await wait_for(listener_pids, timeout=10)
    warm_up = await enqueue(conn, "ECHO", {"n": 0})
    await wait_status(conn, warm_up.id, JobStatus.COMPLETED, timeout=5)

    terminated = await fetch_value(
        conn,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'easyclaw-worker-listener'",
    )
    assert terminated == 1

    async def new_listener() -> bool:
        pids = await listener_pids()
        return bool(pids) and first_pid not in pids

    await wait_for(new_listener, timeout=10)
    for n in range(1, 4):
        job = await enqueue(conn, "ECHO", {"n": n})
        done = await wait_status(conn, job.id, JobStatus.COMPLETED, timeout=5)
        assert done.started_at is not None
        latency = (done.started_at - done.created_at).total_seconds()
        assert latency < 0.5, f"job {n} was picked up after {latency:.3f} s"
    assert log_events(log_of(worker_processes, 0), "listener.disconnected")


async def test_logs_are_json_lines_with_stable_event_names(
    worker_processes: WorkerProcesses, conn: Conn
) -> None:
    # A job whose worker vanished: claimed by a worker that never reports back.
    orphan = await enqueue(conn, "SLEEP", {"seconds": 0.1})
    [claimed] = await queue.claim_jobs(
        conn, worker_id="vanished-worker", types=["SLEEP"], limit=1, lease_seconds=0.01
    )
    assert claimed.id == orphan.id
    # DEBUG adds the per-job job.claimed and job.completed lines.
    [process] = worker_processes.start(1, EASYCLAW_LOG_LEVEL="DEBUG")
    worker_id = await registered_worker(conn, "test-worker-0")
    echo = await enqueue(conn, "ECHO", {"hello": "logs"})
    fail = await enqueue(conn, "FAIL", {"reason": "bad input"})
    flaky = await enqueue(conn, "FLAKY", {"succeed_on": 2})
    await wait_status(conn, echo.id, JobStatus.COMPLETED)
    await wait_status(conn, fail.id, JobStatus.FAILED)
    await wait_status(conn, flaky.id, JobStatus.COMPLETED)
    await wait_status(conn, orphan.id, JobStatus.COMPLETED)
    process.send_signal(signal.SIGTERM)
    assert await wait_exit(process, 15) == 0

    lines = parse_json_lines(log_of(worker_processes, 0))
    for line in lines:
        assert {"ts", "level", "event", "logger"} <= set(line), line
    text = log_of(worker_processes, 0)

    def one(name: str, **fields: object) -> dict[str, object]:
        found = [
            line
            for line in log_events(text, name)
            if all(line.get(key) == value for key, value in fields.items())
        ]
        assert len(found) == 1, f"{name} {fields}: {found}"
        return found[0]

    started = one("worker.started")
    assert started["worker_id"] == worker_id
    completed = one("job.completed", job_id=str(echo.id))
    assert (completed["type"], completed["attempt"], completed["level"]) == ("ECHO", 1, "debug")
    assert isinstance(completed["duration_ms"], float | int)
    failed = one("job.failed", job_id=str(fail.id))
    assert (failed["error"], failed["level"]) == ("bad input", "warning")
    retried = one("job.retried", job_id=str(flaky.id))
    assert retried["attempt"] == 1
    assert retried["error"] == "transient failure on attempt 1"
    assert isinstance(retried["retry_in_seconds"], float | int)
    one("job.completed", job_id=str(flaky.id), attempt=2)
    requeued = one("job.requeued", job_id=str(orphan.id))
    assert requeued["lost_worker_id"] == "vanished-worker"
    one("job.completed", job_id=str(orphan.id), attempt=2)
    one("job.claimed", job_id=str(echo.id))
    # The INFO summary of outcomes adds up to the same story.
    progress = log_events(text, "worker.progress")
    assert progress, "no worker.progress line"
    totals = {
        key: sum(line[key] for line in progress)
        for key in ("completed", "failed", "retried", "cancelled", "lease_lost")
    }
    assert totals == {"completed": 3, "failed": 1, "retried": 1, "cancelled": 0, "lease_lost": 0}
    assert all(line["level"] == "info" for line in progress)
    one("worker.stopping")
    stopped = one("worker.stopped", worker_id=worker_id)
    worker_events = [line for line in lines if line["logger"] == "easyclaw.worker"]
    assert worker_events[0] == started
    assert worker_events[-1] == stopped
