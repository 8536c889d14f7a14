"""The failure drills of bench/drills, in their quick sizes: real worker and API
processes, real SIGKILL / SIGTERM, a real PostgreSQL stopped and started.

``make drills`` runs the same code at the issue's sizes (5,000 jobs, 4
workers, a SIGKILL every 2 s; a 15 s database outage; 5,000 jobs under random
SIGKILLs and SIGSTOPs, a database crash and poison jobs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.drills import chaos, db_restart, kill, sigterm

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.core.migrations import migrate
from tests.support.databases import FAST_UNSAFE_SETTINGS

pytestmark = pytest.mark.slow


async def test_sigkilled_workers_lose_no_job_and_write_each_effect_once(
    database_url: str, tmp_path: Path
) -> None:
    report = await kill.run(database_url, kill.QUICK, tmp_path)
    report.print()
    assert report.problems == []
    assert report.counts["SIGKILLs"] >= 3
    assert report.counts["jobs that needed more than one attempt"] > 0  # kills hit running jobs


async def test_sigterm_finishes_or_hands_back_every_job(database_url: str, tmp_path: Path) -> None:
    report = await sigterm.run(database_url, sigterm.QUICK, tmp_path)
    report.print()
    assert report.problems == []


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    # A crash must not lose commits already acknowledged: synchronous_commit on.
    server = LocalPostgres(
        tmp_path / "pg", settings={**FAST_UNSAFE_SETTINGS, "synchronous_commit": "on"}
    )
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")


async def test_a_database_crash_is_quick_503s_then_recovery_with_nothing_lost(
    own_postgres: LocalPostgres, tmp_path: Path
) -> None:
    await migrate(own_postgres.url())
    report = await db_restart.run(own_postgres, own_postgres.url(), db_restart.QUICK, tmp_path)
    report.print()
    assert report.problems == []


async def test_chaos_of_kills_pauses_a_database_crash_and_poison_loses_nothing(
    own_postgres: LocalPostgres, tmp_path: Path
) -> None:
    await migrate(own_postgres.url())
    report = await chaos.run(own_postgres, own_postgres.url(), chaos.QUICK, tmp_path)
    report.print()
    assert report.problems == []
    assert report.counts["jobs lost"] == 0
    assert report.counts["effects twice"] == 0
    assert report.counts["stuck jobs"] == 0
