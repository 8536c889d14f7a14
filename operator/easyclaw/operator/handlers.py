"""What the operator does, as plain functions; ``kopf_app`` only wires them to kopf.

* ``create_job``: validate the spec and enqueue the job once (the resource
  uid is the idempotency key); write ``status.jobId`` and the first status.
* ``follow_job``: for the resource's lifetime, mirror the job row into the
  status whenever the core NOTIFYs a change (or every resync interval), and
  delete the resource ``ttlSecondsAfterFinished`` after it finished.
* ``cancel_job_on_delete``: before the resource goes, cancel its job unless
  it already finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import kopf

from easyclaw.core.db import is_unavailable
from easyclaw.core.jsonlog import EventLogger
from easyclaw.core.kubernetes import KubernetesApiError
from easyclaw.core.models import Job
from easyclaw.operator import jobs
from easyclaw.operator.outage import Outage, db_backoff, retry_while_unavailable
from easyclaw.operator.resource import Phase
from easyclaw.operator.runtime import OperatorRuntime
from easyclaw.operator.spec import InvalidSpecError, parse_spec, ttl_seconds
from easyclaw.operator.status import invalid_spec_status, status_differs, status_from_job

log = EventLogger("easyclaw.operator")


def login(runtime: OperatorRuntime, /, **kwargs: Any) -> kopf.ConnectionInfo:
    """The credentials kopf uses, shared with the operator's own Kubernetes client."""
    info = (
        runtime.connection
        or kopf.login_with_service_account(**kwargs)
        or kopf.login_with_kubeconfig(**kwargs)
    )
    if info is None:
        raise kopf.LoginError(
            "no Kubernetes credentials: run in a pod with a service account, or set KUBECONFIG"
        )
    runtime.kube.use(info)
    return info


async def create_job(
    runtime: OperatorRuntime,
    *,
    spec: Mapping[str, Any],
    uid: str,
    name: str,
    namespace: str,
    body: kopf.Body,
    patch: kopf.Patch,
) -> None:
    """Enqueue the job the spec asks for, or mark the resource Failed if it cannot be one."""
    settings = runtime.settings
    try:
        request = parse_spec(spec, runtime.registry)
        enqueued = await retry_while_unavailable(
            lambda: jobs.submit_job(runtime, request, uid=uid),
            settings=settings,
            body=body,
            namespace=namespace,
            name=name,
            action="enqueue the job",
        )
    except InvalidSpecError as error:
        message = str(error)
        patch.status.update(
            invalid_spec_status(
                message, now=datetime.now(UTC), max_bytes=settings.operator_result_max_bytes
            )
        )
        kopf.warn(body, reason="InvalidSpec", message=message)
        log.warning("operator.invalid_spec", namespace=namespace, name=name, error=message)
        return
    job = enqueued.job
    # Only a new job's status is certain here. For a replayed creation the
    # follower may already be writing newer states, which must not be overwritten
    # with this handler's view; it only needs the id, and the follower does the rest.
    patch.status["jobId"] = str(job.id)
    if enqueued.created:
        patch.status.update(status_from_job(job, max_bytes=settings.operator_result_max_bytes))
    log.info(
        "operator.job_enqueued" if enqueued.created else "operator.job_found",
        namespace=namespace,
        name=name,
        job_id=str(job.id),
        job_type=job.type,
        status=job.status.value,
    )


async def follow_job(
    runtime: OperatorRuntime,
    *,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    uid: str,
    name: str,
    namespace: str,
) -> None:
    """Keep the status in step with the job row, then honour ``ttlSecondsAfterFinished``.

    Runs as a kopf daemon from the first status write until the resource is
    deleted (kopf cancels it then) or, without a TTL, until the job finished.
    """
    written: dict[str, Any] | None = dict(status)
    job_id = _job_id(status)
    if job_id is not None:
        written = await _mirror_job(runtime, job_id, dict(status), uid, name, namespace)
    if written is None:
        return  # the resource is gone or was replaced
    ttl = ttl_seconds(spec)
    finished_at = _parse_time(written.get("finishedAt"))
    if ttl is None or finished_at is None:
        return
    delay = (finished_at - datetime.now(UTC)).total_seconds() + ttl
    if delay > 0:
        await asyncio.sleep(delay)
    deleted = await runtime.kube.delete(namespace=namespace, name=name, uid=uid)
    if deleted:
        log.info("operator.resource_expired", namespace=namespace, name=name, ttl_seconds=ttl)


