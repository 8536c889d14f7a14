"""EasyClaw's own nag rule (EKS1) on real ``aws_eks_v2`` clusters, and the context checks
that refuse an API without TLS or a malformed endpoint allow-list before anything is built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_eks_v2 as eks

from easyclaw_infra.cluster import KUBERNETES_VERSION, endpoint_access
from easyclaw_infra.config import ConfigError, DeploymentConfig, parse_cidrs
from easyclaw_infra.nag import enable_checks
from tests.infra.synthesis import CONTEXT, synthesize


def synth_cluster(tmp_path: Path, access: eks.EndpointAccess) -> tuple[list[str], dict[str, Any]]:
    """A bare aws_eks_v2 cluster under EasyClaw's checks: the EasyClaw rules it broke, and
    its ``ResourcesVpcConfig``."""
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Endpoint")
    eks.Cluster(stack, "Cluster", version=KUBERNETES_VERSION, endpoint_access=access)
    enable_checks(app)  # what infra/app.py runs: AwsSolutions and EasyClaw's own rules
    try:
        app.synth()
    except RuntimeError as error:
        if "ValidationFailed" not in str(error):
            raise
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = [
        violation["ruleName"]
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == "EasyClaw"
        for violation in plugin["violations"]
    ]
    template = json.loads((tmp_path / "Endpoint.template.json").read_text())
    [cluster] = [r for r in template["Resources"].values() if r["Type"] == "AWS::EKS::Cluster"]
    return rules, cluster["Properties"]["ResourcesVpcConfig"]


# ---------------------------------------------------------------- EKS1: endpoint open to the world


def test_eks1_fails_synthesis_of_an_aws_eks_v2_cluster_open_to_the_world(tmp_path: Path) -> None:
    rules, vpc = synth_cluster(tmp_path, eks.EndpointAccess.PUBLIC_AND_PRIVATE)
    assert vpc["EndpointPublicAccess"] is True
    assert "PublicAccessCidrs" not in vpc, "EKS then admits every address"
    assert rules == ["EasyClaw-EKS1"]


def test_eks1_fails_a_context_allow_list_of_0_0_0_0(tmp_path: Path) -> None:
    """`-c easyclaw:endpointAllowedCidrs=0.0.0.0/0` parses, and then fails the synthesis."""
    rules, vpc = synth_cluster(tmp_path, endpoint_access(parse_cidrs("10.0.0.0/8,0.0.0.0/0")))
    assert vpc["PublicAccessCidrs"] == ["10.0.0.0/8", "0.0.0.0/0"]
    assert rules == ["EasyClaw-EKS1"]


def test_the_context_allow_list_makes_a_private_and_restricted_public_endpoint(
    tmp_path: Path,
) -> None:
    rules, vpc = synth_cluster(tmp_path, endpoint_access(("198.51.100.0/24", "203.0.113.7/32")))
    assert rules == []
    assert vpc["EndpointPrivateAccess"] is True
    assert vpc["EndpointPublicAccess"] is True
    assert vpc["PublicAccessCidrs"] == ["198.51.100.0/24", "203.0.113.7/32"]


def test_an_empty_allow_list_makes_the_endpoint_private(tmp_path: Path) -> None:
    rules, vpc = synth_cluster(tmp_path, endpoint_access(()))
    assert rules == []
    assert vpc["EndpointPrivateAccess"] is True
    assert vpc["EndpointPublicAccess"] is False


def test_allow_list_from_cdk_json_or_the_command_line() -> None:
    assert parse_cidrs(["203.0.113.0/24"]) == ("203.0.113.0/24",)
    assert parse_cidrs("203.0.113.0/24, 198.51.100.7/32") == ("203.0.113.0/24", "198.51.100.7/32")
    assert parse_cidrs('["203.0.113.0/24"]') == ("203.0.113.0/24",)
    assert parse_cidrs("198.51.100.7") == ("198.51.100.7/32",)
    assert parse_cidrs(None) == parse_cidrs("") == parse_cidrs([]) == ()
    with pytest.raises(ConfigError, match=r"'203\.0\.113\.9/24' is not a CIDR"):
        parse_cidrs(["203.0.113.9/24"])


# ---------------------------------------------------------------- HTTPS context


def context(*base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """infra/cdk.json's context with ``easyclaw:<key>`` values changed (None removes one)."""
    values = dict(CONTEXT)
    for key, value in {**{k: v for b in base for k, v in b.items()}, **changes}.items():
        if value is None:
            values.pop(f"easyclaw:{key}", None)
        else:
            values[f"easyclaw:{key}"] = value
    return values


