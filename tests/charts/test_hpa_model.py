"""The autoscaler model the simulation relies on behaves like the HPA and KEDA."""

from __future__ import annotations

from tests.charts.hpa import Autoscaler


def model(
    *,
    up_percent: int = 100,
    up_period: float = 15.0,
    up_pods: int | None = None,
    **overrides: float,
) -> Autoscaler:
    policies = [("Percent", up_percent, up_period)]
    if up_pods is not None:
        policies.append(("Pods", up_pods, up_period))
    values: dict[str, object] = {
        "query": "",
        "target": 5.0,
        "activation": 0.0,
        "min_replicas": 1,
        "max_replicas": 50,
        "polling_interval": 1.0,
        "cooldown": 300.0,
        "up_window": 60.0,
        "down_window": 300.0,
        "up_policies": tuple(policies),
    }
    values.update(overrides)
    return Autoscaler(**values)  # type: ignore[arg-type]


def test_recommendation_is_ceil_of_metric_over_target_clamped() -> None:
    scaler = model(up_window=0, down_window=0, up_percent=10_000)
    assert scaler.desired(0, 0, 1) == 1  # never below min
    assert scaler.desired(1, 21, 1) == 5
    assert scaler.desired(2, 10_000, 5) == 50  # never above max


def test_within_tolerance_nothing_changes() -> None:
    scaler = model(up_window=0, down_window=0)
    assert scaler.desired(0, 52, 10) == 10  # 4 % over target
    assert scaler.desired(1, 60, 10) == 12


def test_scale_up_waits_for_the_whole_window() -> None:
    scaler = model(up_window=60, down_window=0, up_percent=10_000)
    assert scaler.desired(0, 5, 1) == 1
    assert scaler.desired(30, 40, 1) == 1  # the minimum over the window is still 1
    assert scaler.desired(61, 40, 1) == 8


def test_scale_down_keeps_the_highest_recommendation_of_its_window() -> None:
    scaler = model(up_window=0, down_window=300, up_percent=10_000)
    assert scaler.desired(0, 50, 1) == 10
    assert scaler.desired(100, 0, 10) == 10
    assert scaler.desired(299, 0, 10) == 10
    assert scaler.desired(301, 0, 10) == 1


def test_percent_policy_at_most_doubles_per_period() -> None:
    scaler = model(up_window=0, down_window=0, up_percent=100, up_period=15)
    assert scaler.desired(0, 200, 2) == 4
    assert scaler.desired(5, 200, 4) == 4  # same period: still based on 2
    assert scaler.desired(16, 200, 4) == 8


def test_scale_to_zero_after_cooldown_and_back_on_activation() -> None:
    scaler = model(min_replicas=0, cooldown=300, up_window=0, down_window=0)
    assert scaler.desired(0, 0, 1) == 1
    assert scaler.desired(299, 0, 1) == 1
    assert scaler.desired(300, 0, 1) == 0
    assert scaler.desired(400, 0, 0) == 0
    assert scaler.desired(401, 3, 0) == 1  # KEDA activates
    assert scaler.desired(402, 30, 1) == 2  # then the HPA takes over


def test_pods_policy_adds_a_fixed_number_when_that_allows_more() -> None:
    scaler = model(up_window=0, down_window=0, up_percent=100, up_pods=4, up_period=60)
    assert scaler.desired(0, 200, 1) == 5  # 1 + 4 pods beats 1 * 2
    assert scaler.desired(30, 200, 5) == 5  # same period: still based on 1
    assert scaler.desired(61, 200, 5) == 10  # 5 * 2 beats 5 + 4
    assert scaler.desired(122, 200, 10) == 20


def test_without_a_window_the_first_reading_scales_out() -> None:
    scaler = model(up_window=0, down_window=300, up_pods=4, up_period=60)
    assert scaler.desired(0, 0, 1) == 1
    assert scaler.desired(1, 40, 1) == 5
