"""Named SQL queries, loaded from ``sql/queries.sql``.

Keeping the SQL in one file means every statement EasyClaw runs against its
queue can be read (and EXPLAINed) in one place.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

_NAME_LINE = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split a .sql file into ``{name: statement}`` at each ``-- name:`` line."""
    matches = list(_NAME_LINE.finditer(text))
    queries: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        if not body:
            raise ValueError(f"query {match['name']!r} is empty")
        if match["name"] in queries:
            raise ValueError(f"query {match['name']!r} is defined twice")
        queries[match["name"]] = body
    return queries


@cache
def _all_queries() -> dict[str, str]:
    text = resources.files("easyclaw.core").joinpath("sql/queries.sql").read_text("utf-8")
    return parse_queries(text)


def query(name: str) -> LiteralString:
    """The SQL text of the named query (a constant from our own file, not user input)."""
    return _all_queries()[name]


def query_names() -> list[str]:
    return sorted(_all_queries())
