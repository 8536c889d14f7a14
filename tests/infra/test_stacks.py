"""The CDK app, synthesized once the way `make synth` does it, with AWS out of reach.

The synthesis runs `python infra/app.py` with no credentials, no config
files and every AWS endpoint pointed at a closed local port: it succeeding
shows synthesis needs no AWS call. cdk-nag runs inside it and fails it on any
unacknowledged finding. The templates are then checked with
``aws_cdk.assertions.Template``, and the chart values the App stack passes
are rendered with the real chart by ``helm template``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk.assertions import Match

from tests.infra.synthesis import CONTEXT, MAX_REPLICAS, STACKS, Synthesized, joined, sample
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.slow

# ---------------------------------------------------------------- synthesis and cdk-nag


def test_every_stack_synthesizes_offline(synthesized: Synthesized) -> None:
    for stack in STACKS:
        assert (synthesized.outdir / f"{stack}.template.json").is_file(), stack
    assert "left out" not in synthesized.stderr


def test_cdk_nag_left_no_unacknowledged_finding(synthesized: Synthesized) -> None:
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success", plugin["violations"]
        assert not plugin["violations"]


def test_cdk_nag_fails_synthesis_on_an_unacknowledged_finding(tmp_path: Path) -> None:
    """The same checks the app enables stop a synthesis that breaks a rule."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_s3 as s3

    from easyclaw_infra.nag import acknowledge, enable_checks

    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Careless")
    bucket = s3.Bucket(stack, "Plain")
    acknowledge(bucket, "S1", "access logs are covered elsewhere in this test stack")
    enable_checks(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    [nag] = [p for p in report["pluginReports"] if p["pluginName"] == "AwsSolutions"]
    rules = {violation["ruleName"] for violation in nag["violations"]}
    assert "AwsSolutions-S10" in rules, "TLS-only policy missing must be reported"
    assert "AwsSolutions-S1" not in rules, "an acknowledged finding is not reported"


def test_every_acknowledgement_states_a_reason() -> None:
    sources = "\n".join(
        path.read_text() for path in (REPO_ROOT / "infra" / "easyclaw_infra").glob("*.py")
    )
    calls = re.findall(
        r"(?<!def )(?<![\w.])acknowledge\(\s*([^()]*(?:\([^()]*\)[^()]*)*)\)", sources
    )
    assert len(calls) >= 5
    for call in calls:
        strings = re.findall(r'"([^"]*)"', call)
        assert len(" ".join(strings)) > 40, f"acknowledgement without a real reason: {call}"


# ---------------------------------------------------------------- network


def test_network_has_private_subnets_across_azs_nat_and_load_balancer_tags(
    synthesized: Synthesized,
) -> None:
    template = synthesized.template("EasyClaw-Network-Stack")
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::NatGateway", CONTEXT["easyclaw:natGateways"])
    subnets = synthesized.resources("EasyClaw-Network-Stack", "AWS::EC2::Subnet").values()
    private = [
        s
        for s in subnets
        if {"Key": "kubernetes.io/role/internal-elb", "Value": "1"} in s["Properties"]["Tags"]
    ]
    public = [
        s
        for s in subnets
        if {"Key": "kubernetes.io/role/elb", "Value": "1"} in s["Properties"]["Tags"]
    ]
    assert len({s["Properties"]["AvailabilityZone"] for s in private}) == 3
    assert len(public) == 3
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})


# ---------------------------------------------------------------- data


