"""The deployment's choices, read from CDK context (``cdk.json`` or ``-c key=value``)."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


class ConfigError(ValueError):
    """A context value is missing or wrong; the message names it and what to set."""


HTTPS_HELP = (
    "the API is served over HTTPS only, so JWTs never cross the internet in cleartext. "
    "Set easyclaw:apiDomain (the API's name, e.g. api.example.com) and either "
    "easyclaw:hostedZoneId + easyclaw:hostedZoneName (the Route 53 public zone that holds "
    "that name: a DNS-validated ACM certificate and the DNS record are created) or "
    "easyclaw:certificateArn (an issued ACM certificate for that name in the deployment's "
    "region). Only for a throwaway trial, easyclaw:plainHttp=true serves plain HTTP "
    "instead. See docs/aws.md, 2. Configure"
)
HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


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
    endpoint_allowed_cidrs: tuple[str, ...] = ()
    """Who may reach the EKS API from the internet; empty: the endpoint is private only."""
    api_domain: str = ""
    hosted_zone_id: str = ""
    hosted_zone_name: str = ""
    certificate_arn: str = ""
    plain_http: bool = False
    """Explicit opt-out of HTTPS for a throwaway trial; never the default."""

    @property
    def metrics_dimensions(self) -> dict[str, str]:
        """What the metrics mirror attaches to every datum; alarms select the same."""
        return {"Cluster": self.cluster_name, "Environment": self.environment}

    @property
    def creates_certificate(self) -> bool:
        """True when the App stack makes (and DNS-validates) the API's certificate itself."""
        return not self.plain_http and not self.certificate_arn

    @classmethod
    def from_context(cls, node: Node) -> DeploymentConfig:
        return cls.from_values(lambda key: node.try_get_context(key))

    @classmethod
    def from_values(cls, lookup: Callable[[str], Any] | Mapping[str, Any]) -> DeploymentConfig:
        """The configuration from context values (``lookup("easyclaw:region")``)."""
        find = lookup.get if isinstance(lookup, Mapping) else lookup

        def get(key: str) -> Any:
            value = find(f"easyclaw:{key}")
            if value is None:
                raise ConfigError(f"CDK context easyclaw:{key} is not set (see infra/cdk.json)")
            return value

        def optional(key: str) -> str:
            value = find(f"easyclaw:{key}")
            return "" if value is None else str(value).strip()

        def as_bool(value: Any) -> bool:
            return value if isinstance(value, bool) else str(value).lower() == "true"

        config = cls(
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
            endpoint_allowed_cidrs=parse_cidrs(find("easyclaw:endpointAllowedCidrs")),
            api_domain=optional("apiDomain").lower().rstrip("."),
            hosted_zone_id=optional("hostedZoneId"),
            hosted_zone_name=optional("hostedZoneName").lower().rstrip("."),
            certificate_arn=optional("certificateArn"),
            plain_http=as_bool(find("easyclaw:plainHttp") or False),
        )
        config.check_api_endpoint()
        return config

    def check_api_endpoint(self) -> None:
        """Refuse a configuration that would serve the API without TLS by accident."""
        if self.plain_http:
            if self.api_domain or self.certificate_arn or self.hosted_zone_id:
                raise ConfigError(
                    "easyclaw:plainHttp=true cannot be combined with easyclaw:apiDomain, "
                    "easyclaw:certificateArn or easyclaw:hostedZoneId: remove plainHttp to "
                    "serve HTTPS"
                )
            return
        if not self.api_domain:
            raise ConfigError(f"easyclaw:apiDomain is not set: {HTTPS_HELP}")
        if not HOSTNAME.match(self.api_domain):
            raise ConfigError(
                f"easyclaw:apiDomain {self.api_domain!r} is not a DNS name like api.example.com"
            )
        if bool(self.hosted_zone_id) != bool(self.hosted_zone_name):
            raise ConfigError(
                "set both easyclaw:hostedZoneId and easyclaw:hostedZoneName (the zone's ID "
                "and its name, from `aws route53 list-hosted-zones`), or neither"
            )
        if self.hosted_zone_name and not self.api_domain.endswith(f".{self.hosted_zone_name}"):
            raise ConfigError(
                f"easyclaw:apiDomain {self.api_domain!r} must be a name inside the zone "
                f"{self.hosted_zone_name!r} (not the zone apex itself: the API gets a CNAME)"
            )
        if self.certificate_arn:
            if not re.match(
                rf"^arn:aws[\w-]*:acm:{re.escape(self.region)}:\d{{12}}:certificate/",
                self.certificate_arn,
            ):
                raise ConfigError(
                    f"easyclaw:certificateArn {self.certificate_arn!r} is not an ACM "
                    f"certificate ARN in {self.region} (the load balancer's region)"
                )
        elif not self.hosted_zone_id:
            raise ConfigError(f"no certificate for {self.api_domain}: {HTTPS_HELP}")


def parse_cidrs(value: Any) -> tuple[str, ...]:
    """CIDRs from a JSON list (cdk.json) or a comma-separated string (``-c key=a,b``)."""
    if value is None or value == "":
        return ()
    items = value if isinstance(value, list) else str(value).strip("[]").split(",")
    cidrs = []
    for item in items:
        text = str(item).strip().strip("\"'")
        if not text:
            continue
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as error:
            raise ConfigError(
                f"easyclaw:endpointAllowedCidrs: {text!r} is not a CIDR like 203.0.113.0/24 "
                f"({error})"
            ) from None
        cidrs.append(str(network))
    return tuple(cidrs)
