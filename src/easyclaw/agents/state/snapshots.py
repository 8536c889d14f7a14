"""The ``state_snapshots`` rows: which version of a user's state is the latest."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from easyclaw.agents.state import SnapshotConflictError
from easyclaw.core.db import AsyncConn
from easyclaw.core.queries import query


@dataclass(frozen=True, kw_only=True, slots=True)
class SnapshotRecord:
    version: int
    key: str
    size_bytes: int | None
    sha256: str | None


async def latest_snapshot(conn: AsyncConn, user_id: str) -> SnapshotRecord | None:
    cursor = await conn.execute(query("latest_state_snapshot"), {"user_id": user_id})
    row = await cursor.fetchone()
    if row is None:
        return None
    version, key, size_bytes, sha256 = row
    return SnapshotRecord(version=version, key=key, size_bytes=size_bytes, sha256=sha256)


async def record_snapshot(
    conn: AsyncConn,
    *,
    user_id: str,
    job_id: UUID,
    base_version: int,
    key: str,
    size_bytes: int,
    sha256: str,
) -> int:
    """Insert version ``base_version + 1``; SnapshotConflictError if it already exists."""
    cursor = await conn.execute(
        query("insert_state_snapshot"),
        {
            "user_id": user_id,
            "job_id": job_id,
            "key": key,
            "base_version": base_version,
            "size_bytes": size_bytes,
            "sha256": sha256,
        },
    )
    row = await cursor.fetchone()
    if row is None:
        raise SnapshotConflictError(
            f"state version {base_version + 1} of user {user_id!r} was stored by another job "
            f"while this one ran from version {base_version}; retrying from the newer state"
        )
    version: int = row[0]
    return version
