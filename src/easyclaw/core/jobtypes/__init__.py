"""Job types: a name, a handler, and what a valid payload looks like.

A handler is an async function ``handler(ctx: JobContext) -> result`` whose
return value (anything JSON can hold) becomes the job's ``result``. Job types
are found through the ``easyclaw.job_types`` entry-point group, so a plug-in
package adds one by declaring, in its own pyproject.toml::

    [project.entry-points."easyclaw.job_types"]
    SUMMARISE = "my_package.jobs:SUMMARISE"

where ``SUMMARISE`` is a :class:`JobType`. The API uses the same registry to
reject unknown types and invalid payloads before anything is enqueued.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from easyclaw.core.db import AsyncConn, AsyncPool
    from easyclaw.core.jsonlog import EventLogger
    from easyclaw.core.models import ClaimedJob
    from easyclaw.core.settings import EngineSettings

_R = TypeVar("_R")

ENTRY_POINT_GROUP = "easyclaw.job_types"
TYPE_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

Effect = Callable[["AsyncConn"], Awaitable[None]]
Handler = Callable[["JobContext"], Awaitable[Any]]


class InvalidPayloadError(ValueError):
    """The payload does not fit the job type; ``problems`` lists each one."""

    def __init__(self, job_type: str, problems: list[dict[str, Any]]) -> None:
        self.job_type = job_type
        self.problems = problems
        summary = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or 'payload'}: {p['msg']}" for p in problems
        )
        super().__init__(f"invalid payload for {job_type}: {summary}")


@dataclass(frozen=True, kw_only=True)
class JobType:
    name: str
    handler: Handler
    description: str = ""
    payload_model: type[BaseModel] | None = None
    """Validated when the job is submitted and again before it runs."""
    timeout_seconds: float | None = None
    """Default per-attempt timeout; the job's own value or the setting otherwise."""
    max_attempts: int | None = None
    """Default attempts for jobs of this type; the setting otherwise."""
    retry_on: tuple[type[BaseException], ...] = ()
    """Exception types (besides RetryableJobError) that mean "try again later"."""
    uses_state: bool = False
    """Run in a workspace holding the user's latest state snapshot (``ctx.workspace``);
    on success the workspace is stored as the next version."""
    conversational: bool = False
    """Jobs belong to a conversation (CHAT): one is started when a job is submitted
    without one, and the jobs of a conversation run one at a time, in submission
    order (concurrency key ``conversation:<id>``, limit 1)."""
    providers: Callable[[Any], Sequence[str]] | None = None
    """The external services a job calls, given the process's settings (CHAT: the
    configured model provider): its starts count against the fleet-wide rate
    limits ``provider:<name>`` (see EASYCLAW_RATE_LIMITS)."""

    def __post_init__(self) -> None:
        if not TYPE_NAME.fullmatch(self.name):
            raise ValueError(
                f"job type name {self.name!r} must be upper case letters, digits and _ "
                "(like CHAT or SEND_EMAIL)"
            )

    def validate_payload(self, payload: Any) -> dict[str, Any]:
        """The payload as it will be stored, or InvalidPayloadError naming each problem."""
        if not isinstance(payload, dict):
            raise InvalidPayloadError(
                self.name,
                [{"loc": (), "msg": "payload must be a JSON object", "type": "dict_type"}],
            )
        if self.payload_model is None:
            return payload
        try:
            self.payload_model.model_validate(payload)
        except ValidationError as error:
            problems = [
                {"loc": tuple(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()
            ]
            raise InvalidPayloadError(self.name, problems) from None
        return payload


class ProcessResources:
    """Long-lived clients a process builds once and shares between its jobs.

    ``get(factory)`` returns the one object ``factory(settings)`` built in this
    process, building it on first use, so every job that asks for the same
    factory (CHAT and RESEARCH summaries ask for the chat provider) shares its
    connections. Built lazily: a misconfigured client fails the jobs that need
    it, not the process. ``aclose()`` closes each object that has an ``aclose``;
    the worker calls it once, at shutdown.
    """

    def __init__(self, settings: EngineSettings) -> None:
        self._settings = settings
        self._built: dict[Callable[[EngineSettings], Any], Any] = {}

    def get(self, factory: Callable[[Any], _R]) -> _R:
        """The object ``factory(settings)`` built, once, from this process's settings."""
        if factory not in self._built:
            self._built[factory] = factory(self._settings)
        return cast(_R, self._built[factory])

    async def aclose(self) -> None:
        built, self._built = list(self._built.values()), {}
        for resource in built:
            close = getattr(resource, "aclose", None)
            if close is not None:
                await close()


@dataclass(kw_only=True)
class JobContext:
    """What a handler gets: the attempt, its payload, and the process's resources."""

    job: ClaimedJob
    settings: EngineSettings
    pool: AsyncPool
    log: EventLogger
    worker_id: str
    resources: ProcessResources
    """Clients built once per process and shared by its jobs (see ProcessResources)."""
    completion_effects: list[Effect] = field(default_factory=list)
    workspace: Path | None = None
    """The job's workspace directory while a ``uses_state`` job type runs, else None."""

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload

    def on_completion(self, effect: Effect) -> None:
        """Run ``await effect(conn)`` in the transaction that marks this job COMPLETED.

        The effect commits if and only if this attempt's completion is accepted
        (the worker still holds the lease), so whatever it writes happens
        exactly once per job even when attempts are repeated.
        """
        self.completion_effects.append(effect)


class UnknownJobTypeError(LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"unknown job type {name!r}; known types: {', '.join(self.known)}")


class JobTypeRegistry:
    """The job types this process knows, by name."""

    def __init__(self, job_types: Iterable[JobType] = ()) -> None:
        self._types: dict[str, JobType] = {}
        for job_type in job_types:
            self.register(job_type)

    def register(self, job_type: JobType) -> None:
        existing = self._types.get(job_type.name)
        if existing is not None and existing is not job_type:
            raise ValueError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobTypeError(name, self._types) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    @property
    def names(self) -> list[str]:
        return sorted(self._types)

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP) -> JobTypeRegistry:
        """Every job type installed in this environment (ours and plug-ins')."""
        registry = cls()
        for entry_point in _installed_entry_points(group):
            try:
                job_type = entry_point.load()
            except Exception as error:
                raise RuntimeError(
                    f"job type plug-in {entry_point.name} ({entry_point.value}) "
                    f"failed to load: {error}"
                ) from error
            if not isinstance(job_type, JobType):
                raise TypeError(
                    f"entry point {entry_point.name} ({entry_point.value}) must be a JobType, "
                    f"not {type(job_type).__name__}"
                )
            if job_type.name != entry_point.name:
                raise ValueError(
                    f"entry point {entry_point.name} ({entry_point.value}) holds job type "
                    f"{job_type.name!r}; the names must match"
                )
            registry.register(job_type)
        return registry

    def register_module(self, module_name: str) -> None:
        """Register every JobType defined at the top level of a module."""
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise RuntimeError(
                f"job type module {module_name!r} cannot be imported: {error}"
            ) from error
        found = [value for value in vars(module).values() if isinstance(value, JobType)]
        if not found:
            raise ValueError(f"module {module_name!r} defines no JobType")
        for job_type in found:
            self.register(job_type)


@functools.cache
def _installed_entry_points(group: str) -> tuple[EntryPoint, ...]:
    """Read once per process: finding them reads every installed distribution's
    metadata (about 16 ms), and what is installed does not change under a process."""
    return tuple(entry_points(group=group))


def load_registry(settings: EngineSettings) -> JobTypeRegistry:
    """The installed job types plus those of ``EASYCLAW_JOB_TYPE_MODULES``."""
    registry = JobTypeRegistry.from_entry_points()
    for module_name in settings.job_type_modules:
        registry.register_module(module_name)
    return registry


__all__ = [
    "ENTRY_POINT_GROUP",
    "Effect",
    "Handler",
    "InvalidPayloadError",
    "JobContext",
    "JobType",
    "JobTypeRegistry",
    "ProcessResources",
    "UnknownJobTypeError",
    "load_registry",
]
