"""The hot statements stay proportional to their batch when statistics lag.

Autoanalyze waits for a tenth of the table to change, so after a burst of
submissions the planner still believes almost nothing is PENDING. A plan that
is only fast when the estimates are right (a bitmap scan and a sort for the
claim, a join that decodes the outcomes once per RUNNING job for the
completion) then reads every pending job on every claim: 20,000 pending jobs
made a claim of 16 cost 17-30 ms and a completion of 256 jobs 50 ms in
bench runs. These tests reproduce stale statistics (ANALYZE of the empty
table, then a burst) and count the rows each plan reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.db import CLAIMING_SESSION_SETTINGS, connection_kwargs
from easyclaw.core.queries import query
from tests.support.settings import make_settings

Conn = psycopg.AsyncConnection[Any]
USER = "burst"
BURST = 3_000


@pytest.fixture
async def claiming_conn(database_url: str) -> AsyncIterator[Conn]:
    """A connection set up as a worker's (its planner settings included), after a
    burst the statistics have not seen."""
    kwargs = connection_kwargs(
        make_settings(database_url), "easyclaw-worker", CLAIMING_SESSION_SETTINGS
    )
    async with await psycopg.AsyncConnection.connect(database_url, **kwargs) as conn:
        await conn.execute("ANALYZE jobs")  # while it is empty: "nothing is pending"
        await queue.ensure_user(conn, USER)
        await queue.enqueue_many(
            conn, user_id=USER, type="ECHO", payloads=[{"n": n} for n in range(BURST)]
        )
        yield conn


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


async def explain(
    conn: Conn, name: str, params: dict[str, Any], plan: str = "custom"
) -> list[dict[str, Any]]:
    """The executed plan's nodes (the statement's changes rolled back).

    ``plan`` "generic" plans without looking at the parameters' values, as
    PostgreSQL may for a statement psycopg has prepared (its sixth run on).
    """
    async with conn.transaction(force_rollback=True):
        await conn.execute(f"SET LOCAL plan_cache_mode = force_{plan}_plan")
        cursor = await conn.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + query(name),  # type: ignore[operator]
            params,
        )
        row = await cursor.fetchone()
    assert row is not None
    return list(plan_nodes(row[0][0]["Plan"]))


def job_rows_read(nodes: list[dict[str, Any]]) -> int:
    """Rows that scans of the jobs table produced, over all their loops."""
    return sum(
        node["Actual Rows"] * node["Actual Loops"]
        for node in nodes
        if node.get("Relation Name") == "jobs" and node["Node Type"] != "ModifyTable"
    )


@pytest.mark.parametrize("plan", ["custom", "generic"])
@pytest.mark.parametrize("limit", [1, 16, 256])
@pytest.mark.parametrize("fair", [True, False], ids=["fair share", "global order"])
async def test_a_claim_reads_about_as_many_jobs_as_it_claims(
    claiming_conn: Conn, fair: bool, limit: int, plan: str
) -> None:
    params: dict[str, Any] = {
        "worker_id": "w1",
        "types": ["ECHO", "CHAT"],
        "limit": limit,
        "lease_seconds": 30.0,
    }
    if fair:
        # the cursor a worker holds after its first claim: the ring wraps around
        params |= {"cursor": USER, "user_max_running": 0}
    nodes = await explain(claiming_conn, "claim_jobs_fair" if fair else "claim_jobs", params, plan)
    [claimed] = [node for node in nodes if node.get("Subplan Name") == "CTE claimed"]
    assert claimed["Actual Rows"] == limit
    # Each job is read about twice (picked, then updated by primary key), plus a
    # few index probes; reading the burst would be thousands.
    assert job_rows_read(nodes) <= 3 * limit + 10, [
        (node["Node Type"], node.get("Index Name"), node["Actual Rows"]) for node in nodes
    ]


@pytest.mark.parametrize("plan", ["custom", "generic"])
async def test_a_completion_decodes_its_outcomes_once_and_reads_only_their_jobs(
    claiming_conn: Conn, plan: str
) -> None:
    claimed = await queue.claim_jobs(
        claiming_conn, worker_id="w1", types=["ECHO"], limit=256, lease_seconds=30
    )
    assert len(claimed) == 256
    outcomes = orjson.dumps(
        [
            {"id": job.id, "attempt": job.attempt, "status": "COMPLETED", "result": {"ok": 1}}
            for job in claimed
        ]
    ).decode()
    nodes = await explain(
        claiming_conn, "finish_jobs", {"worker_id": "w1", "outcomes": outcomes}, plan
    )
    decodes = [node for node in nodes if node.get("Function Name") == "jsonb_to_recordset"]
    assert [node["Actual Loops"] for node in decodes] == [1]
    [finished] = [node for node in nodes if node.get("Subplan Name") == "CTE finished"]
    assert finished["Actual Rows"] == 256
    assert job_rows_read(nodes) <= 2 * 256


async def test_a_claim_over_many_keyed_jobs_is_never_jit_compiled(database_url: str) -> None:
    """Jobs waiting behind concurrency keys raise a claim's estimated cost past
    jit_above_cost; where PostgreSQL has LLVM it would then compile the claim on
    every execution (280-300 ms against 5 ms on PostgreSQL 15). Worker sessions
    turn JIT off, so the estimate cannot matter."""
    kwargs = connection_kwargs(
        make_settings(database_url), "easyclaw-worker", CLAIMING_SESSION_SETTINGS
    )
    async with await psycopg.AsyncConnection.connect(database_url, **kwargs) as conn:
        await queue.ensure_user(conn, USER)
        await queue.enqueue_many(
            conn,
            user_id=USER,
            type="ECHO",
            payloads=[{}] * 20_000,
            concurrency_keys=[f"conversation:{n % 100}" for n in range(20_000)],
        )
        await conn.execute("ANALYZE jobs")
        cursor = await conn.execute(
            "EXPLAIN (FORMAT JSON) " + query("claim_jobs_fair"),  # type: ignore[operator]
            {
                "worker_id": "w1",
                "types": ["ECHO"],
                "limit": 16,
                "lease_seconds": 30.0,
                "cursor": "",
                "user_max_running": 0,
            },
        )
        row = await cursor.fetchone()
        assert row is not None
        estimated_cost = row[0][0]["Plan"]["Total Cost"]
        cursor = await conn.execute(
            "SELECT current_setting('jit'), current_setting('jit_above_cost')::float8"
        )
        jit, jit_above_cost = await cursor.fetchone() or (None, None)
    assert estimated_cost > jit_above_cost, "the case this test is about no longer arises"
    assert jit == "off"
