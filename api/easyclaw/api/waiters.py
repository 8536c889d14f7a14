"""Long-poll support: wake the requests waiting on a job when its status changes.

One listener per API process receives ``easyclaw_job_events`` and sets the
events of the requests watching those ids. Waiters also re-read the job now
and then, so a missed notification costs latency, never a wrong answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from easyclaw.core.notifications import JOB_EVENTS, Listener
from easyclaw.core.settings import Settings


class JobWaiters:
    def __init__(self, settings: Settings) -> None:
        self._watching: dict[str, set[asyncio.Event]] = {}
        self.listener = Listener(
            settings,
            {JOB_EVENTS: self._on_job_events},
            application_name="easyclaw-api-listener",
            on_connected=self._wake_all,
        )

    @contextmanager
    def watch(self, job_id: UUID) -> Iterator[asyncio.Event]:
        """An event set whenever the job may have changed; register before reading the job."""
        key = str(job_id)
        event = asyncio.Event()
        self._watching.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            events = self._watching.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._watching[key]

    def _on_job_events(self, payload: str) -> None:
        if not self._watching:
            return
        for key in payload.split(","):
            for event in self._watching.get(key, ()):
                event.set()

    def _wake_all(self) -> None:
        for events in self._watching.values():
            for event in events:
                event.set()
