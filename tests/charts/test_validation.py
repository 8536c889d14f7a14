"""The chart lints and renders with Helm 4 and Helm 3, and what it renders is valid.

Built-in kinds are checked by kubernetes-validate (``--strict``: unknown fields
fail) for Kubernetes 1.33 and 1.35; KEDA's kinds against KEDA's own CRD schema
(vendored in ``tests/schemas/keda``) and its pydantic models.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.charts.rendering import (
    CHART,
    HELM_LAYERS,
    VALUE_SETS,
    render,
    run_helm,
    validate_kubernetes,
    values_file,
)
from tests.support.paths import REPO_ROOT

KUBERNETES_VERSIONS = ("1.33.0", "1.35.0")
CUSTOM_GROUPS = ("keda.sh/", "vpcresources.k8s.aws/", "monitoring.coreos.com/")
KEDA_SCHEMAS = REPO_ROOT / "tests" / "schemas" / "keda"
KEDA_KINDS = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}


@pytest.mark.parametrize("helm", HELM_LAYERS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_chart_lints_strictly(helm: str, value_set: str) -> None:
    # `helm lint` has no --api-versions, so it sees a cluster without KEDA: the
    # ScaledObject template is checked by the renders below instead.
    result = run_helm(
        "lint", "--strict", str(CHART), "--values", str(values_file(value_set)),
        "--set", "worker.autoscaling.enabled=false", layer=HELM_LAYERS[helm],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm3_and_helm4_render_the_same_objects(value_set: str) -> None:
    def comparable(layer: str) -> list[dict[str, Any]]:
        objects = render(value_set, layer=HELM_LAYERS[layer]).objects
        # The development database password is random per render.
        return [obj for obj in objects if obj["kind"] != "Secret"]

    helm4, helm3 = comparable("helm4"), comparable("helm3")
    assert [o["kind"] for o in helm4] == [o["kind"] for o in helm3]
    assert helm4 == helm3


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_built_in_kinds_are_valid_kubernetes(value_set: str, kube_version: str) -> None:
    rendered = render(value_set, kube_version=kube_version)
    checked = 0
    for obj in rendered.objects:
        if obj["apiVersion"].startswith(CUSTOM_GROUPS):
            continue  # custom resources: checked in test_network, test_monitoring and below
        try:
            validate_kubernetes(obj, kube_version)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {error.message}")
        checked += 1
    assert checked >= 10


@functools.cache
def _keda_schema(kind: str) -> dict[str, Any]:
    crd = yaml.load((KEDA_SCHEMAS / KEDA_KINDS[kind]).read_text(), Loader=yaml.CSafeLoader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@functools.cache
def _keda_validator(kind: str) -> jsonschema.protocols.Validator:
    """One checked validator per kind (``jsonschema.validate`` re-checks the schema each call)."""
    schema = _keda_schema(kind)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _keda_objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for value_set in VALUE_SETS:
        for obj in render(value_set).objects:
            if obj["kind"] in KEDA_KINDS:
                found.append((value_set, obj))
    return found


def test_keda_objects_match_kedas_crd_schema() -> None:
    objects = _keda_objects()
    assert {obj["kind"] for _, obj in objects} == set(KEDA_KINDS)
    for value_set, obj in objects:
        try:
            _keda_validator(obj["kind"]).validate(obj)
        except jsonschema.ValidationError as error:
            pytest.fail(f"{value_set}: {obj['kind']}: {error.message} at {list(error.path)}")


def test_keda_schema_check_catches_a_broken_object() -> None:
    """The schema check is not vacuous: a misspelt field or a wrong type fails it."""
    (_, scaled_object), *_ = [item for item in _keda_objects() if item[1]["kind"] == "ScaledObject"]
    broken = yaml.safe_load(yaml.safe_dump(scaled_object))
    broken["spec"]["minReplicaCount"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        _keda_validator("ScaledObject").validate(broken)


def test_keda_objects_parse_as_keda_models() -> None:
    # Imported here: building its ~1,500 models takes over a second, which every
    # test process would pay at collection.
    from cloudcoil.models.keda import v1alpha1 as keda_models

    models = {
        "ScaledObject": keda_models.ScaledObject,
        "TriggerAuthentication": keda_models.TriggerAuthentication,
    }
    for _, obj in _keda_objects():
        parsed = models[obj["kind"]].model_validate(obj)
        assert parsed.metadata is not None
        assert parsed.metadata.name == obj["metadata"]["name"]


def test_default_values_refuse_to_render_without_a_database() -> None:
    result = run_helm("template", "ec", str(CHART))
    assert result.returncode != 0
    result = run_helm("template", "ec", str(CHART), "--set", "config.jwtJwksUrl=https://x/jwks")
    assert result.returncode != 0
    assert "set database.existingSecret" in result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("worker.autoscaling.maxReplicaCount=0", "maxReplicaCount"),
        ("config.authMode=basic", "authMode"),
        ("worker.concurency=4", "concurency"),
        ("config.extraEnv.PATH=/bin", "PATH"),
    ],
)
def test_schema_rejects_bad_values(override: str, message: str) -> None:
    result = run_helm(
        "template", "ec", str(CHART), "--values", str(values_file("kind")), "--set", override,
        "--api-versions", "keda.sh/v1alpha1",
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["config.authMode=jwt", "config.env=development"], "config.jwtJwksUrl is required"),
        (["config.authMode=header", "config.env=production"], "refused with config.env"),
    ],
)
def test_chart_refuses_settings_the_processes_would_refuse(
    overrides: list[str], message: str
) -> None:
    args = ["template", "ec", str(CHART), "--values", str(values_file("kind"))]
    args += ["--api-versions", "keda.sh/v1alpha1"]
    for override in overrides:
        args += ["--set", override]
    result = run_helm(*args)
    assert result.returncode != 0
    assert message in result.stderr


def test_chart_refuses_secrets_in_extra_env() -> None:
    result = run_helm(
        "template", "ec", str(CHART), "--values", str(values_file("kind")),
        "--api-versions", "keda.sh/v1alpha1",
        "--set", "config.extraEnv.EASYCLAW_OPENAI_API_KEY=sk-123",
    )  # fmt: skip
    assert result.returncode != 0
    assert "looks like a secret" in result.stderr


def test_values_schema_is_generated_from_values_yaml() -> None:
    import charts.values_schema as generator

    assert (CHART / "values.schema.json").read_text() == generator.generate(), (
        "values.schema.json is out of date: run .venv/bin/python charts/values_schema.py"
    )


def test_values_schema_covers_every_value() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        assert "type" in node or "enum" in node, f"{path} has no type"
        if isinstance(value, dict) and "properties" in node:
            assert set(value) == set(node["properties"]), path
            for key, child in value.items():
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")


def test_ci_value_sets_exist() -> None:
    assert sorted(Path(p).name for p in (CHART / "ci").iterdir()) == sorted(
        f"{name}-values.yaml" for name in VALUE_SETS
    )
