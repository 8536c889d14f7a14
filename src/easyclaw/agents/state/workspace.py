"""A job's workspace: the user's latest state in, the next version out.

1. A fresh directory is made under ``EASYCLAW_WORKSPACE_DIR``; the user's
   latest snapshot (if any) is downloaded and unpacked into it.
2. The handler runs with ``ctx.workspace`` pointing there.
3. Only if it succeeds: the directory is packed and uploaded under a key that
   includes the job id, and the ``state_snapshots`` row for version
   ``base + 1`` is written in the job's completion transaction.
4. The directory is removed in every case (success, failure, cancel, timeout).

Concurrency policy (optimistic): two jobs of one user that start from the
same version both upload, but only the first completion can insert version
``base + 1``; the second gets a retryable SnapshotConflictError, its job goes
back to the queue and its next attempt starts from the newer snapshot. No
version is produced twice and no write is lost silently. The losing upload
stays behind as an unreferenced object (its key names its job), as does the
upload of an attempt whose completion was fenced off (lost lease).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from easyclaw.agents.settings import agent_settings
from easyclaw.agents.state import StateStore, snapshot_key
from easyclaw.agents.state.archive import describe, pack, unpack
from easyclaw.agents.state.snapshots import latest_snapshot, record_snapshot
from easyclaw.core.db import AsyncConn, pooled
from easyclaw.core.errors import PermanentJobError
from easyclaw.core.jobtypes import JobContext

SNAPSHOT_FILE = "snapshot.tar.gz"


def _make_job_root(parent: Path | None, job_label: str) -> Path:
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"easyclaw-{job_label}-", dir=parent))


@asynccontextmanager
async def job_workspace(ctx: JobContext, store: StateStore) -> AsyncIterator[Path]:
    """Set ``ctx.workspace`` for the block; store the next version if the block succeeds."""
    job, settings = ctx.job, agent_settings(ctx.settings)
    root = await asyncio.to_thread(_make_job_root, settings.workspace_dir, str(job.id))
    workspace = root / "workspace"
    try:
        workspace.mkdir()
        async with pooled(ctx.pool) as conn:
            latest = await latest_snapshot(conn, job.user_id)
        base_version = 0
        if latest is not None:
            base_version = latest.version
            downloaded = root / "latest.tar.gz"
            await store.download(latest.key, downloaded)
            if latest.sha256 is not None:
                received = await asyncio.to_thread(describe, downloaded)
                if received.sha256 != latest.sha256:
                    raise PermanentJobError(
                        f"snapshot {latest.key} does not match its recorded checksum"
                    )
            await asyncio.to_thread(unpack, downloaded, workspace)
            await asyncio.to_thread(downloaded.unlink)
        ctx.workspace = workspace
        yield workspace

        archive = root / SNAPSHOT_FILE
        info = await asyncio.to_thread(pack, workspace, archive)
        key = snapshot_key(
            settings.state_s3_prefix, user_id=job.user_id, version=base_version + 1, job_id=job.id
        )
        await store.upload(key, archive)

        async def record(conn: AsyncConn) -> None:
            await record_snapshot(
                conn,
                user_id=job.user_id,
                job_id=job.id,
                base_version=base_version,
                key=key,
                size_bytes=info.size_bytes,
                sha256=info.sha256,
            )

        ctx.on_completion(record)
        ctx.log.info(
            "state.uploaded",
            job_id=str(job.id),
            key=key,
            base_version=base_version,
            size_bytes=info.size_bytes,
        )
    finally:
        ctx.workspace = None
        # A thread finishes even if this task is cancelled while awaiting it.
        await asyncio.to_thread(shutil.rmtree, root, True)
