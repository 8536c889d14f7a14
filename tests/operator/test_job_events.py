"""The hub that turns job NOTIFYs into wake-ups for the followers of those jobs."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from easyclaw.operator.job_events import JobEventHub


async def test_a_notification_wakes_only_the_followers_of_its_jobs() -> None:
    hub = JobEventHub()
    first, second, other = uuid4(), uuid4(), uuid4()
    with hub.follow(first) as a, hub.follow(second) as b, hub.follow(other) as c:
        hub.on_notification(f"{first},{second}")
        assert await a.wait_at_most(1.0)
        assert await b.wait_at_most(1.0)
        assert not await c.wait_at_most(0.01)


async def test_a_change_while_the_follower_was_busy_is_reported_by_the_next_wait() -> None:
    hub = JobEventHub()
    job_id = uuid4()
    with hub.follow(job_id) as changes:
        hub.on_notification(str(job_id))
        await asyncio.sleep(0)
        assert await changes.wait_at_most(0.01)
        assert not await changes.wait_at_most(0.01)  # reported once


async def test_reconnecting_wakes_everyone_and_unfollowing_cleans_up() -> None:
    hub = JobEventHub()
    with hub.follow(uuid4()) as a, hub.follow(uuid4()) as b:
        assert hub.followed_jobs == 2
        hub.wake_all()
        assert await a.wait_at_most(1.0)
        assert await b.wait_at_most(1.0)
    assert hub.followed_jobs == 0
    hub.on_notification("not-a-uuid")  # logged and ignored
    hub.on_notification("")
