"""Dependencies point one way: processes -> application (agents) -> engine (core).

The engine (queue, schema, settings base, job-type protocol) never imports the
AI application or a process; the application never imports a process. Read
from the source with ast, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

ENGINE = REPO_ROOT / "src/easyclaw/core"
APPLICATION = REPO_ROOT / "src/easyclaw/agents"
PROCESSES = ("easyclaw.api", "easyclaw.worker", "easyclaw.operator", "easyclaw.metrics_mirror")
CLI = "easyclaw.cli"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def imports_from(package: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path in package.rglob("*.py")
        for name in imported_modules(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    )


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        (ENGINE, ("easyclaw.agents", *PROCESSES, CLI)),
        (APPLICATION, (*PROCESSES, CLI)),
    ],
    ids=["engine", "application"],
)
def test_no_layer_imports_a_layer_above_it(package: Path, forbidden: tuple[str, ...]) -> None:
    assert imports_from(package, forbidden) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from easyclaw.agents.llm import ChatReply\n")
    assert imported_modules(module) == {"easyclaw.agents.llm"}
