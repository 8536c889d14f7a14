"""Database outages, as the operator's handlers live through them.

A handler that finds the database unreachable keeps trying, inside the
handler, waiting twice as long each time (with jitter, so that resources
created during one outage do not retry in step) up to
``EASYCLAW_OPERATOR_DB_RETRY_MAX_SECONDS``. kopf's own retries
(``TemporaryError``) would instead post a Warning event and patch the
resource's progress annotations on every attempt. Here an outage costs one
Warning event on the resource (reason ``DatabaseUnavailable``) and one
``operator.db_unavailable`` log line, whatever its length; each retry is a
DEBUG ``operator.db_retry`` line, and the end of the outage one
``operator.db_recovered`` line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import kopf

from easyclaw.core.backoff import Backoff
from easyclaw.core.db import is_unavailable
from easyclaw.core.jsonlog import EventLogger
from easyclaw.operator.settings import OperatorSettings

log = EventLogger("easyclaw.operator")

EVENT_REASON = "DatabaseUnavailable"

T = TypeVar("T")


def db_backoff(settings: OperatorSettings) -> Backoff:
    """Twice as long each time, with equal jitter, up to the configured cap."""
    return Backoff(
        base=settings.operator_db_retry_initial_seconds,
        cap=settings.operator_db_retry_max_seconds,
        jitter="equal",
    )


@dataclass
class Outage:
    """One resource's view of the database: reachable, or down since when."""

    namespace: str
    name: str
    action: str
    backoff: Backoff
    since: float | None = field(default=None)

    def failed(self, error: BaseException) -> tuple[float, bool]:
        """Note a failed attempt: the seconds to wait before the next, and whether it
        began an outage (that one is logged as a warning; the rest only at DEBUG)."""
        first = self.since is None
        if first:
            self.since = time.monotonic()
            log.warning(
                "operator.db_unavailable",
                namespace=self.namespace,
                name=self.name,
                action=self.action,
                error=str(error),
            )
        delay = self.backoff.next_delay()
        log.debug(
            "operator.db_retry",
            namespace=self.namespace,
            name=self.name,
            attempt=self.backoff.attempts,
            retry_in_seconds=round(delay, 3),
        )
        return delay, first

    def answered(self) -> None:
        """The database answered: end the outage, if there was one."""
        if self.since is not None:
            log.info(
                "operator.db_recovered",
                namespace=self.namespace,
                name=self.name,
                action=self.action,
                outage_seconds=round(time.monotonic() - self.since, 3),
                attempts=self.backoff.attempts,
            )
        self.since = None
        self.backoff.reset()


async def retry_while_unavailable(
    work: Callable[[], Awaitable[T]],
    *,
    settings: OperatorSettings,
    body: kopf.Body,
    namespace: str,
    name: str,
    action: str,
) -> T:
    """``await work()`` until it does not fail for an unreachable database.

    Other errors pass through at once. The first failure of an outage posts one
    Warning event on the resource saying what waits and for how long at most.
    """
    outage = Outage(namespace, name, action, db_backoff(settings))
    while True:
        try:
            result = await work()
        except Exception as error:
            if not is_unavailable(error):
                raise
            delay, began = outage.failed(error)
            if began:
                kopf.warn(
                    body,
                    reason=EVENT_REASON,
                    message=(
                        f"Cannot {action}: the database is unreachable ({error}). Retrying "
                        f"with backoff up to every {settings.operator_db_retry_max_seconds:g} s."
                    ),
                )
            await asyncio.sleep(delay)
            continue
        outage.answered()
        return result
