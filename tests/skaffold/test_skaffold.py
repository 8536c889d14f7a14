"""skaffold.yaml: valid for skaffold/v4beta14, and what it deploys renders correctly.

No skaffold binary runs here, so the test does skaffold's part by hand: it
fills in ``setValueTemplates`` as skaffold would after a build and renders
the chart with the real ``helm template``, the same release and values.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
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
EKS_VALUES = "infra/eks-values.yaml"
# What `cdk deploy --outputs-file` writes for the App stack (see tests/infra for the real ones).
APP_OUTPUTS = {
    "Region": "eu-west-1",
    "ClusterName": "prod-eks",
    "Environment": "production",
    "WorkerRoleArn": "arn:aws:iam::111111111111:role/worker",
    "MetricsMirrorRoleArn": "arn:aws:iam::111111111111:role/mirror",
    "StateBucket": "prod-eks-state-111111111111-eu-west-1",
    "PodSecurityGroupId": "sg-0123456789abcdef0",
    "JwtJwksUrl": "https://auth.example.com/jwks.json",
    "JwtIssuer": "https://auth.example.com/",
    "JwtAudience": "easyclaw",
    "BedrockModelId": "anthropic.claude-3-haiku-20240307-v1:0",
    "WorkerMaxReplicas": "40",
    "ApiDomain": "api.example.com",
    "CertificateArn": "arn:aws:acm:eu-west-1:111111111111:certificate/abc",
}


def eks_values_from(outputs: dict[str, str], directory: Path) -> Path:
    """Run `make eks-values`' script on a `cdk deploy --outputs-file` JSON; the values file."""
    outputs_file = directory / "cdk-outputs.json"
    outputs_file.write_text(json.dumps({"EasyClaw-App-Stack": outputs, "EasyClaw-Data-Stack": {}}))
    values = directory / "eks-values.yaml"
    script = REPO_ROOT / "infra" / "eks_values.py"
    result = subprocess.run(
        [sys.executable, str(script), str(outputs_file), str(values)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return values


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def profile(name: str) -> dict[str, Any]:
    (found,) = [p for p in SKAFFOLD["profiles"] if p["name"] == name]
    return found


def release(config: dict[str, Any]) -> dict[str, Any]:
    (only,) = config["deploy"]["helm"]["releases"]
    return only


def render_release(
    helm_release: dict[str, Any],
    variables: dict[str, str],
    generated: dict[str, Path] | None = None,
) -> list[dict[str, Any]]:
    """What ``skaffold deploy`` installs: valuesFiles plus the filled-in templates.

    ``generated`` stands in for values files that are made, not committed
    (``infra/eks-values.yaml``): repository path -> the file to use.
    """
    args = ["template", helm_release["name"], str(REPO_ROOT / helm_release["chartPath"])]
    args += ["--namespace", helm_release["namespace"], "--api-versions", "keda.sh/v1alpha1"]
    for path in helm_release.get("valuesFiles", []):
        args += ["--values", str((generated or {}).get(path, REPO_ROOT / path))]
    for key, value in helm_release.get("setValues", {}).items():
        args += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
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
    assert SKAFFOLD["build"]["local"]["push"] is False
    (artifact,) = SKAFFOLD["build"]["artifacts"]
    assert (REPO_ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).exists()
    assert profile("eks")["build"]["local"]["push"] is True


def test_every_profile_differs_from_the_default() -> None:
    """A profile that repeats the default is noise (and drifts from it)."""
    names = [p["name"] for p in SKAFFOLD["profiles"]]
    assert len(names) == len(set(names))
    for found in SKAFFOLD["profiles"]:
        changed = {
            key for key in ("build", "deploy") if found.get(key, SKAFFOLD[key]) != SKAFFOLD[key]
        }
        assert changed, f"profile {found['name']} changes nothing"


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


def test_eks_profile_deploys_what_the_cdk_outputs_say_with_the_built_image(
    tmp_path: Path,
) -> None:
    eks_release = release(profile("eks"))
    assert eks_release["valuesFiles"] == [EKS_VALUES], "only the generated values, nothing by hand"
    values = eks_values_from(APP_OUTPUTS, tmp_path)
    objects = render_release(eks_release, BUILT, {EKS_VALUES: values})
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
    assert accounts["easyclaw-worker"][role] == APP_OUTPUTS["WorkerRoleArn"]
    assert accounts["easyclaw-metrics-mirror"][role] == APP_OUTPUTS["MetricsMirrorRoleArn"]
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    assert config["data"]["EASYCLAW_AUTH_MODE"] == "jwt"
    assert config["data"]["EASYCLAW_JWT_JWKS_URL"] == APP_OUTPUTS["JwtJwksUrl"]
    (ingress,) = [o for o in objects if o["kind"] == "Ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == APP_OUTPUTS["CertificateArn"]
    assert ingress["spec"]["rules"][0]["host"] == APP_OUTPUTS["ApiDomain"]
    (mirror,) = [o for o in objects if o["metadata"]["name"] == "easyclaw-metrics-mirror"
                 and o["kind"] == "Deployment"]  # fmt: skip
    env = {
        e["name"]: e.get("value")
        for e in mirror["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["EASYCLAW_METRICS_DIMENSIONS"] == "Cluster=prod-eks,Environment=production"
    (policy,) = [o for o in objects if o["kind"] == "SecurityGroupPolicy"]
    assert policy["spec"]["securityGroups"]["groupIds"] == [APP_OUTPUTS["PodSecurityGroupId"]]


def test_eks_values_script_names_missing_outputs(tmp_path: Path) -> None:
    outputs = {k: v for k, v in APP_OUTPUTS.items() if k != "WorkerRoleArn"}
    outputs_file = tmp_path / "cdk-outputs.json"
    outputs_file.write_text(json.dumps({"EasyClaw-App-Stack": outputs}))
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "infra" / "eks_values.py"), str(outputs_file),
         str(tmp_path / "values.yaml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "EasyClaw-App-Stack outputs lack WorkerRoleArn: deploy the current App stack and "
        "write its outputs with `cdk deploy --outputs-file`"
    )
    assert not (tmp_path / "values.yaml").exists()


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


SOURCE_ROOTS = ("src", "api", "worker", "operator")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """skaffold's sync globs: ``**/`` is any number of directories, ``*`` stays in one."""
    text = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
    return re.compile(text + "$")


def synced_to(relative: str) -> list[str]:
    """Where skaffold's sync rules put a repository file in the container."""
    (artifact,) = SKAFFOLD["build"]["artifacts"]
    destinations = []
    for rule in artifact["sync"]["manual"]:
        if glob_regex(rule["src"]).match(relative):
            stripped = relative.removeprefix(rule.get("strip", ""))
            destinations.append(f"{rule['dest'].rstrip('/')}/{stripped}")
    return destinations


def test_every_source_file_syncs_into_the_package_directory_of_the_pods() -> None:
    values = yaml.safe_load((REPO_ROOT / "charts" / "easyclaw" / "values.yaml").read_text())
    package_dir = values["development"]["packageDir"]
    sources = [
        path.relative_to(REPO_ROOT).as_posix()
        for root in SOURCE_ROOTS
        for path in (REPO_ROOT / root / "easyclaw").rglob("*")
        if path.suffix in {".py", ".sql"}
    ]
    assert len(sources) > 50
    for relative in sources:
        (destination,) = synced_to(relative)
        package_path = relative.split("/easyclaw/", 1)[1]
        assert destination == f"{package_dir}/{package_path}", relative
    # What the image needs rebuilt for is never synced.
    for relative in ("pyproject.toml", "constraints.txt", "Dockerfile", "README.md"):
        assert synced_to(relative) == [], relative


def test_package_directory_is_where_the_image_installs_the_package() -> None:
    """The sync destination names the Dockerfile's Python version and venv."""
    values = yaml.safe_load((REPO_ROOT / "charts" / "easyclaw" / "values.yaml").read_text())
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    version = re.search(r"PYTHON_IMAGE=python:(\d+\.\d+)\.", dockerfile)
    assert version is not None
    expected = f"/opt/easyclaw/lib/python{version.group(1)}/site-packages/easyclaw"
    assert values["development"]["packageDir"] == expected


def test_skaffold_dev_runs_the_synced_copy_and_restarts_on_changes() -> None:
    objects = render_release(release(SKAFFOLD), BUILT)
    values = yaml.safe_load((REPO_ROOT / "charts" / "easyclaw" / "values.yaml").read_text())
    package_dir = values["development"]["packageDir"]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    for name, command in [
        ("easyclaw-api", "api"),
        ("easyclaw-worker", "worker"),
        ("easyclaw-operator", "operator"),
    ]:
        spec = deployments[name]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["command"][0] == "watchfiles"
        assert container["command"][-2:] == [f"easyclaw {command}", package_dir]
        assert "args" not in container
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[package_dir] == "source"
        (init,) = spec["initContainers"]
        assert init["command"] == ["cp", "-R", f"{package_dir}/.", "/source/"]
        assert {m["mountPath"]: m["name"] for m in init["volumeMounts"]}["/source"] == "source"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes["source"]
        # The root filesystem stays read-only: only the copy is writable.
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # The Job and the test pod run the image as built.
    (job,) = [o for o in objects if o["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_the_eks_deploy_runs_the_image_as_built(tmp_path: Path) -> None:
    values = eks_values_from(APP_OUTPUTS, tmp_path)
    eks = render_release(release(profile("eks")), BUILT, {EKS_VALUES: values})
    for obj in eks:
        if obj["kind"] == "Deployment":
            spec = obj["spec"]["template"]["spec"]
            assert "initContainers" not in spec
            assert spec["containers"][0]["args"][0] in {
                "api",
                "worker",
                "operator",
                "metrics-mirror",
            }
