"""The embedded PostgreSQL run as root: an unprivileged user of its own, binaries
it can reach without opening up the virtual environment, and no permission
change beyond a search bit on the data directory's closed parents, announced
in one line."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import psycopg
import pytest

from easyclaw.cli.local_postgres import SERVER_BINARIES, SERVER_USER, LocalPostgres

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="needs root: checks how the embedded PostgreSQL drops root"
    ),
]


def server_process(server: LocalPostgres) -> int:
    return int((server.pgdata / "postmaster.pid").read_text().split()[0])


def test_as_root_the_server_runs_as_its_own_user_from_a_copy_of_the_binaries(
    tmp_path: Path,
) -> None:
    closed = tmp_path / "c"
    closed.mkdir()
    closed.chmod(0o700)
    data_dir = closed / "p" / "pg"  # short: a Unix socket path has at most 107 bytes
    notices: list[str] = []
    server = LocalPostgres(data_dir, notice=notices.append)
    server.start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        pid = server_process(server)
        user = pwd.getpwnam(SERVER_USER)
        (uid_line,) = [
            line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        ]  # fmt: skip
        assert set(uid_line.split()[1:]) == {str(user.pw_uid)}  # real, effective, saved, fs
        assert Path(os.readlink(f"/proc/{pid}/exe")).is_relative_to(SERVER_BINARIES)
        assert data_dir.stat().st_uid == user.pw_uid
        assert server.pgdata.stat().st_uid == user.pw_uid
    finally:
        server.stop()

    (notice,) = notices
    assert f"runs as the system user {SERVER_USER}" in notice
    assert f"binaries copied to {SERVER_BINARIES}/" in notice
    assert f"data in {data_dir} owned by that user" in notice
    assert f"{closed} searchable by others (o+x)" in notice
    # Only the search bit was added; nobody else may list the closed folder.
    assert stat.S_IMODE(closed.stat().st_mode) == 0o701
    assert "\n" not in notice


def test_a_second_start_changes_nothing_more_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    LocalPostgres(data_dir, notice=lambda _: None).ensure_initialized()
    modes = {path: path.stat().st_mode for path in (data_dir, *data_dir.parents)}
    notices: list[str] = []
    server = LocalPostgres(data_dir, notice=notices.append)
    server.start()
    server.stop()
    assert {path: path.stat().st_mode for path in modes} == modes
    (notice,) = notices
    assert "searchable" not in notice
    assert "just created" not in notice
