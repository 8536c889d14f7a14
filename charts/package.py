"""``make chart``: the chart as a versioned package, ready for any OCI registry.

Regenerates the chart's README from values.yaml, refuses a stale
values.schema.json, then ``helm package`` writes ``dist/easyclaw-<version>.tgz``
(the file name ``helm push`` expects) and prints how to publish and install it.

    python -m charts.package [--destination dist]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml
from tests.support import k8s_tools

from charts import chart_readme, values_schema

REPO_ROOT = Path(__file__).resolve().parents[1]


def package(destination: Path) -> Path:
    """The path of the packaged chart."""
    if values_schema.SCHEMA_PATH.read_text() != values_schema.generate():
        raise SystemExit("values.schema.json is out of date: run charts/values_schema.py")
    chart_readme.README.write_text(chart_readme.generate())
    destination.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(  # noqa: S603 - our own helm, fixed arguments
        [
            str(k8s_tools.helm()),
            "package",
            str(chart_readme.CHART),
            "--destination",
            str(destination),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"helm package failed: {result.stderr.strip()}")
    chart = yaml.safe_load((chart_readme.CHART / "Chart.yaml").read_text())
    packaged = destination / f"{chart['name']}-{chart['version']}.tgz"
    assert packaged.exists(), result.stdout
    return packaged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--destination", type=Path, default=REPO_ROOT / "dist")
    args = parser.parse_args(argv)
    packaged = package(args.destination)
    chart = yaml.safe_load((chart_readme.CHART / "Chart.yaml").read_text())
    name, version = chart["name"], chart["version"]
    sys.stdout.write(
        f"packaged {packaged}\n"
        "publish it to an OCI registry (helm registry login first if it needs one):\n"
        f"  helm push {packaged} oci://<registry>/charts\n"
        "install it from there:\n"
        f"  helm install easyclaw oci://<registry>/charts/{name} --version {version}"
        " --namespace easyclaw --create-namespace -f my-values.yaml\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
