"""Mirror the queue's numbers to CloudWatch, so AWS alarms and dashboards can see them.

``easyclaw metrics-mirror`` runs this as its own small Deployment. Every
``EASYCLAW_METRICS_MIRROR_INTERVAL_SECONDS`` it reads the queue statistics
and sends them in one ``PutMetricData`` call to ``EASYCLAW_CLOUDWATCH_NAMESPACE``:

==========================  =======  =============================================
metric                      unit     meaning
==========================  =======  =============================================
PendingJobs                 Count    jobs waiting (including retries not yet due)
RunningJobs                 Count    jobs being run now
RecentFailures              Count    jobs that ended FAILED in the last 5 minutes
CompletedJobs               Count    jobs that ended COMPLETED in the last minute
OldestPendingAgeSeconds     Seconds  how long the oldest ready job has waited
WorkerCount                 Count    workers whose heartbeat is recent
==========================  =======  =============================================

Every datum carries the dimensions of ``EASYCLAW_METRICS_DIMENSIONS``
(``Cluster=…,Environment=…``), so several clusters can share one account
without mixing their numbers; alarms and dashboards select the same set.

Exactly one replica publishes: the one holding a PostgreSQL advisory lock
(query ``metrics_mirror_try_lock``) on its own connection. It also reads the
statistics through that connection, so a replica that lost its session (and
with it the lock) cannot publish. The others wait and try again every interval.

AWS problems never stop the process: throttling is retried with exponential
backoff and jitter within the interval, any other error is logged and the next
interval tries again. Without an AWS region in the environment (``AWS_REGION``
or ``AWS_DEFAULT_REGION``) the mirror is disabled: it logs
``metrics_mirror.disabled`` once and idles (serving ``/healthz``) until
stopped, so a Deployment does not crash-loop. Credentials come from boto3's
usual chain (IRSA's web identity token on EKS).

``/healthz`` is the liveness of publishing, not of the process: the leader
answers 503 once its last successful publication (or, before the first, its
start as leader) is older than ``EASYCLAW_METRICS_MIRROR_STALE_SECONDS``
(default five intervals), so Kubernetes restarts a mirror that keeps failing
and the failure shows as restarts instead of a quietly empty dashboard.
Standby and disabled replicas publish nothing by design and stay healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from easyclaw.core import queue
from easyclaw.core.backoff import backoff_delay
from easyclaw.core.db import UNAVAILABLE_ERRORS, AsyncConn, check_database, connect
from easyclaw.core.errors import DatabaseUnavailableError
from easyclaw.core.jsonlog import EventLogger, configure_logging
from easyclaw.core.models import QueueStats
from easyclaw.core.probe_server import ProbeServer, Response
from easyclaw.core.queries import query
from easyclaw.metrics_mirror.settings import MirrorProcessSettings

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

log = EventLogger("easyclaw.metrics_mirror")

# Error codes AWS uses for "slow down"; anything else is not retried within an interval.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)

# Errors after which the mirror reconnects (and so competes for the lock afresh).
_RECONNECT_ERRORS: tuple[type[Exception], ...] = (*UNAVAILABLE_ERRORS, DatabaseUnavailableError)

Role = Literal["starting", "standby", "leader", "disabled", "stopped"]


def metric_data(
    stats: QueueStats, dimensions: Mapping[str, str], timestamp: datetime
) -> list[MetricDatumTypeDef]:
    """The datums of one publication, all with the same dimensions and timestamp."""
    dimension_list = [{"Name": name, "Value": value} for name, value in dimensions.items()]
    values: list[tuple[str, float, Literal["Count", "Seconds"]]] = [
        ("PendingJobs", stats.pending, "Count"),
        ("RunningJobs", stats.running, "Count"),
        ("RecentFailures", stats.recent_failures, "Count"),
        ("CompletedJobs", stats.completed_last_minute, "Count"),
        ("OldestPendingAgeSeconds", stats.oldest_pending_age_seconds, "Seconds"),
        ("WorkerCount", stats.live_workers, "Count"),
    ]
    return [
        {
            "MetricName": name,
            "Value": float(value),
            "Unit": unit,
            "Timestamp": timestamp,
            "Dimensions": dimension_list,  # type: ignore[typeddict-item]
        }
        for name, value, unit in values
    ]


def cloudwatch_client(settings: MirrorProcessSettings) -> CloudWatchClient | None:
    """A CloudWatch client from the environment's region and credentials; None without a region.

    botocore's own retries are off: the mirror does its own backoff, so one
    throttled call never blocks longer than the interval.
    """
    # botocore reads AWS_DEFAULT_REGION (and profiles); EKS and the chart set AWS_REGION.
    region = os.environ.get("AWS_REGION") or boto3.session.Session().region_name
    if not region:
        return None
    return boto3.session.Session(region_name=region).client(
        "cloudwatch",
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=15,
        ),
    )


def _error_code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "Unknown"))
    return type(error).__name__


class MetricsMirror:
    """Publishes the queue statistics while it holds the mirror lock; see the module doc."""

    def __init__(
        self,
        settings: MirrorProcessSettings,
        client: CloudWatchClient | None,
        *,
        backoff_base_seconds: float = 1.0,
        max_attempts: int = 5,
        reconnect_delay_seconds: float = 5.0,
    ) -> None:
        self._settings = settings
        self._client = client
        self._backoff_base_seconds = backoff_base_seconds
        self._max_attempts = max_attempts
        self._reconnect_delay_seconds = reconnect_delay_seconds
        self._stopping = asyncio.Event()
        self.role: Role = "starting"
        self.publications = 0
        """Successful PutMetricData calls since start."""
        self.last_published_at: datetime | None = None
        # Monotonic time of the last successful publication, or of becoming leader.
        self._publishing_since: float | None = None

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stale_after_seconds(self) -> float:
        configured = self._settings.metrics_mirror_stale_seconds
        return configured or 5 * self._settings.metrics_mirror_interval_seconds

    def is_stale(self) -> bool:
        """True if this replica leads but has not published within the stale window."""
        if self.role != "leader" or self._publishing_since is None:
            return False
        return time.monotonic() - self._publishing_since > self.stale_after_seconds

    async def run(self) -> None:
        """Publish (or wait for the lock) until ``stop()``; never raises for AWS or DB errors."""
        if self._client is None:
            self.role = "disabled"
            log.info(
                "metrics_mirror.disabled",
                reason="no AWS region (set AWS_REGION) so nothing is published",
            )
            await self._stopping.wait()
            self.role = "stopped"
            return
        log.info(
            "metrics_mirror.started",
            namespace=self._settings.cloudwatch_namespace,
            interval_seconds=self._settings.metrics_mirror_interval_seconds,
            dimensions=self._settings.metrics_dimensions,
        )
        while not self._stopping.is_set():
            try:
                conn = await connect(self._settings, application_name="easyclaw-metrics-mirror")
            except UNAVAILABLE_ERRORS as error:
                self._database_unavailable(error)
                await self._sleep(self._reconnect_delay_seconds)
                continue
            try:
                async with conn:
                    await self._hold_lock_and_publish(conn)
            except _RECONNECT_ERRORS as error:
                self._database_unavailable(error)
                await self._sleep(self._reconnect_delay_seconds)
            except Exception:
                # A bug must not take the host process down; the next round starts afresh.
                log.error("metrics_mirror.error", exc_info=True)
                await self._sleep(self._reconnect_delay_seconds)
        self.role = "stopped"
        log.info("metrics_mirror.stopped", publications=self.publications)

    def _database_unavailable(self, error: BaseException) -> None:
        if self.role == "leader":
            log.warning("metrics_mirror.lost_lock", reason="database connection lost")
        self.role = "standby"
        log.warning("metrics_mirror.db_unavailable", error=str(error) or type(error).__name__)

    async def _hold_lock_and_publish(self, conn: AsyncConn) -> None:
        interval = self._settings.metrics_mirror_interval_seconds
        while not self._stopping.is_set():
            cursor = await conn.execute(query("metrics_mirror_try_lock"))
            row = await cursor.fetchone()
            if row and row[0]:
                break
            if self.role != "standby":
                self.role = "standby"
                log.info("metrics_mirror.standby", reason="another replica holds the lock")
            await self._sleep(interval)
        else:
            return
        self.role = "leader"
        self._publishing_since = time.monotonic()
        log.info("metrics_mirror.leader")
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            await self.publish_once(conn)
            await self._sleep(interval - (loop.time() - started))

    async def publish_once(self, conn: AsyncConn) -> bool:
        """Read the statistics and send them; True if CloudWatch accepted them."""
        stats = await queue.queue_stats(
            conn, worker_alive_seconds=self._settings.worker_lease_seconds * 2
        )
        data = metric_data(stats, self._settings.metrics_dimensions, datetime.now(UTC))
        return await self._put_with_backoff(data)

    async def _put_with_backoff(self, data: list[MetricDatumTypeDef]) -> bool:
        assert self._client is not None
        client = self._client
        namespace = self._settings.cloudwatch_namespace
        budget = self._settings.metrics_mirror_interval_seconds
        for attempt in range(1, self._max_attempts + 1):
            try:
                await asyncio.to_thread(
                    client.put_metric_data, Namespace=namespace, MetricData=data
                )
            except (ClientError, BotoCoreError) as error:
                code = _error_code(error)
                if code not in THROTTLING_CODES or attempt == self._max_attempts:
                    log.error(
                        "metrics_mirror.publish_failed",
                        code=code,
                        error=str(error),
                        attempts=attempt,
                    )
                    return False
                delay = backoff_delay(
                    attempt - 1, base=self._backoff_base_seconds, cap=budget, jitter="equal"
                )
                log.warning("metrics_mirror.throttled", attempt=attempt, retry_in_seconds=delay)
                await self._sleep(delay)
                if self._stopping.is_set():
                    return False
                continue
            self.publications += 1
            self.last_published_at = datetime.now(UTC)
            self._publishing_since = time.monotonic()
            log.info("metrics_mirror.published", namespace=namespace, attempts=attempt)
            return True
        return False  # pragma: no cover - the loop always returns

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when stopped."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)


class MirrorHealthServer(ProbeServer):
    """``GET /healthz`` for the Deployment's probes: the mirror's role, 503 when it is stale."""

    def __init__(self, mirror: MetricsMirror, host: str, port: int) -> None:
        super().__init__(host, port, self._answer)
        self._mirror = mirror

    def _answer(self, path: str) -> Response:
        if path != "/healthz":
            return (
                "404 Not Found",
                "application/json",
                b'{"error":"NOT_FOUND","message":"try /healthz"}',
            )
        last = self._mirror.last_published_at
        stale = self._mirror.is_stale()
        body = orjson.dumps(
            {
                "status": "stale" if stale else "ok",
                "role": self._mirror.role,
                "publications": self._mirror.publications,
                "lastPublishedAt": last.isoformat() if last else None,
            }
        )
        return ("503 Service Unavailable" if stale else "200 OK"), "application/json", body


async def run_metrics_mirror(settings: MirrorProcessSettings) -> None:
    """Run the mirror (and its /healthz) until SIGTERM or SIGINT."""
    await check_database(settings, application_name="easyclaw-metrics-mirror")
    mirror = MetricsMirror(settings, cloudwatch_client(settings))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, mirror.stop)
    health = None
    if settings.metrics_mirror_health_port:
        # Probes reach the pod IP, so listen on every interface.
        health = MirrorHealthServer(mirror, "0.0.0.0", settings.metrics_mirror_health_port)  # noqa: S104
        await health.start()
    try:
        await mirror.run()
    finally:
        if health is not None:
            await health.close()


def main(settings: MirrorProcessSettings | None = None) -> None:
    settings = settings or MirrorProcessSettings()
    configure_logging(settings.log_level, repeat_window_seconds=settings.log_repeat_window_seconds)
    asyncio.run(run_metrics_mirror(settings))
