"""The metrics mirror against a real moto server: what it publishes, throttling, errors, one leader.

Throttling is produced by a real HTTP server in front of moto that answers
the first PutMetricData calls with CloudWatch's own error response (a JSON or
rpc-v2-cbor body, whichever the client spoke, and the query-compatible error
header), and forwards everything else to moto.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import boto3
import httpx
import orjson
import pytest
from moto.server import ThreadedMotoServer
from pydantic import ValidationError

from easyclaw.cli.settings import Settings
from easyclaw.core import queue
from easyclaw.core.db import AsyncConn
from easyclaw.core.jsonlog import configure_logging
from easyclaw.core.models import JobStatus, Outcome, QueueStats
from easyclaw.metrics_mirror.mirror import (
    MetricsMirror,
    MirrorHealthServer,
    cloudwatch_client,
    metric_data,
)
from tests.support.ports import free_port
from tests.support.processes import process_env
from tests.support.settings import make_settings
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

METRICS = [
    "PendingJobs",
    "RunningJobs",
    "RecentFailures",
    "CompletedJobs",
    "OldestPendingAgeSeconds",
    "WorkerCount",
]


# ---------------------------------------------------------------- moto and the throttling proxy


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def cbor_text_map(items: dict[str, str]) -> bytes:
    """A CBOR map of short text strings: all an AWS error body needs."""

    def head(major: int, length: int) -> bytes:
        assert length < 65536
        if length < 24:
            return bytes([major << 5 | length])
        if length < 256:
            return bytes([major << 5 | 24, length])
        return bytes([major << 5 | 25]) + length.to_bytes(2, "big")

    out = head(5, len(items))
    for key, value in items.items():
        for text in (key, value):
            raw = text.encode()
            out += head(3, len(raw)) + raw
    return out


@dataclass
class CloudWatchProxy:
    """A real HTTP endpoint in front of moto that can answer PutMetricData with AWS errors."""

    upstream: str
    url: str = ""
    errors: list[tuple[int, str]] = field(default_factory=list)
    """Queued (HTTP status, AWS error code) answers for the next PutMetricData calls."""
    put_times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, status: int = 400, code: str = "Throttling") -> None:
        with self.lock:
            self.errors.extend([(status, code)] * count)

    def puts(self) -> int:
        with self.lock:
            return len(self.put_times)

    def recover(self) -> None:
        """Forward every PutMetricData again."""
        with self.lock:
            self.errors.clear()


@pytest.fixture
def proxy(moto_url: str) -> Iterator[CloudWatchProxy]:
    state = CloudWatchProxy(upstream=moto_url)
    upstream = moto_url.removeprefix("http://")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            error = None
            operation = self.headers.get("X-Amz-Target", "") or self.path
            if operation.endswith("PutMetricData"):
                with state.lock:
                    state.put_times.append(time.monotonic())
                    error = state.errors.pop(0) if state.errors else None
            if error is not None:
                status, code = error
                # Answer in the protocol the client spoke: JSON 1.0 or rpc-v2-cbor.
                fields = {"__type": f"com.amazonaws.cloudwatch#{code}", "message": "from the test"}
                content_type = self.headers.get("Content-Type", "")
                self.send_response(status)
                if "cbor" in content_type:
                    payload = cbor_text_map(fields)
                    self.send_header("smithy-protocol", "rpc-v2-cbor")
                else:
                    payload = orjson.dumps(fields)
                self.send_header("Content-Type", content_type)
                self.send_header("x-amzn-query-error", f"{code};Sender")
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            forwarded = http.client.HTTPConnection(upstream, timeout=10)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            forwarded.request("POST", self.path, body=body, headers=headers)
            response = forwarded.getresponse()
            answer = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in {"content-length", "transfer-encoding", "connection"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            forwarded.close()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def reader(url: str) -> CloudWatchClient:
    return boto3.client(
        "cloudwatch",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def read_back(url: str, metric: str, cluster: str) -> list[float]:
    now = datetime.now(UTC)
    answer = reader(url).get_metric_statistics(
        Namespace="EasyClaw",
        MetricName=metric,
        Dimensions=[
            {"Name": "Cluster", "Value": cluster},
            {"Name": "Environment", "Value": "test"},
        ],
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )
    return [point["Maximum"] for point in answer["Datapoints"]]


ENDPOINT_VARIABLE = "AWS_ENDPOINT_URL_CLOUDWATCH"


@pytest.fixture(autouse=True)
def restore_endpoint_variable() -> Iterator[None]:
    """mirror_settings points boto3 at a test endpoint; put the variable back after."""
    saved = os.environ.get(ENDPOINT_VARIABLE)
    yield
    if saved is None:
        os.environ.pop(ENDPOINT_VARIABLE, None)
    else:
        os.environ[ENDPOINT_VARIABLE] = saved


def mirror_settings(database_url: str, endpoint: str, **overrides: Any) -> tuple[Settings, str]:
    """Settings for a mirror with dimensions of its own, so tests never read each other's data.

    The endpoint is boto3's own variable (the mirror has no setting for it);
    child processes inherit it through process_env.
    """
    os.environ[ENDPOINT_VARIABLE] = endpoint
    cluster = f"test-{uuid.uuid4().hex[:8]}"
    values: dict[str, Any] = {
        "metrics_mirror_interval_seconds": 0.2,
        "metrics_dimensions": f"Cluster={cluster},Environment=test",
    }
    values.update(overrides)
    return make_settings(database_url, **values), cluster


@asynccontextmanager
async def running(mirror: MetricsMirror) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(mirror.run())
    try:
        yield task
    finally:
        mirror.stop()
        await asyncio.wait_for(task, timeout=10)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The fields of each ``name`` event the mirror logged."""
    return [
        getattr(record, "easyclaw_fields", {})
        for record in caplog.records
        if record.getMessage() == name
    ]


