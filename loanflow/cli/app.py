"""The root of the `loanflow` command and its error handling: every failure is one clear line
on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer

from loanflow.settings import SettingsError, get_settings

app = typer.Typer(
    name="loanflow",
    help="Operate the loanflow desk: the stack, loans, the book, prices and mail.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")


class CliError(Exception):
    """A failure the operator can act on; its message is printed as it is."""


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine, turning known failures into one line and exit code 1."""
    try:
        return asyncio.run(coro)
    except (CliError, SettingsError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def up(demo: bool = typer.Option(False, "--demo", help="Run the scripted demo loans once up.")) -> None:
    """Start the embedded stack: Temporal dev server with Web UI, worker, SQLite, mail sink."""
    from loanflow.stack import run_stack

    run(run_stack(get_settings(), demo=demo))


@app.command()
def worker() -> None:
    """Run only the worker, against the configured Temporal and database."""
    from loanflow.worker import run_worker

    run(run_worker(get_settings()))


def main() -> None:
    try:
        app()
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
