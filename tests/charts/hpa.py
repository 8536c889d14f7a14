"""What KEDA and the HorizontalPodAutoscaler do with the ScaledObject, as a model.

KEDA's postgresql trigger is an ``AverageValue`` metric, so the HPA's
recommendation is ``ceil(query result / targetQueryValue)``, left alone
within the 10 % tolerance, clamped to [min, max]. The ``behavior`` then
smooths it: a scale-up needs the recommendation to hold for the whole
scale-up stabilization window (the minimum over it), a scale-down takes the
maximum over the scale-down window, and the scale-up policies cap how much
the count may grow per period: ``Percent`` to ``ceil(start * (1 +
value/100))``, ``Pods`` to ``start + value``, where *start* is the count at
the beginning of the policy's period, and ``selectPolicy: Max`` takes the
policy that allows more. With ``minReplicaCount: 0`` KEDA itself
deactivates (0 replicas) once the result has been at or below the
activation value for ``cooldownPeriod``, and activates (1 replica) above it.

All durations are divided by ``compression`` so the tests run in seconds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

TOLERANCE = 0.1


@dataclass
class Autoscaler:
    query: str
    target: float
    activation: float
    min_replicas: int
    max_replicas: int
    polling_interval: float
    cooldown: float
    up_window: float
    down_window: float
    up_policies: tuple[tuple[str, int, float], ...]
    """(type, value, period) of each scale-up policy."""
    up_select: str = "Max"
    _recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    _scale_ups: deque[tuple[float, int]] = field(default_factory=deque)
    _active_since_below: float | None = None

    @classmethod
    def from_scaled_object(cls, scaled_object: dict[str, Any], compression: float) -> Autoscaler:
        spec = scaled_object["spec"]
        (trigger,) = spec["triggers"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        policies = tuple(
            (policy["type"], policy["value"], policy["periodSeconds"] / compression)
            for policy in behavior["scaleUp"]["policies"]
        )
        assert {kind for kind, _, _ in policies} <= {"Percent", "Pods"}
        return cls(
            query=trigger["metadata"]["query"],
            target=float(trigger["metadata"]["targetQueryValue"]),
            activation=float(trigger["metadata"].get("activationTargetQueryValue", 0)),
            min_replicas=spec["minReplicaCount"],
            max_replicas=spec["maxReplicaCount"],
            polling_interval=spec["pollingInterval"] / compression,
            cooldown=spec["cooldownPeriod"] / compression,
            up_window=behavior["scaleUp"]["stabilizationWindowSeconds"] / compression,
            down_window=behavior["scaleDown"]["stabilizationWindowSeconds"] / compression,
            up_policies=policies,
            up_select=behavior["scaleUp"].get("selectPolicy", "Max"),
        )

    def desired(self, now: float, metric: float, current: int) -> int:
        """The replica count KEDA and the HPA settle on for this reading."""
        if self.min_replicas == 0:
            # KEDA's activation phase: 0 <-> 1 is KEDA's call, not the HPA's.
            if metric > self.activation:
                self._active_since_below = None
                if current == 0:
                    return 1
            else:
                if self._active_since_below is None:
                    self._active_since_below = now
                if current > 0 and now - self._active_since_below >= self.cooldown:
                    self._recommendations.clear()
                    return 0
            if current == 0:
                return 0
        recommendation = math.ceil(metric / self.target) if self.target else current
        if current and abs(metric / (current * self.target) - 1) <= TOLERANCE:
            recommendation = current
        recommendation = max(max(self.min_replicas, 1), min(self.max_replicas, recommendation))
        stabilized = self._stabilize(now, recommendation, current)
        return self._limit_scale_up(now, stabilized, current)

    def _stabilize(self, now: float, recommendation: int, current: int) -> int:
        up, down = recommendation, recommendation
        for stamp, value in self._recommendations:
            if stamp > now - self.up_window:
                up = min(up, value)
            if stamp > now - self.down_window:
                down = max(down, value)
        self._recommendations.append((now, recommendation))
        horizon = now - max(self.up_window, self.down_window)
        while self._recommendations and self._recommendations[0][0] <= horizon:
            self._recommendations.popleft()
        result = current
        if result < up:
            result = up
        if result > down:
            result = down
        return result

    def _limit_scale_up(self, now: float, wanted: int, current: int) -> int:
        longest = max(period for _, _, period in self.up_policies)
        while self._scale_ups and self._scale_ups[0][0] <= now - longest:
            self._scale_ups.popleft()
        if wanted <= current:
            return wanted
        limits = []
        for kind, value, period in self.up_policies:
            added = sum(count for stamp, count in self._scale_ups if stamp > now - period)
            start = current - added
            if kind == "Percent":
                limits.append(math.ceil(start * (1 + value / 100)) if start else wanted)
            else:
                limits.append(start + value)
        limit = max(limits) if self.up_select == "Max" else min(limits)
        result = max(current, min(wanted, limit))
        if result > current:
            self._scale_ups.append((now, result - current))
        return result
