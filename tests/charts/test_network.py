"""Network isolation as rendered: NetworkPolicy where it is enforced, security groups on Fargate.

The NetworkPolicy tests evaluate the rendered policies the way a policy engine
does (a pod selected by no policy of a direction is open in that direction;
a selected pod allows the union of its policies' rules) and ask concrete
questions: may the helm test pod reach the API? May the API reach the
Kubernetes API? May anyone but Prometheus read the metrics?
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pytest

from tests.charts.rendering import (
    NAMESPACE,
    RELEASE,
    Rendered,
    render,
    run_helm,
    validate_kubernetes,
    values_file,
)

POLICIES = ("networkPolicy.enabled=true",)
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
INTERNET = "203.0.113.7"


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class Peer:
    """The other end of a connection: a pod (labels, namespace labels) or an address."""

    labels: dict[str, str] | None = None
    namespace: dict[str, str] | None = None
    address: str | None = None


def peer_matches(rule_peer: dict[str, Any], peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if peer.address is None:
            return False
        address = ipaddress.ip_address(peer.address)
        block = rule_peer["ipBlock"]
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(
            address in ipaddress.ip_network(cidr) for cidr in block.get("except", [])
        )
    if peer.labels is None:
        return False
    namespace_labels = peer.namespace or {"kubernetes.io/metadata.name": NAMESPACE}
    if "namespaceSelector" in rule_peer:
        if not selects(rule_peer["namespaceSelector"], namespace_labels):
            return False
    elif namespace_labels.get("kubernetes.io/metadata.name") != NAMESPACE:
        return False  # a bare podSelector means the policy's own namespace
    return selects(rule_peer.get("podSelector", {}), peer.labels)


def rule_allows(rule: dict[str, Any], side: str, peer: Peer, port: int, protocol: str) -> bool:
    peers = rule.get(side)
    if peers and not any(peer_matches(p, peer) for p in peers):
        return False
    ports = rule.get("ports")
    return not ports or any(
        p.get("protocol", "TCP") == protocol and p.get("port") == port for p in ports
    )


def allowed(
    rendered: Rendered,
    direction: str,
    pod: dict[str, str],
    peer: Peer,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether a policy engine lets this connection through on ``pod``'s side."""
    side = "from" if direction == "Ingress" else "to"
    key = "ingress" if direction == "Ingress" else "egress"
    applying = [
        p
        for p in rendered.of_kind("NetworkPolicy")
        if direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], pod)
    ]
    if not applying:
        return True
    return any(
        rule_allows(rule, side, peer, port, protocol)
        for policy in applying
        for rule in policy["spec"].get(key) or []
    )


def pod_labels(rendered: Rendered, component: str) -> dict[str, str]:
    for obj, _ in rendered.pod_specs():
        template = obj if obj["kind"] == "Pod" else obj["spec"]["template"]
        labels: dict[str, str] = template["metadata"]["labels"]
        if labels["app.kubernetes.io/component"] == component:
            return labels
    raise AssertionError(f"no {component} pod")


@pytest.fixture(scope="module")
def kind() -> Rendered:
    return render("kind", *POLICIES)


def test_policies_are_valid_kubernetes(kind: Rendered) -> None:
    policies = kind.of_kind("NetworkPolicy")
    assert len(policies) == 6
    for policy in policies:
        validate_kubernetes(policy, "1.33.0")


def test_the_api_port_is_open_and_its_metrics_only_to_prometheus(kind: Rendered) -> None:
    api = pod_labels(kind, "api")
    anyone = Peer(address=INTERNET)
    prometheus = Peer(labels=PROMETHEUS, namespace=MONITORING)
    neighbour = Peer(labels={"app": "something-else"})
    assert allowed(kind, "Ingress", api, anyone, 8000)
    assert allowed(kind, "Ingress", api, prometheus, 9090)
    assert not allowed(kind, "Ingress", api, anyone, 9090)
    assert not allowed(kind, "Ingress", api, neighbour, 9090)
    worker = pod_labels(kind, "worker")
    assert allowed(kind, "Ingress", worker, prometheus, 8080)
    assert not allowed(kind, "Ingress", worker, neighbour, 8080)
    for component in ("operator", "migrations", "test"):
        assert not allowed(kind, "Ingress", pod_labels(kind, component), neighbour, 8080)


def test_the_development_database_takes_only_the_release_and_keda(kind: Rendered) -> None:
    database = pod_labels(kind, "postgresql")
    assert allowed(kind, "Ingress", database, Peer(labels=pod_labels(kind, "worker")), 5432)
    keda = Peer(labels={"app.kubernetes.io/name": "keda-operator"}, namespace={"name": "keda"})
    assert allowed(kind, "Ingress", database, keda, 5432)
    assert not allowed(kind, "Ingress", database, Peer(labels={"app": "other"}), 5432)


