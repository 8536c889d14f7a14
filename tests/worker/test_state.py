"""Jobs of a ``uses_state`` type run in their user's workspace, on both backends.

The COUNTER job adds one to ``counter.txt`` in its user's state: a lost or
doubled write would show in the count, and the snapshot rows say which
version each job produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from easyclaw.agents.state import state_store_from_settings
from easyclaw.agents.state.archive import unpack
from easyclaw.cli.settings import Settings
from easyclaw.core import queue
from easyclaw.core.db import AsyncPool
from easyclaw.core.models import JobStatus
from tests.support.settings import make_settings
from tests.support.waiting import wait_for
from tests.worker.helpers import USER, enqueue, events, fetch_all, running_worker, wait_status

Conn = psycopg.AsyncConnection[Any]


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Settings:
    backend: dict[str, Any] = {"state_backend": "local", "state_local_dir": tmp_path / "state"}
    if request.param == "s3":
        backend = {
            "state_backend": "s3",
            "state_s3_bucket": request.getfixturevalue("s3_bucket"),
        }
    return make_settings(
        database_url, workspace_dir=tmp_path / "workspaces", worker_concurrency=4, **backend
    )


async def snapshots(conn: Conn) -> list[tuple[Any, ...]]:
    return await fetch_all(
        conn,
        "SELECT version, base_version, job_id, s3_key FROM state_snapshots "
        "WHERE user_id = %s ORDER BY version",
        (USER,),
    )


async def latest_state(settings: Settings, key: str, tmp_path: Path) -> dict[str, str]:
    """The files of the snapshot stored under ``key``, read back from the store."""
    archive, target = tmp_path / "check.tar.gz", tmp_path / "check"
    target.mkdir(exist_ok=True)
    await state_store_from_settings(settings).download(key, archive)
    unpack(archive, target)
    return {
        path.relative_to(target).as_posix(): path.read_text()
        for path in target.rglob("*")
        if path.is_file()
    }


async def test_each_job_starts_from_the_last_version_and_stores_the_next(
    settings: Settings, pool: AsyncPool, conn: Conn, tmp_path: Path
) -> None:
    async with running_worker(settings, pool):
        for expected in (1, 2, 3):
            job = await enqueue(conn, "COUNTER")
            done = await wait_status(conn, job.id, JobStatus.COMPLETED, JobStatus.FAILED)
            assert done.status is JobStatus.COMPLETED, done.error
            assert done.result["count"] == expected

    rows = await snapshots(conn)
    assert [(version, base) for version, base, _, _ in rows] == [(1, 0), (2, 1), (3, 2)]
    files = await latest_state(settings, rows[-1][3], tmp_path)
    assert files["counter.txt"] == "3"
    assert len([name for name in files if name.startswith("jobs/")]) == 3
    assert list((tmp_path / "workspaces").iterdir()) == []


async def test_a_failed_job_stores_nothing_and_its_workspace_is_removed(
    settings: Settings, pool: AsyncPool, conn: Conn, tmp_path: Path
) -> None:
    async with running_worker(settings, pool):
        first = await enqueue(conn, "COUNTER")
        await wait_status(conn, first.id, JobStatus.COMPLETED)
        failing = await enqueue(conn, "COUNTER", {"fail": True})
        failed = await wait_status(conn, failing.id, JobStatus.FAILED)
        assert "failed after changing the workspace" in (failed.error or "")
        after = await enqueue(conn, "COUNTER")
        done = await wait_status(conn, after.id, JobStatus.COMPLETED)

    assert done.result["count"] == 2  # the failed job's change was not kept
    assert [row[0] for row in await snapshots(conn)] == [1, 2]
    assert list((tmp_path / "workspaces").iterdir()) == []


@pytest.mark.slow
async def test_concurrent_jobs_of_one_user_conflict_retry_and_lose_no_write(
    settings: Settings, pool: AsyncPool, conn: Conn, worker_logs: pytest.LogCaptureFixture
) -> None:
    async with running_worker(settings, pool):
        jobs = [await enqueue(conn, "COUNTER", {"seconds": 0.5}) for _ in range(3)]
        finished = [
            await wait_status(conn, job.id, JobStatus.COMPLETED, JobStatus.FAILED) for job in jobs
        ]

    assert all(job.status is JobStatus.COMPLETED for job in finished), [j.error for j in finished]
    # All three started from version 0 at once: one stored version 1, the others
    # conflicted and ran again from the newer state.
    assert sorted(job.result["count"] for job in finished) == [1, 2, 3]
    assert sum(job.attempts for job in finished) >= 5
    rows = await snapshots(conn)
    assert [(version, base) for version, base, _, _ in rows] == [(1, 0), (2, 1), (3, 2)]
    assert len({job_id for _, _, job_id, _ in rows}) == 3
    conflicts = events(worker_logs, "job.effect_failed")
    assert conflicts
    assert all("was stored by another job" in event["error"] for event in conflicts)


async def test_a_cancelled_job_leaves_no_workspace(
    settings: Settings, pool: AsyncPool, conn: Conn, tmp_path: Path
) -> None:
    async with running_worker(settings, pool):
        job = await enqueue(conn, "COUNTER", {"seconds": 30})
        await wait_status(conn, job.id, JobStatus.RUNNING)
        workspaces = tmp_path / "workspaces"
        await wait_for(lambda: workspaces.exists() and any(workspaces.iterdir()), timeout=10)
        await queue.cancel_job(conn, job_id=job.id, user_id=USER)
        await wait_status(conn, job.id, JobStatus.CANCELLED)
        await wait_for(lambda: not any((tmp_path / "workspaces").iterdir()), timeout=10)
    assert await snapshots(conn) == []
