"""skaffold.yaml: valid for skaffold/v4beta14, and what it deploys renders correctly.

No skaffold binary runs here, so the test does skaffold's part by hand: it
fills in ``setValueTemplates`` as skaffold would after a build and renders
the chart with the real ``helm template``, the same release and values.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
import yaml

from tests.charts.rendering import run_helm
from tests.support.paths import REPO_ROOT

SKAFFOLD = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
SCHEMA_PATH = REPO_ROOT / "tests" / "schemas" / "skaffold" / "v4beta14.json"
BUILT = {"IMAGE_REPO_easyclaw": "easyclaw", "IMAGE_TAG_easyclaw": "3f2c1ab",
         "IMAGE_DIGEST_easyclaw": "sha256:" + "a" * 64}  # fmt: skip
EKS_ENV = {
    "EASYCLAW_JWT_JWKS_URL": "https://auth.example.com/jwks.json",
    "EASYCLAW_JWT_ISSUER": "https://auth.example.com/",
    "EASYCLAW_API_ROLE_ARN": "arn:aws:iam::111111111111:role/api",
    "EASYCLAW_WORKER_ROLE_ARN": "arn:aws:iam::111111111111:role/worker",
    "EASYCLAW_METRICS_MIRROR_ROLE_ARN": "arn:aws:iam::111111111111:role/mirror",
}


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def profile(name: str) -> dict[str, Any]:
    (found,) = [p for p in SKAFFOLD["profiles"] if p["name"] == name]
    return found


def release(config: dict[str, Any]) -> dict[str, Any]:
    (only,) = config["deploy"]["helm"]["releases"]
    return only


def render_release(helm_release: dict[str, Any], variables: dict[str, str]) -> list[dict[str, Any]]:
    """What ``skaffold deploy`` installs: valuesFiles plus the filled-in templates."""
    args = ["template", helm_release["name"], str(REPO_ROOT / helm_release["chartPath"])]
    args += ["--namespace", helm_release["namespace"], "--api-versions", "keda.sh/v1alpha1"]
    for path in helm_release.get("valuesFiles", []):
        args += ["--values", str(REPO_ROOT / path)]
    for key, template in helm_release.get("setValueTemplates", {}).items():
        value = re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: variables[m.group(1)], str(template))
        args += ["--set", f"{key}={value}"]
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def images(objects: list[dict[str, Any]]) -> set[str]:
    found = set()
    for obj in objects:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec") if obj["kind"] != "Pod" else spec
        for container in (pod or {}).get("containers", []):
            found.add(container["image"])
    return found


def test_config_matches_the_v4beta14_schema() -> None:
    jsonschema.validate(SKAFFOLD, schema())


def test_schema_check_catches_mistakes() -> None:
    broken = copy.deepcopy(SKAFFOLD)
    broken["deploy"]["helm"]["releases"][0]["valueFiles"] = ["typo.yaml"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema())


def test_builds_locally_without_pushing_for_kind() -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta14"
    for config in (SKAFFOLD, profile("kind")):
        assert config["build"]["local"]["push"] is False
        (artifact,) = config["build"]["artifacts"]
        assert (REPO_ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).exists()
    assert profile("kind")["activation"] == [{"kubeContext": "kind-.*"}]
    assert profile("eks")["build"]["local"]["push"] is True


def test_kind_deploy_wires_the_built_image_into_every_pod() -> None:
    objects = render_release(release(SKAFFOLD), BUILT)
    built = "easyclaw:3f2c1ab"
    ours = images(objects) - {i for i in images(objects) if "library/postgres" in i}
    assert ours == {built}
    kinds = {obj["kind"] for obj in objects}
    assert "StatefulSet" in kinds, "the kind profile runs the development database"
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config["data"]["EASYCLAW_AUTH_MODE"] == "header"


def test_port_forward_reaches_the_api_service_on_8000() -> None:
    objects = render_release(release(SKAFFOLD), BUILT)
    (forward,) = SKAFFOLD["portForward"]
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    service = services[forward["resourceName"]]
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    assert forward["port"] == service["spec"]["ports"][0]["port"]
    assert forward["localPort"] == 8000
    assert forward["namespace"] == release(SKAFFOLD)["namespace"]


def test_eks_profile_deploys_for_fargate_with_irsa_and_jwt() -> None:
    objects = render_release(release(profile("eks")), {**BUILT, **EKS_ENV})
    assert images(objects) == {f"easyclaw:3f2c1ab@{BUILT['IMAGE_DIGEST_easyclaw']}"}
    kinds = {obj["kind"] for obj in objects}
    assert "StatefulSet" not in kinds
    assert "Secret" not in kinds
    accounts = {
        o["metadata"]["name"]: o["metadata"].get("annotations", {})
        for o in objects
        if o["kind"] == "ServiceAccount"
    }
    role = "eks.amazonaws.com/role-arn"
    assert accounts["easyclaw-api"][role] == EKS_ENV["EASYCLAW_API_ROLE_ARN"]
    assert accounts["easyclaw-worker"][role] == EKS_ENV["EASYCLAW_WORKER_ROLE_ARN"]
    assert accounts["easyclaw-metrics-mirror"][role] == EKS_ENV["EASYCLAW_METRICS_MIRROR_ROLE_ARN"]
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config["data"]["EASYCLAW_AUTH_MODE"] == "jwt"
    assert config["data"]["EASYCLAW_JWT_JWKS_URL"] == EKS_ENV["EASYCLAW_JWT_JWKS_URL"]


def test_runbook_names_what_skaffold_deploys() -> None:
    """docs/kubernetes.md's kubectl commands address objects the kind deploy creates."""
    runbook = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    objects = render_release(release(SKAFFOLD), BUILT)
    names = {(o["kind"].lower(), o["metadata"]["name"]) for o in objects}
    mentioned = set(
        re.findall(r"\b(deployment|scaledobject|service)[/ ](easyclaw-[a-z-]+)", runbook)
    )
    assert ("scaledobject", "easyclaw-worker") in mentioned
    for kind, name in mentioned:
        assert (kind, name) in names, f"docs/kubernetes.md names {kind} {name}, not deployed"
    assert f"skaffold/{SKAFFOLD['apiVersion'].split('/')[1]}" in runbook
    assert "kubectl -n easyclaw apply -f examples/easyclawjob.yaml" in runbook
    assert "get ecj -w" in runbook
