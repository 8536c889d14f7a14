"""LISTEN/NOTIFY on a dedicated connection that reconnects by itself.

Channels:

``easyclaw_jobs_ready``
    a job was inserted (or handed back); idle workers should claim now. The
    payload says why: ``inserted`` (the insert trigger), ``submitted`` (the
    API, after its commit), ``released``, ``reaped`` or ``cancelled``.
``easyclaw_cancel``
    payload: a job id whose user asked to cancel it while RUNNING.
``easyclaw_job_events``
    payload: comma-separated ids of jobs whose status changed.

Notifications are a latency optimisation, never the only path: a listener
that was disconnected may have missed some, so ``on_connected`` runs after
every (re)connect and callers re-check the database there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from psycopg import sql

from easyclaw.core.backoff import Backoff
from easyclaw.core.db import connect
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.settings import DatabaseSettings

JOBS_READY = "easyclaw_jobs_ready"
CANCEL = "easyclaw_cancel"
JOB_EVENTS = "easyclaw_job_events"

log = EventLogger("easyclaw.notifications")


class Listener:
    def __init__(
        self,
        settings: DatabaseSettings,
        handlers: Mapping[str, Callable[[str], None]],
        *,
        application_name: str,
        on_connected: Callable[[], None] | None = None,
        max_backoff_seconds: float = 5.0,
    ) -> None:
        self._settings = settings
        self._handlers = dict(handlers)
        self._application_name = application_name
        self._on_connected = on_connected
        self._max_backoff = max_backoff_seconds
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever the connection drops."""
        backoff = Backoff(base=0.1, cap=self._max_backoff)
        while True:
            try:
                conn = await connect(self._settings, application_name=self._application_name)
                async with conn:
                    for channel in self._handlers:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.connected.set()
                    backoff.reset()
                    log.debug("listener.connected", channels=sorted(self._handlers))
                    if self._on_connected is not None:
                        self._on_connected()
                    async for notify in conn.notifies():
                        handler = self._handlers.get(notify.channel)
                        if handler is not None:
                            handler(notify.payload)
            except asyncio.CancelledError:
                self.connected.clear()
                raise
            except Exception as error:
                # Any failure here (database restart, network cut, failover) is
                # handled the same way: wait a little and listen again.
                was_connected = self.connected.is_set()
                self.connected.clear()
                reason = str(error) or type(error).__name__
                if was_connected:
                    log.warning("listener.disconnected", error=reason)
                else:
                    # Say so: otherwise a wrong session URL goes unnoticed, the
                    # process working on without notifications (a worker only
                    # by its fallback poll, long-polls by their re-check).
                    log.warning("listener.connect_failed", error=reason)
                await asyncio.sleep(backoff.next_delay())
