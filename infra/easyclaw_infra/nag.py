"""cdk-nag (AwsSolutions) on every stack; each acknowledged finding says why.

cdk-nag 3 runs as a CDK policy-validation plugin: synthesis fails on any
finding that is not acknowledged, and ``cdk.out/policy-validation-report.json``
lists them. Acknowledgements use CDK's own ``Validations.of(...).acknowledge``
on the construct concerned (a stack's acknowledgement covers its children).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def enable_checks(app: IConstruct) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept one AwsSolutions finding (``IAM5[Resource::*]``) on ``scope`` and below."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions-{rule}", reason=reason))
