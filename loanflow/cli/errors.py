"""How the CLI fails: one clear line on stderr and a non-zero exit, never a traceback, for
every failure an operator can act on. (Anything else is a bug and keeps its traceback.)"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import typer

from loanflow import event_loop, failures
from loanflow.models import ApplicationProblem, RequestError

T = TypeVar("T")


class CliError(Exception):
    """A failure the operator can act on; its message is printed as it is."""


# Failures whose message already says what is wrong (and names the field or setting).
PLAIN_FAILURES = (CliError, RequestError, ApplicationProblem)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `error: message` in red on stderr; raise the returned Exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def explain(err: BaseException) -> str | None:
    """The one line for a failure an operator can act on; None for anything else."""
    if isinstance(err, PLAIN_FAILURES):
        return str(err)
    return failures.explain(err)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning known failures into one line and exit code 1."""
    try:
        return event_loop.run(coro)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as err:
        message = explain(err)
        if message is None:
            raise
        raise fail(message) from None
