"""The one backoff rule: doubling from the base, capped, with or without equal jitter."""

from __future__ import annotations

import pytest

from easyclaw.core.backoff import Backoff, backoff_ceiling, backoff_delay


def test_without_jitter_the_delay_doubles_up_to_the_cap() -> None:
    delays = [backoff_delay(n, base=0.5, cap=10.0) for n in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5, 10, 50])
def test_equal_jitter_stays_between_half_and_all_of_the_ceiling(attempt: int) -> None:
    ceiling = backoff_ceiling(attempt, base=1.0, cap=60.0)
    samples = [backoff_delay(attempt, base=1.0, cap=60.0, jitter="equal") for _ in range(200)]
    assert all(ceiling / 2 <= s <= ceiling for s in samples)
    assert len(set(samples)) > 1, "the random half varies"


def test_huge_attempt_counts_stay_at_the_cap() -> None:
    # 2.0**1100 would overflow a float.
    assert backoff_delay(1100, base=0.05, cap=2.0) == 2.0
    assert backoff_ceiling(-1, base=0.1, cap=5.0) == 0.1


def test_a_backoff_counts_its_attempts_and_starts_over_on_reset() -> None:
    backoff = Backoff(base=0.1, cap=5.0)
    assert [backoff.next_delay() for _ in range(8)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    )
    assert backoff.attempts == 8
    backoff.reset()
    assert (backoff.attempts, backoff.next_delay()) == (0, 0.1)


def test_a_jittered_backoff_doubles_within_its_bounds_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=60.0, jitter="equal")
    delays = [backoff.next_delay() for _ in range(10)]
    for attempt, delay in enumerate(delays):
        ceiling = min(60.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 60.0
