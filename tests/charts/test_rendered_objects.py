"""What the chart renders, object by object: the promises of the chart as assertions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.rendering import NAMESPACE, RELEASE, VALUE_SETS, Rendered, render

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "Pod"}


@pytest.fixture(params=VALUE_SETS)
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return render(request.param)


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def test_every_object_carries_the_standard_labels(rendered: Rendered) -> None:
    for obj in rendered.objects:
        labels = obj["metadata"].get("labels", {})
        name = f"{obj['kind']} {obj['metadata']['name']}"
        assert labels.get("app.kubernetes.io/name") == "easyclaw", name
        assert labels.get("app.kubernetes.io/instance") == RELEASE, name
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", name
        assert labels.get("app.kubernetes.io/component"), name
        assert labels.get("helm.sh/chart", "").startswith("easyclaw-"), name


def test_workload_selectors_match_their_pod_labels(rendered: Rendered) -> None:
    for obj in rendered.objects:
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            selector = obj["spec"]["selector"]["matchLabels"]
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items()
            assert "app.kubernetes.io/version" not in selector  # would break upgrades


def test_pods_run_unprivileged_on_a_read_only_root(rendered: Rendered) -> None:
    for obj, spec in rendered.pod_specs():
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, obj["metadata"]["name"]
        assert pod["runAsUser"] > 0
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        for container in containers(spec):
            context = container["securityContext"]
            name = f"{obj['metadata']['name']}/{container['name']}"
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name
            mounts = {mount["mountPath"] for mount in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"  # noqa: S108


def test_resources_request_what_they_limit(rendered: Rendered) -> None:
    """Fargate bills by requests and sizes the pod from them: requests == limits."""
    for obj, spec in rendered.pod_specs():
        for container in containers(spec):
            resources = container["resources"]
            name = f"{obj['metadata']['name']}/{container['name']}"
            assert resources["requests"] == resources["limits"], name
            assert set(resources["requests"]) == {"cpu", "memory"}, name


def test_long_running_containers_have_probes(rendered: Rendered) -> None:
    for obj in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet"):
        for container in obj["spec"]["template"]["spec"]["containers"]:
            name = f"{obj['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, name
            assert "readinessProbe" in container, name


def test_database_url_comes_only_from_a_secret(rendered: Rendered) -> None:
    for obj, spec in rendered.pod_specs():
        for container in containers(spec):
            for env in container.get("env", []):
                if env["name"] in {"DATABASE_URL", "POSTGRES_PASSWORD", "EASYCLAW_TOKEN"}:
                    assert "value" not in env, f"{obj['metadata']['name']}: {env['name']} inline"
                    assert "secretKeyRef" in env["valueFrom"]
    (config,) = rendered.of_kind("ConfigMap")
    for key, value in config["data"].items():
        assert key.startswith(("EASYCLAW_", "AWS_")), key
        assert "postgresql://" not in value
        assert not any(word in key for word in ("PASSWORD", "SECRET", "TOKEN", "DATABASE_URL"))


def test_production_values_generate_no_secret() -> None:
    """With an external database the chart only references the user's Secret."""
    rendered = render("eks-fargate")
    assert rendered.of_kind("Secret") == []
    api = rendered.get("Deployment", "api")
    (env,) = [
        e
        for e in api["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "DATABASE_URL"
    ]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "easyclaw-database", "key": "url"}


