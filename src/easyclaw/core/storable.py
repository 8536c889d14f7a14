"""Values PostgreSQL can store: the NUL character (U+0000) made harmless.

PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000, while Python strings,
orjson and the web (a fetched page, a model's output, an exception message)
all can. One such character in a job's result or error would make the whole
write fail, so every outcome passes through :func:`without_nul` before it is
written: NUL becomes U+FFFD (the replacement character), everywhere in a
JSON value, keys included.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"
REPLACEMENT = "\ufffd"
ENCODED_NUL = b"\\u0000"
"""How orjson writes NUL inside a JSON string (a fast test before walking a value)."""


def without_nul(value: Any) -> Any:
    """``value`` with every NUL in its strings and object keys replaced by U+FFFD.

    Takes JSON-shaped values (dict, list, str, numbers, None); others are
    returned as they are.
    """
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(item) for item in value]
    return value


def contains_nul(value: Any) -> bool:
    """True if any string or key of a JSON-shaped value holds a NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False
