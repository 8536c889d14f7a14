"""cdk-nag (AwsSolutions) and EasyClaw's own rules on every stack; each acknowledged finding
says why.

cdk-nag 3 runs as a CDK policy-validation plugin: synthesis fails on any
finding that is not acknowledged, and ``cdk.out/policy-validation-report.json``
lists them. Acknowledgements use CDK's own ``Validations.of(...).acknowledge``
on the construct concerned (a stack's acknowledgement covers its children).

``EasyClawChecks`` is a pack of rules cdk-nag lacks. Its ``EasyClaw-EKS1``
exists because AwsSolutions' EKS rule only looks at the custom resource of the
old ``aws_eks`` module and never sees the native ``AWS::EKS::Cluster`` that
``aws_eks_v2`` makes.
"""

from __future__ import annotations

import ipaddress
from typing import Any, cast

import jsii
from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from cdk_nag import AwsSolutionsChecks, IApplyRule, NagMessageLevel, NagPack, NagRuleCompliance
from constructs import IConstruct

PACK_NAME = "EasyClaw"


def enable_checks(app: IConstruct) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), EasyClawChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one AwsSolutions finding (``IAM5[Resource::*]``) on ``scope`` and below."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions-{rule}", reason=reason))


def open_to_the_world(cidr: str) -> bool:
    """True for a CIDR that is not a CIDR we can vouch for: ``0.0.0.0/0``, ``::/0``, a token."""
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return True


def public_endpoint_open_to_the_world(vpc_config: dict[str, Any]) -> bool:
    """An EKS API endpoint reachable from any address (EKS's default when public is unset)."""
    if vpc_config.get("endpointPublicAccess", True) is False:
        return False
    cidrs = vpc_config.get("publicAccessCidrs") or []
    return not cidrs or any(open_to_the_world(str(cidr)) for cidr in cidrs)


@jsii.implements(IApplyRule)
class _EksEndpointRule:
    """EasyClaw-EKS1: the EKS API endpoint is not public to the whole internet."""

    def __init__(self, node: CfnResource) -> None:
        self._node = node

    @property
    def node(self) -> CfnResource:
        return self._node

    @property
    def rule_suffix_override(self) -> str:
        return "EKS1"

    @property
    def info(self) -> str:
        return (
            "The EKS cluster's public API endpoint accepts any address: set "
            "easyclaw:endpointAllowedCidrs to your CIDRs, or leave it empty for a private "
            "endpoint (docs/aws.md, 2. Configure)."
        )

    @property
    def explanation(self) -> str:
        return (
            "A Kubernetes API endpoint open to the internet is one leaked credential or "
            "API-server flaw away from the whole cluster; restrict it to known networks."
        )

    @property
    def level(self) -> NagMessageLevel:
        return NagMessageLevel.ERROR

    def rule(self, node: CfnResource) -> NagRuleCompliance:
        if node.cfn_resource_type != "AWS::EKS::Cluster":
            return NagRuleCompliance.NOT_APPLICABLE
        vpc_config = Stack.of(node).resolve(node.resources_vpc_config)  # type: ignore[attr-defined]
        if public_endpoint_open_to_the_world(vpc_config or {}):
            return NagRuleCompliance.NON_COMPLIANT
        return NagRuleCompliance.COMPLIANT


class EasyClawChecks(NagPack):
    """EasyClaw's own rules, run like cdk-nag's packs (same report, same acknowledgements)."""

    def __init__(self, scope: IConstruct | None = None) -> None:
        super().__init__(scope)
        self._pack_name = PACK_NAME

    @property
    def name(self) -> str:
        return PACK_NAME

    def _check_resource(self, node: CfnResource) -> None:
        # Read-only properties suffice for jsii; the Protocol types them as settable.
        self._apply_rule(cast(IApplyRule, _EksEndpointRule(node)))
