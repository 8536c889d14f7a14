"""Snapshots as files under a local directory (the `make up` default)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from easyclaw.agents.state import SnapshotMissingError


class LocalStateStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.description = str(self.root)

    def path_of(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"snapshot key {key!r} leaves {self.root}")
        return path

    async def upload(self, key: str, source: Path) -> None:
        await asyncio.to_thread(self._copy_in, source, self.path_of(key))

    async def download(self, key: str, destination: Path) -> None:
        path = self.path_of(key)
        try:
            await asyncio.to_thread(shutil.copyfile, path, destination)
        except FileNotFoundError:
            raise SnapshotMissingError(f"snapshot {key} is missing from {self.root}") from None

    @staticmethod
    def _copy_in(source: Path, target: Path) -> None:
        # Copy to a temporary name, then rename: readers never see half a file.
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
