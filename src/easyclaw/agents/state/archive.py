"""Pack a workspace into a tar.gz and unpack one safely.

Only regular files and directories travel: links, devices and FIFOs are left
out when packing and refused when unpacking, and no member may leave the
destination (absolute names, ``..``). A snapshot therefore cannot write
outside the workspace it is unpacked into, whoever produced it.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CHUNK_BYTES = 1 << 20


class UnsafeArchiveError(ValueError):
    """A snapshot holds a member that could escape its workspace."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ArchiveInfo:
    size_bytes: int
    sha256: str


def _only_files_and_dirs(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if not (member.isfile() or member.isdir()):
        return None
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def pack(source: Path, archive: Path) -> ArchiveInfo:
    """Write ``source``'s regular files and directories to ``archive`` (tar.gz)."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            member = tar.gettarinfo(path, arcname=path.relative_to(source).as_posix())
            if _only_files_and_dirs(member) is None:
                continue
            if member.isfile():
                with path.open("rb") as content:
                    tar.addfile(member, content)
            else:
                tar.addfile(member)
    return describe(archive)


def describe(archive: Path) -> ArchiveInfo:
    digest = hashlib.sha256()
    with archive.open("rb") as content:
        while chunk := content.read(CHUNK_BYTES):
            digest.update(chunk)
    return ArchiveInfo(size_bytes=archive.stat().st_size, sha256=digest.hexdigest())


def _check_member(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise UnsafeArchiveError(f"snapshot member {member.name!r} points outside the workspace")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"snapshot member {member.name!r} is not a regular file or directory"
        )


def unpack(archive: Path, destination: Path) -> None:
    """Extract ``archive`` into ``destination``, refusing any unsafe member first."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member)
            # The "data" filter repeats the checks in the standard library's own
            # terms (and strips permissions bits that do not belong in data).
            tar.extractall(destination, members=members, filter="data")
    except tarfile.FilterError as error:
        raise UnsafeArchiveError(str(error)) from error
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise UnsafeArchiveError(f"snapshot is not a readable tar.gz: {error}") from error
