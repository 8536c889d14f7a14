"""Metrics reach Prometheus inside the cluster and never the internet.

The API's /metrics has a container port of its own (``metrics``) that the
Service names and the Ingress never routes to; the Prometheus Operator's
monitors and the Grafana dashboard are optional and rendered only when the
cluster serves their API. The dashboard's queries are checked against what
a real API process and a real worker process expose.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from easyclaw.core.models import JobStatus
from tests.charts.rendering import CHART, RELEASE, render, run_helm, values_file
from tests.support.api_server import ApiServer
from tests.support.ports import free_port
from tests.support.processes import WorkerProcesses
from tests.support.waiting import wait_for
from tests.worker.helpers import Conn, enqueue, wait_status

MONITORING = ("metrics.serviceMonitor.enabled=true", "metrics.grafanaDashboard.enabled=true")


def test_api_serves_metrics_on_a_named_port_the_ingress_never_routes_to() -> None:
    rendered = render("eks-fargate")
    (container,) = rendered.get("Deployment", "api")["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8000, "metrics": 9090}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EASYCLAW_API_METRICS_PORT"] == "9090"
    assert env["EASYCLAW_API_PORT"] == "8000"
    # Probes stay on the API port.
    assert container["readinessProbe"]["httpGet"]["port"] == "http"

    service = rendered.get("Service", "api")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        "http": "http",
        "metrics": "metrics",
    }
    ingress = rendered.get("Ingress", "api")
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": service["metadata"]["name"], "port": {"name": "http"}}]
    assert "9090" not in json.dumps(ingress)


def _template(*args: str) -> Any:
    return run_helm(
        "template", RELEASE, str(CHART), "--values", str(values_file("kind")),
        "--api-versions", "keda.sh/v1alpha1", *args,
    )  # fmt: skip


def test_monitors_need_the_prometheus_operator() -> None:
    result = _template("--set", MONITORING[0])
    assert result.returncode != 0
    assert "monitoring.coreos.com/v1" in result.stderr
    assert "metrics.serviceMonitor.enabled=false" in result.stderr
    assert not [o for o in render("kind").objects if o["kind"] in {"ServiceMonitor", "PodMonitor"}]


def _rendered_with_monitoring() -> Any:
    import yaml

    args = ["--api-versions", "monitoring.coreos.com/v1"]
    for item in MONITORING:
        args += ["--set", item]
    args += ["--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack"]
    result = _template(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_service_monitor_scrapes_the_api_metrics_port_and_pod_monitor_the_workers() -> None:
    objects = _rendered_with_monitoring()
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    (service,) = [
        o for o in objects if o["kind"] == "Service" and o["metadata"]["name"].endswith("-api")
    ]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}

    (pods,) = [o for o in objects if o["kind"] == "PodMonitor"]
    (worker,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("worker")
    ]
    template = worker["spec"]["template"]
    assert pods["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    (endpoint,) = pods["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in template["spec"]["containers"][0]["ports"]}
    assert endpoint["path"] == "/metrics"


def dashboard() -> dict[str, Any]:
    objects = _rendered_with_monitoring()
    (config_map,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    loaded: dict[str, Any] = json.loads(config_map["data"]["easyclaw.json"])
    return loaded


def test_grafana_dashboard_is_a_labelled_config_map_of_valid_json() -> None:
    board = dashboard()
    assert board["uid"] == "easyclaw"
    assert len(board["panels"]) >= 8
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    assert not [o for o in render("kind").objects if "dashboard" in o["metadata"]["name"]]


def metric_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(easyclaw_[a-z_]+)", expression))


async def scrape(url: str) -> set[str]:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(url)).text
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


async def test_every_dashboard_query_names_a_metric_easyclaw_exposes(
    api: ApiServer, worker_processes: WorkerProcesses, conn: Conn
) -> None:
    port = free_port()
    worker_processes.start(
        1, EASYCLAW_WORKER_HEALTH_PORT=str(port), EASYCLAW_WORKER_HEALTH_HOST="127.0.0.1"
    )
    worker_metrics = f"http://127.0.0.1:{port}/metrics"

    async def worker_up() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as http:
                return (await http.get(worker_metrics)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(worker_up, timeout=30, interval=0.1)
    # A CHAT job (offline echo provider) makes the worker report model calls.
    chat = await enqueue(conn, "CHAT", {"message": "hello"})
    await wait_status(conn, chat.id, JobStatus.COMPLETED)
    exposed = await scrape(api.metrics_url) | await scrape(worker_metrics)
    used = {
        name
        for panel in dashboard()["panels"]
        for target in panel["targets"]
        for name in metric_names(target["expr"])
    }
    assert len(used) >= 10
    assert used <= exposed, f"the dashboard queries metrics nobody exposes: {used - exposed}"