def test_database_is_encrypted_backed_up_protected_and_retained(synthesized: Synthesized) -> None:
    template = synthesized.template("EasyClaw-Data-Stack")
    template.has_resource(
        "AWS::RDS::DBInstance",
        {
            "Properties": {
                "Engine": "postgres",
                # The major version only, so RDS's own minor upgrades never look like a
                # downgrade to the next deploy.
                "EngineVersion": "17",
                "AutoMinorVersionUpgrade": True,
                "StorageEncrypted": True,
                "BackupRetentionPeriod": 7,
                "DeletionProtection": True,
                "PubliclyAccessible": False,
                "MultiAZ": CONTEXT["easyclaw:databaseMultiAz"],
                "MasterUserPassword": Match.object_like(
                    {
                        "Fn::Join": Match.array_with(
                            [Match.array_with([Match.string_like_regexp("resolve:secretsmanager")])]
                        )
                    }
                ),
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {"GenerateSecretString": Match.object_like({"GenerateStringKey": "password"})},
    )


def test_only_the_cluster_and_the_pod_security_group_reach_the_database(
    synthesized: Synthesized,
) -> None:
    groups = synthesized.resources("EasyClaw-Data-Stack", "AWS::EC2::SecurityGroup")
    [database_group] = [
        g
        for g in groups.values()
        if "only from the EKS cluster" in g["Properties"]["GroupDescription"]
    ]
    rules = database_group["Properties"]["SecurityGroupIngress"]
    for rule in rules:
        assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (5432, 5432, "tcp")
        assert "CidrIp" not in rule
    sources = sorted(json.dumps(rule["SourceSecurityGroupId"]) for rule in rules)
    assert len(sources) == 2
    assert "ClusterSecurityGroupId" in sources[0]
    assert "PodSecurityGroup" in sources[1]
    assert database_group["Properties"]["SecurityGroupEgress"][0]["CidrIp"] == "255.255.255.255/32"


def test_state_bucket_is_encrypted_versioned_private_tls_only_and_tiered(
    synthesized: Synthesized,
) -> None:
    template = synthesized.template("EasyClaw-Data-Stack")
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "VersioningConfiguration": {"Status": "Enabled"},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Status": "Enabled",
                                "Transitions": [
                                    {"StorageClass": "INTELLIGENT_TIERING", "TransitionInDays": 0}
                                ],
                            }
                        )
                    ]
                )
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "state-bucket/"}),
        },
    )
    policies = synthesized.resources("EasyClaw-Data-Stack", "AWS::S3::BucketPolicy")
    state_policies = [
        p for p in policies.values() if "StateBucket" in json.dumps(p["Properties"]["Bucket"])
    ]
    [statement] = [
        s
        for s in state_policies[0]["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny"
    ]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Action"] == "s3:*"


# ---------------------------------------------------------------- cluster


def test_fargate_cluster_with_pinned_version_and_profiles(synthesized: Synthesized) -> None:
    template = synthesized.template("EasyClaw-Cluster-Stack")
    template.has_resource_properties(
        "AWS::EKS::Cluster", {"Name": CONTEXT["easyclaw:clusterName"], "Version": "1.35"}
    )
    profiles = synthesized.resources("EasyClaw-Cluster-Stack", "AWS::EKS::FargateProfile")
    namespaces = {
        selector["Namespace"]
        for profile in profiles.values()
        for selector in profile["Properties"]["Selectors"]
    }
    assert {"easyclaw", "keda", "kube-system"} <= namespaces
    # CoreDNS runs on Fargate: the cluster's CoreDNS deployment is patched for it.
    assert "eks.amazonaws.com/compute-type" in json.dumps(
        synthesized.json("EasyClaw-Cluster-Stack")
    ).replace("\\", "")


def test_keda_and_load_balancer_controller_charts_are_pinned(synthesized: Synthesized) -> None:
    template = synthesized.template("EasyClaw-Cluster-Stack")
    template.has_resource_properties(
        "Custom::AWSCDK-EKS-HelmChart",
        {
            "Chart": "keda",
            "Release": "keda",
            "Namespace": "keda",
            "Repository": "https://kedacore.github.io/charts",
            "Version": Match.string_like_regexp(r"^\d+\.\d+\.\d+$"),
            "CreateNamespace": True,
        },
    )
    template.has_resource_properties(
        "Custom::AWSCDK-EKS-HelmChart",
        {"Chart": "aws-load-balancer-controller", "Version": Match.string_like_regexp(r"^\d")},
    )


def test_fargate_logs_go_to_cloudwatch_with_retention(synthesized: Synthesized) -> None:
    template = synthesized.template("EasyClaw-Cluster-Stack")
    template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {"LogGroupName": "/aws/eks/easyclaw/fargate", "RetentionInDays": 30},
    )
    manifests = synthesized.resources(
        "EasyClaw-Cluster-Stack", "Custom::AWSCDK-EKS-KubernetesResource"
    )
    [logging] = [
        m for m in manifests.values() if "aws-observability" in joined(m["Properties"]["Manifest"])
    ]
    text = joined(logging["Properties"]["Manifest"])
    assert '"aws-observability":"enabled"' in text
    assert "cloudwatch_logs" in text
    assert "log_group_name TOKEN" in text


