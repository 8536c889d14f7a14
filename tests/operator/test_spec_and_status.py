"""Spec validation and the status computed from a job row (no cluster needed)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from easyclaw.agents.jobtypes.chat import CHAT
from easyclaw.agents.jobtypes.echo import ECHO
from easyclaw.core.jobtypes import JobTypeRegistry
from easyclaw.core.models import Job, JobStatus
from easyclaw.operator.spec import InvalidSpecError, parse_spec, ttl_seconds
from easyclaw.operator.status import (
    bounded_result,
    invalid_spec_status,
    status_differs,
    status_from_job,
    truncate_text,
)
from tests.operator.conftest import GREET

STARTED = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
FINISHED = datetime(2026, 1, 2, 3, 4, 9, tzinfo=UTC)


@pytest.fixture
def registry() -> JobTypeRegistry:
    return JobTypeRegistry([ECHO, GREET])


def spec(**fields: Any) -> dict[str, Any]:
    return {"type": "GREET", "payload": {"name": "Ada"}, "userId": "u-1", **fields}


def make_job(**fields: Any) -> Job:
    job = Job(
        id=uuid4(),
        user_id="u-1",
        conversation_id=None,
        status=JobStatus.PENDING,
        type="ECHO",
        payload={},
        result=None,
        error=None,
        priority=0,
        attempts=0,
        max_attempts=3,
        timeout_seconds=None,
        run_at=STARTED,
        idempotency_key=None,
        worker_id=None,
        locked_at=None,
        lease_expires_at=None,
        cancel_requested_at=None,
        created_at=STARTED,
        updated_at=STARTED,
        started_at=None,
        finished_at=None,
    )
    return replace(job, **fields)


def test_a_valid_spec_becomes_a_job_request(registry: JobTypeRegistry) -> None:
    conversation = uuid4()
    request = parse_spec(
        spec(priority=7, maxAttempts=4, conversationId=str(conversation)), registry
    )
    assert request.type == "GREET"
    assert request.payload == {"name": "Ada"}
    assert (request.user_id, request.priority, request.max_attempts) == ("u-1", 7, 4)
    assert request.conversation_id == conversation
    assert (request.concurrency_key, request.concurrency_limit) == (None, None)


def test_a_concurrency_key_and_limit_are_part_of_the_request(registry: JobTypeRegistry) -> None:
    request = parse_spec(spec(concurrencyKey="tenant:acme", concurrencyLimit=2), registry)
    assert (request.concurrency_key, request.concurrency_limit) == ("tenant:acme", 2)


def test_chat_is_keyed_by_its_conversation_and_takes_no_key_of_its_own() -> None:
    chat_registry = JobTypeRegistry([CHAT])
    chat = {"type": "CHAT", "payload": {"message": "hi"}, "userId": "u-1"}
    assert parse_spec(chat, chat_registry).concurrency_key is None  # submission derives it
    with pytest.raises(InvalidSpecError, match="CHAT jobs are keyed by their conversation"):
        parse_spec({**chat, "concurrencyKey": "mine"}, chat_registry)


@pytest.mark.parametrize(
    ("bad_spec", "message"),
    [
        (spec(type="NOPE"), "unknown job type 'NOPE'; known types: "),
        (spec(payload="hi"), "spec.payload must be an object, not str"),
        (spec(payload={"name": 3}), "invalid payload for GREET: name: Input should be a valid"),
        (spec(priority=5000), "invalid spec: spec.priority: Input should be less than"),
        (spec(maxAttempts=0), "invalid spec: spec.maxAttempts: Input should be greater than"),
        (spec(conversationId="x"), "invalid spec: spec.conversationId: Input should be a valid"),
        (spec(userId="a b"), "invalid spec: spec.userId: String should match pattern"),
        (spec(userId="alice\n"), "invalid spec: spec.userId: String should match pattern"),
        (spec(typo=1), "invalid spec: spec.typo: Extra inputs are not permitted"),
        (spec(concurrencyKey="a b"), "invalid spec: spec.concurrencyKey: String should match"),
        (spec(concurrencyKey="k\n"), "invalid spec: spec.concurrencyKey: String should match"),
        (spec(concurrencyKey="k", concurrencyLimit=0), "invalid spec: spec.concurrencyLimit:"),
        (spec(concurrencyLimit=2), "spec.concurrencyLimit needs spec.concurrencyKey"),
        ({"payload": {}}, "invalid spec: spec.type: Field required; spec.userId: Field"),
    ],
)
def test_invalid_specs_say_what_is_wrong(
    registry: JobTypeRegistry, bad_spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        parse_spec(bad_spec, registry)
    assert str(raised.value).startswith(message)


def test_ttl_is_read_only_when_usable() -> None:
    assert ttl_seconds({"ttlSecondsAfterFinished": 30}) == 30
    assert ttl_seconds({"ttlSecondsAfterFinished": 0}) == 0
    assert ttl_seconds({"ttlSecondsAfterFinished": -1}) is None
    assert ttl_seconds({"ttlSecondsAfterFinished": True}) is None
    assert ttl_seconds({}) is None


def test_status_mirrors_each_job_status() -> None:
    pending = status_from_job(make_job(), max_bytes=4096)
    assert pending["phase"] == "Pending"
    assert pending["conditions"] is None
    running = status_from_job(
        make_job(status=JobStatus.RUNNING, attempts=1, started_at=STARTED), max_bytes=4096
    )
    assert (running["phase"], running["attempts"]) == ("Running", 1)
    assert running["startedAt"] == "2026-01-02T03:04:05Z"
    assert running["finishedAt"] is None
    cancelled = status_from_job(
        make_job(status=JobStatus.CANCELLED, finished_at=FINISHED), max_bytes=4096
    )
    assert cancelled["phase"] == "Cancelled"
    assert cancelled["conditions"][0]["type"] == "Failed"
    assert cancelled["conditions"][0]["reason"] == "Cancelled"
    assert cancelled["finishedAt"] == "2026-01-02T03:04:09Z"


def test_recomputing_an_unchanged_row_changes_nothing() -> None:
    job = make_job(status=JobStatus.COMPLETED, result={"a": 1}, finished_at=FINISHED)
    written = {k: v for k, v in status_from_job(job, max_bytes=4096).items() if v is not None}
    assert not status_differs(written, status_from_job(job, max_bytes=4096))
    assert status_differs(written, status_from_job(replace(job, attempts=2), max_bytes=4096))
    assert status_differs({**written, "error": "old"}, status_from_job(job, max_bytes=4096))


def test_large_results_and_errors_are_truncated_to_the_limit() -> None:
    big = {"text": "é" * 5000}
    job = make_job(status=JobStatus.FAILED, result=big, error="x" * 10_000, finished_at=FINISHED)
    status = status_from_job(job, max_bytes=256)
    assert status["resultTruncated"] is True
    assert isinstance(status["result"], str)
    assert len(status["result"].encode()) <= 256
    assert status["result"].startswith('{"text":"éé')
    assert status["result"].endswith("…")
    assert len(status["error"].encode()) <= 256
    assert bounded_result({"small": True}, 256) == ({"small": True}, False)
    assert truncate_text("short", 10) == "short"


def test_an_invalid_spec_has_a_failed_status_without_a_job() -> None:
    status = invalid_spec_status("unknown job type 'X'", now=FINISHED, max_bytes=4096)
    assert status["phase"] == "Failed"
    assert status["jobId"] is None
    assert status["error"] == "unknown job type 'X'"
    assert status["finishedAt"] == "2026-01-02T03:04:09Z"
    assert status["conditions"][0]["reason"] == "InvalidSpec"
