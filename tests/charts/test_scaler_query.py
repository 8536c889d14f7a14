"""The ScaledObject's query, as rendered, against the real schema in PostgreSQL.

KEDA runs it every pollingInterval and divides the result by targetQueryValue:
it must count exactly the jobs that need a worker (ready PENDING plus RUNNING),
stop counting where the answer no longer matters, and stay an index lookup on
a table with a large history of finished jobs.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.charts.rendering import render

USER = "scaler-tests"


def scaler(value_set: str = "kind") -> dict[str, Any]:
    scaled_object = render(value_set).get("ScaledObject", "worker")
    trigger: dict[str, Any] = scaled_object["spec"]["triggers"][0]["metadata"]
    return {"query": trigger["query"], "max": scaled_object["spec"]["maxReplicaCount"],
            "target": int(trigger["targetQueryValue"])}  # fmt: skip


def insert_jobs(conn: psycopg.Connection[Any], status: str, count: int, **columns: str) -> None:
    """``count`` jobs in ``status``; ``columns`` are SQL expressions per row."""
    defaults = {
        "RUNNING": {"worker_id": "'w-1'", "lease_expires_at": "now() + interval '30 s'",
                    "attempts": "1", "started_at": "now()"},
        "COMPLETED": {"finished_at": "now() - interval '1 hour'", "attempts": "1"},
        "FAILED": {"finished_at": "now() - interval '1 hour'", "attempts": "3"},
        "CANCELLED": {"finished_at": "now() - interval '1 hour'"},
    }.get(status, {})  # fmt: skip
    values = {**defaults, **columns}
    names = ", ".join(["user_id", "type", "status", *values])
    expressions = ", ".join([f"'{USER}'", "'ECHO'", f"'{status}'", *values.values()])
    conn.execute(
        f"INSERT INTO jobs ({names}) SELECT {expressions} FROM generate_series(1, %s)".encode(),
        (count,),
    )


@pytest.fixture
def db(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(b"INSERT INTO users (id) VALUES (%s)", (USER,))
        yield conn


def scaler_value(conn: psycopg.Connection[Any], query: str) -> int:
    row = conn.execute(query.encode()).fetchone()
    assert row is not None
    return int(row[0])


def test_counts_ready_pending_and_running_jobs(db: psycopg.Connection[Any]) -> None:
    insert_jobs(db, "PENDING", 7, run_at="now() - interval '1 minute'")
    insert_jobs(db, "PENDING", 4, run_at="now() + interval '10 minutes'")  # retries not yet due
    insert_jobs(db, "RUNNING", 9)
    insert_jobs(db, "COMPLETED", 30)
    insert_jobs(db, "FAILED", 5)
    insert_jobs(db, "CANCELLED", 3)
    assert scaler_value(db, scaler()["query"]) == 7 + 9


def test_empty_queue_counts_zero(db: psycopg.Connection[Any]) -> None:
    insert_jobs(db, "COMPLETED", 10)
    insert_jobs(db, "PENDING", 2, run_at="now() + interval '1 hour'")
    assert scaler_value(db, scaler()["query"]) == 0


def test_counting_stops_where_the_replica_count_stops_changing(
    db: psycopg.Connection[Any],
) -> None:
    settings = scaler()
    cap = settings["max"] * settings["target"]
    insert_jobs(db, "PENDING", cap + 500)
    insert_jobs(db, "RUNNING", 3)
    value = scaler_value(db, settings["query"])
    assert value == cap + 3
    # Whatever the backlog, KEDA still asks for the maximum.
    assert -(-value // settings["target"]) >= settings["max"]


@pytest.mark.slow
def test_plan_uses_the_partial_indexes_on_a_large_table(db: psycopg.Connection[Any]) -> None:
    insert_jobs(db, "COMPLETED", 150_000)
    insert_jobs(db, "FAILED", 6_000)
    insert_jobs(db, "CANCELLED", 4_000)
    insert_jobs(db, "PENDING", 40)
    insert_jobs(db, "RUNNING", 20)
    db.execute(b"ANALYZE jobs")
    query = scaler("eks-fargate")["query"]
    row = db.execute(b"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query.encode()).fetchone()
    assert row is not None
    plan = row[0][0]
    text = json.dumps(plan)
    summary = db.execute(b"EXPLAIN (COSTS OFF) " + query.encode()).fetchall()
    print("\n".join(line for (line,) in summary))
    assert "Seq Scan" not in text, "the scaler query must not scan the whole jobs table"
    assert "jobs_pending_idx" in text or "jobs_user_pending_idx" in text  # PENDING rows only
    assert "jobs_running_idx" in text or "jobs_user_running_idx" in text  # RUNNING rows only
    buffers = plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
    assert buffers < 50, f"read {buffers} blocks for 60 live jobs among 160k"
    assert scaler_value(db, query) == 60
