"""Generate charts/easyclaw/values.schema.json from values.yaml.

Types come from the defaults in values.yaml; ``CONSTRAINTS`` adds what a
default cannot say (allowed words, ranges, free-form maps). Every object is
closed (``additionalProperties: false``), so a misspelt value fails
``helm install`` instead of being ignored.

    python charts/values_schema.py          # rewrite the schema
    python charts/values_schema.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "easyclaw"
SCHEMA_PATH = CHART / "values.schema.json"

_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "required": ["requests", "limits"],
    "properties": {
        part: {
            "type": "object",
            "additionalProperties": False,
            "required": ["cpu", "memory"],
            "properties": {
                "cpu": {"type": ["string", "number"]},
                "memory": {"type": "string"},
            },
        }
        for part in ("requests", "limits")
    },
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_FREE_OBJECT = {"type": "object"}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_PORTS = {"type": "array", "items": _PORT}
_CIDRS = {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-fA-F.:]+/[0-9]+$"}}
_ENV_NAME = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
_NAMED_REF = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "optional": {"type": "boolean"}},
    "additionalProperties": False,
}
# Container envFrom entries: a ConfigMap or a Secret, each with an optional prefix.
_ENV_FROM = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "configMapRef": _NAMED_REF,
            "secretRef": _NAMED_REF,
            "prefix": {"type": "string"},
        },
        "oneOf": [{"required": ["configMapRef"]}, {"required": ["secretRef"]}],
    },
}
# One variable per Secret key: {ENV_NAME: {name: secret, key: key}}.
_SECRET_ENV = {
    "type": "object",
    "propertyNames": _ENV_NAME,
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "key"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "key": {"type": "string", "minLength": 1},
        },
    },
}

# Keyed by dotted path; "*" matches any one key.
CONSTRAINTS: dict[str, dict[str, Any]] = {
    # Helm hands every subchart the umbrella's `global` values.
    "global": _FREE_OBJECT,
    "image.digest": {"type": "string", "pattern": "^(sha256:[a-f0-9]{64})?$"},
    "config.env": {"enum": ["development", "production"]},
    "config.logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
    "config.authMode": {"enum": ["jwt", "header"]},
    "config.jobDefaultTimeoutSeconds": {"type": "integer", "minimum": 1},
    "config.jobDefaultMaxAttempts": {"type": "integer", "minimum": 1, "maximum": 100},
    "config.retentionHours": {"type": "number", "minimum": 0},
    "config.extraEnv": {
        "type": "object",
        "propertyNames": {"pattern": "^(EASYCLAW|AWS)_[A-Z0-9_]+$"},
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    },
    "image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "postgresql.image.pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    "imagePullSecrets": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
    },
    "api.port": _PORT,
    "api.metricsPort": _PORT,
    "api.service.port": _PORT,
    "api.service.metricsPort": _PORT,
    "api.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "api.ingress.scheme": {"enum": ["internet-facing", "internal"]},
    "api.replicaCount": {"type": "integer", "minimum": 1},
    "api.podDisruptionBudget.minAvailable": {"type": ["integer", "string"]},
    "worker.healthPort": _PORT,
    "worker.concurrency": {"type": "integer", "minimum": 1},
    "worker.userMaxRunning": {"type": "integer", "minimum": 0},
    "worker.rateLimits": {"type": "string", "maxLength": 4096},
    "worker.replicaCount": {"type": "integer", "minimum": 0},
    "worker.terminationMarginSeconds": {"type": "integer", "minimum": 0},
    "worker.autoscaling.targetQueryValue": {"type": "integer", "minimum": 1},
    "worker.autoscaling.minReplicaCount": {"type": "integer", "minimum": 0},
    "worker.autoscaling.maxReplicaCount": {"type": "integer", "minimum": 1},
    "worker.autoscaling.activationTargetQueryValue": {"type": "integer", "minimum": 0},
    "worker.autoscaling.pollingInterval": {"type": "integer", "minimum": 1},
    "worker.autoscaling.cooldownPeriod": {"type": "integer", "minimum": 0},
    "worker.autoscaling.scaleUpStabilizationSeconds": {
        "type": "integer",
        "minimum": 0,
        "maximum": 3600,
    },
    "worker.autoscaling.scaleUpPeriodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
    "worker.autoscaling.scaleUpPercent": {"type": "integer", "minimum": 1},
    "worker.autoscaling.scaleUpPods": {"type": "integer", "minimum": 1},
    "worker.autoscaling.scaleDownStabilizationSeconds": {
        "type": "integer",
        "minimum": 0,
        "maximum": 3600,
    },
    "operator.healthPort": _PORT,
    "metricsMirror.healthPort": _PORT,
    "metricsMirror.intervalSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
    "metricsMirror.dimensions": _STRING_MAP,
    "migrations.backoffLimit": {"type": "integer", "minimum": 0},
    "migrations.activeDeadlineSeconds": {"type": "integer", "minimum": 1},
    "helmTest.timeoutSeconds": {"type": "integer", "minimum": 1, "maximum": 60},
    "metrics.serviceMonitor.interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
    "metrics.serviceMonitor.labels": _STRING_MAP,
    "metrics.grafanaDashboard.annotations": _STRING_MAP,
    "networkPolicy.prometheus.namespaceSelector": _FREE_OBJECT,
    "networkPolicy.prometheus.podSelector": _FREE_OBJECT,
    "networkPolicy.egress.databaseCidrs": _CIDRS,
    "networkPolicy.egress.databasePort": _PORT,
    "networkPolicy.egress.webCidrs": _CIDRS,
    "networkPolicy.egress.webPorts": _PORTS,
    "networkPolicy.egress.kubernetesApiPorts": _PORTS,
    "networkPolicy.egress.extraRules": {"type": "array", "items": _FREE_OBJECT},
    "securityGroupPolicy.securityGroupIds": {
        "type": "array",
        "items": {"type": "string", "pattern": "^sg-[0-9a-f]+$"},
    },
    "*.extraEnvFrom": _ENV_FROM,
    "*.secretEnv": _SECRET_ENV,
    "*.resources": _RESOURCES,
    "*.serviceAccount.annotations": _STRING_MAP,
    "*.ingress.annotations": _STRING_MAP,
    "*.podAnnotations": _STRING_MAP,
    "*.nodeSelector": _STRING_MAP,
    "*.tolerations": {"type": "array", "items": _FREE_OBJECT},
    "*.affinity": _FREE_OBJECT,
}


def _constraint(path: str) -> dict[str, Any] | None:
    if path in CONSTRAINTS:
        return CONSTRAINTS[path]
    _, _, rest = path.partition(".")
    if rest and f"*.{rest}" in CONSTRAINTS:
        return CONSTRAINTS[f"*.{rest}"]
    return None


def schema_for(value: Any, path: str = "") -> dict[str, Any]:
    """JSON schema of one value from its default and the constraints for its path."""
    constraint = _constraint(path)
    if constraint is not None and ("type" in constraint or "enum" not in constraint):
        return dict(constraint)
    if isinstance(value, dict):
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                key: schema_for(child, f"{path}.{key}" if path else key)
                for key, child in value.items()
            },
        }
    elif isinstance(value, bool):
        schema = {"type": "boolean"}
    elif isinstance(value, int):
        schema = {"type": "integer"}
    elif isinstance(value, float):
        schema = {"type": "number"}
    elif isinstance(value, str):
        schema = {"type": "string"}
    elif isinstance(value, list):
        schema = {"type": "array"}
    else:
        raise TypeError(f"{path}: no schema for {value!r}")
    if constraint is not None:
        schema.update(constraint)
    return schema


def generate() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Values of the easyclaw chart (generated by charts/values_schema.py)",
        **schema_for(values),
    }
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    text = generate()
    if "--check" in sys.argv[1:]:
        if SCHEMA_PATH.read_text() != text:
            sys.stderr.write("values.schema.json is out of date: run charts/values_schema.py\n")
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
