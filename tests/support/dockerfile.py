"""Read the parts of the Dockerfile the image tests replay.

No image can be built on the test machine, so the tests take the install
step, the runtime environment and the container commands from the Dockerfile
itself and run them in a clean virtual environment: a change to the
Dockerfile is tested as written.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_VENV = "/opt/easyclaw"


@dataclass
class Stage:
    name: str
    base: str
    runs: list[str] = field(default_factory=list)
    """The shell command of each RUN, without its ``--mount`` and other flags."""
    env: dict[str, str] = field(default_factory=dict)
    instructions: list[tuple[str, str]] = field(default_factory=list)


def run_flags(rest: str) -> tuple[list[str], str]:
    """Split a RUN instruction into its leading ``--flag=value`` words and its command."""
    flags = []
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        flags.append(flag)
        rest = rest.lstrip()
    return flags, rest


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def _parse_env(args: str) -> dict[str, str]:
    env = {}
    for item in shlex.split(args):
        key, _, value = item.partition("=")
        env[key] = value
    return env


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile with their RUN commands and ENV (ARG defaults expanded)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            base = words[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=base))
        elif stages:
            stage = stages[-1]
            stage.instructions.append((keyword, rest))
            if keyword == "RUN":
                stage.runs.append(run_flags(rest)[1])
            elif keyword == "ENV":
                stage.env.update(_parse_env(rest))
    return stages


def exec_form(stage: Stage, keyword: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT, CMD or HEALTHCHECK ... CMD in a stage."""
    for found, rest in reversed(stage.instructions):
        if found == keyword:
            if keyword == "HEALTHCHECK":
                rest = rest[rest.index("CMD ") + 4 :]
            value: list[str] = json.loads(rest)
            return value
    raise LookupError(f"no {keyword} in stage {stage.name}")


def copy_build_context(root: Path, target: Path) -> None:
    """Copy what ``docker build`` would send, honouring the allow-list ``.dockerignore``."""
    patterns = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        included = False
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            glob = bare[3:] if bare.startswith("**/") else bare
            parts = relative.split("/")
            if bare.startswith("**/"):
                hit = any(fnmatch.fnmatch(part, glob) for part in parts)
            else:
                hit = any(
                    fnmatch.fnmatch("/".join(parts[: i + 1]), bare) for i in range(len(parts))
                )
            if hit:
                included = negated
        if included and path.is_file():
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def copy_sources(rest: str) -> tuple[list[str], str]:
    """The sources and the destination of a ``COPY`` from the build context."""
    words = [word for word in shlex.split(rest) if not word.startswith("--")]
    return words[:-1], words[-1]
