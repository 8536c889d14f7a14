"""EasyClaw-Data-Stack: the PostgreSQL queue (RDS) and the state bucket (S3)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from constructs import Construct

from easyclaw_infra.config import DeploymentConfig
from easyclaw_infra.nag import acknowledge

# The major version only: RDS applies minor upgrades by itself (auto_minor_version_upgrade),
# and a template pinning "17.6" would then ask CloudFormation to go back down.
POSTGRES_VERSION = rds.PostgresEngineVersion.of("17", "17")
DATABASE_NAME = "easyclaw"
DATABASE_USER = "easyclaw"
BACKUP_RETENTION = Duration.days(7)
# The password goes into a postgresql:// URL unescaped, so it holds no URL syntax.
URL_UNSAFE_CHARACTERS = " %+~`#$&*()|[]{}:;<>?!'/@\"\\^=,."


def state_bucket_name(config: DeploymentConfig) -> str:
    """A name of our own (unique by account and region), so other stacks need no export."""
    return f"{config.cluster_name}-state-{config.account}-{config.region}"


class DataStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        vpc: ec2.IVpc,
        cluster_security_group_id: str,
        pod_security_group_id: str,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        # Only the cluster reaches the database: Fargate pods carry the EKS cluster
        # security group (or, under a SecurityGroupPolicy, the pod security group),
        # and nothing else is allowed in.
        self.database_security_group = ec2.SecurityGroup(
            self,
            "DatabaseSecurityGroup",
            vpc=vpc,
            description="EasyClaw PostgreSQL: reachable only from the EKS cluster",
            allow_all_outbound=False,
        )
        self.database_security_group.add_ingress_rule(
            ec2.Peer.security_group_id(cluster_security_group_id),
            ec2.Port.tcp(5432),
            "PostgreSQL from the EKS cluster (Fargate pods)",
        )
        # Pods under the chart's SecurityGroupPolicy carry the pod security group instead.
        self.database_security_group.add_ingress_rule(
            ec2.Peer.security_group_id(pod_security_group_id),
            ec2.Port.tcp(5432),
            "PostgreSQL from EasyClaw pods (SecurityGroupPolicy)",
        )
        ec2.CfnSecurityGroupEgress(
            self,
            "PodsToDatabase",
            group_id=pod_security_group_id,
            destination_security_group_id=self.database_security_group.security_group_id,
            ip_protocol="tcp",
            from_port=5432,
            to_port=5432,
            description="EasyClaw pods to PostgreSQL",
        )
        self.database = rds.DatabaseInstance(
            self,
            "Database",
            engine=rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION),
            instance_type=ec2.InstanceType(config.database_instance_type),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.database_security_group],
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_generated_secret(
                DATABASE_USER,
                secret_name=f"{config.cluster_name}/database",
                exclude_characters=URL_UNSAFE_CHARACTERS,
            ),
            multi_az=config.database_multi_az,
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=20,
            max_allocated_storage=200,
            backup_retention=BACKUP_RETENTION,
            delete_automated_backups=False,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
            auto_minor_version_upgrade=True,
            publicly_accessible=False,
            enable_performance_insights=True,
            cloudwatch_logs_exports=["postgresql"],
        )
        assert self.database.secret is not None
        self.database_secret = self.database.secret

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))
            ],
        )
        self.state_bucket = s3.Bucket(
            self,
            "StateBucket",
            bucket_name=state_bucket_name(config),
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="state-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="intelligent-tiering",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                            transition_after=Duration.days(0),
                        )
                    ],
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
        )
        acknowledge(
            self.database,
            "RDS11",
            "PostgreSQL keeps its standard port: the database is in isolated subnets and its "
            "security group admits only the EKS cluster, so another port would hide nothing.",
        )
        acknowledge(
            self.database,
            "SMG4",
            "No automatic rotation: External Secrets refreshes DATABASE_URL hourly but running "
            "pods keep their connections' URL; rotate by hand with a rolling restart "
            "(docs/aws.md, Operations).",
        )
