"""The event loop loanflow's own processes run on (workers, the CLI): uvloop where it is
installed (a dependency on Linux and macOS), else asyncio's.

Measured (`python -m bench.book_import --loans 1000`, the same code with and without it in the
two worker processes, three alternating runs each, 2026-12-04): the workers spent 7% less CPU
against the server's for the same import (worker/server CPU 1.50 -> 1.40); an earlier set of
three gave 5.5%. Their time goes to many small socket reads and writes (Temporal's bridge, the
database, SMTP) and callbacks, which uvloop's loop runs in C. Workflow code is not affected:
the SDK runs each workflow on an event loop of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on uvloop's loop if it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
