"""The ``easyclaw`` command.

Server commands (``up``, ``api``, ``worker``, ``migrate``) read the settings
from the environment; client commands (``submit``, ``get``, ``list``,
``cancel``, ``stats``) talk to a running API over REST.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from easyclaw.cli.client import ApiCallError, ClientSettings, EasyClawClient

if TYPE_CHECKING:
    from easyclaw.core.settings import DatabaseSettings

_S = TypeVar("_S", bound="DatabaseSettings")


def _settings(kind: type[_S], **flags: Any) -> _S:
    """The settings this command's process reads; flags given win over the environment.

    Each process reads only its own concerns, so a bad variable of another
    component cannot stop it. Database URL passwords are hidden from every log.
    """
    from easyclaw.core.database_url import password_fragments
    from easyclaw.core.jsonlog import hide_in_logs

    settings = kind(**{name: value for name, value in flags.items() if value is not None})
    for url in (settings.database_url, settings.database_session_url):
        if url is not None:
            hide_in_logs(*password_fragments(url.get_secret_value()))
    return settings


def cmd_up(args: argparse.Namespace) -> int:
    from easyclaw.cli.settings import Settings
    from easyclaw.cli.up import run_up
    from easyclaw.core.jsonlog import configure_logging

    settings = _settings(Settings, local_workers=args.workers, api_port=args.port)
    configure_logging(settings.log_level, repeat_window_seconds=settings.log_repeat_window_seconds)
    return run_up(settings)


def cmd_api(args: argparse.Namespace) -> int:
    from easyclaw.api.server import main as serve
    from easyclaw.api.settings import ApiProcessSettings

    serve(
        _settings(ApiProcessSettings, api_host=args.host, api_port=args.port),
        workers=args.workers,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from easyclaw.worker.main import main as work
    from easyclaw.worker.settings import WorkerProcessSettings

    work(_settings(WorkerProcessSettings, worker_concurrency=args.concurrency))
    return 0


def cmd_metrics_mirror(args: argparse.Namespace) -> int:
    from easyclaw.metrics_mirror.mirror import main as mirror
    from easyclaw.metrics_mirror.settings import MirrorProcessSettings

    mirror(_settings(MirrorProcessSettings, metrics_mirror_interval_seconds=args.interval))
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    from easyclaw.operator.main import main as operate
    from easyclaw.operator.settings import OperatorProcessSettings

    return operate(_settings(OperatorProcessSettings, operator_namespaces=args.namespaces))


def cmd_migrate(args: argparse.Namespace) -> int:
    from easyclaw.core.migrations import migrate, schema_sql

    if args.print_sql:
        sys.stdout.write(schema_sql())
        return 0
    from easyclaw.core.settings import DatabaseSettings

    settings = _settings(DatabaseSettings)
    applied = asyncio.run(migrate(settings.require_session_database_url()))
    if applied:
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}")
    else:
        print("database is up to date")
    return 0


def _client(args: argparse.Namespace) -> EasyClawClient:
    settings = ClientSettings()
    updates: dict[str, Any] = {}
    if args.api_url:
        updates["api_url"] = args.api_url
    if args.user:
        updates["user_id"] = args.user
    return EasyClawClient(settings.model_copy(update=updates))


def _print(body: Any) -> None:
    print(json.dumps(body, indent=2, sort_keys=False))


def cmd_submit(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload) if args.payload else {}
    except json.JSONDecodeError as error:
        raise SystemExit(f"easyclaw submit: --payload is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise SystemExit("easyclaw submit: --payload must be a JSON object")
    if args.message is not None:
        payload["message"] = args.message
    job: dict[str, Any] = {"type": args.type.upper(), "payload": payload, "priority": args.priority}
    if args.conversation_id:
        job["conversationId"] = args.conversation_id
    with _client(args) as client:
        created = client.submit(job, idempotency_key=args.idempotency_key)
        if args.wait:
            _print(client.get(created["jobId"], wait=args.wait))
        else:
            _print(created)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.get(args.job_id, wait=args.wait))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(
            client.list(limit=args.limit, status=args.status, type=args.type, cursor=args.cursor)
        )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.cancel(args.job_id))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print(client.stats())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="easyclaw", description="EasyClaw: a PostgreSQL-backed worker pool for AI-agent jobs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    up = add("up", cmd_up, "run everything locally: database, migrations, API and workers")
    up.add_argument(
        "--workers", type=int, help="worker processes (EASYCLAW_LOCAL_WORKERS, default 2)"
    )
    up.add_argument("--port", type=int, help="API port (EASYCLAW_API_PORT, default 8000)")

    api = add("api", cmd_api, "serve the REST API")
    api.add_argument("--host", help="bind address (EASYCLAW_API_HOST)")
    api.add_argument("--port", type=int, help="port (EASYCLAW_API_PORT)")
    api.add_argument("--workers", type=int, default=1, help="API processes, each with its own pool")

    worker = add("worker", cmd_worker, "run a worker process until SIGTERM")
    worker.add_argument(
        "--concurrency", type=int, help="jobs at once (EASYCLAW_WORKER_CONCURRENCY)"
    )

    operator = add(
        "operator", cmd_operator, "run the Kubernetes operator for EasyClawJob resources"
    )
    operator.add_argument(
        "--namespaces", help="comma-separated namespaces to watch (EASYCLAW_OPERATOR_NAMESPACES)"
    )

    migrate = add("migrate", cmd_migrate, "apply database migrations (safe to run concurrently)")
    migrate.add_argument(
        "--print-sql", action="store_true", help="print the whole schema as one psql script instead"
    )

    metrics_mirror = add(
        "metrics-mirror",
        cmd_metrics_mirror,
        "publish the queue statistics to CloudWatch until SIGTERM (one active replica)",
    )
    metrics_mirror.add_argument(
        "--interval",
        type=float,
        help="seconds between publications (EASYCLAW_METRICS_MIRROR_INTERVAL_SECONDS, default 60)",
    )

    def client_command(
        name: str, handler: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sub = add(name, handler, help)
        sub.add_argument(
            "--api-url", help="API base URL (EASYCLAW_API_URL, default http://127.0.0.1:8000)"
        )
        sub.add_argument(
            "--user", help="user id for header auth (EASYCLAW_USER_ID); EASYCLAW_TOKEN for jwt"
        )
        return sub

    submit = client_command("submit", cmd_submit, "submit a job")
    submit.add_argument("type", help="job type, e.g. ECHO or CHAT")
    submit.add_argument("--payload", help="payload as a JSON object")
    submit.add_argument("--message", help="shortcut for payload.message")
    submit.add_argument("--conversation-id")
    submit.add_argument("--priority", type=int, default=0)
    submit.add_argument("--idempotency-key")
    submit.add_argument("--wait", type=float, default=0, help="wait up to N seconds for the result")

    get = client_command("get", cmd_get, "show a job")
    get.add_argument("job_id")
    get.add_argument("--wait", type=float, default=0, help="wait up to N seconds for it to finish")

    listing = client_command("list", cmd_list, "list your jobs, newest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument(
        "--status", choices=["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
    )
    listing.add_argument("--type")
    listing.add_argument("--cursor")

    cancel = client_command("cancel", cmd_cancel, "cancel a job")
    cancel.add_argument("job_id")

    client_command("stats", cmd_stats, "show queue statistics")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except ApiCallError as error:
        print(f"easyclaw {args.command}: {error}", file=sys.stderr)
        code = 1
    except ValidationError as error:
        print(f"easyclaw {args.command}: invalid configuration:\n{error}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except Exception as error:
        from easyclaw.cli.local_postgres import LocalPostgresError
        from easyclaw.core.errors import DatabaseUnavailableError
        from easyclaw.core.jsonlog import redact
        from easyclaw.core.migrations import MigrationError
        from easyclaw.core.settings import SettingsError

        if isinstance(error, SettingsError):
            print(f"easyclaw {args.command}: {redact(str(error))}", file=sys.stderr)
            code = 2
        elif isinstance(error, DatabaseUnavailableError):
            print(
                f"easyclaw {args.command}: cannot reach the database: {redact(str(error))}",
                file=sys.stderr,
            )
            code = 1
        elif isinstance(error, (MigrationError, LocalPostgresError)):
            print(f"easyclaw {args.command}: {redact(str(error))}", file=sys.stderr)
            code = 1
        else:
            # A bug: show where, but never a secret a library put into the message.
            sys.stderr.write(redact(traceback.format_exc()))
            code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
