"""The chart as a dependency of an umbrella chart, as platform teams ship it.

The umbrella is a real chart in a temporary directory that depends on
``charts/easyclaw`` by a ``file://`` path; ``helm dependency build`` packages
it into the umbrella's ``charts/`` and ``helm template`` renders both, with
Helm's ``global`` values handed to the subchart.

The umbrella also carries one template of its own that calls the chart's
named template ``easyclaw.postgresqlPassword``, which is what the
development database's Secret feeds with ``lookup``. ``helm template`` has no
cluster, so its ``lookup`` always finds nothing; calling the template with a
Secret as ``lookup`` would return it shows the other branch: the password
of an existing Secret is kept.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.rendering import CHART, NAMESPACE, run_helm

KEPT = "password-the-pvc-was-initialised-with"


def umbrella(tmp_path: Path, values: dict[str, Any]) -> Path:
    root = tmp_path / "platform"
    (root / "templates").mkdir(parents=True)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    (root / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform",
                "version": "1.0.0",
                "dependencies": [
                    {
                        "name": "easyclaw",
                        "version": chart["version"],
                        "repository": f"file://{CHART}",
                    }
                ],
            }
        )
    )
    (root / "values.yaml").write_text(yaml.safe_dump(values))
    existing = {"data": {"POSTGRES_PASSWORD": base64.b64encode(KEPT.encode()).decode()}}
    (root / "templates" / "password-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: password-check\ndata:\n"
        # What the Secret's template does with lookup's answer, once per answer.
        '  existing: {{ include "easyclaw.postgresqlPassword" ('
        + _dict(existing)
        + ") | quote }}\n"
        '  missing: {{ include "easyclaw.postgresqlPassword" (dict) | quote }}\n'
        '  missingNil: {{ include "easyclaw.postgresqlPassword" nil | quote }}\n'
    )
    built = run_helm("dependency", "build", str(root))
    assert built.returncode == 0, built.stderr
    assert list((root / "charts").glob("easyclaw-*.tgz")), "the dependency was not packaged"
    return root


def _dict(value: dict[str, Any]) -> str:
    """A Go template expression building ``value`` with sprig's dict."""
    parts = []
    for key, child in value.items():
        rendered = f"({_dict(child)})" if isinstance(child, dict) else f'"{child}"'
        parts.append(f'"{key}" {rendered}')
    return "dict " + " ".join(parts)


def render_umbrella(root: Path) -> list[dict[str, Any]]:
    result = run_helm(
        "template", "platform", str(root), "--namespace", NAMESPACE,
        "--api-versions", "keda.sh/v1alpha1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture
def platform_values() -> dict[str, Any]:
    kind_values = yaml.safe_load((CHART / "ci" / "kind-values.yaml").read_text())
    return {
        "global": {"imageRegistry": "registry.example.com", "team": "platform"},
        "easyclaw": kind_values,
    }


def test_renders_as_a_subchart_with_global_values(
    tmp_path: Path, platform_values: dict[str, Any]
) -> None:
    objects = render_umbrella(umbrella(tmp_path, platform_values))
    deployments = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert {"platform-easyclaw-api", "platform-easyclaw-worker"} <= deployments
    assert any(o["kind"] == "ScaledObject" for o in objects)


def test_values_schema_still_rejects_a_misspelt_value_in_a_subchart(
    tmp_path: Path, platform_values: dict[str, Any]
) -> None:
    platform_values["easyclaw"]["worker"]["concurency"] = 4
    root = umbrella(tmp_path, platform_values)
    result = run_helm("template", "platform", str(root), "--api-versions", "keda.sh/v1alpha1")
    assert result.returncode != 0
    assert "concurency" in result.stderr


def test_an_existing_database_secret_keeps_its_password(
    tmp_path: Path, platform_values: dict[str, Any]
) -> None:
    objects = render_umbrella(umbrella(tmp_path, platform_values))
    (check,) = [o for o in objects if o["metadata"]["name"] == "password-check"]
    assert check["data"]["existing"] == KEPT
    # Nothing found: a fresh random password (what a first install gets).
    for fresh in (check["data"]["missing"], check["data"]["missingNil"]):
        assert len(fresh) == 24
        assert fresh.isalnum()
        assert fresh != KEPT


def test_database_secret_survives_uninstall_and_is_reused() -> None:
    """`helm uninstall` keeps it (resource-policy), and the template reuses what it finds."""
    from tests.charts.rendering import render

    (secret,) = render("kind").of_kind("Secret")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    template = (CHART / "templates" / "postgresql.yaml").read_text()
    assert (
        'include "easyclaw.postgresqlPassword" (lookup "v1" "Secret" .Release.Namespace '
        "$secretName)" in template
    )
    url = secret["stringData"]["DATABASE_URL"]
    assert f":{secret['stringData']['POSTGRES_PASSWORD']}@" in url
