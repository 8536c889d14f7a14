"""The EasyClaw CDK app: five stacks for EKS on Fargate.

    python infra/app.py            # what `make synth` runs: offline, into infra/cdk.out
    cd infra && npx cdk deploy --all

Run directly, it reads the context from infra/cdk.json itself (the cdk CLI
passes it in otherwise). The App stack needs the chart (charts/easyclaw) and
the Dockerfile; without them it is left out with a message.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aws_cdk import App, Environment

from easyclaw_infra.app_stack import AppStack
from easyclaw_infra.cluster import ClusterStack
from easyclaw_infra.config import (
    CHART_DIR,
    DOCKERFILE,
    REPO_ROOT,
    ConfigError,
    DeploymentConfig,
    file_context,
)
from easyclaw_infra.data import DataStack, state_bucket_name
from easyclaw_infra.metrics import MetricsStack
from easyclaw_infra.nag import enable_checks
from easyclaw_infra.network import NetworkStack

STACK_NAMES = [
    "EasyClaw-Network-Stack",
    "EasyClaw-Cluster-Stack",
    "EasyClaw-Data-Stack",
    "EasyClaw-App-Stack",
    "EasyClaw-Metrics-Stack",
]


def app_stack_missing_inputs() -> list[str]:
    """What the App stack needs from the repository but cannot find."""
    return [
        str(path.relative_to(REPO_ROOT)) for path in (CHART_DIR, DOCKERFILE) if not path.exists()
    ]


def build_app(outdir: str | None = None) -> App:
    """All stacks, checked by cdk-nag; the context comes from the cdk CLI or infra/cdk.json."""
    # The cdk CLI passes cdk.json plus `-c` values in the environment (or, when large, a file).
    from_cli = {"CDK_CONTEXT_JSON", "CONTEXT_OVERFLOW_LOCATION_ENV"} & set(os.environ)
    context = None if from_cli else file_context()
    app = App(outdir=outdir, context=context)
    config = DeploymentConfig.from_context(app.node)
    env = Environment(account=config.account, region=config.region)
    tags = {"project": "easyclaw", "environment": config.environment}

    network = NetworkStack(app, "EasyClaw-Network-Stack", config=config, env=env, tags=tags)
    cluster = ClusterStack(
        app, "EasyClaw-Cluster-Stack", config=config, vpc=network.vpc, env=env, tags=tags
    )
    data = DataStack(
        app,
        "EasyClaw-Data-Stack",
        config=config,
        vpc=network.vpc,
        cluster_security_group_id=cluster.cluster.cluster_security_group_id,
        pod_security_group_id=cluster.pod_security_group.security_group_id,
        env=env,
        tags=tags,
    )
    stacks = [network, cluster, data]
    missing = app_stack_missing_inputs()
    if missing:
        sys.stderr.write(f"EasyClaw-App-Stack left out: {', '.join(missing)} not found\n")
    else:
        application = AppStack(
            app,
            "EasyClaw-App-Stack",
            config=config,
            cluster=cluster.cluster,
            state_bucket_name=state_bucket_name(config),
            database_secret=data.database_secret,
            pod_security_group_id=cluster.pod_security_group.security_group_id,
            env=env,
            tags=tags,
        )
        application.add_stack_dependency(data)
        stacks.append(application)
    stacks.append(MetricsStack(app, "EasyClaw-Metrics-Stack", config=config, env=env, tags=tags))
    enable_checks(app)
    return app


def main() -> None:
    default_outdir = Path(__file__).resolve().parent / "cdk.out"
    try:
        app = build_app(os.environ.get("CDK_OUTDIR", str(default_outdir)))
    except ConfigError as error:
        sys.exit(f"EasyClaw CDK configuration: {error}")
    app.synth()


if __name__ == "__main__":
    main()
