"""Exponential backoff: the one rule every retry loop in EasyClaw waits by.

Attempt ``n`` (counted from 0) has the ceiling ``min(cap, base * 2**n)``. With
``jitter="none"`` it waits exactly that; with ``jitter="equal"`` it waits
between half and all of it (half fixed, half random), so that callers that
failed together (jobs of one outage, resources created during it) do not
retry in step, yet none retries sooner than half the ceiling.

``backoff_delay`` is the pure rule; ``Backoff`` counts the attempts of one
retry loop, and ``reset()`` starts it over after a success.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Jitter = Literal["none", "equal"]

# 2.0**1024 overflows a float; any cap is reached long before this exponent.
_MAX_EXPONENT = 64


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """``min(cap, base * 2**attempt)``, for any attempt >= 0."""
    return min(cap, base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))


def backoff_delay(attempt: int, *, base: float, cap: float, jitter: Jitter = "none") -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
    ceiling = backoff_ceiling(attempt, base=base, cap=cap)
    if jitter == "equal":
        return random.uniform(ceiling / 2, ceiling)
    return ceiling


@dataclass
class Backoff:
    """The delays of one retry loop: ``next_delay()`` after each failure, ``reset()``
    after a success."""

    base: float
    cap: float
    jitter: Jitter = "none"
    attempts: int = 0
    """Delays handed out since the last reset."""

    def next_delay(self) -> float:
        delay = backoff_delay(self.attempts, base=self.base, cap=self.cap, jitter=self.jitter)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
