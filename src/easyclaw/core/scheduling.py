"""Which jobs may start: the format of concurrency keys and their limits.

The rules themselves are SQL (``claim_jobs`` and friends in ``sql/queries.sql``);
this module holds what submitters validate before enqueueing.
"""

from __future__ import annotations

import re

CONCURRENCY_KEY_PATTERN = r"[A-Za-z0-9._:@|/+=-]{1,200}"
"""A concurrency key: 1-200 letters, digits or ``._:@|/+=-`` (``conversation:<uuid>``,
``tenant:acme/report``)."""
_CONCURRENCY_KEY = re.compile(CONCURRENCY_KEY_PATTERN)
MAX_CONCURRENCY_LIMIT = 1000


def is_concurrency_key(value: str) -> bool:
    """Whether ``value`` is a concurrency key as a whole (a full match: no trailing newline)."""
    return _CONCURRENCY_KEY.fullmatch(value) is not None