async def _mirror_job(
    runtime: OperatorRuntime,
    job_id: UUID,
    written: dict[str, Any],
    uid: str,
    name: str,
    namespace: str,
) -> dict[str, Any] | None:
    """Patch the status on every change of the row until the job finished.

    Returns the status as last written, or None when the resource is gone.
    """
    settings = runtime.settings
    # No event here: the status only goes stale meanwhile. A reconnected listener
    # wakes every follower, so a long backoff never delays the catch-up.
    outage = Outage(namespace, name, "follow the job", db_backoff(settings))
    with runtime.hub.follow(job_id) as changes:
        while True:
            wait = settings.operator_resync_seconds
            try:
                job = await jobs.read_job(runtime.pool, job_id)
                outage.answered()
                if job is None:
                    log.warning(
                        "operator.job_missing", namespace=namespace, name=name, job_id=str(job_id)
                    )
                    return written
                desired = status_from_job(job, max_bytes=settings.operator_result_max_bytes)
                if status_differs(written, desired):
                    # The whole status, not just the difference: whatever another writer
                    # (a replayed creation) put there meanwhile, this state wins.
                    if not await runtime.kube.patch_status(
                        namespace=namespace, name=name, uid=uid, status=desired
                    ):
                        return None
                    written = {key: value for key, value in desired.items() if value is not None}
                    _log_status(job, namespace, name)
                if job.status.is_terminal:
                    return written
            except (KubernetesApiError, OSError) as error:
                log.warning(
                    "operator.status_patch_failed",
                    namespace=namespace,
                    name=name,
                    error=str(error),
                )
            except Exception as error:
                if not is_unavailable(error):
                    raise
                wait, _ = outage.failed(error)
            await changes.wait_at_most(wait)


async def run_until_stopped(work: Coroutine[Any, Any, None], stopped: kopf.DaemonStopped) -> None:
    """Run a daemon's work until it ends or kopf asks the daemon to stop.

    Returning when asked, rather than being cancelled, keeps kopf from logging
    (and posting as a Warning event) "Daemon ... is cancelled" for every
    deleted resource and at every operator restart.
    """
    working = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(_stop_requested(stopped))
    try:
        await asyncio.wait({working, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (working, stopping):
            task.cancel()
        await asyncio.gather(working, stopping, return_exceptions=True)
    if not working.cancelled():
        working.result()  # the work's own error, for kopf to retry the daemon


async def _stop_requested(stopped: kopf.DaemonStopped) -> None:
    await stopped.wait()


def _job_id(status: Mapping[str, Any]) -> UUID | None:
    """``status.jobId`` as written by ``create_job``; None if absent or not ours."""
    value = status.get("jobId")
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _log_status(job: Job, namespace: str, name: str) -> None:
    log.info(
        "operator.status_updated",
        namespace=namespace,
        name=name,
        job_id=str(job.id),
        status=job.status.value,
        attempts=job.attempts,
    )


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


async def cancel_job_on_delete(
    runtime: OperatorRuntime,
    *,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    uid: str,
    name: str,
    namespace: str,
    body: kopf.Body,
) -> None:
    """Cancel the resource's job unless it finished; the finalizer holds the resource till then."""
    phase = status.get("phase")
    if phase in {p.value for p in Phase if p.is_finished}:
        return
    user_id = spec.get("userId")
    if not isinstance(user_id, str):
        return  # the spec never made a job
    job_id = _job_id(status)
    job = await retry_while_unavailable(
        lambda: jobs.find_job(runtime.pool, job_id=job_id, user_id=user_id, uid=uid),
        settings=runtime.settings,
        body=body,
        namespace=namespace,
        name=name,
        action="cancel the job",
    )
    if job is None or job.status.is_terminal:
        return
    found = job
    result = await retry_while_unavailable(
        lambda: jobs.cancel_job(runtime.pool, found),
        settings=runtime.settings,
        body=body,
        namespace=namespace,
        name=name,
        action="cancel the job",
    )
    after = result.job.status.value if result.job else None
    log.info(
        "operator.job_cancelled",
        namespace=namespace,
        name=name,
        job_id=str(job.id),
        status=after,
    )


def should_follow(status: Mapping[str, Any]) -> bool:
    """Follow a resource once it has a job (or, for an invalid spec, a final phase)."""
    return bool(status.get("jobId") or status.get("phase"))


def listener_connected(runtime: OperatorRuntime) -> bool:
    """For the liveness report: whether job notifications are arriving (the resync
    timer covers the gaps, so this informs rather than fails the probe)."""
    return runtime.listener.connected.is_set()
