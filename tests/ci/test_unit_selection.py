"""`make unit` (pytest -m "not slow") leaves out the process-level, image, CDK,
autoscaling and drill tests, and keeps every area's in-process tests."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO_ROOT

LEFT_OUT = (
    "tests/images/",
    "tests/e2e/",
    "tests/infra/",
    "tests/charts/test_autoscaling.py",
    "tests/worker/test_processes.py",
    "tests/worker/test_postgres_restart.py",
    "tests/cli/test_up.py",
    "tests/api/test_fuzz.py",
)
KEPT = ("tests/core/", "tests/api/", "tests/worker/", "tests/cli/", "tests/operator/",
        "tests/charts/", "tests/ci/")  # fmt: skip


def collected(*args: str) -> list[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.mark.slow
def test_unit_selection_leaves_out_the_slow_kinds_and_keeps_every_area() -> None:
    unit = collected("-m", "not slow")
    everything = collected()
    for prefix in LEFT_OUT:
        assert any(node.startswith(prefix) for node in everything), prefix
        assert not [node for node in unit if node.startswith(prefix)], prefix
    for prefix in KEPT:
        assert any(node.startswith(prefix) for node in unit), prefix
    process_tests = [node for node in everything if "worker_processes" in node]
    assert not set(process_tests) & set(unit)
