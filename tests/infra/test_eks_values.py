"""`skaffold -p eks` deploys what the App stack deployed: its outputs carry every name the
chart needs, and `make eks-values` turns them into exactly the values CDK installed.

The outputs are the synthesized stack's own, each reference replaced by a stable
stand-in (``sample``), as ``cdk deploy --outputs-file`` would write them with real
values; the chart values CDK passes get the same stand-ins, so the two compare equal.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from easyclaw_infra.chart_values import ChartWiring
from tests.infra.synthesis import CONTEXT, Synthesized, sample
from tests.skaffold.test_skaffold import (
    BUILT,
    EKS_VALUES,
    eks_values_from,
    images,
    profile,
    release,
    render_release,
)
from tests.support.paths import REPO_ROOT

APP = "EasyClaw-App-Stack"


def sample_outputs(synthesized: Synthesized) -> dict[str, str]:
    """The App stack's outputs as `cdk deploy --outputs-file` lists them (with stand-ins)."""
    return {
        key: sample(output["Value"]) for key, output in synthesized.json(APP)["Outputs"].items()
    }


def alarm_dimensions(synthesized: Synthesized) -> set[tuple[tuple[str, str], ...]]:
    alarms = synthesized.resources("EasyClaw-Metrics-Stack", "AWS::CloudWatch::Alarm").values()
    return {
        tuple((d["Name"], d["Value"]) for d in alarm["Properties"]["Dimensions"])
        for alarm in alarms
    }


def test_the_app_stack_outputs_every_name_skaffold_needs(synthesized: Synthesized) -> None:
    outputs = sample_outputs(synthesized)
    wiring = ChartWiring.from_outputs(outputs)  # raises, naming any output that is missing
    [cluster] = synthesized.resources("EasyClaw-Cluster-Stack", "AWS::EKS::Cluster").values()
    assert wiring.cluster_name == cluster["Properties"]["Name"]
    # The mirror publishes with these dimensions; every alarm selects exactly them.
    assert alarm_dimensions(synthesized) == {
        (("Cluster", wiring.cluster_name), ("Environment", wiring.environment))
    }
    raw = synthesized.json(APP)["Outputs"]["PodSecurityGroupId"]["Value"]
    assert "PodSecurityGroup" in raw["Fn::ImportValue"], "the Cluster stack's pod security group"
    assert wiring.certificate_arn.startswith("sample-ApiEndpointCertificate")
    assert wiring.api_domain == CONTEXT["easyclaw:apiDomain"]
    assert outputs["ApiUrl"] == f"https://{CONTEXT['easyclaw:apiDomain']}"
    # skaffold pushes image `easyclaw` to <default repo>/easyclaw: the stack's repository.
    [repository] = synthesized.resources(APP, "AWS::ECR::Repository").values()
    assert repository["Properties"]["RepositoryName"] == f"{wiring.cluster_name}/easyclaw"
    assert outputs["SkaffoldDefaultRepo"] == (
        f"{CONTEXT['easyclaw:account']}.dkr.ecr.{wiring.region}.amazonaws.com/{wiring.cluster_name}"
    )


def test_make_eks_values_writes_the_values_cdk_installed_and_skaffold_deploys_them(
    synthesized: Synthesized, tmp_path: Path
) -> None:
    outputs = sample_outputs(synthesized)
    values_file = eks_values_from(outputs, tmp_path)
    generated: dict[str, Any] = yaml.safe_load(values_file.read_text())
    installed = json.loads(sample(synthesized.helm_release("easyclaw")["Values"]))
    assert installed.pop("image")["repository"].endswith("container-assets-123456789012-eu-west-1")
    assert generated == installed

    eks = release(profile("eks"))
    objects = render_release(eks, BUILT, {EKS_VALUES: values_file})
    assert images(objects) == {f"easyclaw:3f2c1ab@{BUILT['IMAGE_DIGEST_easyclaw']}"}
    accounts = {
        o["metadata"]["name"]: o["metadata"].get("annotations", {})
        for o in objects
        if o["kind"] == "ServiceAccount"
    }
    role = "eks.amazonaws.com/role-arn"
    assert accounts["easyclaw-worker"][role] == outputs["WorkerRoleArn"]
    assert accounts["easyclaw-metrics-mirror"][role] == outputs["MetricsMirrorRoleArn"]
    [ingress] = [o for o in objects if o["kind"] == "Ingress"]
    assert (
        ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/certificate-arn"]
        == (outputs["CertificateArn"])
    )


def test_make_eks_values_reads_and_writes_the_files_skaffold_and_the_runbook_name() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    [recipe] = re.findall(r"^eks-values:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert recipe.split()[-2:] == ["infra/cdk-outputs.json", EKS_VALUES]
    runbook = (REPO_ROOT / "docs" / "aws.md").read_text()
    assert "--outputs-file cdk-outputs.json" in runbook
    assert "make eks-values" in runbook
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert {"infra/cdk-outputs.json", EKS_VALUES} <= set(ignored)
