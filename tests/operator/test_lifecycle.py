"""An EasyClawJob's life: enqueued once, followed to the end, cancelled on delete,
deleted after its TTL; invalid specs fail without enqueueing anything."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg

from easyclaw.core.db import AsyncPool
from easyclaw.core.models import JobStatus
from easyclaw.operator.resource import GROUP
from tests.operator.conftest import OperatorUnderTest, job_rows
from tests.support.waiting import wait_for
from tests.worker.helpers import get, running_worker, wait_status

Conn = psycopg.AsyncConnection[Any]
USER = "operator-user"
HANDLED = f"{GROUP}/last-handled-configuration"


def echo(message: str = "Hello from EasyClaw!", **extra: Any) -> dict[str, Any]:
    return {"type": "ECHO", "payload": {"message": message}, "userId": USER, **extra}


def handled(obj: dict[str, Any]) -> bool:
    return HANDLED in (obj["metadata"].get("annotations") or {})


async def test_created_resource_is_enqueued_once_even_when_its_creation_is_replayed(
    operator: OperatorUnderTest, conn: Conn
) -> None:
    uid = await operator.create("hello", echo(priority=5, maxAttempts=2))
    status = await operator.wait_phase("hello", "Pending")
    [(job_id, job_status, key, user_id)] = await job_rows(conn)
    assert status == {"jobId": str(job_id), "phase": "Pending", "attempts": 0}
    assert (job_status, key, user_id) == ("PENDING", f"{GROUP}/easyclawjobs/{uid}", USER)
    job = await get(conn, job_id)
    assert (job.type, job.priority, job.max_attempts, job.payload) == (
        "ECHO",
        5,
        2,
        {"message": "Hello from EasyClaw!"},
    )

    # Make kopf forget it handled the creation, then restart it: the new watch
    # replays the object as ADDED, the creation handler runs again, and the uid
    # (the idempotency key) finds the job the first run created.
    await operator.patch("hello", {"metadata": {"annotations": {HANDLED: None}}})
    await operator.stop()
    await operator.start()
    replayed = await operator.wait_object("hello", handled)
    assert [row[0] for row in await job_rows(conn)] == [job_id]
    assert replayed["status"]["jobId"] == str(job_id)


async def test_status_follows_the_job_to_completed_when_a_worker_runs_it(
    operator: OperatorUnderTest, conn: Conn, pool: AsyncPool
) -> None:
    await operator.create("hello", echo())
    pending = await operator.wait_phase("hello", "Pending")
    async with running_worker(operator.settings, pool):
        # The resync interval is 60 s, so only NOTIFY can make this quick.
        status = await operator.wait_phase("hello", "Completed", timeout=5.0)
    assert status["jobId"] == pending["jobId"]
    assert status["attempts"] == 1
    assert status["result"] == {"message": "Hello from EasyClaw!"}
    assert "error" not in status
    assert "resultTruncated" not in status
    assert status["startedAt"] <= status["finishedAt"]
    [condition] = status["conditions"]
    assert condition == {
        "type": "Complete",
        "status": "True",
        "reason": "Completed",
        "message": "job completed",
        "lastTransitionTime": status["finishedAt"],
    }


async def test_failed_and_retried_jobs_show_their_attempts_and_error(
    operator: OperatorUnderTest, pool: AsyncPool
) -> None:
    await operator.create("fails", {"type": "FAIL", "payload": {"reason": "no"}, "userId": USER})
    await operator.create("flaky", {"type": "FLAKY", "payload": {"succeed_on": 2}, "userId": USER})
    async with running_worker(operator.settings, pool):
        failed = await operator.wait_phase("fails", "Failed", timeout=5.0)
        completed = await operator.wait_phase("flaky", "Completed", timeout=8.0)
    assert failed["error"] == "no"
    assert failed["attempts"] == 1
    assert failed["conditions"][0]["type"] == "Failed"
    assert failed["conditions"][0]["message"] == "no"
    assert completed["attempts"] == 2
    assert completed["result"] == {"attempt": 2}
    assert "error" not in completed  # the retry's error is gone once it succeeded


async def test_status_follows_a_row_changed_without_notify_within_the_resync_interval(
    operator: OperatorUnderTest, conn: Conn
) -> None:
    await operator.stop()
    await operator.start(operator.settings.model_copy(update={"operator_resync_seconds": 0.3}))
    await operator.create("hello", echo())
    status = await operator.wait_phase("hello", "Pending")
    # A requeue as the reaper does it, but without its NOTIFY: only the timer sees it.
    await conn.execute(
        b"UPDATE jobs SET attempts = 1, error = 'lease expired: worker w stopped heartbeating'"
        b" WHERE id = %s",
        (status["jobId"],),
    )
    requeued = await operator.wait_status("hello", lambda s: s.get("attempts") == 1, timeout=3)
    assert requeued["phase"] == "Pending"
    assert requeued["error"].startswith("lease expired")


async def test_deleting_a_resource_cancels_its_running_job(
    operator: OperatorUnderTest, conn: Conn, pool: AsyncPool
) -> None:
    await operator.create("slow", {"type": "SLEEP", "payload": {"seconds": 60}, "userId": USER})
    async with running_worker(operator.settings, pool):
        status = await operator.wait_phase("slow", "Running", timeout=5.0)
        await operator.delete("slow")
        job = await wait_status(conn, UUID(status["jobId"]), JobStatus.CANCELLED, timeout=5.0)
        await operator.wait_gone("slow")
    assert job.cancel_requested_at is not None
    assert job.attempts == 1


async def test_deleting_a_resource_cancels_its_pending_job_at_once(
    operator: OperatorUnderTest, conn: Conn
) -> None:
    await operator.create("waiting", echo())
    status = await operator.wait_phase("waiting", "Pending")
    await operator.delete("waiting")
    await operator.wait_gone("waiting")
    job = await get(conn, UUID(status["jobId"]))
    assert job.status is JobStatus.CANCELLED


async def test_deleting_a_finished_resource_leaves_its_job_alone(
    operator: OperatorUnderTest, conn: Conn, pool: AsyncPool
) -> None:
    await operator.create("done", echo())
    async with running_worker(operator.settings, pool):
        status = await operator.wait_phase("done", "Completed", timeout=5.0)
    await operator.delete("done")
    await operator.wait_gone("done")
    job = await get(conn, UUID(status["jobId"]))
    assert (job.status, job.cancel_requested_at) == (JobStatus.COMPLETED, None)


async def test_finished_resources_are_deleted_after_their_ttl(
    operator: OperatorUnderTest, pool: AsyncPool
) -> None:
    await operator.create("short-lived", echo(ttlSecondsAfterFinished=1))
    await operator.create("kept", echo())
    async with running_worker(operator.settings, pool):
        await operator.wait_phase("kept", "Completed", timeout=5.0)
        await operator.wait_gone("short-lived", timeout=6.0)
    assert await operator.get("kept") is not None


async def test_unknown_type_fails_with_an_event_and_enqueues_nothing(
    operator: OperatorUnderTest, conn: Conn
) -> None:
    await operator.create("typo", {"type": "ECHOO", "payload": {}, "userId": USER})
    status = await operator.wait_phase("typo", "Failed")
    assert status["error"].startswith("unknown job type 'ECHOO'; known types: ")
    assert "ECHO" in status["error"]
    assert "jobId" not in status
    assert status["conditions"][0]["reason"] == "InvalidSpec"
    event = await _warning_event(operator, "typo")
    assert event["message"] == status["error"]
    assert await job_rows(conn) == []


async def test_payload_that_is_not_an_object_fails_readably(
    operator: OperatorUnderTest, conn: Conn
) -> None:
    await operator.create("listed", {"type": "ECHO", "payload": ["a"], "userId": USER})
    status = await operator.wait_phase("listed", "Failed")
    assert status["error"] == "spec.payload must be an object, not list"
    assert (await _warning_event(operator, "listed"))["message"] == status["error"]
    assert await job_rows(conn) == []


async def test_payload_is_validated_against_the_job_types_model(
    operator: OperatorUnderTest, conn: Conn
) -> None:
    await operator.create("nameless", {"type": "GREET", "payload": {}, "userId": USER})
    await operator.create("bad-user", {"type": "GREET", "payload": {"name": "x"}, "userId": ""})
    nameless = await operator.wait_phase("nameless", "Failed")
    bad_user = await operator.wait_phase("bad-user", "Failed")
    assert nameless["error"] == "invalid payload for GREET: name: Field required"
    assert bad_user["error"].startswith("invalid spec: spec.userId: String should match pattern")
    assert await job_rows(conn) == []
    await operator.delete("nameless")  # nothing to cancel, so it goes at once
    await operator.wait_gone("nameless")


async def _warning_event(operator: OperatorUnderTest, name: str) -> dict[str, Any]:
    async def posted() -> dict[str, Any] | None:
        for event in await operator.events_about(name):
            if event.get("reason") == "InvalidSpec" and event.get("type") == "Warning":
                return event
        return None

    event: dict[str, Any] = await wait_for(posted, timeout=10.0)
    return event


async def test_a_conversation_of_another_user_is_refused(
    operator: OperatorUnderTest, conn: Conn
) -> None:
    stranger = "00000000-0000-7000-8000-000000000001"
    await operator.create("chat", echo(conversationId=stranger))
    status = await operator.wait_phase("chat", "Failed")
    assert status["error"] == (f"spec.conversationId: user '{USER}' has no conversation {stranger}")
    assert await job_rows(conn) == []


async def test_a_concurrency_key_in_the_spec_keys_the_job(
    operator: OperatorUnderTest, conn: Conn
) -> None:
    await operator.create("keyed", echo(concurrencyKey="tenant:acme", concurrencyLimit=2))
    status = await operator.wait_phase("keyed", "Pending")
    job = await get(conn, UUID(status["jobId"]))
    assert (job.concurrency_key, job.concurrency_limit) == ("tenant:acme", 2)
