"""A real `easyclaw worker` process, configured only by environment variables, keeps
per-user state in S3 (moto): encrypted objects, one version per job."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from easyclaw.cli.settings import Settings
from easyclaw.core.models import JobStatus
from tests.support.processes import WorkerProcesses
from tests.support.settings import make_settings
from tests.worker.helpers import USER, Conn, enqueue, fetch_all, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(database_url: str, s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url,
        state_backend="s3",
        state_s3_bucket=s3_bucket,
        state_s3_prefix="tenant-a/",
        workspace_dir=tmp_path / "workspaces",
    )


async def test_a_worker_process_stores_each_version_in_s3(
    worker_processes: WorkerProcesses, conn: Conn, settings: Settings, tmp_path: Path
) -> None:
    worker_processes.start(1)
    for expected in (1, 2):
        job = await enqueue(conn, "COUNTER")
        done = await wait_status(conn, job.id, JobStatus.COMPLETED, JobStatus.FAILED, timeout=30)
        assert done.status is JobStatus.COMPLETED, done.error
        assert done.result["count"] == expected

    rows = await fetch_all(
        conn, "SELECT s3_key FROM state_snapshots WHERE user_id = %s ORDER BY version", (USER,)
    )
    keys = [key for (key,) in rows]
    assert [key.split("/")[:2] for key in keys] == [["tenant-a", USER]] * 2
    s3 = boto3.client("s3")
    bucket = settings.state_s3_bucket
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="tenant-a/")
    assert sorted(item["Key"] for item in listed["Contents"]) == keys
    for key in keys:
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    assert list((tmp_path / "workspaces").iterdir()) == []