NO_TLS = {"apiDomain": None, "hostedZoneId": None, "hostedZoneName": None, "certificateArn": None}
CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0f3c2d9e-1111-2222-3333-444455556666"


def test_synthesis_without_a_domain_fails_with_what_to_set(tmp_path: Path) -> None:
    result = synthesize(tmp_path, context(NO_TLS))
    assert result.returncode != 0
    [message] = result.stderr.strip().splitlines()[-1:]
    assert message.startswith("EasyClaw CDK configuration: easyclaw:apiDomain is not set")
    for key in ("hostedZoneId", "hostedZoneName", "certificateArn", "plainHttp", "docs/aws.md"):
        assert key in message
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json")), "nothing was synthesized"


def test_the_default_context_creates_a_dns_validated_certificate() -> None:
    config = DeploymentConfig.from_values(CONTEXT)
    assert config.api_domain == CONTEXT["easyclaw:apiDomain"]
    assert config.creates_certificate
    assert not config.plain_http


def test_an_existing_certificate_needs_no_hosted_zone() -> None:
    config = DeploymentConfig.from_values(
        context(NO_TLS, apiDomain="api.example.org", certificateArn=CERTIFICATE)
    )
    assert (config.api_domain, config.certificate_arn) == ("api.example.org", CERTIFICATE)
    assert not config.creates_certificate


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"apiDomain": "api.example.org"}, "no certificate for api.example.org"),
        (
            {
                "apiDomain": "api.example.org",
                "certificateArn": CERTIFICATE.replace("eu-west-1", "us-east-1"),
            },
            "not an ACM certificate ARN in eu-west-1",
        ),
        ({"apiDomain": "api_example"}, "is not a DNS name"),
        (
            {"apiDomain": "example.org", "hostedZoneId": "Z1", "hostedZoneName": "example.org"},
            "not the zone apex",
        ),
        (
            {"apiDomain": "api.other.org", "hostedZoneId": "Z1", "hostedZoneName": "example.org"},
            "must be a name inside the zone 'example.org'",
        ),
        ({"apiDomain": "api.example.org", "hostedZoneId": "Z1"}, "set both"),
        ({"plainHttp": True, "apiDomain": "api.example.org"}, "cannot be combined"),
    ],
)
def test_contexts_that_would_not_give_a_working_https_endpoint_are_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DeploymentConfig.from_values(context(NO_TLS, **changes))


def test_plain_http_is_an_explicit_opt_in() -> None:
    config = DeploymentConfig.from_values(context(NO_TLS, plainHttp=True))
    assert config.plain_http
    assert not config.creates_certificate
    assert DeploymentConfig.from_values(context(NO_TLS, plainHttp="true")).plain_http


def test_empty_command_line_values_clear_the_examples_of_cdk_json() -> None:
    """`-c key=` gives an empty string, which is how docs/aws.md clears cdk.json's example zone."""
    cleared = {"hostedZoneId": "", "hostedZoneName": ""}
    with_certificate = DeploymentConfig.from_values(
        context(cleared, apiDomain="api.example.org", certificateArn=CERTIFICATE)
    )
    assert not with_certificate.creates_certificate
    assert with_certificate.hosted_zone_id == ""
    trial = DeploymentConfig.from_values(context(cleared, apiDomain="", plainHttp="true"))
    assert trial.plain_http
