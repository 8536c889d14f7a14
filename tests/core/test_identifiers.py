"""Identifier formats are matched as a whole: no trailing newline slips through a `$`."""

from __future__ import annotations

import pytest

from easyclaw.core.ids import is_user_id
from easyclaw.core.jobtypes import JobType


async def _handler(_ctx: object) -> None:
    return None


@pytest.mark.parametrize("user_id", ["alice", "user_2abc", "auth0|65f0c1", "a.b+c@d.io", "x" * 200])
def test_ordinary_user_ids_are_user_ids(user_id: str) -> None:
    assert is_user_id(user_id)


@pytest.mark.parametrize(
    "user_id", ["alice\n", "alice\r\n", "\nalice", "ali ce", "", "x" * 201, "alice/../bob", "a\x00"]
)
def test_anything_around_or_inside_a_user_id_is_refused(user_id: str) -> None:
    assert not is_user_id(user_id)


def test_a_job_type_name_with_a_trailing_newline_is_refused() -> None:
    JobType(name="SEND_EMAIL", handler=_handler)
    with pytest.raises(ValueError, match="upper case"):
        JobType(name="SEND_EMAIL\n", handler=_handler)
