"""EasyClaw-Metrics-Stack: the EasyClaw-Workers dashboard, three alarms and their SNS topic.

Every metric is the metrics mirror's, selected with the same dimensions the
App stack gives the mirror (``Cluster``, ``Environment``).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from easyclaw_infra.config import METRICS_NAMESPACE, DeploymentConfig

DASHBOARD_NAME = "EasyClaw-Workers"
HIGH_QUEUE_DEPTH_THRESHOLD = 100
PERIOD = Duration.minutes(1)
STALE_AFTER_MINUTES = 5


class MetricsStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: object
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        dimensions = config.metrics_dimensions

        def metric(
            name: str, statistic: str = "Maximum", label: str | None = None
        ) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map=dimensions,
                statistic=statistic,
                period=PERIOD,
                label=label,
            )

        pending = metric("PendingJobs", label="Pending jobs")
        running = metric("RunningJobs", label="Running jobs")
        workers = metric("WorkerCount", label="Running workers")
        jobs_per_worker = cloudwatch.MathExpression(
            expression="IF(workers > 0, (pending + running) / workers, pending + running)",
            using_metrics={"pending": pending, "running": running, "workers": workers},
            label="Jobs per worker",
            period=PERIOD,
        )

        self.topic = sns.Topic(
            self,
            "AlarmTopic",
            display_name="EasyClaw alarms",
            master_key=self._topic_key(),
            enforce_ssl=True,
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))

        self.high_queue_depth = cloudwatch.Alarm(
            self,
            "HighQueueDepth",
            alarm_name=f"{config.cluster_name}-HighQueueDepth",
            alarm_description=f"More than {HIGH_QUEUE_DEPTH_THRESHOLD} jobs pending for 2 minutes",
            metric=metric("PendingJobs"),
            threshold=HIGH_QUEUE_DEPTH_THRESHOLD,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.max_capacity_reached = cloudwatch.Alarm(
            self,
            "MaxCapacityReached",
            alarm_name=f"{config.cluster_name}-MaxCapacityReached",
            alarm_description=(
                f"Workers at the chart's maximum ({config.worker_max_replicas}): "
                "KEDA cannot add more; raise worker.autoscaling.maxReplicaCount"
            ),
            metric=metric("WorkerCount"),
            threshold=config.worker_max_replicas,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # The two alarms above read silence as "all fine"; this one reads it as trouble.
        # The mirror publishes every minute, so no PendingJobs datum for STALE_AFTER_MINUTES
        # minutes means it is down, cannot reach the database or cannot publish.
        self.metrics_stale = cloudwatch.Alarm(
            self,
            "MetricsStale",
            alarm_name=f"{config.cluster_name}-MetricsStale",
            alarm_description=(
                f"No queue metrics from the metrics mirror for {STALE_AFTER_MINUTES} minutes: "
                "the other alarms cannot see the queue (docs/aws.md, Troubleshoot)"
            ),
            metric=metric("PendingJobs", statistic="SampleCount"),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=STALE_AFTER_MINUTES,
            datapoints_to_alarm=STALE_AFTER_MINUTES,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        self.alarms = [self.high_queue_depth, self.max_capacity_reached, self.metrics_stale]
        for alarm in self.alarms:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
            alarm.add_ok_action(cloudwatch_actions.SnsAction(self.topic))

        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=DASHBOARD_NAME, default_interval=Duration.hours(3)
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Pending Jobs",
                left=[pending],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=HIGH_QUEUE_DEPTH_THRESHOLD, label="HighQueueDepth"
                    )
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Running Workers",
                left=[workers],
                left_annotations=[
                    cloudwatch.HorizontalAnnotation(
                        value=config.worker_max_replicas, label="maxReplicaCount"
                    )
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(title="Jobs per Worker", left=[jobs_per_worker], width=8),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Failures (last 5 minutes) and completions (last minute)",
                left=[metric("RecentFailures", label="Recent failures")],
                right=[metric("CompletedJobs", label="Completed per minute")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Oldest Pending Age (seconds)",
                left=[metric("OldestPendingAgeSeconds", label="Oldest pending age")],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(
                title="Alarms",
                alarms=self.alarms,
                width=24,
            ),
        )

    def _topic_key(self) -> kms.Key:
        """A key CloudWatch may use: alarms cannot publish to a topic under the AWS-managed key."""
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="EasyClaw alarm topic",
            enable_key_rotation=True,
        )
        key.grant(
            iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*"
        )
        return key
