"""The list cursor's decoder accepts exactly what its encoder writes, and refuses
anything else with a ValueError (which the API answers as a 422), never another error."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import orjson
from hypothesis import given
from hypothesis import strategies as st

from easyclaw.api.cursor import ListCursor

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
cursors = st.builds(
    ListCursor,
    created_at=st.datetimes(timezones=offsets),
    job_id=st.uuids(),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
# Lists of two strings, some shaped like the real thing, to reach the inner checks.
cursor_like = st.lists(
    st.one_of(
        st.text(),
        st.datetimes().map(datetime.isoformat),
        st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
        st.uuids().map(str),
        st.uuids().map(lambda uuid: uuid.hex),
        json_values,
    ),
    min_size=0,
    max_size=3,
)


def token_of(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decodes_or_refuses(token: str) -> ListCursor | None:
    try:
        cursor = ListCursor.decode(token)
    except ValueError as error:
        message = str(error)
        cursor = None
    else:
        message = ""
        assert cursor.encode() == token
    assert message in ("", "cursor is not one this API returned")
    return cursor


@given(cursors)
def test_every_cursor_decodes_to_itself(cursor: ListCursor) -> None:
    assert ListCursor.decode(cursor.encode()) == cursor


@given(st.text(max_size=300))
def test_any_text_decodes_or_is_refused(token: str) -> None:
    decodes_or_refuses(token)


@given(st.binary(max_size=200))
def test_any_bytes_as_a_token_decode_or_are_refused(raw: bytes) -> None:
    decodes_or_refuses(base64.urlsafe_b64encode(raw).decode().rstrip("="))


@given(st.one_of(json_values, cursor_like))
def test_any_json_as_a_token_decodes_or_is_refused(value: Any) -> None:
    decodes_or_refuses(token_of(value))


@given(cursors, st.integers(min_value=0, max_value=199), st.characters())
def test_a_changed_character_is_refused_or_still_a_cursor(
    cursor: ListCursor, position: int, character: str
) -> None:
    token = cursor.encode()
    position %= len(token)
    decodes_or_refuses(token[:position] + character + token[position + 1 :])


def test_the_cases_that_were_a_500_are_refused() -> None:
    for value in [["2024-01-01T00:00:00+00:00", 1], ["2024-01-01T00:00:00+00:00", [1]]]:
        assert decodes_or_refuses(token_of(value)) is None
    real = ListCursor(created_at=datetime(2024, 1, 1, tzinfo=UTC), job_id=UUID(int=1))
    assert decodes_or_refuses(real.encode()) == real
