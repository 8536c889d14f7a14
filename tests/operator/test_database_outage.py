"""A database outage costs each EasyClawJob one event, however long it lasts.

The operator runs against a PostgreSQL of the test's own, which is stopped
after the operator started. A resource created meanwhile waits: its handler
retries with exponential backoff (capped) and posts a single Warning event
``DatabaseUnavailable``; when the database is back, the job is enqueued and
nothing more is posted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from easyclaw.cli.local_postgres import LocalPostgres
from easyclaw.cli.settings import Settings
from easyclaw.core.backoff import backoff_ceiling
from easyclaw.core.migrations import migrate
from easyclaw.operator.outage import EVENT_REASON, db_backoff
from tests.operator.conftest import NAMESPACE, OperatorUnderTest
from tests.support.databases import FAST_UNSAFE_SETTINGS
from tests.support.settings import make_settings
from tests.support.waiting import wait_for

INITIAL = 0.05
CAP = 0.4
FIELDS = "easyclaw_fields"


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[LocalPostgres]:
    server = LocalPostgres(tmp_path / "pg", settings=FAST_UNSAFE_SETTINGS)
    await asyncio.to_thread(server.start)
    await migrate(server.url())
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop, "immediate")


@pytest.fixture
def operator_settings(own_postgres: LocalPostgres) -> Settings:
    return make_settings(
        own_postgres.url(),
        operator_namespaces=[NAMESPACE],
        operator_health_port=0,
        operator_resync_seconds=60.0,
        operator_db_retry_initial_seconds=INITIAL,
        operator_db_retry_max_seconds=CAP,
        db_pool_timeout_seconds=0.3,
        db_connect_timeout_seconds=0.5,
    )


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    return [
        getattr(record, FIELDS, {})
        for record in caplog.records
        if record.name == "easyclaw.operator" and record.getMessage() == event
    ]


@pytest.mark.slow  # starts, stops and restarts a PostgreSQL server of its own
async def test_an_outage_is_one_event_and_backed_off_retries(
    operator: OperatorUnderTest, own_postgres: LocalPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="easyclaw.operator")
    await asyncio.to_thread(own_postgres.stop, "fast")
    await operator.create(
        "during-outage",
        {"type": "ECHO", "payload": {"message": "later"}, "userId": "outage-user"},
    )

    async def warned() -> list[dict[str, Any]]:
        return [e for e in await operator.events_about("during-outage") if e["type"] == "Warning"]

    (event,) = await wait_for(warned, timeout=15, interval=0.05)
    assert event["reason"] == EVENT_REASON
    assert "Cannot enqueue the job: the database is unreachable" in event["message"]
    # Let it retry for a while: the waits grow up to the cap, and no event is added.
    await wait_for(lambda: len(records(caplog, "operator.db_retry")) >= 7, timeout=20)
    retries = [r for r in records(caplog, "operator.db_retry") if r["name"] == "during-outage"]
    for retry in retries:
        ceiling = backoff_ceiling(retry["attempt"] - 1, base=INITIAL, cap=CAP)
        assert ceiling / 2 - 0.001 <= retry["retry_in_seconds"] <= ceiling + 0.001, retry
    assert {r["retry_in_seconds"] <= CAP for r in retries} == {True}
    assert max(r["attempt"] for r in retries) >= 7  # past the cap (0.05 * 2**3 = 0.4)
    assert len(await warned()) == 1
    assert len(records(caplog, "operator.db_unavailable")) == 1

    await asyncio.to_thread(own_postgres.start)
    status = await operator.wait_phase("during-outage", "Pending", timeout=20)
    assert status["jobId"]
    assert len(await warned()) == 1, "recovery posts no more warnings"
    (recovered,) = records(caplog, "operator.db_recovered")
    assert recovered["name"] == "during-outage"
    assert recovered["attempts"] >= 7


def test_the_outage_backoff_is_the_settings_numbers_with_equal_jitter() -> None:
    tuned = make_settings(
        "postgresql://unused@localhost/unused",
        operator_db_retry_initial_seconds=1.0,
        operator_db_retry_max_seconds=60.0,
    )
    backoff = db_backoff(tuned)
    assert (backoff.base, backoff.cap, backoff.jitter) == (1.0, 60.0, "equal")
