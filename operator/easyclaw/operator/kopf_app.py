"""kopf wiring: the decorators and the operator settings, nothing else.

Every handler delegates to a plain function in ``handlers`` with the
``OperatorRuntime`` that ``main`` puts into kopf's memo. The handlers live
in their own registry (not kopf's global one), so importing this module
registers nothing elsewhere and tests run exactly this operator.

Settings, chosen on purpose:

* **Peering off** (``standalone``): the chart runs one replica with the
  ``Recreate`` strategy, so two operators never overlap, and peering would
  need a cluster-wide KopfPeering CRD plus RBAC for it.
* **Scanning off**: kopf would otherwise list CRDs and namespaces cluster-wide
  to discover resources, which a namespaced Role does not allow; the
  namespaces to watch are given (``EASYCLAW_OPERATOR_NAMESPACES``) and the
  resource is fixed.
* **Events at WARNING**: kopf turns handler errors and our ``InvalidSpec``
  warnings into Kubernetes Events (shown by ``kubectl describe ecj``), but
  not every routine INFO line, which would flood the namespace's events.
* **Progress and diff-base in annotations** (``easyclaw.dev/...``): the
  status belongs to users and mirrors the job row; its schema is structural,
  so kopf's own ``status.kopf`` would be pruned by the API server anyway.
* **Finalizer ``easyclaw.dev/cancel-job``**: says what it waits for.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from easyclaw.operator import handlers
from easyclaw.operator.resource import FINALIZER, GROUP, PLURAL, VERSION
from easyclaw.operator.runtime import OperatorRuntime

REGISTRY = kopf.OperatorRegistry()

# A follower returns as soon as kopf asks it to stop (resource deleted, operator
# exiting); should it not within this long, kopf cancels it.
FOLLOWER_STOP_SECONDS = 1.0


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.peering.mandatory = False
    settings.scanning.disabled = True
    settings.posting.enabled = True
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "easyclaw-operator"
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # Reconnect watches regularly, so that a silently dropped connection is noticed.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    return settings


def _runtime(memo: Any) -> OperatorRuntime:
    runtime: OperatorRuntime = memo.runtime
    return runtime


def _namespaced(namespace: str | None) -> str:
    if namespace is None:  # the CRD is namespaced; kopf passes None only for cluster objects
        raise kopf.PermanentError("EasyClawJob resources must be namespaced")
    return namespace


@kopf.on.login(registry=REGISTRY)
async def login(memo: Any, **kwargs: Any) -> kopf.ConnectionInfo:
    return handlers.login(_runtime(memo), **kwargs)


@kopf.on.create(GROUP, VERSION, PLURAL, id="enqueue", registry=REGISTRY)
async def enqueue(
    memo: Any,
    spec: kopf.Spec,
    uid: str,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    await handlers.create_job(
        _runtime(memo),
        spec=spec,
        uid=uid,
        name=name,
        namespace=_namespaced(namespace),
        body=body,
        patch=patch,
    )


@kopf.daemon(
    GROUP,
    VERSION,
    PLURAL,
    id="follow",
    when=lambda status, **_: handlers.should_follow(status),
    cancellation_backoff=FOLLOWER_STOP_SECONDS,
    cancellation_timeout=FOLLOWER_STOP_SECONDS,
    registry=REGISTRY,
)
async def follow(
    memo: Any,
    spec: kopf.Spec,
    status: kopf.Status,
    uid: str,
    name: str,
    namespace: str | None,
    stopped: kopf.DaemonStopped,
    **_: Any,
) -> None:
    following = handlers.follow_job(
        _runtime(memo),
        spec=spec,
        status=status,
        uid=uid,
        name=name,
        namespace=_namespaced(namespace),
    )
    await handlers.run_until_stopped(following, stopped)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="cancel", registry=REGISTRY)
async def cancel(
    memo: Any,
    spec: kopf.Spec,
    status: kopf.Status,
    uid: str,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    **_: Any,
) -> None:
    await handlers.cancel_job_on_delete(
        _runtime(memo),
        spec=spec,
        status=status,
        uid=uid,
        name=name,
        namespace=_namespaced(namespace),
        body=body,
    )


@kopf.on.probe(id="jobEventsListener", registry=REGISTRY)
async def job_events_listener(memo: Any, **_: Any) -> bool:
    return handlers.listener_connected(_runtime(memo))