# ---------------------------------------------------------------- database state


async def make_queue_state(conn: AsyncConn) -> None:
    """4 pending (one waiting 2 minutes), 2 running, 3 completed, 1 failed, 2 live workers."""
    await queue.ensure_user(conn, "alice")
    await queue.enqueue_many(
        conn, user_id="alice", type="ECHO", payloads=[{"i": i} for i in range(10)]
    )
    claimed = await queue.claim_jobs(
        conn, worker_id="w-1", types=["ECHO"], limit=6, lease_seconds=60
    )
    outcomes = [
        Outcome(job_id=job.id, attempt=job.attempt, status=JobStatus.COMPLETED, result={})
        for job in claimed[:3]
    ] + [Outcome(job_id=claimed[3].id, attempt=claimed[3].attempt, status=JobStatus.FAILED)]
    await queue.finish_jobs(conn, worker_id="w-1", outcomes=outcomes)
    await conn.execute(
        "UPDATE jobs SET run_at = now() - interval '120 seconds' "
        "WHERE id = (SELECT id FROM jobs WHERE status = 'PENDING' ORDER BY id LIMIT 1)"
    )
    for worker_id in ("w-1", "w-2"):
        await queue.heartbeat(
            conn,
            worker_id=worker_id,
            worker_name=worker_id,
            concurrency=4,
            job_ids=[],
            lease_seconds=60,
        )
    # A worker that stopped heartbeating long ago is not counted.
    await conn.execute(
        "INSERT INTO workers (id, name, concurrency, last_seen_at) "
        "VALUES ('w-old', 'w-old', 4, now() - interval '1 hour')"
    )


# ---------------------------------------------------------------- tests


