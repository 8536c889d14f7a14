"""The kopf operator for ``EasyClawJob`` resources (``easyclaw.dev/v1``).

A thin layer between Kubernetes and the shared core: a created resource is
enqueued as a job (idempotently, keyed by the resource's uid), its status
follows the job's row, deleting it cancels an unfinished job, and finished
resources are deleted after ``ttlSecondsAfterFinished``.

Modules: ``resource`` (names and phases), ``spec`` (validation), ``status``
(row -> status), ``jobs`` (core calls), ``job_events`` (NOTIFY wake-ups),
``kube`` (the two API calls kopf does not make for us), ``handlers`` (plain
functions), ``kopf_app`` (decorators and kopf settings only), ``main``
(``easyclaw operator``).
"""
