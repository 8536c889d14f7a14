"""A pytest plugin that fails the run when a test is skipped for a reason
nobody agreed to.

A skipped test passes silently, so a missing tool or a stale guard would turn
a regression into a skip. Every skip (``pytest.skip``, ``skipif``,
``importorskip``, ``xfail``) makes the run fail unless its reason matches a line
of the allow-list file (``.ci/allowed-skips.txt``; ini option
``allowed_skips_file``). Lines are exact reasons or ``fnmatch`` patterns;
blank lines and ``#`` comments are ignored. Deselecting tests (``-m``, ``-k``)
is not skipping and is not affected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

DEFAULT_ALLOW_LIST = ".ci/allowed-skips.txt"


def read_allow_list(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skipped (or xfailed) test gave, as pytest prints it."""
    if hasattr(report, "wasxfail"):
        return f"xfail: {report.wasxfail}"
    if isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    return str(report.longrepr)


@dataclass(eq=False)  # pluggy keeps plugins in sets: hash by identity
class SkipGate:
    """Collects the skips of one run and fails the run if any is not allowed."""

    allow_list: str
    allowed: list[str]
    unlisted: list[tuple[str, str]] = field(default_factory=list)

    def allows(self, reason: str) -> bool:
        return any(fnmatchcase(reason, pattern) for pattern in self.allowed)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped:
            reason = skip_reason(report)
            if not self.allows(reason):
                self.unlisted.append((report.nodeid, reason))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unlisted and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.unlisted:
            return
        terminalreporter.section("skips not in the allow-list", red=True, bold=True)
        for nodeid, reason in self.unlisted:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(
            f"{len(self.unlisted)} test(s) skipped for a reason not listed in "
            f"{self.allow_list}, so the run fails. Fix the cause, or add the exact "
            "reason there with a comment saying why the skip is acceptable."
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "allowed_skips_file",
        "file listing the skip reasons a run may contain (others fail the run)",
        default=DEFAULT_ALLOW_LIST,
    )


def pytest_configure(config: pytest.Config) -> None:
    allow_list = str(config.getini("allowed_skips_file"))
    allowed = read_allow_list(config.rootpath / allow_list)
    config.pluginmanager.register(SkipGate(allow_list, allowed), "easyclaw-skip-gate")
