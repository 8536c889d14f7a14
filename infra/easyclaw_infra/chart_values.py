"""The EasyClaw chart's values for EKS, from one set of names: CDK's or its stack outputs.

The App stack installs the chart with ``chart_values(wiring)`` where the wiring
holds CloudFormation tokens, and outputs every wiring field under its
``output_key``. ``infra/eks_values.py`` reads those outputs back (the JSON of
``cdk deploy --outputs-file``) into the same wiring and writes the same values
for ``skaffold -p eks``. One function, so the two cannot drift apart. The image
is not among them: CDK sets its asset, skaffold the image it built.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, fields
from typing import Any

from easyclaw_infra.config import DATABASE_SECRET, METRICS_NAMESPACE, STATE_PREFIX

APP_STACK = "EasyClaw-App-Stack"


@dataclass(frozen=True, kw_only=True)
class ChartWiring:
    """What the chart needs to know about the AWS resources around it."""

    region: str
    cluster_name: str
    """The EKS cluster, and the ``Cluster`` dimension the alarms select."""
    environment: str
    """The ``Environment`` dimension the alarms select."""
    worker_role_arn: str
    metrics_mirror_role_arn: str
    state_bucket: str
    pod_security_group_id: str
    jwt_jwks_url: str
    jwt_issuer: str
    jwt_audience: str
    bedrock_model_id: str
    worker_max_replicas: str
    api_domain: str = ""
    """Empty only with ``easyclaw:plainHttp``."""
    certificate_arn: str = ""

    @staticmethod
    def output_key(field_name: str) -> str:
        """The stack output holding a field: ``worker_role_arn`` -> ``WorkerRoleArn``."""
        return "".join(part.capitalize() for part in field_name.split("_"))

    def outputs(self) -> dict[str, str]:
        """Every non-empty field by its output key (CloudFormation refuses empty outputs)."""
        return {
            self.output_key(field.name): getattr(self, field.name)
            for field in fields(self)
            if getattr(self, field.name) != ""
        }

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> ChartWiring:
        """The wiring from the App stack's outputs; names any that are missing."""
        required = [f.name for f in fields(cls) if f.default is MISSING]
        missing = [cls.output_key(name) for name in required if cls.output_key(name) not in outputs]
        if missing:
            raise KeyError(
                f"{APP_STACK} outputs lack {', '.join(missing)}: deploy the current App stack "
                "and write its outputs with `cdk deploy --outputs-file`"
            )
        return cls(
            **{
                f.name: str(outputs[cls.output_key(f.name)])
                for f in fields(cls)
                if cls.output_key(f.name) in outputs
            }
        )


def chart_values(wiring: ChartWiring) -> dict[str, Any]:
    """Values of the EasyClaw chart for this deployment (everything except the image)."""
    ingress: dict[str, Any] = {"enabled": True, "className": "alb", "scheme": "internet-facing"}
    if wiring.api_domain:
        ingress["host"] = wiring.api_domain
    if wiring.certificate_arn:
        ingress["certificateArn"] = wiring.certificate_arn
    return {
        "config": {
            "env": "production",
            "authMode": "jwt",
            "jwtJwksUrl": wiring.jwt_jwks_url,
            "jwtIssuer": wiring.jwt_issuer,
            "jwtAudience": wiring.jwt_audience,
            "extraEnv": {
                "AWS_REGION": wiring.region,
                "EASYCLAW_CHAT_PROVIDER": "bedrock",
                "EASYCLAW_CHAT_MODEL": wiring.bedrock_model_id,
                "EASYCLAW_STATE_BACKEND": "s3",
                "EASYCLAW_STATE_S3_BUCKET": wiring.state_bucket,
                "EASYCLAW_STATE_S3_PREFIX": STATE_PREFIX,
            },
        },
        "database": {"existingSecret": DATABASE_SECRET, "existingSecretKey": "DATABASE_URL"},
        "api": {"ingress": ingress},
        "worker": {
            "podDeletionCost": True,
            "serviceAccount": {
                "annotations": {"eks.amazonaws.com/role-arn": wiring.worker_role_arn}
            },
            "autoscaling": {
                "enabled": True,
                "maxReplicaCount": _as_int(wiring.worker_max_replicas),
            },
        },
        # Fargate ignores NetworkPolicy; the pods' isolation is the pod security group.
        "securityGroupPolicy": {
            "enabled": True,
            "securityGroupIds": [wiring.pod_security_group_id],
        },
        "metricsMirror": {
            "enabled": True,
            "awsRegion": wiring.region,
            "cloudwatchNamespace": METRICS_NAMESPACE,
            "dimensions": {"Cluster": wiring.cluster_name, "Environment": wiring.environment},
            "serviceAccount": {
                "annotations": {"eks.amazonaws.com/role-arn": wiring.metrics_mirror_role_arn}
            },
        },
    }


def _as_int(value: str) -> int:
    if not re.fullmatch(r"\d+", value):
        raise ValueError(f"WorkerMaxReplicas must be a whole number, not {value!r}")
    return int(value)
