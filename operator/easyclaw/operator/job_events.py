"""Wake whoever follows a job when the core NOTIFYs that its row changed.

The core sends ``easyclaw_job_events`` with the ids of jobs whose status
changed (claimed, finished, retried, requeued, cancelled). One listener per
operator process feeds this hub; each resource's follower subscribes to its
job id and re-reads the row when woken. A follower also re-reads on a timer
(``EASYCLAW_OPERATOR_RESYNC_SECONDS``), and every follower is woken after the
listener (re)connects, so a notification lost during an outage costs at most
one resync interval.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from easyclaw.core.jsonlog import EventLogger

log = EventLogger("easyclaw.operator")


class JobChanges:
    """One follower's view: set when its job changed since the last ``wait``."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def mark(self) -> None:
        self._event.set()

    async def wait_at_most(self, seconds: float) -> bool:
        """Wait until the job changed or ``seconds`` passed; True if it changed.

        A change that arrived while the caller was busy is not lost: it is
        reported by the next call.
        """
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


class JobEventHub:
    """Routes job-change notifications to the followers of those jobs."""

    def __init__(self) -> None:
        self._followers: defaultdict[UUID, set[JobChanges]] = defaultdict(set)

    @contextmanager
    def follow(self, job_id: UUID) -> Iterator[JobChanges]:
        """Subscribe before reading the row, so no change between read and wait is missed."""
        changes = JobChanges()
        self._followers[job_id].add(changes)
        try:
            yield changes
        finally:
            followers = self._followers.get(job_id)
            if followers is not None:
                followers.discard(changes)
                if not followers:
                    del self._followers[job_id]

    def on_notification(self, payload: str) -> None:
        """Listener callback: ``payload`` is comma-separated job ids."""
        for part in filter(None, payload.split(",")):
            try:
                job_id = UUID(part)
            except ValueError:
                log.warning("operator.bad_notification", payload=payload[:200])
                return
            for changes in self._followers.get(job_id, ()):
                changes.mark()

    def wake_all(self) -> None:
        """After a (re)connect: notifications may have been missed, so everyone re-reads."""
        for followers in self._followers.values():
            for changes in followers:
                changes.mark()

    @property
    def followed_jobs(self) -> int:
        return len(self._followers)
