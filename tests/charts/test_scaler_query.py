"""The ScaledObject's query, as rendered, against the real schema in PostgreSQL.

KEDA runs it every pollingInterval and divides the result by targetQueryValue:
it must count exactly the jobs that need a worker (RUNNING, and ready PENDING
jobs a worker could start now: not those waiting for their concurrency key,
beyond their user's limit or beyond their rate limit's tokens), stop counting
where the answer no longer matters, and stay an index lookup on a table with a
large history of finished jobs.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.charts.rendering import render

USER = "scaler-tests"


def scaler(value_set: str = "kind", *sets: str) -> dict[str, Any]:
    scaled_object = render(value_set, *sets).get("ScaledObject", "worker")
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


def test_jobs_waiting_for_their_concurrency_key_are_not_counted(
    db: psycopg.Connection[Any],
) -> None:
    # A conversation of 50 messages, the first running: only that one needs a worker.
    insert_jobs(db, "RUNNING", 1, concurrency_key="'conversation:a'", concurrency_limit="1")
    insert_jobs(db, "PENDING", 50, concurrency_key="'conversation:a'", concurrency_limit="1")
    # A key with limit 3, nothing running yet: 3 can start.
    insert_jobs(db, "PENDING", 20, concurrency_key="'tenant:b'", concurrency_limit="3")
    assert scaler_value(db, scaler()["query"]) == 1 + 3


def test_a_user_counts_no_more_jobs_than_its_limit_leaves(db: psycopg.Connection[Any]) -> None:
    insert_jobs(db, "RUNNING", 1)
    insert_jobs(db, "PENDING", 30)
    db.execute(b"UPDATE users SET max_running = 3 WHERE id = %s", (USER,))
    db.execute(b"INSERT INTO users (id) VALUES ('other')")
    db.execute(
        b"INSERT INTO jobs (user_id, type) SELECT 'other', 'ECHO' FROM generate_series(1, 5)"
    )
    # The chart's worker.userMaxRunning limits users without their own limit.
    assert scaler_value(db, scaler("kind", "worker.userMaxRunning=2")["query"]) == 1 + 2 + 2
    assert scaler_value(db, scaler()["query"]) == 1 + 2 + 5


def test_rate_limited_jobs_count_only_as_many_as_their_buckets_hold(
    db: psycopg.Connection[Any],
) -> None:
    insert_jobs(db, "PENDING", 40)  # ECHO
    db.execute(
        b"INSERT INTO jobs (user_id, type) SELECT %s, 'SLEEP' FROM generate_series(1, 6)", (USER,)
    )
    db.execute(
        b"INSERT INTO rate_limits (name, rate, burst, tokens) VALUES"
        b" ('type:ECHO', 0.0001, 10, 4.5), ('tokens:provider:x', 1, 100, 50)"
    )
    db.execute(
        b"INSERT INTO rate_limit_types VALUES ('ECHO', 'type:ECHO'), ('ECHO', 'tokens:provider:x')"
    )
    assert scaler_value(db, scaler()["query"]) == 4 + 6
    db.execute(b"UPDATE rate_limits SET tokens = -20 WHERE name = 'tokens:provider:x'")
    assert scaler_value(db, scaler()["query"]) == 6  # a bucket in debt admits nothing


def test_counting_stops_at_the_cap_across_many_users(db: psycopg.Connection[Any]) -> None:
    settings = scaler()
    cap = settings["max"] * settings["target"]
    db.execute(
        b"INSERT INTO users (id) SELECT 'user-' || n FROM generate_series(1, %s) AS n",
        (cap + 100,),
    )
    db.execute(
        b"INSERT INTO jobs (user_id, type) SELECT 'user-' || n, 'ECHO'"
        b" FROM generate_series(1, %s) AS n",
        (cap + 100,),
    )
    assert scaler_value(db, settings["query"]) == cap


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
    assert (
        '"Seq Scan", "Parallel Aware": false, "Async Capable": false, "Relation Name": "jobs"'
        not in text
    ), "the scaler query must not scan the whole jobs table"
    assert "jobs_user_pending_idx" in text  # PENDING rows only, user by user
    assert "jobs_running_idx" in text or "jobs_user_running_idx" in text  # RUNNING rows only
    buffers = plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0)
    assert buffers < 50, f"read {buffers} blocks for 60 live jobs among 160k"
    assert scaler_value(db, query) == 60
