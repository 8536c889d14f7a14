"""A clean virtual environment built by the Dockerfile's own install step, once per session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import dockerfile
from tests.support.paths import REPO_ROOT


@dataclass(frozen=True)
class Image:
    """Stands in for the image: its venv, its environment and its commands."""

    venv: Path
    runtime: dockerfile.Stage
    workdir: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The runtime stage's ENV with the venv's path, as a container would see it."""
        env = {"HOME": str(self.workdir), "LANG": "C.UTF-8"}
        for key, value in self.runtime.env.items():
            value = value.replace(dockerfile.IMAGE_VENV, str(self.venv))
            env[key] = value.replace("$PATH", "/usr/bin:/bin")
        env.update(extra)
        return env

    def command(self, argv: list[str]) -> list[str]:
        """Resolve the first word on the image's PATH (the venv), as exec form does."""
        first = self.venv / "bin" / argv[0]
        return [str(first), *argv[1:]]


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The builder stage replayed in order: each COPY brings only what it names from
    the build context into the (initially empty) WORKDIR, each RUN runs there. So a
    step that needs a file it was not given yet fails here as it would in a build."""
    stages = dockerfile.parse(REPO_ROOT / "Dockerfile")
    builder, runtime = stages[0], stages[-1]
    context = tmp_path_factory.mktemp("build-context")
    dockerfile.copy_build_context(REPO_ROOT, context)
    workdir = tmp_path_factory.mktemp("builder-workdir")
    venv = tmp_path_factory.mktemp("image") / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env.update(builder.env)
    for keyword, rest in builder.instructions:
        if keyword == "COPY":
            sources, destination = dockerfile.copy_sources(rest)
            target = workdir / destination
            for source in sources:
                path = context / source.rstrip("/")
                if path.is_dir():  # a directory's contents, as COPY does
                    shutil.copytree(path, target, dirs_exist_ok=True)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / path.name)
        elif keyword == "RUN":
            _, run = dockerfile.run_flags(rest)
            script = run.replace(dockerfile.IMAGE_VENV, str(venv))
            # The image's `python` is the base interpreter, not the test venv's.
            script = script.replace("python -m venv", f"{base_python} -m venv")
            result = subprocess.run(
                ["/bin/sh", "-c", script],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            assert result.returncode == 0, f"Dockerfile step `RUN {run}` failed:\n{result.stderr}"
    return Image(venv=venv, runtime=runtime, workdir=tmp_path_factory.mktemp("workdir"))