def test_eks_endpoint_is_private_and_public_only_to_the_context_cidrs(
    synthesized: Synthesized,
) -> None:
    [cluster] = synthesized.resources("EasyClaw-Cluster-Stack", "AWS::EKS::Cluster").values()
    vpc = cluster["Properties"]["ResourcesVpcConfig"]
    assert vpc["EndpointPrivateAccess"] is True
    assert vpc["EndpointPublicAccess"] is True
    assert vpc["PublicAccessCidrs"] == CONTEXT["easyclaw:endpointAllowedCidrs"]
    assert "0.0.0.0/0" not in vpc["PublicAccessCidrs"]


def pod_security_group(synthesized: Synthesized) -> tuple[str, dict[str, Any]]:
    groups = synthesized.resources("EasyClaw-Cluster-Stack", "AWS::EC2::SecurityGroup")
    [(logical_id, group)] = [
        (logical_id, g)
        for logical_id, g in groups.items()
        if logical_id.startswith("PodSecurityGroup")
    ]
    return logical_id, group["Properties"]


def test_pod_security_group_admits_the_cluster_and_reaches_dns_the_api_the_web_and_the_database(
    synthesized: Synthesized,
) -> None:
    logical_id, group = pod_security_group(synthesized)
    assert {"Key": "kubernetes.io/cluster/easyclaw", "Value": "shared"} in group["Tags"]
    ingress = {
        (r["IpProtocol"], r["FromPort"], r["ToPort"], json.dumps(r["SourceSecurityGroupId"]))
        for r in group["SecurityGroupIngress"]
    }
    assert all("CidrIp" not in r for r in group["SecurityGroupIngress"]), "nothing from outside"
    assert {(p, f, t) for p, f, t, _ in ingress} == {("tcp", 0, 65535)}
    sources = " ".join(source for *_, source in ingress)
    assert "ClusterSecurityGroupId" in sources

    egress = group["SecurityGroupEgress"]
    to_world = {(r["IpProtocol"], r["FromPort"]) for r in egress if r.get("CidrIp") == "0.0.0.0/0"}
    assert to_world == {("tcp", 80), ("tcp", 443)}
    to_cluster = {
        (r["IpProtocol"], r["FromPort"])
        for r in egress
        if "ClusterSecurityGroupId" in json.dumps(r.get("DestinationSecurityGroupId"))
    }
    assert to_cluster == {("udp", 53), ("tcp", 53), ("tcp", 443)}
    # ...and the cluster security group lets the pods in for those.
    back = synthesized.resources("EasyClaw-Cluster-Stack", "AWS::EC2::SecurityGroupIngress")
    into_cluster = {
        (r["Properties"]["IpProtocol"], r["Properties"]["FromPort"])
        for r in back.values()
        if r["Properties"].get("SourceSecurityGroupId") == {"Fn::GetAtt": [logical_id, "GroupId"]}
        and "ClusterSecurityGroupId" in json.dumps(r["Properties"]["GroupId"])
    }
    assert into_cluster == {("udp", 53), ("tcp", 53), ("tcp", 443)}
    [to_database] = synthesized.resources(
        "EasyClaw-Data-Stack", "AWS::EC2::SecurityGroupEgress"
    ).values()
    assert "PodSecurityGroup" in json.dumps(to_database["Properties"]["GroupId"])
    assert "DatabaseSecurityGroup" in json.dumps(
        to_database["Properties"]["DestinationSecurityGroupId"]
    )
    assert to_database["Properties"]["FromPort"] == 5432


# ---------------------------------------------------------------- application


