"""Which jobs may start: concurrency keys and fleet-wide rate limits.

The rules themselves are SQL (``claim_jobs`` and friends in ``sql/queries.sql``);
this module holds what submitters validate and what workers configure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

CONCURRENCY_KEY_PATTERN = r"[A-Za-z0-9._:@|/+=-]{1,200}"
"""A concurrency key: 1-200 letters, digits or ``._:@|/+=-`` (``conversation:<uuid>``,
``tenant:acme/report``)."""
_CONCURRENCY_KEY = re.compile(CONCURRENCY_KEY_PATTERN)
MAX_CONCURRENCY_LIMIT = 1000


def is_concurrency_key(value: str) -> bool:
    """Whether ``value`` is a concurrency key as a whole (a full match: no trailing newline)."""
    return _CONCURRENCY_KEY.fullmatch(value) is not None


# ---------------------------------------------------------------- rate limits

_BUCKET_NAME = re.compile(
    r"type:[A-Z][A-Z0-9_]{0,63}|provider:[a-z0-9._-]{1,64}|tokens:provider:[a-z0-9._-]{1,64}"
)
_RATE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)/(?P<unit>s|sec|second|min|minute|h|hour)")
_SECONDS_PER = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """A fleet-wide token bucket (a row of ``rate_limits``).

    ``type:<TYPE>`` and ``provider:<name>`` count job starts: each claimed job
    takes one token. ``tokens:provider:<name>`` counts a model's tokens: a job
    starts only while the bucket is positive and takes nothing at the start;
    the job debits what its model calls used (``debit_rate_limit``).
    """

    name: str
    rate: float
    """Tokens added per second."""
    burst: float
    """Most tokens the bucket holds: starts allowed at once after a quiet spell."""

    @property
    def claim_cost(self) -> float:
        return 0.0 if self.name.startswith("tokens:") else 1.0


def parse_rate_limits(text: str) -> list[RateLimit]:
    """``type:CHAT=5/s,provider:openai=60/min;burst=10,tokens:provider:openai=90000/min``.

    A start bucket's burst defaults to 1 (evenly spaced starts); a bucket of
    model tokens defaults to one minute's worth. Raises ValueError naming the part.
    """
    limits: dict[str, RateLimit] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, equals, spec = part.partition("=")
        name = name.strip()
        if not equals or not _BUCKET_NAME.fullmatch(name):
            raise ValueError(
                f"{part!r}: expected NAME=RATE/UNIT[;burst=N] with NAME type:<TYPE>, "
                "provider:<name> or tokens:provider:<name>"
            )
        rate_text, _, options = spec.partition(";")
        rate_match = _RATE.fullmatch(rate_text.strip())
        if rate_match is None or float(rate_match["amount"]) <= 0:
            raise ValueError(f"{part!r}: the rate must look like 5/s, 60/min or 1000/h, above 0")
        rate = float(rate_match["amount"]) / _SECONDS_PER[rate_match["unit"]]
        burst = 60 * rate if name.startswith("tokens:") else 1.0
        if options:
            key, _, value = options.partition("=")
            try:
                burst = float(value)
            except ValueError:
                burst = 0
            if key.strip() != "burst" or burst < 1:
                raise ValueError(f"{part!r}: the only option is ;burst=N with N >= 1")
        if name in limits:
            raise ValueError(f"{name!r} is limited twice")
        limits[name] = RateLimit(name=name, rate=rate, burst=max(burst, 1.0))
    return list(limits.values())


def buckets_of(job_type: str, providers: Sequence[str], limits: Sequence[RateLimit]) -> list[str]:
    """The configured buckets a job of ``job_type``, calling ``providers``, takes from."""
    wanted = {f"type:{job_type}"}
    for provider in providers:
        wanted |= {f"provider:{provider}", f"tokens:provider:{provider}"}
    return [limit.name for limit in limits if limit.name in wanted]
