"""Fuzz the REST API from its own OpenAPI document with schemathesis.

Every documented operation gets generated requests, valid and invalid, against
the real app behind a real uvicorn server on a real PostgreSQL. Each response
must not be a server error and must match the document: a declared status
code, the declared content type, a body that validates against its schema;
requests that break the document must be refused with a 4xx.

Not checked: that every schema-valid request is accepted. Which job types
exist, what each one's payload needs and which conversations a user owns are
facts of the running system, not of the document, so a well-formed request
can rightly be a 422 (``UNKNOWN_JOB_TYPE``) or 404. Nor "invalid credentials
are refused": this runs in header mode, which by design trusts any well-formed
``x-user-id``; bad tokens in jwt mode are refused in test_jwt_auth.py.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from easyclaw.api.app import create_app
from easyclaw.cli.settings import Settings
from easyclaw.core.jobtypes import JobTypeRegistry

pytestmark = pytest.mark.slow

USER = "fuzz-user"
EXAMPLES = 25


@pytest.fixture
def threaded_api(settings: Settings, registry: JobTypeRegistry) -> Iterator[str]:
    """The API on a real uvicorn server in a thread of its own: schemathesis sends
    its requests synchronously, so the server cannot share the test's thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, registry),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), name="fuzz-api", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the API server thread died"
        assert time.monotonic() < deadline, "the API server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_within_its_documented_contract(
    threaded_api: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{threaded_api}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same examples every run: a failure is reproducible
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_within_contract(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"x-user-id": USER},
                timeout=10,
                excluded_checks=[positive_data_acceptance, ignored_auth],
            )

        started = time.monotonic()
        try:
            answers_within_contract()
        except Unsatisfiable:
            # Nothing to break in an operation without parameters or body (GET /healthz).
            assert mode is GenerationMode.NEGATIVE, operation.label
        print(f"{operation.label}: {time.monotonic() - started:.1f} s")
