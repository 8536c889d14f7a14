"""What KEDA and the HorizontalPodAutoscaler do with the ScaledObject, as a model.

KEDA's postgresql trigger is an ``AverageValue`` metric, so the HPA's
recommendation is ``ceil(query result / targetQueryValue)``, left alone
within the 10 % tolerance, clamped to [min, max]. The ``behavior`` then
smooths it: a scale-up needs the recommendation to hold for the whole
scale-up stabilization window (the minimum over it), a scale-down takes the
maximum over the scale-down window, and a ``Percent`` policy caps how much
the count may grow per period. With ``minReplicaCount: 0`` KEDA itself
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
    up_percent: int
    up_period: float
    _recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    _scale_ups: deque[tuple[float, int]] = field(default_factory=deque)
    _active_since_below: float | None = None

    @classmethod
    def from_scaled_object(cls, scaled_object: dict[str, Any], compression: float) -> Autoscaler:
        spec = scaled_object["spec"]
        (trigger,) = spec["triggers"]
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        (up_policy,) = behavior["scaleUp"]["policies"]
        assert up_policy["type"] == "Percent"
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
            up_percent=up_policy["value"],
            up_period=up_policy["periodSeconds"] / compression,
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
        while self._scale_ups and self._scale_ups[0][0] <= now - self.up_period:
            self._scale_ups.popleft()
        if wanted <= current:
            return wanted
        added = sum(count for _, count in self._scale_ups)
        period_start = current - added
        limit = math.ceil(period_start * (1 + self.up_percent / 100)) if period_start else wanted
        result = max(current, min(wanted, limit))
        if result > current:
            self._scale_ups.append((now, result - current))
        return result
