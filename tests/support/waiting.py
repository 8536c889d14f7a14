"""Awaiting a condition instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def wait_for(
    condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll an (async or sync) condition until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