def test_development_database_is_a_single_official_postgres() -> None:
    rendered = render("kind")
    database = rendered.get("StatefulSet", "postgresql")
    assert database["spec"]["replicas"] == 1
    (container,) = database["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("docker.io/library/postgres:")
    (secret,) = rendered.of_kind("Secret")
    url = secret["stringData"]["DATABASE_URL"]
    assert url.startswith(f"postgresql://easyclaw:{secret['stringData']['POSTGRES_PASSWORD']}@")
    # Fully qualified, since KEDA's operator connects from its own namespace.
    assert f"@{RELEASE}-easyclaw-postgresql.{NAMESPACE}.svc:5432/easyclaw" in url


def test_operator_runs_alone_with_namespaced_least_privilege() -> None:
    rendered = render("kind")
    operator = rendered.get("Deployment", "operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["operator"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EASYCLAW_OPERATOR_NAMESPACES"] == NAMESPACE
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert container["ports"][0]["containerPort"] == int(env["EASYCLAW_OPERATOR_HEALTH_PORT"])

    role = rendered.get("Role", "operator")
    rules = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("easyclaw.dev", "easyclawjobs"): {"get", "list", "watch", "patch", "update", "delete"},
        ("easyclaw.dev", "easyclawjobs/status"): {"get", "patch", "update"},
        ("easyclaw.dev", "easyclawjobs/finalizers"): {"update"},
        ("", "events"): {"create", "patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
    }
    binding = rendered.get("RoleBinding", "operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-easyclaw-operator", "namespace": NAMESPACE}
    ]


