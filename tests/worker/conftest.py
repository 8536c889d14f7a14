"""Fixtures of the worker tests (helpers live in ``tests.worker.helpers``)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import pytest

from tests.support.jobtypes import JOB_EFFECTS_TABLE


@pytest.fixture
async def effects_table(conn: psycopg.AsyncConnection[Any]) -> None:
    """The ``job_effects`` table EFFECT jobs write to (no unique key: duplicates would show)."""
    await conn.execute(JOB_EFFECTS_TABLE.encode())


@pytest.fixture
def worker_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture the in-process worker's events, DEBUG and up."""
    caplog.set_level(logging.DEBUG, logger="easyclaw")
    return caplog
