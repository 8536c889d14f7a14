"""Pluggable web search for RESEARCH queries.

A search provider is an async function named by
``EASYCLAW_RESEARCH_SEARCH_PROVIDER=package.module:function``::

    async def search(query: str, *, limit: int, settings: ResearchSettings) -> list[dict]:
        return [{"title": "...", "url": "https://...", "snippet": "..."}]

It raises RetryableJobError for transient failures (throttling, timeouts)
and PermanentJobError for rejected queries, like any handler.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from easyclaw.agents.settings import ResearchSettings
from easyclaw.core.errors import PermanentJobError

SearchProvider = Callable[..., Awaitable[Sequence[Any]]]


class SearchHit(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str
    url: str
    snippet: str = ""


class SearchNotConfiguredError(PermanentJobError):
    """A query job arrived but no search provider is configured."""


def load_search_provider(settings: ResearchSettings) -> SearchProvider:
    spec = settings.research_search_provider
    if not spec:
        raise SearchNotConfiguredError(
            "RESEARCH queries need a search provider, and none is configured: set "
            "EASYCLAW_RESEARCH_SEARCH_PROVIDER=package.module:function (or submit a url)"
        )
    module_name, _, function_name = spec.partition(":")
    try:
        provider = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise PermanentJobError(
            f"EASYCLAW_RESEARCH_SEARCH_PROVIDER={spec} cannot be loaded: {error}"
        ) from error
    if not callable(provider):
        raise PermanentJobError(f"EASYCLAW_RESEARCH_SEARCH_PROVIDER={spec} is not a function")
    return cast(SearchProvider, provider)


async def search(query: str, *, limit: int, settings: ResearchSettings) -> list[SearchHit]:
    """The configured provider's hits for ``query`` (at most ``limit``)."""
    provider = load_search_provider(settings)
    found = await provider(query, limit=limit, settings=settings)
    try:
        return [SearchHit.model_validate(hit) for hit in list(found)[:limit]]
    except (ValidationError, TypeError) as error:
        raise PermanentJobError(
            f"search provider {settings.research_search_provider} returned something "
            f"other than a list of {{title, url, snippet}}: {error}"
        ) from error


__all__ = ["SearchHit", "SearchNotConfiguredError", "load_search_provider", "search"]
