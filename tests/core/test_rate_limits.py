"""Fleet-wide rate limits: token buckets in PostgreSQL that the claim consults.

The guarantee: in any window of t seconds, a bucket admits at most
burst + rate x t job starts, whatever the number of workers claiming at once
(the debit re-checks the bucket's latest row). A job a bucket cannot admit is
not claimed: it stays PENDING and spends no attempt.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from easyclaw.core import queue
from easyclaw.core.scheduling import RateLimit, buckets_of, parse_rate_limits

Conn = psycopg.AsyncConnection[Any]
SLOW = 0.0001  # tokens per second: none come back during a test


def test_rate_limits_parse_with_units_and_bursts() -> None:
    limits = parse_rate_limits(
        "type:CHAT=5/s, provider:openai=60/min;burst=10,tokens:provider:openai=90000/min"
    )
    assert limits == [
        RateLimit(name="type:CHAT", rate=5.0, burst=1.0),
        RateLimit(name="provider:openai", rate=1.0, burst=10.0),
        RateLimit(name="tokens:provider:openai", rate=1500.0, burst=90000.0),
    ]
    assert [limit.claim_cost for limit in limits] == [1.0, 1.0, 0.0]
    assert parse_rate_limits("") == []
    assert buckets_of("CHAT", ["openai"], limits) == [
        "type:CHAT",
        "provider:openai",
        "tokens:provider:openai",
    ]
    assert buckets_of("ECHO", [], limits) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CHAT=5/s", "expected NAME=RATE/UNIT"),
        ("type:chat=5/s", "expected NAME=RATE/UNIT"),
        ("type:CHAT=5", "the rate must look like"),
        ("type:CHAT=0/s", "the rate must look like"),
        ("type:CHAT=5/day", "the rate must look like"),
        ("type:CHAT=5/s;burst=0", "the only option is ;burst=N"),
        ("type:CHAT=5/s;size=3", "the only option is ;burst=N"),
        ("type:CHAT=5/s,type:CHAT=6/s", "limited twice"),
    ],
)
def test_bad_rate_limits_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate_limits(text)


async def limit(conn: Conn, *limits: RateLimit, types: dict[str, list[str]]) -> None:
    await queue.configure_rate_limits(conn, limits=limits, buckets_by_type=types)


async def backlog(conn: Conn, user: str, count: int, type: str = "ECHO") -> None:
    await queue.ensure_user(conn, user)
    await queue.enqueue_many(conn, user_id=user, type=type, payloads=[{}] * count)


async def claim(conn: Conn, fair_share: bool = True, worker: str = "w1", **kwargs: Any) -> Any:
    kwargs.setdefault("limit", 10)
    return await queue.claim(
        conn,
        worker_id=worker,
        types=["ECHO", "SLEEP"],
        lease_seconds=30,
        fair_share=fair_share,
        **kwargs,
    )


@pytest.mark.parametrize("fair_share", [True, False])
async def test_a_bucket_admits_its_burst_and_the_rest_stay_pending(
    conn: Conn, fair_share: bool
) -> None:
    await limit(
        conn, RateLimit(name="type:ECHO", rate=SLOW, burst=3), types={"ECHO": ["type:ECHO"]}
    )
    await backlog(conn, "alice", 10)
    await backlog(conn, "alice", 2, type="SLEEP")  # another type is not held back
    first = await claim(conn, fair_share=fair_share)
    assert [job.type for job in first.jobs] == ["ECHO"] * 3
    assert first.more, "the claim must say that jobs behind the limited ones may be ready"
    second = await claim(conn, fair_share=fair_share)
    assert [job.type for job in second.jobs] == ["SLEEP"] * 2
    assert (await claim(conn, fair_share=fair_share)).jobs == []
    cursor = await conn.execute(
        "SELECT count(*) FROM jobs WHERE status = 'PENDING' AND attempts = 0"
    )
    assert await cursor.fetchone() == (7,)
    cursor = await conn.execute("SELECT tokens < 1 FROM rate_limits")
    assert await cursor.fetchone() == (True,)


async def test_the_tokens_go_round_robin_between_users(conn: Conn) -> None:
    await limit(
        conn, RateLimit(name="type:ECHO", rate=SLOW, burst=4), types={"ECHO": ["type:ECHO"]}
    )
    for user in ("alice", "bob"):
        await backlog(conn, user, 10)
    claimed = await claim(conn)
    assert sorted(job.user_id for job in claimed.jobs) == ["alice", "alice", "bob", "bob"]


async def test_a_bucket_refills_at_its_rate(conn: Conn) -> None:
    await limit(conn, RateLimit(name="type:ECHO", rate=20, burst=1), types={"ECHO": ["type:ECHO"]})
    await backlog(conn, "alice", 5)
    assert len((await claim(conn)).jobs) == 1
    assert (await claim(conn)).jobs == []
    await asyncio.sleep(0.06)  # a token is 50 ms at 20/s
    assert len((await claim(conn)).jobs) == 1


async def test_concurrent_claims_never_take_more_than_the_bucket_holds(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await limit(
            conn, RateLimit(name="type:ECHO", rate=SLOW, burst=7), types={"ECHO": ["type:ECHO"]}
        )
        for user in ("alice", "bob", "carol"):
            await backlog(conn, user, 20)

    async def claimer(name: str) -> int:
        started = 0
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
            for _ in range(5):
                started += len((await claim(c, worker=name, limit=3)).jobs)
        return started

    started = await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
    assert sum(started) == 7


async def test_a_model_token_bucket_holds_starts_while_it_is_in_debt(conn: Conn) -> None:
    tokens = RateLimit(name="tokens:provider:openai", rate=SLOW, burst=100)
    await limit(conn, tokens, types={"ECHO": [tokens.name]})
    await backlog(conn, "alice", 5)
    assert len((await claim(conn, limit=2)).jobs) == 2  # starts take no model tokens
    await queue.debit_rate_limit(conn, name=tokens.name, amount=150)  # the calls used 150
    assert (await claim(conn)).jobs == []
    cursor = await conn.execute("SELECT round(tokens) FROM rate_limits")
    assert await cursor.fetchone() == (-50,)


async def test_an_idle_worker_learns_when_the_bucket_refills(conn: Conn) -> None:
    await limit(conn, RateLimit(name="type:ECHO", rate=0.5, burst=1), types={"ECHO": ["type:ECHO"]})
    await backlog(conn, "alice", 3)
    await claim(conn)
    cursor = await conn.execute("SELECT now()")
    now = (await cursor.fetchone())[0]  # type: ignore[index]
    claim_at = await queue.next_claim_at(conn, types=["ECHO"])
    assert claim_at is not None
    assert 1.5 < (claim_at - now).total_seconds() <= 2.1  # one token at 0.5/s


async def test_configuration_replaces_the_fleets_buckets(conn: Conn) -> None:
    await limit(conn, RateLimit(name="type:ECHO", rate=1, burst=5), types={"ECHO": ["type:ECHO"]})
    await conn.execute("UPDATE rate_limits SET tokens = 2")
    # A changed rate keeps the tokens (up to the new burst); a dropped bucket goes.
    await limit(
        conn,
        RateLimit(name="type:ECHO", rate=2, burst=1),
        RateLimit(name="provider:openai", rate=1, burst=1),
        types={"ECHO": ["type:ECHO"], "CHAT": ["provider:openai"]},
    )
    cursor = await conn.execute("SELECT name, rate, burst, tokens FROM rate_limits ORDER BY 1")
    assert await cursor.fetchall() == [("provider:openai", 1, 1, 1), ("type:ECHO", 2, 1, 1)]
    await limit(conn, types={"ECHO": [], "CHAT": []})
    cursor = await conn.execute("SELECT count(*) FROM rate_limits")
    assert await cursor.fetchone() == (0,)
    cursor = await conn.execute("SELECT count(*) FROM rate_limit_types")
    assert await cursor.fetchone() == (0,)
