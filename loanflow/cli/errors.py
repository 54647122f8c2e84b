"""How the CLI fails: one clear line on stderr and a non-zero exit, never a traceback, for
every failure an operator can act on. (Anything else is a bug and keeps its traceback.)"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer

from loanflow.models import ApplicationProblem, RequestError
from loanflow.settings import SettingsError

T = TypeVar("T")


class CliError(Exception):
    """A failure the operator can act on; its message is printed as it is."""


# Failures whose message already says what is wrong (and names the field or setting).
PLAIN_FAILURES = (CliError, SettingsError, RequestError, ApplicationProblem)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` in red on stderr; raise the returned Exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def explain(err: BaseException) -> str | None:
    """The one line for a failure an operator can act on; None for anything else."""
    if isinstance(err, PLAIN_FAILURES):
        return str(err)
    # A payload this process has no key for (it names the key id). Loaded only if used.
    codec = sys.modules.get("loanflow.codec")
    if codec is not None and isinstance(err, codec.PayloadKeyError):
        return str(err.message)
    # Only a command that used the database can fail in it (and only it imports SQLAlchemy,
    # which every other command starts faster without).
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is not None and isinstance(err, (exc.OperationalError, exc.ProgrammingError)):
        return database_problem(err)
    return None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning known failures into one line and exit code 1."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as err:
        message = explain(err)
        if message is None:
            raise
        raise fail(message) from None


def database_problem(err: Any) -> str:
    """The database's own first line, with a hint for the usual causes."""
    detail = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
    if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
        return f"the database has no loanflow tables ({detail}): run `loanflow db upgrade`"
    return f"database error: {detail} (check DATABASE_URL)"
