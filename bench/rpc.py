"""Calls the benchmark repeats when the server's RPC deadline passes under load. Only for calls
that are safe to repeat: a query, or an update re-sent with the same update id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def again(call: Callable[[], Awaitable[T]],
                errors: type[BaseException] | tuple[type[BaseException], ...],
                attempts: int = 10) -> T:
    """`call()` until it does not raise one of `errors`, at most `attempts` times; the last
    attempt's error is raised."""
    for _ in range(attempts - 1):
        try:
            return await call()
        except errors:
            pass
    return await call()