def test_metric_data_names_units_and_dimensions() -> None:
    stats = QueueStats(
        pending=5,
        ready=4,
        running=2,
        completed=9,
        failed=1,
        cancelled=0,
        recent_failures=1,
        completed_last_minute=3,
        oldest_pending_age_seconds=12.5,
        live_workers=2,
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    data = metric_data(stats, {"Cluster": "prod"}, at)
    assert [(d["MetricName"], d["Value"], d["Unit"]) for d in data] == [
        ("PendingJobs", 5.0, "Count"),
        ("RunningJobs", 2.0, "Count"),
        ("RecentFailures", 1.0, "Count"),
        ("CompletedJobs", 3.0, "Count"),
        ("OldestPendingAgeSeconds", 12.5, "Seconds"),
        ("WorkerCount", 2.0, "Count"),
    ]
    assert all(d["Dimensions"] == [{"Name": "Cluster", "Value": "prod"}] for d in data)
    assert all(d["Timestamp"] == at for d in data)


def test_dimensions_setting_is_parsed_and_checked() -> None:
    settings = Settings(metrics_dimensions="Cluster=prod-eks, Environment=production")
    assert settings.metrics_dimensions == {"Cluster": "prod-eks", "Environment": "production"}
    assert Settings().metrics_dimensions == {}
    assert Settings(metrics_dimensions='{"Cluster": "a"}').metrics_dimensions == {"Cluster": "a"}
    with pytest.raises(ValidationError, match="is not Name=Value"):
        Settings(metrics_dimensions="Cluster")
    with pytest.raises(ValidationError, match="at most 30"):
        Settings(metrics_dimensions=",".join(f"D{i}=v" for i in range(31)))


async def test_published_values_match_the_database(
    database_url: str, conn: AsyncConn, moto_url: str, aws_env: None
) -> None:
    await make_queue_state(conn)
    settings, cluster = mirror_settings(database_url, moto_url)
    mirror = MetricsMirror(settings, cloudwatch_client(settings))
    async with running(mirror):
        await wait_for(lambda: mirror.publications >= 1, timeout=15)
    assert mirror.role == "stopped"

    expected = {
        "PendingJobs": 4.0,
        "RunningJobs": 2.0,
        "RecentFailures": 1.0,
        "CompletedJobs": 3.0,
        "WorkerCount": 2.0,
    }
    for metric, value in expected.items():
        points = read_back(moto_url, metric, cluster)
        assert points, f"{metric} was not published"
        assert max(points) == value, metric
    [age] = read_back(moto_url, "OldestPendingAgeSeconds", cluster)
    assert 120 <= age < 180
    # The same numbers as the core's own statistics (what `easyclaw stats` shows).
    stats = await queue.queue_stats(conn, worker_alive_seconds=settings.worker_lease_seconds * 2)
    assert (stats.pending, stats.running, stats.live_workers) == (4, 2, 2)


async def test_throttling_is_retried_with_exponential_backoff(
    database_url: str,
    proxy: CloudWatchProxy,
    aws_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="easyclaw.metrics_mirror")
    settings, cluster = mirror_settings(
        database_url, proxy.url, metrics_mirror_interval_seconds=5.0
    )
    proxy.fail_next(2, code="Throttling")
    mirror = MetricsMirror(settings, cloudwatch_client(settings), backoff_base_seconds=0.2)
    async with running(mirror):
        await wait_for(lambda: mirror.publications >= 1, timeout=15)
    assert proxy.puts() == 3, "two throttled calls, then the one that got through"
    first_wait = proxy.put_times[1] - proxy.put_times[0]
    second_wait = proxy.put_times[2] - proxy.put_times[1]
    assert first_wait >= 0.1, "waited base x 1 (with jitter 0.5-1)"
    assert second_wait >= 0.2, "waited base x 2 (with jitter 0.5-1)"
    assert [r["attempt"] for r in events(caplog, "metrics_mirror.throttled")] == [1, 2]
    assert read_back(proxy.upstream, "PendingJobs", cluster) == [0.0]


async def test_persistent_throttling_gives_up_for_the_interval_and_carries_on(
    database_url: str,
    proxy: CloudWatchProxy,
    aws_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="easyclaw.metrics_mirror")
    settings, cluster = mirror_settings(
        database_url, proxy.url, metrics_mirror_interval_seconds=0.3
    )
    proxy.fail_next(3, code="ThrottlingException")
    mirror = MetricsMirror(
        settings, cloudwatch_client(settings), backoff_base_seconds=0.02, max_attempts=3
    )
    async with running(mirror):
        await wait_for(lambda: mirror.publications >= 1, timeout=15)
    [gave_up] = events(caplog, "metrics_mirror.publish_failed")
    assert gave_up["code"] == "ThrottlingException"
    assert gave_up["attempts"] == 3
    # Three throttled calls, then one per publication (a slow test loop may see a second).
    assert proxy.puts() == 3 + mirror.publications
    assert read_back(proxy.upstream, "PendingJobs", cluster)


async def test_aws_errors_are_logged_not_retried_and_the_next_interval_publishes(
    database_url: str,
    proxy: CloudWatchProxy,
    aws_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="easyclaw.metrics_mirror")
    settings, cluster = mirror_settings(
        database_url, proxy.url, metrics_mirror_interval_seconds=0.3
    )
    proxy.fail_next(1, status=403, code="AccessDenied")
    proxy.fail_next(1, status=500, code="InternalFailure")
    mirror = MetricsMirror(settings, cloudwatch_client(settings), backoff_base_seconds=0.02)
    async with running(mirror):
        await wait_for(lambda: mirror.publications >= 1, timeout=15)
        assert mirror.role == "leader"
    codes = [r["code"] for r in events(caplog, "metrics_mirror.publish_failed")]
    assert codes == ["AccessDenied", "InternalFailure"]
    assert not events(caplog, "metrics_mirror.throttled")
    # One call per failure, none retried, then one per publication.
    assert proxy.puts() == 2 + mirror.publications
    assert read_back(proxy.upstream, "PendingJobs", cluster)


async def test_unreachable_endpoint_is_logged_and_the_mirror_keeps_running(
    database_url: str, aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="easyclaw.metrics_mirror")
    settings, _ = mirror_settings(database_url, f"http://127.0.0.1:{free_port()}")
    mirror = MetricsMirror(settings, cloudwatch_client(settings))
    async with running(mirror) as task:
        await wait_for(lambda: len(events(caplog, "metrics_mirror.publish_failed")) >= 2)
        assert not task.done()
    assert events(caplog, "metrics_mirror.publish_failed")[0]["code"] == "EndpointConnectionError"
    assert mirror.publications == 0


async def test_exactly_one_replica_publishes_and_a_standby_takes_over(
    database_url: str, moto_url: str, aws_env: None
) -> None:
    settings, _ = mirror_settings(database_url, moto_url, metrics_mirror_interval_seconds=0.2)
    first = MetricsMirror(settings, cloudwatch_client(settings))
    second = MetricsMirror(settings, cloudwatch_client(settings))
    async with running(first), running(second):
        await wait_for(lambda: {first.role, second.role} == {"leader", "standby"})
        leader, standby = (first, second) if first.role == "leader" else (second, first)
        await wait_for(lambda: leader.publications >= 3)
        assert standby.publications == 0
        assert standby.role == "standby"

        leader.stop()
        await wait_for(lambda: standby.role == "leader", timeout=10)
        await wait_for(lambda: standby.publications >= 1)


async def test_without_a_region_the_mirror_is_disabled_and_idles(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    caplog.set_level(logging.INFO, logger="easyclaw.metrics_mirror")
    settings = make_settings(database_url)
    assert cloudwatch_client(settings) is None
    mirror = MetricsMirror(settings, None)
    async with running(mirror) as task:
        await wait_for(lambda: mirror.role == "disabled")
        assert not task.done(), "idles instead of exiting, so a Deployment does not crash-loop"
    assert events(caplog, "metrics_mirror.disabled")


@pytest.mark.slow
async def test_the_command_serves_healthz_publishes_and_stops_on_sigterm(
    database_url: str, moto_url: str, tmp_path: Any
) -> None:
    settings, cluster = mirror_settings(database_url, moto_url, metrics_mirror_interval_seconds=0.5)
    port = free_port()
    env = process_env(
        settings,
        EASYCLAW_METRICS_MIRROR_HEALTH_PORT=str(port),
        EASYCLAW_METRICS_DIMENSIONS=f"Cluster={cluster},Environment=test",
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    log_path = tmp_path / "mirror.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "easyclaw.cli.main", "metrics-mirror"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        async def healthy() -> dict[str, Any] | None:
            try:
                async with httpx.AsyncClient() as http:
                    answer = await http.get(f"http://127.0.0.1:{port}/healthz")
            except httpx.TransportError:
                return None
            body: dict[str, Any] = answer.json()
            return body if answer.status_code == 200 and body["publications"] >= 1 else None

        body = await wait_for(healthy, timeout=30, interval=0.2)
        assert body["role"] == "leader"
        assert read_back(moto_url, "WorkerCount", cluster)
    finally:
        process.terminate()
        code = process.wait(timeout=15)
    assert code == 0, log_path.read_text()
    lines = [
        orjson.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")
    ]
    assert [line["event"] for line in lines][-1] == "metrics_mirror.stopped"
    assert "testing" not in log_path.read_text()


def test_log_lines_are_json_with_stable_names(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        mirror = MetricsMirror(make_settings("postgresql://u:p@h/db"), None)

        async def run_briefly() -> None:
            task = asyncio.create_task(mirror.run())
            await wait_for(lambda: mirror.role == "disabled")
            mirror.stop()
            await task

        asyncio.run(run_briefly())
    finally:
        logging.getLogger().handlers.clear()
    assert orjson.loads(stream.getvalue().splitlines()[0])["event"] == "metrics_mirror.disabled"


async def test_an_unreachable_database_is_logged_and_retried_without_crashing(
    moto_url: str, aws_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="easyclaw.metrics_mirror")
    settings, _ = mirror_settings(
        f"postgresql://easyclaw@127.0.0.1:{free_port()}/easyclaw", moto_url
    )
    mirror = MetricsMirror(settings, cloudwatch_client(settings), reconnect_delay_seconds=0.1)
    async with running(mirror) as task:
        await wait_for(lambda: len(events(caplog, "metrics_mirror.db_unavailable")) >= 2)
        assert not task.done()
        assert mirror.role == "standby"
    assert mirror.publications == 0


async def health(port: int) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{port}/healthz")
    return answer.status_code, answer.json()


@pytest.mark.slow
async def test_healthz_is_503_while_the_leader_cannot_publish_and_standbys_stay_healthy(
    database_url: str, proxy: CloudWatchProxy, aws_env: None
) -> None:
    settings, _ = mirror_settings(
        database_url,
        proxy.url,
        metrics_mirror_interval_seconds=0.2,
        metrics_mirror_stale_seconds=1.0,
    )
    first = MetricsMirror(settings, cloudwatch_client(settings))
    second = MetricsMirror(settings, cloudwatch_client(settings))
    servers = [MirrorHealthServer(m, "127.0.0.1", 0) for m in (first, second)]
    for server in servers:
        await server.start()
    try:
        async with running(first), running(second):
            await wait_for(lambda: {first.role, second.role} == {"leader", "standby"})
            leader, standby = (0, 1) if first.role == "leader" else (1, 0)
            leader_port, standby_port = servers[leader].port, servers[standby].port
            await wait_for(lambda: first.publications + second.publications >= 1)
            status, body = await health(leader_port)
            assert (status, body["status"], body["role"]) == (200, "ok", "leader")

            proxy.fail_next(100_000, status=403, code="AccessDenied")

            async def leader_stale() -> dict[str, Any] | None:
                status, body = await health(leader_port)
                return body if status == 503 else None

            body = await wait_for(leader_stale, timeout=15)
            assert (body["status"], body["role"]) == ("stale", "leader")
            status, standby_body = await health(standby_port)
            assert (status, standby_body["role"]) == (200, "standby"), "standbys publish nothing"

            proxy.recover()

            async def leader_healthy() -> bool:
                return (await health(leader_port))[0] == 200

            await wait_for(leader_healthy, timeout=15)
    finally:
        for server in servers:
            await server.close()
