"""`make chart`: a versioned package with a README generated from values.yaml."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml

from charts import chart_readme
from tests.charts.rendering import CHART, run_helm, values_file
from tests.support.paths import REPO_ROOT


def leaves(values: Any, path: str = "") -> set[str]:
    if isinstance(values, dict) and values:
        found: set[str] = set()
        for key, child in values.items():
            found |= leaves(child, f"{path}.{key}" if path else key)
        return found
    return {path}


def test_committed_readme_is_generated_from_values() -> None:
    assert (CHART / "README.md").read_text() == chart_readme.generate(), (
        "charts/easyclaw/README.md is out of date: run .venv/bin/python charts/chart_readme.py"
    )


def test_readme_table_lists_every_value_with_its_default() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = chart_readme.documented_values(text)
    paths = {value.path for value in documented}
    # Every value is in the table, itself or as part of an inline map (resources).
    for leaf in leaves(yaml.safe_load(text)):
        assert any(leaf == path or leaf.startswith(f"{path}.") for path in paths), leaf
    by_path = {value.path: value for value in documented}
    assert by_path["api.metricsPort"].default == 9090
    assert "Ingress never routes to" in by_path["api.metricsPort"].description
    assert by_path["worker.resources.requests"].default == {"cpu": "1", "memory": "1Gi"}
    readme = (CHART / "README.md").read_text()
    assert '| `image.digest` | `""` | sha256:' in readme
    described = [value for value in documented if value.description]
    assert len(described) >= 0.9 * len(documented), "describe new values with a # -- comment"


def test_readme_generator_reads_helm_docs_comments() -> None:
    text = (
        "# -- not a value's\n\n"
        "top:\n"
        "  # -- First line,\n"
        "  # second line.\n"
        "  inline: {a: 1}\n"
        "  nested:\n"
        "    # plain comment, not a description\n"
        "    leaf: x  # trailing\n"
        "list: [1, 2]\n"
    )
    found = {(v.path, repr(v.default), v.description) for v in chart_readme.documented_values(text)}
    assert found == {
        ("top.inline", "{'a': 1}", "First line, second line."),
        ("top.nested.leaf", "'x'", ""),
        ("list", "[1, 2]", ""),
    }


def test_make_chart_packages_an_installable_chart_with_its_readme(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "charts.package", "--destination", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    packaged = tmp_path / f"easyclaw-{chart['version']}.tgz"  # the name `helm push` expects
    assert f"helm push {packaged} oci://" in result.stdout
    with tarfile.open(packaged) as archive:
        names = set(archive.getnames())
        readme = archive.extractfile("easyclaw/README.md")
        assert readme is not None
        assert readme.read().decode() == (CHART / "README.md").read_text()
    assert {
        "easyclaw/Chart.yaml",
        "easyclaw/values.yaml",
        "easyclaw/values.schema.json",
        "easyclaw/crds/easyclawjob.yaml",
        "easyclaw/files/grafana-dashboard.json",
        "easyclaw/files/scaler-query.sql",
    } <= names
    assert not [name for name in names if "/ci/" in name], "the test value sets stay out"

    shown = run_helm("show", "chart", str(packaged))
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["version"] == chart["version"]
    rendered = run_helm(
        "template", "easyclaw", str(packaged), "--values", str(values_file("kind")),
        "--api-versions", "keda.sh/v1alpha1",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert "kind: Deployment" in rendered.stdout


def test_chart_is_oci_ready() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"  # OCI registries need Helm 3 charts
    assert chart["name"] == chart["name"].lower()
    major, minor, patch = chart["version"].split(".")
    assert all(part.isdigit() for part in (major, minor, patch))
