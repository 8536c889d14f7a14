"""The opaque cursor of GET /jobs pages: where the previous page ended."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import orjson

MAX_CURSOR_LENGTH = 200
"""Longer than any cursor this API writes (about 110 characters)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ListCursor:
    """Where the previous page ended: the (created_at, id) of its last job."""

    created_at: datetime
    job_id: UUID

    def encode(self) -> str:
        raw = orjson.dumps([self.created_at.isoformat(), str(self.job_id)])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> ListCursor:
        """Parse a cursor from a previous page; ValueError for anything else.

        Strict: only the exact text ``encode`` writes is accepted (two strings, an
        ISO time with a whole-minute UTC offset and a UUID), so a tampered token is
        a ValueError here, never an error further down.
        """
        if len(token) > MAX_CURSOR_LENGTH:
            raise ValueError("cursor is not one this API returned")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            value = orjson.loads(raw)
        except (binascii.Error, ValueError) as error:
            raise ValueError("cursor is not one this API returned") from error
        if not (
            isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)
        ):
            raise ValueError("cursor is not one this API returned")
        try:
            cursor = cls(created_at=datetime.fromisoformat(value[0]), job_id=UUID(value[1]))
        except ValueError as error:
            raise ValueError("cursor is not one this API returned") from error
        offset = cursor.created_at.utcoffset()
        if offset is None or offset % timedelta(minutes=1) or cursor.encode() != token:
            raise ValueError("cursor is not one this API returned")
        return cursor

    @property
    def position(self) -> tuple[datetime, UUID]:
        """The keyset position ``queue.list_jobs`` continues after."""
        return (self.created_at, self.job_id)
