"""docs/aws.md covers every step the original guide did, with the commands to run."""

from __future__ import annotations

import json
import re

from tests.support.paths import REPO_ROOT

RUNBOOK = (REPO_ROOT / "docs" / "aws.md").read_text()


def test_runbook_has_every_step_in_order() -> None:
    headings = re.findall(r"^## \d+\. (\w+)", RUNBOOK, re.MULTILINE)
    assert headings[:10] == [
        "Prerequisites",
        "Configure",
        "Bootstrap",
        "Deploy",
        "Verify",
        "Monitor",
        "Scale",
        "Troubleshoot",
        "Costs",
        "Cleanup",
    ]


def test_runbook_names_the_commands_and_resources_it_relies_on() -> None:
    for needle in (
        "cdk deploy --all",
        "bootstrap aws://",
        "ApiUrl",
        "kubectl -n easyclaw get ecj",
        "scaledobject",
        "EasyClaw-Workers",
        "HighQueueDepth",
        "MaxCapacityReached",
        "rounded up",
        "destroy --all",
        "metrics_mirror.disabled",
    ):
        assert needle in RUNBOOK, needle


def test_every_context_key_in_cdk_json_is_documented() -> None:
    context = json.loads((REPO_ROOT / "infra" / "cdk.json").read_text())["context"]
    keys = [key for key in context if key.startswith("easyclaw:")]
    missing = [key for key in keys if key not in RUNBOOK]
    assert not missing, f"document these context keys in docs/aws.md: {missing}"
