"""A Listener that cannot connect says so (it goes on retrying)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from easyclaw.core.notifications import Listener
from tests.support.settings import make_settings
from tests.support.waiting import wait_for
from tests.worker.helpers import events


async def test_a_listener_that_cannot_connect_says_so_and_keeps_trying(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Without notifications a worker finds jobs only by its fallback poll and a
    # long-poll only by its re-check: a wrong session URL must not pass in silence.
    caplog.set_level(logging.WARNING, logger="easyclaw")
    listener = Listener(
        make_settings("postgresql://nobody@127.0.0.1:1/none"),
        {"easyclaw_test": print},
        application_name="easyclaw-test-listener",
        max_backoff_seconds=0.05,
    )

    task = asyncio.create_task(listener.run())
    try:
        await wait_for(lambda: len(events(caplog, "listener.connect_failed")) >= 2, timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert not listener.connected.is_set()
