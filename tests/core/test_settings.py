"""Settings come from the environment, fail loudly, and are all documented."""

from __future__ import annotations

import io
import logging
import re

import orjson
import pytest
from pydantic import ValidationError

from easyclaw.core.jsonlog import EventLogger, configure_logging
from easyclaw.core.settings import AuthMode, Settings
from tests.support.paths import REPO_ROOT


def env_name(field: str) -> str:
    return "DATABASE_URL" if field == "database_url" else f"EASYCLAW_{field.upper()}"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    table_rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, re.MULTILINE))
    missing = {env_name(field) for field in Settings.model_fields} - table_rows
    assert not missing, f"document these in the README's configuration table: {sorted(missing)}"


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
