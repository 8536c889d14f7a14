"""Both storage backends keep what they are given; S3 uploads ask for encryption."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from easyclaw.agents.state import (
    SnapshotMissingError,
    StateStore,
    StateStoreUnavailableError,
    snapshot_key,
    state_store_from_settings,
    user_key_segment,
)
from easyclaw.agents.state.local import LocalStateStore
from easyclaw.agents.state.s3 import S3StateStore
from easyclaw.cli.settings import Settings


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    if request.param == "local":
        settings = Settings(state_backend="local", state_local_dir=tmp_path / "state")
    else:
        bucket = request.getfixturevalue("s3_bucket")  # sets AWS_ENDPOINT_URL_S3 to moto
        settings = Settings(state_backend="s3", state_s3_bucket=bucket)
    return state_store_from_settings(settings)


async def test_an_upload_downloads_byte_for_byte(store: StateStore, tmp_path: Path) -> None:
    source = tmp_path / "up.bin"
    source.write_bytes(bytes(range(256)) * 1000)
    key = snapshot_key("state/", user_id="alice", version=1, job_id=uuid.uuid4())
    await store.upload(key, source)
    target = tmp_path / "down.bin"
    await store.download(key, target)
    assert target.read_bytes() == source.read_bytes()


async def test_a_missing_snapshot_is_a_clear_error(store: StateStore, tmp_path: Path) -> None:
    with pytest.raises(SnapshotMissingError, match="missing"):
        await store.download("state/alice/v0000000009-nothing.tar.gz", tmp_path / "x")


async def test_s3_uploads_request_server_side_encryption(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = S3StateStore(bucket=s3_bucket, endpoint_url=s3_endpoint)
    source = tmp_path / "up.bin"
    source.write_bytes(b"secret state")
    await store.upload("state/bob/v1.tar.gz", source)
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(
        Bucket=s3_bucket, Key="state/bob/v1.tar.gz"
    )
    assert head["ServerSideEncryption"] == "AES256"


async def test_an_unreachable_s3_is_retryable(tmp_path: Path, s3_bucket: str) -> None:
    store = S3StateStore(bucket=s3_bucket, endpoint_url="http://127.0.0.1:9")
    source = tmp_path / "up.bin"
    source.write_bytes(b"x")
    with pytest.raises(StateStoreUnavailableError, match="failed"):
        await store.download("state/bob/v1.tar.gz", source)


def test_keys_keep_user_ids_inside_their_own_prefix(tmp_path: Path) -> None:
    job_id = uuid.UUID(int=7)
    assert snapshot_key("state/", user_id="alice@example.com", version=3, job_id=job_id) == (
        f"state/alice@example%2Ecom/v0000000003-{job_id}.tar.gz"
    )
    for hostile in ("..", "../other", "a/b", ".", ""):
        segment = user_key_segment(hostile)
        assert "/" not in segment
        assert segment not in ("..", ".", "")
    local = LocalStateStore(tmp_path)
    with pytest.raises(ValueError, match="leaves"):
        local.path_of("../outside")


def test_s3_backend_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="needs EASYCLAW_STATE_S3_BUCKET"):
        Settings(state_backend="s3")