@pytest.mark.parametrize("component", ["api", "worker", "operator", "migrations", "test"])
def test_every_pod_may_resolve_names_and_reach_the_database(kind: Rendered, component: str) -> None:
    pod = pod_labels(kind, component)
    dns = Peer(labels={"k8s-app": "kube-dns"}, namespace={"name": "kube-system"})
    assert allowed(kind, "Egress", pod, dns, 53, "UDP")
    assert allowed(kind, "Egress", pod, dns, 53, "TCP")
    assert allowed(kind, "Egress", pod, Peer(labels=pod_labels(kind, "postgresql")), 5432)
    # Egress is restricted: no SSH, no SMTP, nothing on odd ports.
    for port in (22, 25, 8443):
        assert not allowed(kind, "Egress", pod, Peer(address=INTERNET), port), port


def test_web_egress_for_models_storage_and_research(kind: Rendered) -> None:
    worker = pod_labels(kind, "worker")
    for port in (80, 443):
        assert allowed(kind, "Egress", worker, Peer(address=INTERNET), port)


def test_only_the_operator_and_workers_reach_the_kubernetes_api(kind: Rendered) -> None:
    control_plane = Peer(address="172.18.0.2")  # kind's API server listens on 6443
    assert allowed(kind, "Egress", pod_labels(kind, "operator"), control_plane, 6443)
    assert allowed(kind, "Egress", pod_labels(kind, "worker"), control_plane, 6443)
    assert not allowed(kind, "Egress", pod_labels(kind, "api"), control_plane, 6443)
    assert not allowed(kind, "Egress", pod_labels(kind, "migrations"), control_plane, 6443)


def test_the_helm_test_pod_reaches_the_api(kind: Rendered) -> None:
    test_pod = pod_labels(kind, "test")
    assert allowed(kind, "Egress", test_pod, Peer(labels=pod_labels(kind, "api")), 8000)
    assert allowed(kind, "Ingress", pod_labels(kind, "api"), Peer(labels=test_pod), 8000)


def test_an_external_database_is_reached_on_its_cidrs_and_port() -> None:
    rendered = render(
        "eks-fargate",
        *POLICIES,
        "securityGroupPolicy.enabled=false",
        "networkPolicy.egress.databaseCidrs={10.0.0.0/16}",
        "networkPolicy.egress.databasePort=6432",
    )
    api = pod_labels(rendered, "api")
    assert allowed(rendered, "Egress", api, Peer(address="10.0.3.4"), 6432)
    assert not allowed(rendered, "Egress", api, Peer(address="192.0.2.1"), 6432)


def test_extra_egress_rules_are_added() -> None:
    rendered = render(
        "kind",
        *POLICIES,
        "networkPolicy.egress.extraRules[0].to[0].ipBlock.cidr=10.1.0.0/16",
        "networkPolicy.egress.extraRules[0].ports[0].port=11434",
    )
    worker = pod_labels(rendered, "worker")
    assert allowed(rendered, "Egress", worker, Peer(address="10.1.2.3"), 11434)  # Ollama
    assert not allowed(rendered, "Egress", worker, Peer(address="10.2.0.1"), 11434)


def test_fargate_uses_security_groups_for_pods_instead() -> None:
    rendered = render("eks-fargate")
    assert rendered.of_kind("NetworkPolicy") == [], "Fargate ignores NetworkPolicy"
    (policy,) = rendered.of_kind("SecurityGroupPolicy")
    assert policy["apiVersion"] == "vpcresources.k8s.aws/v1beta1"
    assert policy["spec"]["securityGroups"] == {"groupIds": ["sg-0123456789abcdef0"]}
    assert set(policy["spec"]) == {"podSelector", "securityGroups"}
    # Every pod of the release, and nothing else.
    for obj, _ in rendered.pod_specs():
        template = obj if obj["kind"] == "Pod" else obj["spec"]["template"]
        assert selects(policy["spec"]["podSelector"], template["metadata"]["labels"])
    assert not selects(policy["spec"]["podSelector"], {"app.kubernetes.io/instance": "other"})
    assert render("kind").of_kind("SecurityGroupPolicy") == []


def test_security_group_policy_needs_ids() -> None:
    from tests.charts.rendering import CHART

    result = run_helm(
        "template", RELEASE, str(CHART), "--values", str(values_file("eks-fargate")),
        "--api-versions", "keda.sh/v1alpha1", "--set", "securityGroupPolicy.securityGroupIds=null",
    )  # fmt: skip
    assert result.returncode != 0
    assert "securityGroupPolicy.securityGroupIds" in result.stderr
