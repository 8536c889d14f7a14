"""The namespace-package layout holds: `easyclaw` is spread over several source
roots (src, api, worker, operator), none of which may turn it into a regular
package, and the installed distribution puts every one of them on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
WHEEL = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]
SOURCE_ROOTS: list[str] = WHEEL["dev-mode-dirs"]
NOT_SOURCE = {".venv", ".git", "node_modules", "cdk.out", ".easyclaw", ".mypy_cache"}


def test_source_roots_agree_everywhere_in_pyproject() -> None:
    assert SOURCE_ROOTS == ["src", "api", "worker", "operator"]
    assert WHEEL["only-include"] == [f"{root}/easyclaw" for root in SOURCE_ROOTS]
    assert set(WHEEL["sources"]) == set(SOURCE_ROOTS)
    assert set(SOURCE_ROOTS) <= set(PYPROJECT["tool"]["mypy"]["mypy_path"].split(":"))
    assert set(SOURCE_ROOTS) <= set(PYPROJECT["tool"]["ruff"]["src"])


def test_no_source_root_makes_easyclaw_a_regular_package() -> None:
    """One `easyclaw/__init__.py` would hide the other roots' subpackages."""
    for root in SOURCE_ROOTS:
        assert (REPO_ROOT / root / "easyclaw").is_dir(), root
        assert not (REPO_ROOT / root / "easyclaw" / "__init__.py").exists(), root
        assert not (REPO_ROOT / root / "__init__.py").exists(), root


def test_every_easyclaw_folder_is_in_a_source_root() -> None:
    found = set()
    for dirpath, dirnames, _ in os.walk(REPO_ROOT):
        dirnames[:] = [name for name in dirnames if name not in NOT_SOURCE]
        relative = Path(dirpath).relative_to(REPO_ROOT)
        if relative.name == "easyclaw" and relative != Path("charts/easyclaw"):  # the chart
            found.add(str(relative.parent))
    assert found == set(SOURCE_ROOTS)


@pytest.mark.slow  # starts a Python process that imports every source root
def test_installed_package_path_holds_every_source_root(tmp_path: Path) -> None:
    """From outside the checkout, with nothing on PYTHONPATH, `easyclaw` is found
    in every source root and the standard library's `operator` is untouched."""
    probe = (
        "import easyclaw, json, operator\n"
        "import easyclaw.core, easyclaw.cli, easyclaw.api, easyclaw.worker, easyclaw.operator\n"
        "print(json.dumps({'path': list(easyclaw.__path__), 'operator': operator.__file__}))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    found = json.loads(result.stdout)
    assert sorted(Path(path) for path in found["path"]) == sorted(
        REPO_ROOT / root / "easyclaw" for root in SOURCE_ROOTS
    )
    assert Path(found["operator"]).parent == Path(os.__file__).parent
