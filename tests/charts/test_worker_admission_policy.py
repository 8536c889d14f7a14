"""Workers may patch their own pod's deletion cost and nothing else.

RBAC grants the worker ServiceAccount ``patch`` on pods of its namespace (it
cannot name a pod that does not exist yet); the chart's
ValidatingAdmissionPolicy narrows that to the worker's own pod and the
``controller.kubernetes.io/pod-deletion-cost`` annotation. Its CEL
expressions are evaluated here with cel-python on admission requests shaped
as the API server builds them: a worker's token is bound to its pod, so the
request's user info carries ``authentication.kubernetes.io/pod-name``.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import pytest

from tests.charts.rendering import NAMESPACE, RELEASE, Rendered, render, validate_kubernetes

VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
COST = "controller.kubernetes.io/pod-deletion-cost"
WORKER_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-easyclaw-worker"
OWN_POD = f"{RELEASE}-easyclaw-worker-7d9f-abcde"
OTHER_POD = f"{RELEASE}-easyclaw-api-5c6b-fghij"


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render("kind", api_versions=(VAP_API,))


def pod(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/component": "worker", "pod-template-hash": "7d9f"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": f"{RELEASE}-easyclaw-worker-7d9f"}],
    }
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "worker", "image": "easyclaw:0.1.0"}]},
    }


class Policy:
    """The rendered policy's match condition and validations, compiled."""

    def __init__(self, policy: dict[str, Any]) -> None:
        environment = celpy.Environment()

        def compile_expression(text: str) -> Any:
            return environment.program(environment.compile(text))

        spec = policy["spec"]
        self.conditions = [compile_expression(c["expression"]) for c in spec["matchConditions"]]
        self.validations = [
            (compile_expression(v["expression"]), v["message"]) for v in spec["validations"]
        ]

    def review(
        self, old: dict[str, Any], new: dict[str, Any], username: str, pod_name: str | None
    ) -> list[str]:
        """The messages of the failed validations; [] if admitted (or not matched)."""
        user: dict[str, Any] = {"username": username}
        if pod_name is not None:
            user["extra"] = {"authentication.kubernetes.io/pod-name": [pod_name]}
        activation = {
            "request": celpy.json_to_cel({"operation": "UPDATE", "userInfo": user}),
            "object": celpy.json_to_cel(new),
            "oldObject": celpy.json_to_cel(old),
        }
        if not all(bool(condition.evaluate(activation)) for condition in self.conditions):
            return []
        return [
            message
            for program, message in self.validations
            if not bool(program.evaluate(activation))
        ]


@pytest.fixture(scope="module")
def policy(rendered: Rendered) -> Policy:
    (found,) = rendered.of_kind("ValidatingAdmissionPolicy")
    return Policy(found)


def test_policy_and_binding_apply_to_pod_updates_in_the_release_namespace(
    rendered: Rendered,
) -> None:
    (policy,) = rendered.of_kind("ValidatingAdmissionPolicy")
    (binding,) = rendered.of_kind("ValidatingAdmissionPolicyBinding")
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    constraints = policy["spec"]["matchConstraints"]
    assert constraints["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods"]}
    ]
    namespace = {"kubernetes.io/metadata.name": NAMESPACE}
    assert constraints["namespaceSelector"]["matchLabels"] == namespace
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == namespace
    # Cluster-scoped: the name carries the namespace, so two releases never collide.
    assert policy["metadata"]["name"].startswith(f"{NAMESPACE}-{RELEASE}-easyclaw-")
    # The account the policy is about is the one the worker pods run as.
    worker = rendered.get("Deployment", "worker")["spec"]["template"]["spec"]
    assert WORKER_ACCOUNT.endswith(f":{worker['serviceAccountName']}")
    assert WORKER_ACCOUNT in policy["spec"]["matchConditions"][0]["expression"]


def test_rbac_grants_only_patch_on_pods(rendered: Rendered) -> None:
    role = rendered.get("Role", "worker")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]


def test_a_worker_may_set_its_own_pods_deletion_cost(policy: Policy) -> None:
    idle = pod(OWN_POD, {COST: "0", "kubectl.kubernetes.io/restartedAt": "2025-01-01"})
    busy = copy.deepcopy(idle)
    busy["metadata"]["annotations"][COST] = "1000"
    assert policy.review(idle, busy, WORKER_ACCOUNT, OWN_POD) == []
    fresh = pod(OWN_POD)  # no annotations yet: the first patch adds one
    assert policy.review(fresh, pod(OWN_POD, {COST: "0"}), WORKER_ACCOUNT, OWN_POD) == []


def test_a_worker_may_not_touch_another_pod(policy: Policy) -> None:
    other = pod(OTHER_POD, {COST: "0"})
    patched = pod(OTHER_POD, {COST: "1000"})
    assert policy.review(other, patched, WORKER_ACCOUNT, OWN_POD) == [
        "the worker service account may only change its own pod"
    ]
    # A token not bound to a pod (no pod name in the user info) is refused too.
    assert policy.review(other, patched, WORKER_ACCOUNT, None) != []


@pytest.mark.parametrize(
    "change",
    ["other annotation", "removed annotation", "label", "owner", "finalizer", "spec"],
)
def test_a_worker_may_change_nothing_else_of_its_pod(policy: Policy, change: str) -> None:
    old = pod(OWN_POD, {COST: "0", "note": "kept"})
    new = copy.deepcopy(old)
    metadata = new["metadata"]
    if change == "other annotation":
        metadata["annotations"]["prometheus.io/scrape"] = "true"
    elif change == "removed annotation":
        del metadata["annotations"]["note"]
    elif change == "label":
        metadata["labels"]["app.kubernetes.io/component"] = "api"
    elif change == "owner":
        del metadata["ownerReferences"]
    elif change == "finalizer":
        metadata["finalizers"] = ["example.com/hold"]
    else:
        new["spec"]["activeDeadlineSeconds"] = 1
    failures = policy.review(old, new, WORKER_ACCOUNT, OWN_POD)
    assert failures == [f"the worker service account may only change the {COST} annotation"]


def test_other_users_are_left_to_rbac(policy: Policy) -> None:
    old = pod(OTHER_POD)
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["app.kubernetes.io/component"] = "api"
    assert (
        policy.review(old, new, "system:serviceaccount:kube-system:replicaset-controller", None)
        == []
    )
    assert policy.review(old, new, "kubernetes-admin", None) == []


def test_policy_needs_the_api_and_can_be_turned_off() -> None:
    # A cluster without admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy
    # (Kubernetes 1.29) gets the Role only.
    assert render("kind").of_kind("ValidatingAdmissionPolicy") == []
    off = render("kind", "worker.ownPodPolicy=false", api_versions=(VAP_API,))
    assert off.of_kind("ValidatingAdmissionPolicy") == []
    assert off.of_kind("ValidatingAdmissionPolicyBinding") == []
    no_cost = render("kind", "worker.podDeletionCost=false", api_versions=(VAP_API,))
    assert no_cost.of_kind("ValidatingAdmissionPolicy") == []
    assert [r for r in no_cost.of_kind("Role") if "worker" in r["metadata"]["name"]] == []


@pytest.mark.parametrize("kube_version", ["1.30.0", "1.33.0", "1.35.0"])
def test_policy_objects_are_valid_kubernetes(kube_version: str) -> None:
    rendered = render("kind", kube_version=kube_version, api_versions=(VAP_API,))
    for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
        (obj,) = rendered.of_kind(kind)
        validate_kubernetes(obj, kube_version)
