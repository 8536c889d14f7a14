"""EasyClaw-App-Stack: IRSA roles, the image, the database Secret and the EasyClaw chart."""

from __future__ import annotations

from typing import Any, cast

from aws_cdk import CfnJson, CfnOutput, Duration, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from easyclaw_infra.config import (
    CHART_DIR,
    DATABASE_SECRET,
    EXTERNAL_SECRETS_CHART_VERSION,
    METRICS_MIRROR_SERVICE_ACCOUNT,
    METRICS_NAMESPACE,
    NAMESPACE,
    RELEASE,
    REPO_ROOT,
    STATE_PREFIX,
    WORKER_SERVICE_ACCOUNT,
    DeploymentConfig,
)
from easyclaw_infra.nag import acknowledge

EXTERNAL_SECRETS_NAMESPACE = "kube-system"
"""External Secrets runs on the default Fargate profile, next to the other controllers."""
EXTERNAL_SECRETS_SERVICE_ACCOUNT = "external-secrets"
API_INGRESS = f"{RELEASE}-api"
# Only the image's own inputs; the Dockerfile's .dockerignore is an allow-list too.
IMAGE_EXCLUDES = [".git", ".venv", "infra/cdk.out", "node_modules", ".easyclaw", "**/__pycache__"]


class AppStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        cluster: eks.Cluster,
        state_bucket_name: str,
        database_secret: secretsmanager.ISecret,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        # jsii's Python protocol for ICluster misses on Cluster (kubectl_provider_options).
        self._cluster = cast(eks.ICluster, cluster)
        state_bucket = s3.Bucket.from_bucket_name(self, "StateBucket", state_bucket_name)
        self.worker_role = self._irsa_role(
            "WorkerRole", NAMESPACE, WORKER_SERVICE_ACCOUNT, "EasyClaw workers"
        )
        # Workers keep per-user state under one prefix of the state bucket.
        self.worker_role.add_to_policy(
            iam.PolicyStatement(
                sid="StatePrefixObjects",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[state_bucket.arn_for_objects(f"{STATE_PREFIX}*")],
            )
        )
        self.worker_role.add_to_policy(
            iam.PolicyStatement(
                sid="StatePrefixList",
                actions=["s3:ListBucket"],
                resources=[state_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{STATE_PREFIX}*"]}},
            )
        )
        self.worker_role.add_to_policy(
            iam.PolicyStatement(
                sid="InvokeConfiguredModel",
                actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                resources=[
                    f"arn:aws:bedrock:{self.region}::foundation-model/{config.bedrock_model_id}"
                ],
            )
        )

        acknowledge(
            self.worker_role,
            f"IAM5[Resource::arn:<AWS::Partition>:s3:::{state_bucket_name}/{STATE_PREFIX}*]",
            "Workers read and write any user's state snapshot, all under the state prefix of "
            "this one bucket; keys are made at run time.",
        )

        self.metrics_mirror_role = self._irsa_role(
            "MetricsMirrorRole",
            NAMESPACE,
            METRICS_MIRROR_SERVICE_ACCOUNT,
            "EasyClaw metrics mirror",
        )
        # PutMetricData has no resource-level permissions; the namespace condition scopes it.
        self.metrics_mirror_role.add_to_policy(
            iam.PolicyStatement(
                sid="PutEasyClawMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": METRICS_NAMESPACE}},
            )
        )

        acknowledge(
            self.metrics_mirror_role,
            "IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; the statement is "
            "limited to the EasyClaw namespace by the cloudwatch:namespace condition.",
        )

        self.external_secrets_role = self._irsa_role(
            "ExternalSecretsRole",
            EXTERNAL_SECRETS_NAMESPACE,
            EXTERNAL_SECRETS_SERVICE_ACCOUNT,
            "External Secrets: reads the database secret only",
        )
        database_secret.grant_read(self.external_secrets_role)
        database_url_secret = self._database_url_secret(config, database_secret)

        self.image = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(REPO_ROOT),
            file="Dockerfile",
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=IMAGE_EXCLUDES,
        )
        chart_asset = s3_assets.Asset(self, "ChartAsset", path=str(CHART_DIR))
        self.chart = eks.HelmChart(
            self,
            "EasyClawChart",
            cluster=self._cluster,
            chart_asset=chart_asset,
            release=RELEASE,
            namespace=NAMESPACE,
            create_namespace=False,
            wait=True,
            timeout=Duration.minutes(15),
            values=self.chart_values(config, state_bucket),
        )
        self.chart.node.add_dependency(database_url_secret)

        api_address = eks.KubernetesObjectValue(
            self,
            "ApiAddress",
            cluster=self._cluster,
            object_type="ingress",
            object_name=API_INGRESS,
            object_namespace=NAMESPACE,
            json_path=".status.loadBalancer.ingress[0].hostname",
            timeout=Duration.minutes(10),
        )
        api_address.node.add_dependency(self.chart)
        CfnOutput(
            self,
            "ApiUrl",
            value=f"http://{api_address.value}",
            description="EasyClaw REST API (the ALB of the chart's Ingress)",
        )
        CfnOutput(self, "ImageUri", value=self.image.image_uri)

    def chart_values(self, config: DeploymentConfig, state_bucket: s3.IBucket) -> dict[str, Any]:
        """Values of the EasyClaw chart, wired to this deployment's resources."""
        return {
            "image": {
                "repository": self.image.repository.repository_uri,
                "tag": self.image.image_tag,
            },
            "config": {
                "env": "production",
                "authMode": "jwt",
                "jwtJwksUrl": config.jwt_jwks_url,
                "jwtIssuer": config.jwt_issuer,
                "jwtAudience": config.jwt_audience,
                "extraEnv": {
                    "AWS_REGION": self.region,
                    "EASYCLAW_CHAT_PROVIDER": "bedrock",
                    "EASYCLAW_CHAT_MODEL": config.bedrock_model_id,
                    "EASYCLAW_STATE_BACKEND": "s3",
                    "EASYCLAW_STATE_S3_BUCKET": state_bucket.bucket_name,
                    "EASYCLAW_STATE_S3_PREFIX": STATE_PREFIX,
                },
            },
            "database": {"existingSecret": DATABASE_SECRET, "existingSecretKey": "DATABASE_URL"},
            "api": {
                "ingress": {"enabled": True, "className": "alb", "scheme": "internet-facing"},
            },
            "worker": {
                "podDeletionCost": True,
                "serviceAccount": {
                    "annotations": {"eks.amazonaws.com/role-arn": self.worker_role.role_arn}
                },
                "autoscaling": {"enabled": True, "maxReplicaCount": config.worker_max_replicas},
            },
            "metricsMirror": {
                "enabled": True,
                "awsRegion": self.region,
                "cloudwatchNamespace": METRICS_NAMESPACE,
                "dimensions": config.metrics_dimensions,
                "serviceAccount": {
                    "annotations": {"eks.amazonaws.com/role-arn": self.metrics_mirror_role.role_arn}
                },
            },
        }

    def _irsa_role(
        self, construct_id: str, namespace: str, service_account: str, description: str
    ) -> iam.Role:
        """A role only this ServiceAccount can assume, through the cluster's OIDC provider."""
        provider = self._cluster.open_id_connect_provider
        issuer = provider.open_id_connect_provider_issuer
        conditions = CfnJson(
            self,
            f"{construct_id}Trust",
            value={
                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                f"{issuer}:aud": "sts.amazonaws.com",
            },
        )
        return iam.Role(
            self,
            construct_id,
            description=description,
            assumed_by=iam.WebIdentityPrincipal(
                provider.open_id_connect_provider_arn, conditions={"StringEquals": conditions}
            ),
        )

    def _database_url_secret(
        self, config: DeploymentConfig, database_secret: secretsmanager.ISecret
    ) -> Construct:
        """External Secrets turns the RDS secret into the chart's ``DATABASE_URL`` Secret.

        The password never passes through CloudFormation or a deployment Lambda:
        the controller reads it from Secrets Manager inside the cluster.
        """
        external_secrets = eks.HelmChart(
            self,
            "ExternalSecrets",
            cluster=self._cluster,
            chart="external-secrets",
            repository="https://charts.external-secrets.io",
            version=EXTERNAL_SECRETS_CHART_VERSION,
            release="external-secrets",
            namespace=EXTERNAL_SECRETS_NAMESPACE,
            wait=True,
            values={
                "installCRDs": True,
                "serviceAccount": {
                    "name": EXTERNAL_SECRETS_SERVICE_ACCOUNT,
                    "annotations": {
                        "eks.amazonaws.com/role-arn": self.external_secrets_role.role_arn
                    },
                },
            },
        )
        url = (
            "postgresql://{{ .username }}:{{ .password }}@{{ .host }}:{{ .port }}"
            "/{{ .dbname }}?sslmode=require"
        )
        manifest = eks.KubernetesManifest(
            self,
            "DatabaseUrlSecret",
            cluster=self._cluster,
            manifest=[
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
                {
                    "apiVersion": "external-secrets.io/v1",
                    "kind": "SecretStore",
                    "metadata": {"name": "aws-secrets-manager", "namespace": NAMESPACE},
                    "spec": {
                        "provider": {"aws": {"service": "SecretsManager", "region": self.region}}
                    },
                },
                {
                    "apiVersion": "external-secrets.io/v1",
                    "kind": "ExternalSecret",
                    "metadata": {"name": DATABASE_SECRET, "namespace": NAMESPACE},
                    "spec": {
                        "refreshInterval": "1h",
                        "secretStoreRef": {"name": "aws-secrets-manager", "kind": "SecretStore"},
                        "target": {
                            "name": DATABASE_SECRET,
                            "creationPolicy": "Owner",
                            "template": {"engineVersion": "v2", "data": {"DATABASE_URL": url}},
                        },
                        "dataFrom": [{"extract": {"key": database_secret.secret_arn}}],
                    },
                },
            ],
        )
        manifest.node.add_dependency(external_secrets)
        return manifest
