"""The metrics mirror's settings: CloudWatch namespace, interval, dimensions, staleness.

The CloudWatch endpoint is boto3's own ``AWS_ENDPOINT_URL_CLOUDWATCH`` when set
(a moto server in tests).
"""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import NoDecode

from easyclaw.core.settings import EngineSettings, SettingsBase

MAX_CLOUDWATCH_DIMENSIONS = 30


def _parse_dimensions(value: object) -> object:
    """``Cluster=prod,Environment=production`` (or a JSON object) as a dict.

    A malformed pair is an error that names the variable.
    """
    if not isinstance(value, str):
        return value
    if value.strip().startswith("{"):
        return json.loads(value)  # also accepted: a JSON object
    dimensions: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in value.split(","))):
        name, sep, dimension_value = pair.partition("=")
        if not sep or not name.strip() or not dimension_value.strip():
            raise ValueError(
                f"EASYCLAW_METRICS_DIMENSIONS: {pair!r} is not Name=Value "
                "(expected e.g. Cluster=prod-eks,Environment=production)"
            )
        dimensions[name.strip()] = dimension_value.strip()
    return dimensions


Dimensions = Annotated[dict[str, str], NoDecode, BeforeValidator(_parse_dimensions)]
"""``Cluster=prod,Environment=production`` (or a JSON object) read as a dict."""


class MirrorSettings(SettingsBase):
    """What the mirror publishes, where, and how often."""

    cloudwatch_namespace: str = Field(
        "EasyClaw", min_length=1, max_length=255, description="CloudWatch namespace"
    )
    metrics_mirror_interval_seconds: float = Field(60.0, gt=0, le=3600)
    metrics_dimensions: Dimensions = Field(
        default_factory=dict,
        description="dimensions on every datum, `Cluster=prod-eks,Environment=production`",
    )
    metrics_mirror_health_port: int = Field(
        8081, ge=0, le=65535, description="port of the mirror's /healthz; 0 disables"
    )
    metrics_mirror_stale_seconds: float | None = Field(
        None,
        gt=0,
        le=86400,
        description="the leader's /healthz answers 503 when its last successful publication "
        "(or its start as leader) is older than this; unset means 5 intervals",
    )

    @model_validator(mode="after")
    def _check_dimensions(self) -> MirrorSettings:
        if len(self.metrics_dimensions) > MAX_CLOUDWATCH_DIMENSIONS:
            raise ValueError(
                f"EASYCLAW_METRICS_DIMENSIONS has {len(self.metrics_dimensions)} dimensions; "
                f"CloudWatch accepts at most {MAX_CLOUDWATCH_DIMENSIONS}"
            )
        return self


class MirrorProcessSettings(EngineSettings, MirrorSettings):
    """What ``easyclaw metrics-mirror`` reads: the engine's concerns and its own."""