def test_nothing_cluster_wide_but_aggregated_roles_and_no_wildcards(rendered: Rendered) -> None:
    kinds = {obj["kind"] for obj in rendered.objects}
    assert not kinds & {"ClusterRoleBinding", "CustomResourceDefinition"}
    for role in rendered.of_kind("ClusterRole"):
        # Only roles folded into the built-in view/edit roles; never bound by the chart.
        labels = role["metadata"]["labels"]
        assert "aggregationRule" not in role
        assert {k for k in labels if k.startswith("rbac.authorization.k8s.io/aggregate-to-")}
        assert {r for rule in role["rules"] for r in rule["resources"]} <= {"easyclawjobs"}
    for role in rendered.of_kind("Role") + rendered.of_kind("ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


def test_workers_may_only_patch_pods() -> None:
    rendered = render("kind")
    role = rendered.get("Role", "worker")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]
    worker = rendered.get("Deployment", "worker")
    spec = worker["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is True
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["EASYCLAW_WORKER_POD_DELETION_COST"]["value"] == "true"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_pods_without_kubernetes_calls_get_no_token(rendered: Rendered) -> None:
    for obj, spec in rendered.pod_specs():
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        if component not in {"worker", "operator"}:
            assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_worker_grace_period_covers_the_job_timeout(value_set: str) -> None:
    rendered = render(value_set)
    (config,) = rendered.of_kind("ConfigMap")
    timeout = float(config["data"]["EASYCLAW_JOB_DEFAULT_TIMEOUT_SECONDS"])
    spec = rendered.get("Deployment", "worker")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    shutdown_grace = float(env["EASYCLAW_WORKER_SHUTDOWN_GRACE_SECONDS"])
    assert shutdown_grace >= timeout
    assert spec["terminationGracePeriodSeconds"] >= shutdown_grace + 10


def test_keda_scales_workers_on_the_queue_with_the_issue_defaults() -> None:
    rendered = render("eks-fargate")
    scaled = rendered.get("ScaledObject", "worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == f"{RELEASE}-easyclaw-worker"
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 50)
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    # Scale out on the first reading that asks for it; the policies cap the growth per minute.
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert behavior["scaleUp"]["selectPolicy"] == "Max"
    assert behavior["scaleUp"]["policies"] == [
        {"type": "Percent", "value": 100, "periodSeconds": 60},
        {"type": "Pods", "value": 4, "periodSeconds": 60},
    ]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 300
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["metadata"]["targetQueryValue"] == "5"
    assert set(trigger["metadata"]) == {"query", "targetQueryValue", "activationTargetQueryValue"}
    auth = rendered.get("TriggerAuthentication", "worker")["spec"]
    assert auth == {
        "secretTargetRef": [{"parameter": "connection", "name": "easyclaw-database", "key": "url"}]
    }
    assert (
        trigger["authenticationRef"]["name"]
        == rendered.get("TriggerAuthentication", "worker")["metadata"]["name"]
    )
    worker = rendered.get("Deployment", "worker")
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"


def test_scale_to_zero_sets_min_zero_with_activation() -> None:
    scaled = render("scale-to-zero").get("ScaledObject", "worker")["spec"]
    assert scaled["minReplicaCount"] == 0
    assert scaled["triggers"][0]["metadata"]["activationTargetQueryValue"] == "0"
    default = render("kind").get("ScaledObject", "worker")["spec"]
    assert default["minReplicaCount"] == 1


def test_without_autoscaling_the_deployment_has_fixed_replicas() -> None:
    rendered = render("kind", "worker.autoscaling.enabled=false", "worker.replicaCount=3")
    assert rendered.of_kind("ScaledObject") == []
    assert rendered.get("Deployment", "worker")["spec"]["replicas"] == 3


def helm_template_without_keda(*sets: str) -> tuple[int, str, str]:
    """``helm template`` as against a cluster that serves no keda.sh/v1alpha1."""
    from tests.charts.rendering import CHART, run_helm, values_file

    args = ["template", RELEASE, str(CHART), "--values", str(values_file("kind"))]
    for item in sets:
        args += ["--set", item]
    result = run_helm(*args)
    return result.returncode, result.stdout, result.stderr


def test_without_keda_autoscaling_fails_and_says_how_to_install_keda() -> None:
    code, _, stderr = helm_template_without_keda()
    assert code != 0
    assert "no keda.sh/v1alpha1 API" in stderr
    assert "helm install keda kedacore/keda" in stderr
    assert "worker.autoscaling.enabled=false" in stderr


def test_without_keda_and_autoscaling_off_workers_have_fixed_replicas() -> None:
    import yaml

    code, stdout, stderr = helm_template_without_keda(
        "worker.autoscaling.enabled=false", "worker.replicaCount=2"
    )
    assert code == 0, stderr
    objects = [doc for doc in yaml.safe_load_all(stdout) if doc]
    assert not [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    (worker,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == f"{RELEASE}-easyclaw-worker"
    ]
    assert worker["spec"]["replicas"] == 2


@pytest.mark.parametrize("component", ["api", "worker", "operator", "metricsMirror"])
def test_every_component_takes_env_from_existing_secrets(component: str) -> None:
    """LLM keys and other secrets reach a component without passing through values."""
    rendered = render(
        "eks-fargate",
        f"{component}.extraEnvFrom[0].secretRef.name=llm-keys",
        f"{component}.secretEnv.EASYCLAW_OPENAI_API_KEY.name=openai",
        f"{component}.secretEnv.EASYCLAW_OPENAI_API_KEY.key=api-key",
    )
    suffix = {"metricsMirror": "metrics-mirror"}.get(component, component)
    (container,) = rendered.get("Deployment", suffix)["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [
        {"configMapRef": {"name": f"{RELEASE}-easyclaw"}},
        {"secretRef": {"name": "llm-keys"}},
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["EASYCLAW_OPENAI_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "openai", "key": "api-key"}
    }
    # Only the component asked for gets it.
    others = {"api", "worker", "operator", "metrics-mirror"} - {suffix}
    for other in others:
        (plain,) = rendered.get("Deployment", other)["spec"]["template"]["spec"]["containers"]
        assert plain["envFrom"] == [{"configMapRef": {"name": f"{RELEASE}-easyclaw"}}], other
        assert "EASYCLAW_OPENAI_API_KEY" not in {e["name"] for e in plain["env"]}, other


def test_migrations_take_env_from_existing_secrets() -> None:
    rendered = render("eks-fargate", "migrations.extraEnvFrom[0].secretRef.name=db-tls")
    (container,) = rendered.get("Job", "migrations")["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "db-tls"}}]


@pytest.mark.parametrize(
    "override",
    ["worker.extraEnvFrom[0].name=llm", "worker.secretEnv.EASYCLAW_OPENAI_API_KEY.name=only"],
)
def test_env_from_secrets_is_checked_by_the_schema(override: str) -> None:
    from tests.charts.rendering import CHART, run_helm, values_file

    result = run_helm(
        "template", RELEASE, str(CHART), "--values", str(values_file("kind")),
        "--api-versions", "keda.sh/v1alpha1", "--set", override,
    )  # fmt: skip
    assert result.returncode != 0
    assert "values don't meet the specifications" in result.stderr


def test_image_digest_pins_what_runs() -> None:
    digest = "sha256:" + "b" * 64
    rendered = render("eks-fargate", f"image.digest={digest}")
    images = {c["image"] for _, spec in rendered.pod_specs() for c in spec["containers"]}
    repository = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/easyclaw"
    assert images == {f"{repository}:0.1.0@{digest}"}
    plain = render("eks-fargate").pod_specs()
    without = {c["image"] for _, spec in plain for c in spec["containers"]}
    assert without == {f"{repository}:0.1.0"}


def test_default_image_is_the_one_you_build_not_a_registry_we_never_published() -> None:
    import yaml

    from tests.charts.rendering import CHART

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "easyclaw"
    text = (CHART / "values.yaml").read_text()
    assert "build from this repository's Dockerfile and push" in text
    api = render("kind").get("Deployment", "api")
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == "easyclaw:0.1.0"


def test_api_behind_an_alb_with_ip_targets() -> None:
    rendered = render("eks-fargate")
    ingress = rendered.get("Ingress", "api")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert ingress["spec"]["ingressClassName"] == "alb"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == rendered.get("Service", "api")["metadata"]["name"]
    pdb = rendered.get("PodDisruptionBudget", "api")
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert render("kind").of_kind("Ingress") == []


def test_service_accounts_carry_irsa_annotations() -> None:
    rendered = render("eks-fargate")
    for component in ("api", "worker", "metrics-mirror"):
        account = rendered.get("ServiceAccount", component)
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
            f"role/easyclaw-{component}"
        )
        deployment = rendered.get("Deployment", component)
        assert (
            deployment["spec"]["template"]["spec"]["serviceAccountName"]
            == account["metadata"]["name"]
        )


def test_metrics_mirror_is_off_by_default_and_single_when_on() -> None:
    assert not [o for o in render("kind").objects if "metrics-mirror" in o["metadata"]["name"]]
    mirror = render("eks-fargate").get("Deployment", "metrics-mirror")
    assert mirror["spec"]["replicas"] == 1
    (container,) = mirror["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["metrics-mirror"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EASYCLAW_METRICS_MIRROR_HEALTH_PORT"] == "8081"
    assert env["EASYCLAW_CLOUDWATCH_NAMESPACE"] == "EasyClaw"
    assert env["EASYCLAW_METRICS_MIRROR_INTERVAL_SECONDS"] == "60"
    assert env["EASYCLAW_METRICS_DIMENSIONS"] == "Cluster=prod-eks"
    assert env["AWS_REGION"] == "eu-west-1"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 8081}]


def test_migrations_run_as_a_pre_install_hook_against_an_external_database() -> None:
    job = render("eks-fargate").get("Job", "migrations")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert hooks == ["pre-install", "pre-upgrade"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    # With the development database (part of the release) it runs alongside it instead.
    (dev_job,) = render("kind").of_kind("Job")
    assert "annotations" not in dev_job["metadata"]


def test_helm_test_submits_an_echo_job_through_the_api_service() -> None:
    rendered = render("kind")
    (pod,) = rendered.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    script = container["args"][0]
    assert "easyclaw submit ECHO" in script
    assert "COMPLETED" in script
    env = {e["name"]: e.get("value") for e in container["env"]}
    service = rendered.get("Service", "api")
    assert (
        env["EASYCLAW_API_URL"]
        == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    )


def test_notes_tell_how_to_submit_a_first_job(tmp_path: Any) -> None:
    """NOTES.txt as `helm install` prints it (Helm 4's client-side dry run needs no cluster)."""
    from tests.charts.rendering import CHART, run_helm, values_file

    def notes(value_set: str, *sets: str) -> str:
        # A client-side dry run sees no KEDA API (it has no --api-versions).
        args = ["--set", "worker.autoscaling.enabled=false"]
        for item in sets:
            args += ["--set", item]
        result = run_helm(
            "install", "easyclaw", str(CHART), "--namespace", "easyclaw", "--dry-run=client",
            "--values", str(values_file(value_set)), "--kubeconfig", str(tmp_path / "none"),
            *args,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout[result.stdout.index("NOTES:") :]

    kind = notes("kind")
    assert "kubectl -n easyclaw port-forward svc/easyclaw-api 8000:80" in kind
    assert "-H 'x-user-id: test-user-id'" in kind
    assert "POST $EASYCLAW_API_URL/jobs" in kind
    assert "helm test easyclaw -n easyclaw" in kind
    assert "kubectl -n easyclaw apply -f examples/easyclawjob.yaml" in kind
    assert "helmTest.tokenSecret" not in kind
    eks = notes("eks-fargate")
    assert "get ingress easyclaw-api" in eks
    assert "helmTest.tokenSecret" not in eks  # the eks values name a token Secret
    without_token = notes("eks-fargate", "helmTest.tokenSecret=")
    assert "refuses calls without a token" in without_token
    assert "create secret generic easyclaw-helm-test-token --from-literal=token=" in without_token
    assert "Authorization: Bearer $TOKEN" in eks
    assert "x-user-id" not in eks


def test_no_service_links_leak_into_the_settings_prefix() -> None:
    """Release "easyclaw" has a Service easyclaw-api: its links would set EASYCLAW_API_PORT."""
    from tests.charts.rendering import CHART, run_helm

    result = run_helm(
        "template", "easyclaw", str(CHART), "--values", str(CHART / "ci" / "kind-values.yaml"),
        "--api-versions", "keda.sh/v1alpha1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "name: easyclaw-api\n" in result.stdout
    for _, spec in render("kind").pod_specs():
        assert spec["enableServiceLinks"] is False


def test_easyclawjobs_join_the_built_in_view_and_edit_roles() -> None:
    rendered = render("kind")
    roles = {r["metadata"]["name"].rsplit("-", 1)[1]: r for r in rendered.of_kind("ClusterRole")}
    assert set(roles) == {"view", "edit"}
    view, edit = roles["view"], roles["edit"]

    def aggregated_to(role: dict[str, Any]) -> set[str]:
        return {
            key.removeprefix("rbac.authorization.k8s.io/aggregate-to-")
            for key, value in role["metadata"]["labels"].items()
            if key.startswith("rbac.authorization.k8s.io/aggregate-to-") and value == "true"
        }

    assert aggregated_to(view) == {"view", "edit", "admin"}
    assert aggregated_to(edit) == {"edit", "admin"}, "viewers must not create jobs as any user"
    assert view["rules"] == [
        {
            "apiGroups": ["easyclaw.dev"],
            "resources": ["easyclawjobs"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    (rule,) = edit["rules"]
    assert set(rule["verbs"]) == {"create", "update", "patch", "delete", "deletecollection"}
    # Status is the operator's: nobody edits it through these roles.
    assert rule["resources"] == ["easyclawjobs"]
    # Cluster-scoped names carry the namespace, so two releases never collide.
    assert view["metadata"]["name"] == f"{NAMESPACE}-{RELEASE}-easyclaw-easyclawjobs-view"
    assert render("kind", "operator.aggregateClusterRoles=false").of_kind("ClusterRole") == []
    assert render("kind", "operator.enabled=false").of_kind("ClusterRole") == []
