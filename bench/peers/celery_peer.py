"""Celery with Redis as the broker, run the way its documentation shows:
``celery -A bench.peers.celery_peer worker`` (prefork pool).

The broker URL comes from $CELERY_BROKER_URL. Skipped when no Redis answers.
"""

from __future__ import annotations

import asyncio
import os
import time
from importlib.metadata import version
from typing import Any

import redis
from celery import Celery

from bench.peers.base import Peer, bin_path
from bench.peers.starts import record_start

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
QUEUE = "celery"
HOLD = "bench-hold"

app = Celery("bench", broker=os.environ.get("CELERY_BROKER_URL", REDIS_URL))
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False


@app.task(name="noop")
def noop(**payload: Any) -> None:
    record_start(payload)


class CeleryPeer(Peer):
    name = "Celery + Redis"
    server_process_names = ("redis-server",)
    key = "celery"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.redis = redis.Redis.from_url(REDIS_URL)

    def unavailable(self) -> str | None:
        try:
            self.redis.ping()
        except redis.RedisError as error:
            return f"no Redis at {REDIS_URL} ({error})"
        return None

    def version(self) -> str:
        info = self.redis.info("server")
        return (
            f"{version('celery')}, kombu {version('kombu')}, redis-py {version('redis')}, "
            f"Redis server {info.get('redis_version', '?')}"
        )

    def settings(self) -> str:
        return (
            f"`celery -A bench.peers.celery_peer worker --concurrency={self.processes} "
            "--without-gossip --without-mingle` (one node, prefork pool of "
            f"{self.processes} processes; defaults otherwise: early acknowledgement, prefetch "
            f"multiplier 4, no result backend); broker `{REDIS_URL}`; the batch is published "
            "to a held list, then moved onto the queue with one `RENAME`; idle load counts "
            "Redis commands, not PostgreSQL transactions"
        )

    async def setup(self) -> None:
        self.redis.flushdb()

    async def reset(self) -> None:
        self.redis.flushdb()

    def start_workers(self, log_dir: Any) -> list[Any]:
        count, self.processes = self.processes, 1  # one node with a pool of that many
        try:
            return super().start_workers(log_dir)
        finally:
            self.processes = count

    def worker_command(self) -> list[str]:
        return [
            bin_path("celery"),
            "-A",
            "bench.peers.celery_peer",
            "worker",
            f"--concurrency={self.processes}",
            "--pool=prefork",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
        ]

    def worker_env(self) -> dict[str, str]:
        return {**super().worker_env(), "CELERY_BROKER_URL": REDIS_URL}

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(app.control.ping, timeout=0.5):
            if time.monotonic() > deadline:
                raise TimeoutError("the Celery worker did not answer a ping")
        await asyncio.sleep(1.0)  # let the pool's processes finish starting

    async def enqueue_batch(self, count: int) -> None:
        with app.producer_or_acquire() as producer:
            for _ in range(count):
                noop.apply_async(kwargs={}, queue=HOLD, producer=producer)
        # Workers consume "celery": the whole batch appears there at one instant.
        self.redis.rename(HOLD, QUEUE)

    async def drained(self, count: int) -> bool:
        pipe = self.redis.pipeline()
        pipe.llen(QUEUE)
        pipe.hlen("unacked")
        waiting, unacked = pipe.execute()
        return bool(waiting == 0 and unacked == 0)

    async def enqueue_sample(self, sample: int) -> None:
        noop.apply_async(kwargs={"t0": time.time(), "sample": sample})

    probe_cost = 1

    def idle_operations(self) -> int:
        return int(self.redis.info("stats")["total_commands_processed"])
