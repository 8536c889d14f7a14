"""Snapshot rows: versions follow their base, and a second writer of a version conflicts."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from easyclaw.agents.state import SnapshotConflictError
from easyclaw.agents.state.snapshots import latest_snapshot, record_snapshot
from easyclaw.core import queue

Conn = psycopg.AsyncConnection[Any]


async def record(conn: Conn, user: str, base: int) -> int:
    job = await queue.enqueue(conn, user_id=user, type="ECHO", payload={})
    return await record_snapshot(
        conn,
        user_id=user,
        job_id=job.job.id,
        base_version=base,
        key=f"state/{user}/v{base + 1}-{job.job.id}.tar.gz",
        size_bytes=10,
        sha256="0" * 64,
    )


async def test_versions_increase_per_user_and_the_latest_is_found(conn: Conn) -> None:
    for user in ("alice", "bob"):
        await queue.ensure_user(conn, user)
    assert await latest_snapshot(conn, "alice") is None
    assert await record(conn, "alice", 0) == 1
    assert await record(conn, "alice", 1) == 2
    assert await record(conn, "bob", 0) == 1
    latest = await latest_snapshot(conn, "alice")
    assert latest is not None
    assert latest.version == 2
    assert latest.key.startswith("state/alice/v2-")


async def test_a_second_job_from_the_same_base_conflicts_and_writes_nothing(conn: Conn) -> None:
    await queue.ensure_user(conn, "alice")
    assert await record(conn, "alice", 0) == 1
    with pytest.raises(SnapshotConflictError, match="version 1 of user 'alice'"):
        await record(conn, "alice", 0)
    cursor = await conn.execute("SELECT count(*) FROM state_snapshots")
    assert await cursor.fetchone() == (1,)


async def test_one_snapshot_per_job_and_bases_must_match(conn: Conn) -> None:
    await queue.ensure_user(conn, "alice")
    job = await queue.enqueue(conn, user_id="alice", type="ECHO", payload={})
    arguments: dict[str, Any] = {
        "user_id": "alice",
        "job_id": job.job.id,
        "key": "k",
        "size_bytes": 1,
        "sha256": "0" * 64,
    }
    await record_snapshot(conn, base_version=0, **arguments)
    with pytest.raises(SnapshotConflictError):
        await record_snapshot(conn, base_version=1, **arguments)
    with pytest.raises(psycopg.errors.CheckViolation):
        await conn.execute(
            "INSERT INTO state_snapshots (user_id, s3_key, version, base_version) "
            "VALUES ('alice', 'k', 5, 1)"
        )
