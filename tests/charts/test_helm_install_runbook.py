"""docs/kubernetes.md Part B, as written: its values and commands install what it says.

The runbook's ``export`` lines, its ``my-values.yaml`` here-document and its
``helm install`` line are taken from the document itself, the shell
variables filled in as the shell would, and rendered with the real ``helm
template`` (plus KEDA's API, installed in step B1).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from tests.charts.rendering import run_helm
from tests.support.paths import REPO_ROOT

RUNBOOK = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
PART_B = RUNBOOK[RUNBOOK.index("# Part B") : RUNBOOK.index("# From a burst")]


def shell_variables() -> dict[str, str]:
    found = {}
    for name, value in re.findall(r"^export (\w+)=(\S+)", PART_B, re.MULTILINE):
        (found[name],) = shlex.split(value)
    return found


def expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], text)


def commands(prefix: str) -> list[list[str]]:
    lines = [line for line in PART_B.splitlines() if line.startswith(prefix)]
    return [shlex.split(expand(line, shell_variables())) for line in lines]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    variables = shell_variables()
    heredoc = re.search(r"cat > my-values.yaml <<(\w+)\n(.*?)\n\1\n", PART_B, re.DOTALL)
    assert heredoc, "the runbook writes my-values.yaml with a here-document"
    values = tmp_path_factory.mktemp("runbook") / "my-values.yaml"
    values.write_text(expand(heredoc.group(2), variables))
    (install,) = commands("helm install easyclaw ")
    assert install[:4] == ["helm", "install", "easyclaw", "charts/easyclaw"]
    args = ["template", "easyclaw", str(REPO_ROOT / "charts" / "easyclaw")]
    flags = install[4:]
    args += ["--namespace", flags[flags.index("--namespace") + 1]]
    args += ["--values", str(values), "--api-versions", "keda.sh/v1alpha1"]
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_every_pod_runs_the_image_pushed_in_b2(installed: list[dict[str, Any]]) -> None:
    (build,) = commands("docker build ")
    (push,) = commands("docker push ")
    image = build[build.index("-t") + 1]
    assert push[-1] == image
    for obj in installed:
        spec = obj.get("spec", {})
        pod = spec if obj["kind"] == "Pod" else spec.get("template", {}).get("spec")
        for container in (pod or {}).get("containers", []):
            assert container["image"] == image, obj["metadata"]["name"]


def test_the_secrets_of_b3_are_the_ones_the_pods_read(installed: list[dict[str, Any]]) -> None:
    created = {}
    for command in commands("kubectl -n easyclaw create secret generic "):
        name = command[6]
        literal = next(arg for arg in command if arg.startswith("--from-literal="))
        created[name] = literal.removeprefix("--from-literal=").split("=")[0]
    assert created["easyclaw-database"] == "DATABASE_URL"
    assert created["llm-keys"] == "EASYCLAW_OPENAI_API_KEY"
    api = named(installed, "Deployment", "easyclaw-api")["spec"]["template"]["spec"]
    (database,) = [e for e in api["containers"][0]["env"] if e["name"] == "DATABASE_URL"]
    assert database["valueFrom"]["secretKeyRef"] == {
        "name": "easyclaw-database",
        "key": "DATABASE_URL",
    }
    worker = named(installed, "Deployment", "easyclaw-worker")["spec"]["template"]["spec"]
    assert {"secretRef": {"name": "llm-keys"}} in worker["containers"][0]["envFrom"]
    (config,) = [o for o in installed if o["kind"] == "ConfigMap"]
    assert config["data"]["EASYCLAW_CHAT_PROVIDER"] == "openai"
    assert config["data"]["EASYCLAW_AUTH_MODE"] == "jwt"
    assert config["data"]["EASYCLAW_JWT_JWKS_URL"] == shell_variables()["JWKS_URL"]


def test_the_commands_of_b6_address_what_was_installed(installed: list[dict[str, Any]]) -> None:
    (forward,) = commands("kubectl -n easyclaw port-forward ")
    service = named(installed, "Service", forward[4].removeprefix("svc/"))
    assert forward[5] == f"8000:{service['spec']['ports'][0]['port']}"
    # jwt without helmTest.tokenSecret: the test pod needs no user, as B6 says.
    (pod,) = [o for o in installed if o["kind"] == "Pod"]
    assert pod["spec"]["containers"][0]["command"] == ["python", "-c"]
    assert "refuses calls without a token" in " ".join(PART_B.split())
    assert (
        named(installed, "Job", "easyclaw-migrations")["metadata"]["annotations"]["helm.sh/hook"]
        == "pre-install,pre-upgrade"
    )


def test_b7_serves_the_api_over_https_only(tmp_path: Any) -> None:
    """B7's upgrade, rendered as written: an ALB Ingress for API_HOST with the
    certificate, HTTP only redirecting to HTTPS, routed to the API port only."""
    variables = shell_variables()
    heredoc = re.search(r"cat > my-values.yaml <<(\w+)\n(.*?)\n\1\n", PART_B, re.DOTALL)
    assert heredoc
    values = tmp_path / "my-values.yaml"
    values.write_text(expand(heredoc.group(2), variables))
    (upgrade,) = [c for c in commands("helm upgrade easyclaw ") if "--set" in c]
    flags = upgrade[4:]
    sets = [flags[i + 1] for i, flag in enumerate(flags) if flag == "--set"]
    args = ["template", "easyclaw", str(REPO_ROOT / "charts" / "easyclaw")]
    args += ["--namespace", flags[flags.index("--namespace") + 1], "--values", str(values)]
    args += ["--api-versions", "keda.sh/v1alpha1"]
    for value in sets:
        args += ["--set", value]
    result = run_helm(*args)
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    ingress = named(objects, "Ingress", "easyclaw-api")
    (printed,) = commands("kubectl -n easyclaw get ingress ")
    assert printed[5] == "easyclaw-api"
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == variables["CERTIFICATE_ARN"]
    assert annotations["alb.ingress.kubernetes.io/listen-ports"] == '[{"HTTP":80},{"HTTPS":443}]'
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == variables["API_HOST"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "easyclaw-api", "port": {"name": "http"}}
    assert "curl -s https://$API_HOST/healthz" in PART_B
