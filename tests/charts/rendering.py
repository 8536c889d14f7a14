"""Render the chart with the real ``helm template`` and index the objects it makes."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import yaml

from tests.support import k8s_tools
from tests.support.paths import REPO_ROOT

CHART = REPO_ROOT / "charts" / "easyclaw"
VALUE_SETS = ("kind", "eks-fargate", "scale-to-zero")
RELEASE = "ec"
NAMESPACE = "easyclaw"
HELM_LAYERS = {"helm4": k8s_tools.HELM4, "helm3": k8s_tools.HELM3}


def helm_binary(layer: k8s_tools.KubectlLayer = k8s_tools.HELM4) -> Path:
    return k8s_tools.helm(layer)


def values_file(value_set: str) -> Path:
    return CHART / "ci" / f"{value_set}-values.yaml"


# kubernetes-validate parses its JSON schemas on every call, the definitions file
# (megabytes) included; they never change, so each is parsed once per process
# (about 5 s of CPU in make unit). Its validate() looks the function up at call time.
if not hasattr(kubernetes_validate.utils.schema_contents, "cache_info"):
    kubernetes_validate.utils.schema_contents = cache(kubernetes_validate.utils.schema_contents)


def validate_kubernetes(obj: dict[str, Any], kube_version: str) -> None:
    """kubernetes-validate --strict (unknown fields fail) for ``kube_version``."""
    kubernetes_validate.validate(obj, kube_version, strict=True)


@dataclass(frozen=True)
class Rendered:
    objects: tuple[dict[str, Any], ...]
    text: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name_suffix: str) -> dict[str, Any]:
        found = [
            obj
            for obj in self.of_kind(kind)
            if obj["metadata"]["name"] == f"{RELEASE}-easyclaw-{name_suffix}"
            or obj["metadata"]["name"] == name_suffix
        ]
        assert len(found) == 1, f"expected one {kind} {name_suffix}, found {len(found)}"
        return found[0]

    def pod_specs(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(object, pod spec) of every workload, test pod included."""
        specs = []
        for obj in self.objects:
            if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
                specs.append((obj, obj["spec"]["template"]["spec"]))
            elif obj["kind"] == "Pod":
                specs.append((obj, obj["spec"]))
        return specs


def run_helm(
    *args: str, layer: k8s_tools.KubectlLayer = k8s_tools.HELM4
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary(layer)), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@cache
def render(
    value_set: str | None = None,
    *sets: str,
    kube_version: str = "1.33.0",
    layer: k8s_tools.KubectlLayer = k8s_tools.HELM4,
    api_versions: tuple[str, ...] = (),
) -> Rendered:
    """``helm template`` of the chart with a ci/ value set and ``--set`` overrides.

    KEDA's API is always present; ``api_versions`` adds more (``group/version``
    or ``group/version/Kind``), as a cluster that serves them would.
    """
    args = [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        kube_version,
        "--api-versions",
        "keda.sh/v1alpha1",
    ]
    for api_version in api_versions:
        args += ["--api-versions", api_version]
    if value_set:
        args += ["--values", str(values_file(value_set))]
    for item in sets:
        args += ["--set", item]
    result = run_helm(*args, layer=layer)
    assert result.returncode == 0, result.stderr
    # libyaml's safe loader: the pure-Python one spent seconds per run on these manifests.
    objects = tuple(doc for doc in yaml.load_all(result.stdout, Loader=yaml.CSafeLoader) if doc)
    return Rendered(objects=objects, text=result.stdout)