def irsa_subjects(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    """Each IRSA role's trust: the CfnJson condition it points at, by service account."""
    stack = synthesized.json("EasyClaw-App-Stack")["Resources"]
    subjects = {}
    for logical_id, resource in stack.items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        [statement] = resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        if statement["Action"] != "sts:AssumeRoleWithWebIdentity":
            continue
        condition_ref = statement["Condition"]["StringEquals"]["Fn::GetAtt"][0]
        condition = joined(stack[condition_ref]["Properties"]["Value"])
        subject = re.search(r"system:serviceaccount:[a-z-]+:[a-z-]+", condition)
        assert subject, condition
        assert ':aud":"sts.amazonaws.com"' in condition
        subjects[subject.group(0)] = {"role": logical_id, "statement": statement}
    return subjects


def role_policy(synthesized: Synthesized, role_logical_id: str) -> list[dict[str, Any]]:
    policies = synthesized.resources("EasyClaw-App-Stack", "AWS::IAM::Policy")
    return [
        statement
        for policy in policies.values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_irsa_roles_trust_only_their_service_accounts(synthesized: Synthesized) -> None:
    subjects = irsa_subjects(synthesized)
    assert set(subjects) == {
        "system:serviceaccount:easyclaw:easyclaw-worker",
        "system:serviceaccount:easyclaw:easyclaw-metrics-mirror",
        "system:serviceaccount:kube-system:external-secrets",
    }
    for subject in subjects.values():
        federated = json.dumps(subject["statement"]["Principal"]["Federated"])
        assert "OpenIdConnectProvider" in federated or "OidcProvider" in federated


def test_worker_may_use_only_the_state_prefix_and_the_configured_model(
    synthesized: Synthesized,
) -> None:
    role = irsa_subjects(synthesized)["system:serviceaccount:easyclaw:easyclaw-worker"]["role"]
    statements = {s["Sid"]: s for s in role_policy(synthesized, role)}
    assert set(statements) == {"StatePrefixObjects", "StatePrefixList", "InvokeConfiguredModel"}
    objects = statements["StatePrefixObjects"]
    assert sorted(objects["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert joined(objects["Resource"]).endswith("/state/*")
    listing = statements["StatePrefixList"]
    assert listing["Action"] == "s3:ListBucket"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["state/*"]}}
    model = statements["InvokeConfiguredModel"]
    assert sorted(model["Action"]) == [
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream",
    ]
    assert model["Resource"] == (
        f"arn:aws:bedrock:{CONTEXT['easyclaw:region']}::foundation-model/"
        f"{CONTEXT['easyclaw:bedrockModelId']}"
    )


def test_metrics_mirror_may_only_put_metrics_in_the_easyclaw_namespace(
    synthesized: Synthesized,
) -> None:
    role = irsa_subjects(synthesized)["system:serviceaccount:easyclaw:easyclaw-metrics-mirror"][
        "role"
    ]
    [statement] = role_policy(synthesized, role)
    assert statement["Action"] == "cloudwatch:PutMetricData"
    assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "EasyClaw"}}


def test_external_secrets_may_read_only_the_database_secret(synthesized: Synthesized) -> None:
    role = irsa_subjects(synthesized)["system:serviceaccount:kube-system:external-secrets"]["role"]
    [statement] = role_policy(synthesized, role)
    assert "secretsmanager:GetSecretValue" in statement["Action"]
    assert "DatabaseSecret" in json.dumps(statement["Resource"])


def test_external_secrets_webhook_is_off_the_fargate_kubelet_port(
    synthesized: Synthesized,
) -> None:
    charts = synthesized.resources("EasyClaw-App-Stack", "Custom::AWSCDK-EKS-HelmChart")
    [release] = [c for c in charts.values() if c["Properties"].get("Chart") == "external-secrets"]
    values = json.loads(joined(release["Properties"]["Values"]))
    # 10250 is the kubelet's port on every Fargate pod: the webhook could not listen there.
    assert values["webhook"]["port"] == 9443


def easyclaw_release(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.helm_release("easyclaw")


def test_easyclaw_chart_is_installed_from_the_local_chart_asset(synthesized: Synthesized) -> None:
    release = easyclaw_release(synthesized)
    assert release["Namespace"] == "easyclaw"
    assert "ChartAssetURL" in release
    assert "Repository" not in release
    assets = json.loads((synthesized.outdir / "EasyClaw-App-Stack.assets.json").read_text())
    [image] = assets["dockerImages"].values()
    assert image["source"]["dockerFile"] == "Dockerfile"
    staged = synthesized.outdir / image["source"]["directory"]
    assert (staged / "Dockerfile").is_file()
    assert not (staged / ".venv").exists()
    assert not (staged / ".git").exists()
    [chart] = [
        f
        for f in assets["files"].values()
        if (synthesized.outdir / f["source"]["path"] / "Chart.yaml").exists()
    ]
    assert chart["source"]["packaging"] == "zip"
    template = synthesized.template("EasyClaw-App-Stack")
    template.has_output("ApiUrl", {"Value": Match.any_value()})


def test_chart_values_are_wired_and_render_with_the_real_chart(
    synthesized: Synthesized, tmp_path: Path
) -> None:
    values = json.loads(sample(easyclaw_release(synthesized)["Values"]))
    assert values["database"] == {
        "existingSecret": "easyclaw-database",
        "existingSecretKey": "DATABASE_URL",
    }
    assert values["worker"]["autoscaling"]["maxReplicaCount"] == MAX_REPLICAS
    assert values["worker"]["podDeletionCost"] is True
    assert values["metricsMirror"]["enabled"] is True
    assert values["metricsMirror"]["dimensions"] == {
        "Cluster": CONTEXT["easyclaw:clusterName"],
        "Environment": CONTEXT["easyclaw:environment"],
    }
    assert values["config"]["extraEnv"]["EASYCLAW_STATE_S3_PREFIX"] == "state/"

    from tests.charts.rendering import run_helm

    values_path = tmp_path / "values.json"
    values_path.write_text(json.dumps(values))
    result = run_helm(
        "template",
        "easyclaw",
        str(REPO_ROOT / "charts" / "easyclaw"),
        "--namespace",
        "easyclaw",
        "--kube-version",
        "1.35.0",
        "--api-versions",
        "keda.sh/v1alpha1",
        "-f",
        str(values_path),
    )
    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    for name, role in (
        ("easyclaw-worker", "WorkerRole"),
        ("easyclaw-metrics-mirror", "MetricsMirrorRole"),
    ):
        annotations = accounts[name]["metadata"].get("annotations", {})
        assert annotations["eks.amazonaws.com/role-arn"].startswith(f"sample-{role}"), name
    [ingress] = [o for o in objects if o["kind"] == "Ingress"]
    assert ingress["metadata"]["name"] == "easyclaw-api"
    # HTTPS on 443 with the stack's certificate; 80 only redirects there.
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"].startswith(
        "sample-ApiEndpointCertificate"
    )
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [
        {"HTTP": 80},
        {"HTTPS": 443},
    ]
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert annotations["alb.ingress.kubernetes.io/ssl-policy"].startswith("ELBSecurityPolicy-TLS13")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [CONTEXT["easyclaw:apiDomain"]]
    [scaled] = [o for o in objects if o["kind"] == "ScaledObject"]
    assert scaled["spec"]["maxReplicaCount"] == MAX_REPLICAS
    # Fargate ignores NetworkPolicy: the pods get the stack's pod security group instead.
    [policy] = [o for o in objects if o["kind"] == "SecurityGroupPolicy"]
    [group] = policy["spec"]["securityGroups"]["groupIds"]
    assert group == values["securityGroupPolicy"]["securityGroupIds"][0]
    assert group.startswith("sg-")
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]


def test_api_gets_a_dns_validated_certificate_a_dns_name_and_an_https_url(
    synthesized: Synthesized,
) -> None:
    domain = CONTEXT["easyclaw:apiDomain"]
    template = synthesized.template("EasyClaw-App-Stack")
    certificates = synthesized.resources(
        "EasyClaw-App-Stack", "AWS::CertificateManager::Certificate"
    )
    [(certificate_id, certificate)] = certificates.items()
    assert certificate["Properties"]["DomainName"] == domain
    assert certificate["Properties"]["ValidationMethod"] == "DNS"
    assert certificate["Properties"]["DomainValidationOptions"] == [
        {"DomainName": domain, "HostedZoneId": CONTEXT["easyclaw:hostedZoneId"]}
    ]
    [record] = synthesized.resources("EasyClaw-App-Stack", "AWS::Route53::RecordSet").values()
    assert record["Properties"]["Type"] == "CNAME"
    assert record["Properties"]["Name"] == f"{domain}."
    assert record["Properties"]["HostedZoneId"] == CONTEXT["easyclaw:hostedZoneId"]
    [target] = record["Properties"]["ResourceRecords"]
    assert target["Fn::GetAtt"][0].startswith("ApiAddress"), "the ALB's hostname from the Ingress"
    template.has_output("ApiUrl", {"Value": f"https://{domain}"})
    template.has_output("CertificateArn", {"Value": {"Ref": certificate_id}})
    ingress = json.loads(sample(easyclaw_release(synthesized)["Values"]))["api"]["ingress"]
    assert ingress["host"] == domain
    assert ingress["certificateArn"] == f"sample-{certificate_id}"


# ---------------------------------------------------------------- metrics


def test_dashboard_has_the_worker_widgets(synthesized: Synthesized) -> None:
    [dashboard] = synthesized.resources(
        "EasyClaw-Metrics-Stack", "AWS::CloudWatch::Dashboard"
    ).values()
    assert dashboard["Properties"]["DashboardName"] == "EasyClaw-Workers"
    body = json.loads(joined(dashboard["Properties"]["DashboardBody"]))
    titles = {widget["properties"].get("title") for widget in body["widgets"]}
    assert {"Pending Jobs", "Running Workers", "Jobs per Worker"} <= titles
    text = json.dumps(body)
    for metric in ("RecentFailures", "OldestPendingAgeSeconds", "CompletedJobs"):
        assert metric in text


def test_alarms_and_their_thresholds(synthesized: Synthesized) -> None:
    template = synthesized.template("EasyClaw-Metrics-Stack")
    dimensions = [
        {"Name": "Cluster", "Value": CONTEXT["easyclaw:clusterName"]},
        {"Name": "Environment", "Value": CONTEXT["easyclaw:environment"]},
    ]
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": Match.string_like_regexp("HighQueueDepth$"),
            "Namespace": "EasyClaw",
            "MetricName": "PendingJobs",
            "Dimensions": dimensions,
            "Threshold": 100,
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 2,
            "Period": 60,
            "AlarmActions": [Match.object_like({"Ref": Match.string_like_regexp("AlarmTopic")})],
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": Match.string_like_regexp("MaxCapacityReached$"),
            "MetricName": "WorkerCount",
            "Dimensions": dimensions,
            "Threshold": MAX_REPLICAS,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        },
    )
    template.resource_count_is("AWS::SNS::Topic", 1)


def test_a_stale_metrics_alarm_treats_missing_data_as_breaching(synthesized: Synthesized) -> None:
    template = synthesized.template("EasyClaw-Metrics-Stack")
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": Match.string_like_regexp("MetricsStale$"),
            "Namespace": "EasyClaw",
            "MetricName": "PendingJobs",
            "Dimensions": [
                {"Name": "Cluster", "Value": CONTEXT["easyclaw:clusterName"]},
                {"Name": "Environment", "Value": CONTEXT["easyclaw:environment"]},
            ],
            "Statistic": "SampleCount",
            "Period": 60,
            "Threshold": 1,
            "ComparisonOperator": "LessThanThreshold",
            "EvaluationPeriods": 5,
            "DatapointsToAlarm": 5,
            "TreatMissingData": "breaching",
            "AlarmActions": [Match.object_like({"Ref": Match.string_like_regexp("AlarmTopic")})],
            "OKActions": [Match.object_like({"Ref": Match.string_like_regexp("AlarmTopic")})],
        },
    )
    # The other alarms stay quiet without data; this one is what notices the silence.
    alarms = synthesized.resources("EasyClaw-Metrics-Stack", "AWS::CloudWatch::Alarm").values()
    missing = {
        joined(a["Properties"]["AlarmName"]).rsplit("-", 1)[-1]: a["Properties"]["TreatMissingData"]
        for a in alarms
    }
    assert missing == {
        "HighQueueDepth": "notBreaching",
        "MaxCapacityReached": "notBreaching",
        "MetricsStale": "breaching",
    }
    [dashboard] = synthesized.resources(
        "EasyClaw-Metrics-Stack", "AWS::CloudWatch::Dashboard"
    ).values()
    body = json.loads(joined(dashboard["Properties"]["DashboardBody"]))
    [status] = [w for w in body["widgets"] if w["properties"].get("title") == "Alarms"]
    assert len(status["properties"]["alarms"]) == 3
