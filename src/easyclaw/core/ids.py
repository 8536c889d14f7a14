"""Identifiers: time-ordered UUIDs (version 7) for job ids, and the user-id format.

New job ids land at the right-hand end of the primary-key index instead of at
random pages, which keeps inserts cheap as the table grows.
"""

from __future__ import annotations

import os
import re
import time
import uuid

USER_ID_PATTERN = r"[\w.@:|+-]{1,200}"
"""A user id: 1-200 letters, digits or ``._@:|+-`` (Clerk, Auth0 and Cognito subjects fit)."""
_USER_ID = re.compile(USER_ID_PATTERN)


def is_user_id(value: str) -> bool:
    """Whether ``value`` is a user id, as a whole: ``re.match`` with ``$`` would let a
    trailing newline through (``"alice\\n"``), so this is a full match."""
    return _USER_ID.fullmatch(value) is not None


def uuid7() -> uuid.UUID:
    """A UUIDv7: 48 bits of Unix milliseconds, then random bits (RFC 9562)."""
    unix_ms = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    rand_a = random_bits >> 68  # 12 bits
    rand_b = random_bits & ((1 << 62) - 1)  # 62 bits
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | rand_a << 64
    value |= 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
