"""The API endpoint in each HTTPS context variant, synthesized on its own.

The whole app is synthesized (in ``conftest``) with infra/cdk.json's variant:
a Route 53 zone, so a DNS-validated certificate and a CNAME. Here the other
variants are synthesized with only the ``ApiEndpoint`` construct, the part that
differs, and their chart values are rendered with the real chart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk import App, Environment, Stack

from easyclaw_infra.app_stack import ApiEndpoint
from easyclaw_infra.chart_values import ChartWiring, chart_values
from easyclaw_infra.config import DeploymentConfig
from tests.charts.rendering import run_helm
from tests.infra.synthesis import CONTEXT
from tests.support.paths import REPO_ROOT

CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0f3c2d9e-1111-2222-3333-444455556666"
ALB = "k8s-easyclaw-api-0123456789.eu-west-1.elb.amazonaws.com"
NO_TLS = {"apiDomain", "hostedZoneId", "hostedZoneName", "certificateArn", "plainHttp"}


def config(**tls: Any) -> DeploymentConfig:
    values = {k: v for k, v in CONTEXT.items() if k.removeprefix("easyclaw:") not in NO_TLS}
    values.update({f"easyclaw:{key}": value for key, value in tls.items()})
    return DeploymentConfig.from_values(values)


def synth_endpoint(tmp_path: Path, deployment: DeploymentConfig) -> tuple[dict[str, Any], str]:
    """The template of a stack holding only the API endpoint, and the ApiUrl it makes."""
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Api", env=Environment(account="123456789012", region="eu-west-1"))
    endpoint = ApiEndpoint(stack, "ApiEndpoint", config=deployment)
    endpoint.point_dns_at(ALB)
    url = endpoint.url(ALB)
    stack.export_value(endpoint.certificate_arn or "none", name="CertificateArn")
    app.synth()
    template: dict[str, Any] = json.loads((tmp_path / "Api.template.json").read_text())
    return template, url


def types(template: dict[str, Any]) -> list[str]:
    return sorted(r["Type"] for r in template.get("Resources", {}).values())


def rendered_ingress(tmp_path: Path, certificate_arn: str, api_domain: str) -> dict[str, Any]:
    wiring = ChartWiring(
        region="eu-west-1",
        cluster_name="easyclaw",
        environment="production",
        worker_role_arn="arn:aws:iam::123456789012:role/worker",
        metrics_mirror_role_arn="arn:aws:iam::123456789012:role/mirror",
        state_bucket="bucket",
        pod_security_group_id="sg-0123456789abcdef0",
        jwt_jwks_url="https://auth.example.com/jwks.json",
        jwt_issuer="https://auth.example.com/",
        jwt_audience="easyclaw",
        bedrock_model_id="model",
        worker_max_replicas="5",
        api_domain=api_domain,
        certificate_arn=certificate_arn,
    )
    values = tmp_path / "values.json"
    values.write_text(json.dumps(chart_values(wiring)))
    result = run_helm(
        "template", "easyclaw", str(REPO_ROOT / "charts" / "easyclaw"),
        "--namespace", "easyclaw", "--api-versions", "keda.sh/v1alpha1", "--values", str(values),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [ingress] = [o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] == "Ingress"]
    return ingress


def test_existing_certificate_without_a_zone_creates_nothing_and_serves_https(
    tmp_path: Path,
) -> None:
    deployment = config(apiDomain="api.example.org", certificateArn=CERTIFICATE)
    template, url = synth_endpoint(tmp_path, deployment)
    assert types(template) == [], "no certificate, no DNS record: the user points DNS at the ALB"
    assert template["Outputs"]["ExportCertificateArn"]["Value"] == CERTIFICATE
    assert url == "https://api.example.org"
    ingress = rendered_ingress(tmp_path, CERTIFICATE, "api.example.org")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == CERTIFICATE
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [
        {"HTTP": 80},
        {"HTTPS": 443},
    ]
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"


def test_existing_certificate_with_a_zone_gets_only_the_dns_record(tmp_path: Path) -> None:
    deployment = config(
        apiDomain="api.example.org",
        certificateArn=CERTIFICATE,
        hostedZoneId="Z0EXAMPLE",
        hostedZoneName="example.org",
    )
    template, url = synth_endpoint(tmp_path, deployment)
    assert types(template) == ["AWS::Route53::RecordSet"]
    [record] = template["Resources"].values()
    assert record["Properties"]["ResourceRecords"] == [ALB]
    assert url == "https://api.example.org"


def test_zone_without_a_certificate_creates_a_dns_validated_one(tmp_path: Path) -> None:
    deployment = config(
        apiDomain="api.example.org", hostedZoneId="Z0EXAMPLE", hostedZoneName="example.org"
    )
    template, _ = synth_endpoint(tmp_path, deployment)
    assert types(template) == ["AWS::CertificateManager::Certificate", "AWS::Route53::RecordSet"]


@pytest.mark.parametrize("opt_in", [True, "true"])
def test_plain_http_only_by_explicit_opt_in(tmp_path: Path, opt_in: object) -> None:
    template, url = synth_endpoint(tmp_path, config(plainHttp=opt_in))
    assert types(template) == []
    assert url == f"http://{ALB}"
    annotations = rendered_ingress(tmp_path, "", "")["metadata"]["annotations"]
    assert "alb.ingress.kubernetes.io/certificate-arn" not in annotations
    assert annotations["alb.ingress.kubernetes.io/listen-ports"] == '[{"HTTP":80}]'
