"""Running the ``easyclaw`` command as a real subprocess.

Async tests serve the API on their own event loop, so they must not block it
while the CLI talks to that API: they use ``run_cli``; tests without an
in-process server use ``run_cli_sync``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

EASYCLAW = [sys.executable, "-m", "easyclaw.cli.main"]


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The JSON document the command printed (it must have succeeded)."""
        assert self.returncode == 0, f"easyclaw {' '.join(self.args)} failed:\n{self.stderr}"
        return json.loads(self.stdout)


async def run_cli(*args: str, env: dict[str, str], timeout: float = 30.0) -> CliResult:
    process = await asyncio.create_subprocess_exec(
        *EASYCLAW,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return CliResult(args, process.returncode, stdout.decode(), stderr.decode())


def run_cli_sync(*args: str, env: dict[str, str], timeout: float = 30.0) -> CliResult:
    result = subprocess.run(
        [*EASYCLAW, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return CliResult(args, result.returncode, result.stdout, result.stderr)
