"""Snapshots as S3 objects, encrypted at rest (SSE-S3 requested on every upload).

boto3 is synchronous, so each transfer runs in a thread (``asyncio.to_thread``)
and never blocks the worker's event loop, its heartbeats included.
Credentials come from boto3's default chain (IRSA on EKS, the environment
elsewhere).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from easyclaw.agents.state import SnapshotMissingError, StateStoreUnavailableError
from easyclaw.core.errors import PermanentJobError

SERVER_SIDE_ENCRYPTION = "AES256"
_MISSING = {"404", "NoSuchKey", "NotFound"}
_TRANSIENT = {
    "500",
    "502",
    "503",
    "504",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "InternalError",
}


class S3StateStore:
    def __init__(self, *, bucket: str, endpoint_url: str | None = None, client: Any = None) -> None:
        self.bucket = bucket
        self.description = f"s3://{bucket}"
        self.client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    async def upload(self, key: str, source: Path) -> None:
        try:
            await asyncio.to_thread(
                self.client.upload_file,
                str(source),
                self.bucket,
                key,
                ExtraArgs={"ServerSideEncryption": SERVER_SIDE_ENCRYPTION},
            )
        except (S3UploadFailedError, BotoCoreError, ClientError) as error:
            raise self._translate(error, key, "upload") from error

    async def download(self, key: str, destination: Path) -> None:
        try:
            await asyncio.to_thread(self.client.download_file, self.bucket, key, str(destination))
        except (BotoCoreError, ClientError) as error:
            raise self._translate(error, key, "download") from error

    def _translate(self, error: Exception, key: str, action: str) -> Exception:
        where = f"s3://{self.bucket}/{key}"
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING and action == "download":
                return SnapshotMissingError(f"snapshot {where} is missing")
            if code not in _TRANSIENT:
                return PermanentJobError(f"state {action} of {where} refused: {code} {error}")
        return StateStoreUnavailableError(f"state {action} of {where} failed: {error}")
