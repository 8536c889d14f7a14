"""CI cannot pass by skipping: a skip fails the run unless its reason is allow-listed.

The gate (tests/support/skip_gate.py) is exercised on small throwaway test
files in a separate pytest process, the way `make test` would meet them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT
from tests.support.skip_gate import read_allow_list

SKIPPING_TESTS = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no helm on this machine")

@pytest.mark.skipif(True, reason="not on this branch yet")
def test_skipif():
    pass

def test_importorskip():
    pytest.importorskip("no_such_module_anywhere")

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False

@pytest.mark.slow
def test_slow_and_skipped():
    pytest.skip("slow and skipped")
"""


def run_pytest(tmp_path: Path, tests: str, allowed: str = "", *args: str) -> tuple[int, str]:
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nallowed_skips_file = allowed.txt\nmarkers =\n    slow: slow\n"
    )
    (tmp_path / "allowed.txt").write_text(allowed)
    (tmp_path / "test_sample.py").write_text(tests)
    # A folder with a conftest of its own makes pytest build a hook subset that
    # excludes that conftest, which needs every registered plugin to be hashable.
    (tmp_path / "area").mkdir()
    (tmp_path / "area" / "conftest.py").write_text("")
    (tmp_path / "area" / "test_area.py").write_text("def test_area():\n    pass\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.skip_gate", "-p", "no:cacheprovider",
         "-rs", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.mark.slow
def test_every_kind_of_unlisted_skip_fails_the_run_and_is_named(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, SKIPPING_TESTS)
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "skips not in the allow-list" in output
    for reason in (
        "no helm on this machine",
        "not on this branch yet",
        "could not import 'no_such_module_anywhere'",
        "xfail: known bug",
        "slow and skipped",
    ):
        assert reason in output
    assert "5 test(s) skipped for a reason not listed in allowed.txt" in output


@pytest.mark.slow
def test_listed_reasons_and_patterns_are_allowed(tmp_path: Path) -> None:
    allowed = (
        "# comments and blank lines are ignored\n\n"
        "no helm on this machine\n"
        "not on this branch *\n"
        "could not import 'no_such_module_anywhere'*\n"
        "xfail: known bug\n"
        "slow and skipped\n"
    )
    code, output = run_pytest(tmp_path, SKIPPING_TESTS, allowed)
    assert code == pytest.ExitCode.OK, output
    assert "skips not in the allow-list" not in output


@pytest.mark.slow
def test_one_unlisted_reason_among_listed_ones_still_fails(tmp_path: Path) -> None:
    allowed = "no helm on this machine\nnot on this branch yet\nxfail: known bug\n"
    code, output = run_pytest(tmp_path, SKIPPING_TESTS, allowed)
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "2 test(s) skipped" in output


@pytest.mark.slow
def test_deselected_tests_are_not_skips(tmp_path: Path) -> None:
    """`make unit` deselects slow tests with -m; that must not trip the gate."""
    only_slow_skips = "import pytest\n\ndef test_runs():\n    pass\n\n" + (
        '@pytest.mark.slow\ndef test_slow():\n    pytest.skip("slow")\n'
    )
    code, output = run_pytest(tmp_path, only_slow_skips, "", "-m", "not slow")
    assert code == pytest.ExitCode.OK, output
    assert "2 passed, 1 deselected" in output


@pytest.mark.slow
def test_a_failing_run_keeps_its_failure(tmp_path: Path) -> None:
    code, output = run_pytest(tmp_path, "def test_fails():\n    assert False\n")
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "skips not in the allow-list" not in output


def test_this_suite_runs_under_the_gate(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.has_plugin("easyclaw-skip-gate")
    assert request.config.getini("allowed_skips_file") == ".ci/allowed-skips.txt"


def test_every_allowed_skip_says_why() -> None:
    """The allow-list is near-empty by policy, and each entry has a comment above it."""
    path = REPO_ROOT / ".ci" / "allowed-skips.txt"
    lines = path.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert index > 0, f"no reason given for {line!r}"
            assert lines[index - 1].startswith("#"), f"no reason given for {line!r}"
    assert len(read_allow_list(path)) <= 3


def test_ci_runs_make_test() -> None:
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert "\nmake test\n" in script
