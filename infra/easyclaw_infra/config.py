"""The deployment's choices, read from CDK context (``cdk.json`` or ``-c key=value``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from constructs import Node

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = REPO_ROOT / "infra" / "cdk.json"
CHART_DIR = REPO_ROOT / "charts" / "easyclaw"
DOCKERFILE = REPO_ROOT / "Dockerfile"

# Pinned versions; change them here (and re-run `make synth`) to upgrade.
KEDA_CHART_VERSION = "2.20.2"
EXTERNAL_SECRETS_CHART_VERSION = "0.19.2"

NAMESPACE = "easyclaw"
"""Kubernetes namespace of the EasyClaw release (and its Fargate profile)."""
RELEASE = "easyclaw"
"""Helm release name; the chart names its ServiceAccounts ``<release>-<component>``."""
WORKER_SERVICE_ACCOUNT = f"{RELEASE}-worker"
METRICS_MIRROR_SERVICE_ACCOUNT = f"{RELEASE}-metrics-mirror"
DATABASE_SECRET = f"{RELEASE}-database"
"""Kubernetes Secret (key ``DATABASE_URL``) that External Secrets keeps in sync with RDS."""
STATE_PREFIX = "state/"
METRICS_NAMESPACE = "EasyClaw"


def file_context() -> dict[str, Any]:
    """The context in ``infra/cdk.json``, for runs without the cdk CLI (``make synth``, tests)."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return context


@dataclass(frozen=True, kw_only=True)
class DeploymentConfig:
    account: str
    region: str
    environment: str
    cluster_name: str
    bedrock_model_id: str
    worker_max_replicas: int
    nat_gateways: int
    database_instance_type: str
    database_multi_az: bool
    jwt_jwks_url: str
    jwt_issuer: str
    jwt_audience: str
    alarm_email: str
    admin_role_arn: str

    @property
    def metrics_dimensions(self) -> dict[str, str]:
        """What the metrics mirror attaches to every datum; alarms select the same."""
        return {"Cluster": self.cluster_name, "Environment": self.environment}

    @classmethod
    def from_context(cls, node: Node) -> DeploymentConfig:
        def get(key: str) -> Any:
            value = node.try_get_context(f"easyclaw:{key}")
            if value is None:
                raise ValueError(f"CDK context easyclaw:{key} is not set (see infra/cdk.json)")
            return value

        def as_bool(value: Any) -> bool:
            return value if isinstance(value, bool) else str(value).lower() == "true"

        return cls(
            account=str(get("account")),
            region=str(get("region")),
            environment=str(get("environment")),
            cluster_name=str(get("clusterName")),
            bedrock_model_id=str(get("bedrockModelId")),
            worker_max_replicas=int(get("workerMaxReplicas")),
            nat_gateways=int(get("natGateways")),
            database_instance_type=str(get("databaseInstanceType")),
            database_multi_az=as_bool(get("databaseMultiAz")),
            jwt_jwks_url=str(get("jwtJwksUrl")),
            jwt_issuer=str(get("jwtIssuer")),
            jwt_audience=str(get("jwtAudience")),
            alarm_email=str(get("alarmEmail")),
            admin_role_arn=str(get("adminRoleArn")),
        )
