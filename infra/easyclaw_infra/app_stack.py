"""EasyClaw-App-Stack: IRSA roles, the image, the database Secret and the EasyClaw chart."""

from __future__ import annotations

from typing import cast

from aws_cdk import CfnJson, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from easyclaw_infra.chart_values import ChartWiring, chart_values
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
EXTERNAL_SECRETS_WEBHOOK_PORT = 9443
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
        pod_security_group_id: str,
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
        self.api_endpoint = ApiEndpoint(self, "ApiEndpoint", config=config)
        self.wiring = ChartWiring(
            region=self.region,
            cluster_name=config.cluster_name,
            environment=config.environment,
            worker_role_arn=self.worker_role.role_arn,
            metrics_mirror_role_arn=self.metrics_mirror_role.role_arn,
            state_bucket=state_bucket.bucket_name,
            pod_security_group_id=pod_security_group_id,
            jwt_jwks_url=config.jwt_jwks_url,
            jwt_issuer=config.jwt_issuer,
            jwt_audience=config.jwt_audience,
            bedrock_model_id=config.bedrock_model_id,
            worker_max_replicas=str(config.worker_max_replicas),
            api_domain=config.api_domain,
            certificate_arn=self.api_endpoint.certificate_arn,
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
            values={
                "image": {
                    "repository": self.image.repository.repository_uri,
                    "tag": self.image.image_tag,
                },
                **chart_values(self.wiring),
            },
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
        self.api_endpoint.point_dns_at(api_address.value)
        self._outputs(config, api_address.value)

    def _outputs(self, config: DeploymentConfig, load_balancer_hostname: str) -> None:
        """The API's address, and everything ``make eks-values`` turns into skaffold's values."""
        CfnOutput(
            self,
            "ApiUrl",
            value=self.api_endpoint.url(load_balancer_hostname),
            description="EasyClaw REST API",
        )
        CfnOutput(
            self,
            "LoadBalancerHostname",
            value=load_balancer_hostname,
            description="The ALB of the chart's Ingress (point the API's DNS name here)",
        )
        CfnOutput(self, "ImageUri", value=self.image.image_uri)
        self.dev_repository = ecr.Repository(
            self,
            "DevImages",
            repository_name=f"{config.cluster_name}/easyclaw",
            image_scan_on_push=True,
            lifecycle_rules=[ecr.LifecycleRule(max_image_count=30)],
            removal_policy=RemovalPolicy.DESTROY,
            empty_on_delete=True,
        )
        # skaffold pushes its image `easyclaw` to <default-repo>/easyclaw: this repository.
        CfnOutput(
            self,
            "SkaffoldDefaultRepo",
            value=f"{self.account}.dkr.ecr.{self.region}.{self.url_suffix}/{config.cluster_name}",
            description="skaffold --default-repo for `skaffold run -p eks`",
        )
        for key, value in self.wiring.outputs().items():
            CfnOutput(
                self, f"Wiring{key}", key=key, value=value, description="make eks-values reads it"
            )

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
                # The chart's default 10250 is the Fargate kubelet's own port: the webhook
                # could not bind it, admission of SecretStore/ExternalSecret would fail.
                "webhook": {"port": EXTERNAL_SECRETS_WEBHOOK_PORT},
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


class ApiEndpoint(Construct):
    """The API's public name: its TLS certificate, DNS record and URL.

    ``easyclaw:apiDomain`` with a Route 53 zone gets a DNS-validated ACM
    certificate and a CNAME to the ALB; with ``easyclaw:certificateArn`` that
    certificate is used (and the CNAME made only if the zone is given too).
    Plain HTTP happens only with the explicit ``easyclaw:plainHttp``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.zone = (
            route53.PublicHostedZone.from_hosted_zone_attributes(
                self,
                "Zone",
                hosted_zone_id=config.hosted_zone_id,
                zone_name=config.hosted_zone_name,
            )
            if config.hosted_zone_id
            else None
        )
        self.certificate_arn = config.certificate_arn
        if config.creates_certificate:
            assert self.zone is not None, "DeploymentConfig checks a zone is given"
            certificate = acm.Certificate(
                self,
                "Certificate",
                domain_name=config.api_domain,
                validation=acm.CertificateValidation.from_dns(self.zone),
            )
            self.certificate_arn = certificate.certificate_arn

    def url(self, load_balancer_hostname: str) -> str:
        if self._config.plain_http:
            return f"http://{load_balancer_hostname}"
        return f"https://{self._config.api_domain}"

    def point_dns_at(self, load_balancer_hostname: str) -> None:
        """A CNAME from the API's name to the ALB, when the zone is ours to write."""
        if self.zone is None:
            return
        route53.CnameRecord(
            self,
            "Record",
            zone=self.zone,
            record_name=f"{self._config.api_domain}.",
            domain_name=load_balancer_hostname,
            ttl=Duration.minutes(5),
        )
