"""Workspaces pack and unpack faithfully; a snapshot cannot write outside its workspace."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from easyclaw.agents.state.archive import UnsafeArchiveError, describe, pack, unpack


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes() if path.is_file() else None
        for path in sorted(root.rglob("*"))
    }


def test_files_directories_and_empty_directories_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "notes" / "deep").mkdir(parents=True)
    (source / "empty").mkdir()
    (source / "a.txt").write_text("hello")
    (source / "notes" / "deep" / "b.bin").write_bytes(bytes(range(256)) * 100)
    archive = tmp_path / "snapshot.tar.gz"

    info = pack(source, archive)

    assert info == describe(archive)
    assert info.size_bytes == archive.stat().st_size
    assert len(info.sha256) == 64
    target = tmp_path / "target"
    target.mkdir()
    unpack(archive, target)
    assert tree(target) == tree(source)


def test_links_are_left_out_when_packing(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "real.txt").write_text("kept")
    (source / "link").symlink_to("/etc/passwd")
    archive = tmp_path / "snapshot.tar.gz"
    pack(source, archive)
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["real.txt"]


def archive_with(tmp_path: Path, *members: tarfile.TarInfo) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            data = b"x" * member.size if member.isfile() else None
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.size = 1
    return member


def link_member(name: str, target: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = tarfile.SYMTYPE
    member.linkname = target
    return member


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (file_member("../escaped.txt"), "outside the workspace"),
        (file_member("/var/absolute.txt"), "outside the workspace"),
        (file_member("ok/../../escaped.txt"), "outside the workspace"),
        (link_member("link", "/etc/passwd"), "not a regular file or directory"),
        (link_member("inner", "ok.txt"), "not a regular file or directory"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(
    tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    archive = archive_with(tmp_path, file_member("harmless.txt"), member)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(UnsafeArchiveError, match=message):
        unpack(archive, target)
    assert os.listdir(target) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_a_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"this is not gzip")
    with pytest.raises(UnsafeArchiveError, match=r"not a readable tar\.gz"):
        unpack(archive, tmp_path)
