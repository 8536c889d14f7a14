"""Users see only their own jobs; another user's job looks exactly like no job at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from tests.api.conftest import assert_error, read, submit
from tests.support.api_server import ApiServer


@pytest.fixture
async def alice(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(user_id="alice") as client:
        yield client


@pytest.fixture
async def bob(api: ApiServer) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(user_id="bob") as client:
        yield client


def without_id(message: str, job_id: str) -> str:
    return message.replace(job_id, "<id>")


async def test_a_user_can_neither_read_nor_cancel_another_users_job(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    job_id = await submit(alice)
    assert_error(await bob.get(f"/jobs/{job_id}"), 404, "JOB_NOT_FOUND")
    assert_error(await bob.get(f"/jobs/{job_id}", params={"wait": 5}), 404, "JOB_NOT_FOUND")
    assert_error(await bob.post(f"/jobs/{job_id}/cancel"), 404, "JOB_NOT_FOUND")
    job = await read(alice, job_id)
    assert job["status"] == "PENDING"
    assert job["cancelRequested"] is False


async def test_a_404_for_another_users_job_is_identical_to_one_for_a_missing_job(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    job_id = await submit(alice)
    missing = str(uuid4())
    for method, path in [("GET", "/jobs/{}"), ("POST", "/jobs/{}/cancel")]:
        theirs = await bob.request(method, path.format(job_id))
        nothing = await bob.request(method, path.format(missing))
        assert theirs.status_code == nothing.status_code == 404
        assert set(theirs.json()) == set(nothing.json()) == {"error", "message"}
        assert theirs.json()["error"] == nothing.json()["error"]
        assert without_id(theirs.json()["message"], job_id) == without_id(
            nothing.json()["message"], missing
        )
        assert theirs.headers.keys() == nothing.headers.keys()


async def test_a_user_does_not_see_another_users_jobs_in_lists(
    alice: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    alices = [await submit(alice) for _ in range(3)]
    bobs = await submit(bob)
    for params in [{}, {"status": "PENDING"}, {"type": "ECHO"}, {"limit": 100}]:
        listed = (await bob.get("/jobs", params=params)).json()
        assert [job["id"] for job in listed["jobs"]] == [bobs], params
    assert [job["id"] for job in (await alice.get("/jobs")).json()["jobs"]] == alices[::-1]
    # Nor by paging on with a cursor from someone else's listing.
    cursor = (await alice.get("/jobs", params={"limit": 1})).json()["nextCursor"]
    assert (await bob.get("/jobs", params={"cursor": cursor})).json()["count"] == 0
