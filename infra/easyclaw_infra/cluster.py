"""EasyClaw-Cluster-Stack: EKS on Fargate, KEDA, the AWS Load Balancer Controller, logging."""

from __future__ import annotations

from aws_cdk import Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk.lambda_layer_kubectl_v35 import KubectlV35Layer
from constructs import Construct

from easyclaw_infra.config import KEDA_CHART_VERSION, NAMESPACE, DeploymentConfig
from easyclaw_infra.nag import acknowledge

KUBERNETES_VERSION = eks.KubernetesVersion.V1_35
"""Pinned; the kubectl layer (v35) matches it."""
ALB_CONTROLLER_VERSION = eks.AlbControllerVersion.V2_9_2
FARGATE_LOG_RETENTION = logs.RetentionDays.ONE_MONTH
# What EasyClaw's pods reach on the internet: AWS APIs, LLM providers, RESEARCH pages.
POD_WEB_PORTS = (80, 443)


def endpoint_access(allowed_cidrs: tuple[str, ...]) -> eks.EndpointAccess:
    """Private for the cluster's own traffic; public only for the listed CIDRs, if any."""
    if not allowed_cidrs:
        return eks.EndpointAccess.PRIVATE
    return eks.EndpointAccess.PUBLIC_AND_PRIVATE.only_from(*allowed_cidrs)


class ClusterStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        vpc: ec2.IVpc,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        # One pod execution role for every Fargate profile: pull images, write logs.
        self.pod_execution_role = iam.Role(
            self,
            "PodExecutionRole",
            assumed_by=iam.ServicePrincipal(
                "eks-fargate-pods.amazonaws.com",
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": f"arn:aws:eks:{self.region}:{self.account}:"
                        f"fargateprofile/{config.cluster_name}/*"
                    }
                },
            ),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "AmazonEKSFargatePodExecutionRolePolicy"
                )
            ],
        )
        private = [ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)]
        self.cluster = eks.FargateCluster(
            self,
            "Cluster",
            cluster_name=config.cluster_name,
            version=KUBERNETES_VERSION,
            vpc=vpc,
            vpc_subnets=private,
            endpoint_access=endpoint_access(config.endpoint_allowed_cidrs),
            kubectl_provider_options=eks.KubectlProviderOptions(
                kubectl_layer=KubectlV35Layer(self, "KubectlLayer")
            ),
            # kube-system (CoreDNS, the load balancer controller) and default run on Fargate.
            core_dns_compute_type=eks.CoreDnsComputeType.FARGATE,
            default_profile=eks.FargateProfileOptions(
                fargate_profile_name="system",
                selectors=[
                    eks.Selector(namespace="kube-system"),
                    eks.Selector(namespace="default"),
                ],
                pod_execution_role=self.pod_execution_role,
                subnet_selection=private[0],
            ),
            alb_controller=eks.AlbControllerOptions(version=ALB_CONTROLLER_VERSION),
            cluster_logging=[
                eks.ClusterLoggingTypes.API,
                eks.ClusterLoggingTypes.AUDIT,
                eks.ClusterLoggingTypes.AUTHENTICATOR,
                eks.ClusterLoggingTypes.CONTROLLER_MANAGER,
                eks.ClusterLoggingTypes.SCHEDULER,
            ],
        )
        if config.admin_role_arn:
            # Who may use kubectl (the deploying role is not an admin by itself).
            self.cluster.grant_cluster_admin("Admin", config.admin_role_arn)

        logging_config = self._fargate_logging(config)
        profiles = {}
        for namespace in (NAMESPACE, "keda"):
            profile = self.cluster.add_fargate_profile(
                f"{namespace.capitalize()}Profile",
                fargate_profile_name=namespace,
                selectors=[eks.Selector(namespace=namespace)],
                pod_execution_role=self.pod_execution_role,
                subnet_selection=private[0],
            )
            profiles[namespace] = profile
        self.app_profile = profiles[NAMESPACE]
        self.pod_security_group = self._pod_security_group(config, vpc)

        self.keda = self.cluster.add_helm_chart(
            "Keda",
            chart="keda",
            repository="https://kedacore.github.io/charts",
            version=KEDA_CHART_VERSION,
            release="keda",
            namespace="keda",
            create_namespace=True,
            wait=True,
        )
        # A pod created before its Fargate profile exists stays Pending for good, and
        # Fargate reads the logging ConfigMap when a pod starts.
        self.keda.node.add_dependency(profiles["keda"], logging_config)
        self._acknowledge_findings()

    def _pod_security_group(self, config: DeploymentConfig, vpc: ec2.IVpc) -> ec2.SecurityGroup:
        """The security group EasyClaw's pods get through the chart's SecurityGroupPolicy.

        Fargate ignores NetworkPolicy; a SecurityGroupPolicy replaces the pods' cluster
        security group with this one. It admits the cluster (control plane, CoreDNS,
        KEDA, Prometheus) and the release's own pods; the load balancer controller adds
        the ALB's rule itself. Out: DNS and the Kubernetes API (both behind the cluster
        security group), the web on 80/443, and the database (its rule is in the Data stack).
        """
        group = ec2.SecurityGroup(
            self,
            "PodSecurityGroup",
            vpc=vpc,
            description="EasyClaw pods (SecurityGroupPolicy): in from the cluster and each other",
            allow_all_outbound=False,
        )
        # With several groups on a pod's network interface the controller picks the tagged one.
        Tags.of(group).add(f"kubernetes.io/cluster/{config.cluster_name}", "shared")
        cluster_group = ec2.Peer.security_group_id(self.cluster.cluster_security_group_id)
        group.add_ingress_rule(group, ec2.Port.all_tcp(), "EasyClaw pods to each other")
        group.add_ingress_rule(cluster_group, ec2.Port.all_tcp(), "control plane, KEDA, Prometheus")
        group.add_egress_rule(group, ec2.Port.all_tcp(), "EasyClaw pods to each other")
        for protocol, port, what in (
            ("udp", 53, "DNS (CoreDNS)"),
            ("tcp", 53, "DNS (CoreDNS)"),
            ("tcp", 443, "Kubernetes API (private endpoint)"),
        ):
            rule_port = ec2.Port.udp(port) if protocol == "udp" else ec2.Port.tcp(port)
            group.add_egress_rule(cluster_group, rule_port, what)
            # The cluster security group admits only itself; let the pods in for these too.
            ec2.CfnSecurityGroupIngress(
                self,
                f"ClusterFromPods{protocol.upper()}{port}",
                group_id=self.cluster.cluster_security_group_id,
                source_security_group_id=group.security_group_id,
                ip_protocol=protocol,
                from_port=port,
                to_port=port,
                description=f"EasyClaw pods: {what}",
            )
        for web_port in POD_WEB_PORTS:
            group.add_egress_rule(
                ec2.Peer.any_ipv4(), ec2.Port.tcp(web_port), "AWS APIs, LLM providers, the web"
            )
        return group

    def _acknowledge_findings(self) -> None:
        acknowledge(
            self.pod_execution_role,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonEKSFargatePodExecutionRolePolicy]",
            "AWS's policy for Fargate pod execution (pull images from ECR) is the documented one.",
        )
        log_group = self.get_logical_id(self.fargate_log_group.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            self.pod_execution_role,
            f"IAM5[Resource::<{log_group}.Arn>:log-stream:*]",
            "Fargate's log router names one stream per pod at run time; only in this log group.",
        )
        acknowledge(
            self.cluster.node.find_child("Role"),
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonEKSClusterPolicy]",
            "The EKS control plane's service role needs AWS's AmazonEKSClusterPolicy.",
        )
        # aws-cdk-lib's kubectl provider (a Lambda that applies manifests and charts).
        provider = self.cluster.node.find_child("KubectlProvider")
        handler = provider.node.find_child("Handler")
        generated = "aws-cdk-lib's kubectl provider, generated by aws_eks_v2"
        for policy in (
            "service-role/AWSLambdaBasicExecutionRole",
            "service-role/AWSLambdaVPCAccessExecutionRole",
            "AmazonEC2ContainerRegistryReadOnly",
        ):
            acknowledge(
                provider,
                f"IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{policy}]",
                f"{generated}: AWS managed policies for Lambda logging, VPC access and pulls.",
            )
        ecr_public_condition = self.get_logical_id(
            handler.node.find_child("HasEcrPublic")  # type: ignore[arg-type]
        )
        acknowledge(
            provider,
            'IAM4[Policy::{"Fn::If":["' + ecr_public_condition + '",{"Fn::Join":["",["arn:",'
            '{"Ref":"AWS::Partition"},":iam::aws:policy/AmazonElasticContainerRegistryPublicReadOnly"'
            ']]},{"Ref":"AWS::NoValue"}]}]',
            f"{generated}: public ECR pulls where the region has ECR Public.",
        )
        acknowledge(
            provider,
            "L1",
            f"{generated}: its Lambda runtime is chosen by aws-cdk-lib and moves with it.",
        )
        handler_function = self.get_logical_id(handler.node.default_child)  # type: ignore[arg-type]
        acknowledge(
            provider,
            f"IAM5[Resource::<{handler_function}.Arn>:*]",
            f"{generated}: the provider framework invokes any version of its handler.",
        )
        # Charts from assets (the EasyClaw chart) are read from the CDK assets bucket.
        for finding in (
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            f"Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-{self.account}-"
            f"{self.region}/*",
        ):
            acknowledge(
                provider,
                f"IAM5[{finding}]",
                f"{generated}: reads chart assets (any key) from the CDK bootstrap assets bucket.",
            )
        # AWS's published IAM policy of the AWS Load Balancer Controller, as shipped by CDK.
        for resource in (
            "*",
            "arn:<AWS::Partition>:ec2:*:*:security-group/*",
            "arn:<AWS::Partition>:elasticloadbalancing:*:*:loadbalancer/app/*/*",
            "arn:<AWS::Partition>:elasticloadbalancing:*:*:loadbalancer/net/*/*",
            "arn:<AWS::Partition>:elasticloadbalancing:*:*:targetgroup/*/*",
            "arn:<AWS::Partition>:elasticloadbalancing:*:*:listener-rule/app/*/*/*",
            "arn:<AWS::Partition>:elasticloadbalancing:*:*:listener-rule/net/*/*/*",
            "arn:<AWS::Partition>:elasticloadbalancing:*:*:listener/app/*/*/*",
            "arn:<AWS::Partition>:elasticloadbalancing:*:*:listener/net/*/*/*",
        ):
            acknowledge(
                self,
                f"IAM5[Resource::{resource}]",
                "The AWS Load Balancer Controller's policy is AWS's published one: it manages "
                "load balancers, target groups and security groups it creates at run time "
                "(most actions are limited by the elbv2.k8s.aws/cluster tag).",
            )

    def _fargate_logging(self, config: DeploymentConfig) -> eks.KubernetesManifest:
        """Container logs of every Fargate pod to one log group, through Fargate's Fluent Bit."""
        self.fargate_log_group = logs.LogGroup(
            self,
            "FargateLogs",
            log_group_name=f"/aws/eks/{config.cluster_name}/fargate",
            retention=FARGATE_LOG_RETENTION,
        )
        self.pod_execution_role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                resources=[
                    self.fargate_log_group.log_group_arn,
                    f"{self.fargate_log_group.log_group_arn}:log-stream:*",
                ],
            )
        )
        output_conf = "\n".join(
            [
                "[OUTPUT]",
                "    Name cloudwatch_logs",
                "    Match kube.*",
                f"    region {self.region}",
                f"    log_group_name {self.fargate_log_group.log_group_name}",
                "    log_stream_prefix fargate-",
                "    auto_create_group false",
                "",
            ]
        )
        return self.cluster.add_manifest(
            "FargateLogging",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": "aws-observability",
                    "labels": {"aws-observability": "enabled"},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "aws-logging", "namespace": "aws-observability"},
                "data": {"flb_log_cw": "false", "output.conf": output_conf},
            },
        )
