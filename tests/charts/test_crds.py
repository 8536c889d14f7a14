"""The chart's CRDs (crds/, from the operator's part) are valid; the operator's Role fits them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.charts.rendering import CHART, render, validate_kubernetes

CRD_FILES = sorted((CHART / "crds").glob("*.yaml"))


def crds() -> list[dict[str, Any]]:
    assert CRD_FILES, "charts/easyclaw/crds/ holds no CRD"
    return [doc for path in CRD_FILES for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("kube_version", ["1.33.0", "1.35.0"])
def test_crds_are_valid_for_kubernetes(kube_version: str) -> None:
    for crd in crds():
        assert crd["kind"] == "CustomResourceDefinition"
        validate_kubernetes(crd, kube_version)


def test_operator_role_grants_exactly_the_crds_resources() -> None:
    role = render("kind").get("Role", "operator")
    granted = {
        (group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if group not in {"", "events.k8s.io"}
    }
    expected = set()
    for crd in crds():
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        expected |= {(group, plural), (group, f"{plural}/finalizers")}
        if any("status" in v.get("subresources", {}) for v in crd["spec"]["versions"]):
            expected.add((group, f"{plural}/status"))
        assert crd["spec"]["scope"] == "Namespaced", "the operator's RBAC is namespaced"
    assert granted == expected
