"""Settings come from the environment, fail loudly, and are all documented."""

from __future__ import annotations

import io
import logging
import os
import re

import orjson
import pytest
from pydantic import ValidationError

from easyclaw.api.settings import ApiProcessSettings, AuthMode
from easyclaw.cli.settings import Settings
from easyclaw.core.jsonlog import EventLogger, configure_logging
from easyclaw.metrics_mirror.settings import MirrorProcessSettings
from easyclaw.operator.settings import OperatorProcessSettings
from easyclaw.worker.settings import WorkerProcessSettings
from tests.support.paths import REPO_ROOT


def env_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else f"EASYCLAW_{field.upper()}"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    table_rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, re.MULTILINE))
    documented = {row for row in table_rows if row.startswith("EASYCLAW_") or row == "DATABASE_URL"}
    settings = {env_name(field) for field in Settings.model_fields}
    assert not settings - documented, (
        f"document these in the README: {sorted(settings - documented)}"
    )
    assert not documented - settings, f"no such settings, drop: {sorted(documented - settings)}"


PROCESS_SETTINGS = {
    "api": ApiProcessSettings,
    "worker": WorkerProcessSettings,
    "operator": OperatorProcessSettings,
    "metrics-mirror": MirrorProcessSettings,
}


@pytest.mark.parametrize("process", sorted(PROCESS_SETTINGS))
def test_each_process_validates_only_the_concerns_it_reads(
    process: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = PROCESS_SETTINGS[process]
    others = [other for other in PROCESS_SETTINGS.values() if other is not kind]
    # A variable only another process reads, set to nonsense, does not stop this one.
    foreign = {
        "worker": ("EASYCLAW_WORKER_CONCURRENCY", "many"),
        "api": ("EASYCLAW_API_PORT", "eighty"),
        "operator": ("EASYCLAW_OPERATOR_RESYNC_SECONDS", "-1"),
        "metrics-mirror": ("EASYCLAW_METRICS_DIMENSIONS", "not-a-pair"),
    }
    for name, (variable, value) in foreign.items():
        if name != process:
            monkeypatch.setenv(variable, value)
    kind()  # reads fine
    own_variable, own_value = foreign[process]
    monkeypatch.setenv(own_variable, own_value)
    with pytest.raises(ValidationError):
        kind()
    assert all(not issubclass(kind, other) for other in others)


def test_the_whole_system_settings_include_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EASYCLAW_WORKER_CONCURRENCY", "many")
    with pytest.raises(ValidationError, match="worker_concurrency"):
        Settings()  # `easyclaw up` runs every process, so it checks every concern
    assert all(issubclass(Settings, kind) for kind in PROCESS_SETTINGS.values())


def test_command_flags_are_passed_to_the_settings_not_written_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from easyclaw.cli.main import _settings

    monkeypatch.setenv("EASYCLAW_WORKER_CONCURRENCY", "3")
    monkeypatch.delenv("EASYCLAW_WORKER_CLAIM_BATCH_SIZE", raising=False)
    settings = _settings(WorkerProcessSettings, worker_concurrency=9, worker_claim_batch_size=None)
    assert settings.worker_concurrency == 9  # the flag wins
    assert settings.worker_claim_batch_size == 64  # no flag: the environment / default
    assert os.environ["EASYCLAW_WORKER_CONCURRENCY"] == "3"  # and the environment is untouched


def test_csv_lists_are_one_annotated_type() -> None:
    lists = {
        name
        for kind in (Settings,)
        for name, field in kind.model_fields.items()
        if field.annotation == list[str]
    }
    assert lists == {
        "jwt_algorithms",
        "job_type_modules",
        "worker_job_types",
        "operator_namespaces",
    }
    for name in lists:
        assert Settings(**{name: " A ,B,, C"}).model_dump()[name] == ["A", "B", "C"]


def test_reads_prefixed_variables_and_comma_separated_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db/easyclaw")
    monkeypatch.setenv("EASYCLAW_WORKER_CONCURRENCY", "7")
    monkeypatch.setenv("EASYCLAW_WORKER_JOB_TYPES", "ECHO, CHAT")
    monkeypatch.setenv("EASYCLAW_AUTH_MODE", "header")
    settings = Settings()
    assert settings.worker_concurrency == 7
    assert settings.worker_job_types == ["ECHO", "CHAT"]
    assert settings.auth_mode is AuthMode.HEADER
    assert settings.require_database_url() == "postgresql://u:secret@db/easyclaw"
    assert "secret" not in repr(settings)


def test_invalid_values_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="worker_concurrency"):
        Settings(worker_concurrency=0)
    with pytest.raises(ValidationError, match="refused when EASYCLAW_ENV=production"):
        Settings(env="production", auth_mode="header")
    with pytest.raises(ValidationError, match="must be shorter than"):
        Settings(worker_lease_seconds=5, worker_heartbeat_interval_seconds=5)
    with pytest.raises(ValidationError, match="must not contain 'none'"):
        Settings(jwt_algorithms=["RS256", "none"])
    with pytest.raises(ValidationError, match="EASYCLAW_USER_MAX_RUNNING needs EASYCLAW_FAIR"):
        Settings(user_max_running=3, fair_share=False)


def test_json_logs_have_stable_event_names_and_hide_secrets() -> None:
    stream = io.StringIO()
    configure_logging("INFO", stream)
    try:
        log = EventLogger("easyclaw.test")
        log.info(
            "job.completed",
            job_id="j1",
            api_key="sk-123",
            url="postgresql://app:hunter2@db:5432/easyclaw",
        )
        log.debug("job.claimed", job_id="j1")  # below the level: not written
    finally:
        logging.getLogger().handlers.clear()
    [line] = stream.getvalue().splitlines()
    record = orjson.loads(line)
    assert record["event"] == "job.completed"
    assert record["level"] == "info"
    assert record["job_id"] == "j1"
    assert record["api_key"] == "***"
    assert "hunter2" not in line
    assert record["url"] == "postgresql://app:***@db:5432/easyclaw"
