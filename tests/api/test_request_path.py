"""The request path stays on the event loop: no route or dependency is a plain
function, which FastAPI would run in a worker thread on every request (a thread
handoff each way; a fifth of a POST /jobs's time when it happened)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import fastapi.dependencies.utils
import fastapi.routing
import httpx
import pytest


async def test_job_requests_never_hand_work_to_a_thread(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed: Counter[str] = Counter()

    for module in (fastapi.routing, fastapi.dependencies.utils):
        real = module.run_in_threadpool

        async def counting(func: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            handed[getattr(func, "__name__", repr(func))] += 1
            return await _real(func, *args, **kwargs)

        monkeypatch.setattr(module, "run_in_threadpool", counting)

    created = await client.post("/jobs", json={"type": "ECHO", "payload": {"message": "hi"}})
    assert created.status_code == 201
    job_id = created.json()["jobId"]
    assert (await client.get(f"/jobs/{job_id}")).status_code == 200
    assert (await client.get("/jobs?limit=5")).status_code == 200
    assert (await client.get("/stats")).status_code == 200
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code in (200, 409)
    assert handed == Counter()
