"""The root of the `loanflow` command: the stack, and every sub-command registered in one place.
Every failure an operator can act on is one clear line on stderr and a non-zero exit, never a
traceback (`loanflow.cli.errors`)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from typing import Any

import typer

from loanflow.cli import helpstyle
from loanflow.cli.output import blocking_stdio
from loanflow.cli.errors import CliError, explain, fail, run
from loanflow.settings import get_settings

__all__ = ["CliError", "app", "main", "run"]

helpstyle.install()

app = typer.Typer(
    name="loanflow",
    help="Operate the loanflow desk: the stack, loans, the book, prices and mail. Settings come "
         "from the environment and .env (see README, Configuration).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def start_up() -> None:
    """Invalid settings fail here, before any command runs, naming the setting. Help needs no
    settings: an operator fixing a bad one can still read how a command works."""
    from loanflow.desk_policy import desk_policy

    if "--help" in sys.argv[1:]:
        return
    get_settings()
    desk_policy()


def port_option(flag: str, what: str, setting: str, default: int) -> Any:
    return typer.Option(None, flag, min=1, max=65535, show_default=False,
                        help=f"{what} [default: {setting}, {default}].")


@app.command(rich_help_panel="Stack")
def up(
    demo: bool = typer.Option(False, "--demo", help="Run the scripted demo loans once up."),
    port: int | None = port_option("--port", "The Temporal dev server's port (gRPC frontend)",
                                   "LOANFLOW_TEMPORAL_PORT", 7233),
    ui_port: int | None = port_option("--ui-port", "The Temporal Web UI's port",
                                      "LOANFLOW_UI_PORT", 8233),
    smtp_port: int | None = port_option("--smtp-port", "The local mail sink's port",
                                        "SMTP_PORT", 8025),
) -> None:
    """Start the embedded stack: Temporal dev server with Web UI, worker, SQLite, mail sink.
    A port that is taken is reported before anything starts."""
    from loanflow.stack import run_stack

    chosen = {"temporal_port": port, "ui_port": ui_port, "smtp_port": smtp_port}
    if os.environ.get("TEMPORAL_ADDRESS") and (port or ui_port):
        # Honoured silently, TEMPORAL_ADDRESS would make the operator's port a no-op.
        raise CliError(f"{'--port' if port else '--ui-port'}: TEMPORAL_ADDRESS="
                       f"{os.environ['TEMPORAL_ADDRESS']} names the server to use, so no dev "
                       "server is started: unset it to start one on that port")
    settings = get_settings().model_copy(
        update={k: v for k, v in chosen.items() if v is not None})
    run(run_stack(settings, demo=demo))


@app.command(rich_help_panel="Stack")
def worker() -> None:
    """Run only the worker, against the configured Temporal and database."""
    from loanflow.worker import configure_logging, run_worker

    configure_logging()
    run(run_worker(get_settings()))


@app.command("codec-server", rich_help_panel="Stack")
def codec_server(
    host: str = typer.Option(None, help="Listen address [default: LOANFLOW_CODEC_HOST, "
                                        "127.0.0.1]."),
    port: int = typer.Option(None, help="Port [default: LOANFLOW_CODEC_PORT, 8234]."),
) -> None:
    """Serve the Web UI's remote codec (POST /decode, /encode): operators see loans' payloads
    decrypted. `loanflow up` runs one itself."""
    from loanflow.codec_server import CodecServer

    try:
        server = CodecServer.from_settings(get_settings(), host, port)
    except OSError as err:
        raise fail(f"codec server cannot listen: {err.strerror or err}") from None
    typer.echo(f"codec server on {server.url} (keys {', '.join(server.codec.keyring.ids)}, "
               f"current {server.codec.keyring.current}); Web UI origins: "
               f"{', '.join(server.origins) or 'none'}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register() -> None:
    from loanflow.cli import book, loans, mail, ops, stress, updates, watch

    for module in (loans, updates, watch, book, ops, mail, stress):
        app.add_typer(module.commands)
    # The market monitor's commands, where that part of loanflow is installed.
    try:
        market = importlib.import_module("loanflow.cli.market")
    except ModuleNotFoundError as err:
        if err.name != "loanflow.cli.market":
            raise  # the module is there but broken: say so
        return
    app.add_typer(market.market_app, name="market", rich_help_panel="Desk")


register()


def main() -> None:
    """The console script."""
    finish(invoke())


def finish(code: int) -> None:
    """Flush what the command printed and exit with `code`, skipping the interpreter's
    teardown: the Temporal client's native threads can crash it after a short command ("Fatal
    Python error: PyGILState_Release ... finalizing", SIGABRT; temporalio/sdk-python#300).
    Everything the command does is finished by now."""
    blocking_stdio()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # the reader of a pipe is gone: nobody is left to tell
            pass
    logging.shutdown()
    os._exit(code)


def invoke() -> int:
    """Run the command line; its exit code. Usage errors and operator failures print one line
    each; anything else is a bug and prints its traceback."""
    try:
        result = app(standalone_mode=False)
    except typer.TyperException as err:  # a usage error: unknown option, missing argument
        typer.secho(f"error: {err.format_message()} (see `loanflow --help`)",
                    fg=typer.colors.RED, err=True)
        return 2
    except typer.Abort:
        return 130
    except typer.Exit as done:
        return done.exit_code
    except Exception as err:
        message = explain(err)
        if message is None:
            traceback.print_exc()
            return 1
        return fail(message).exit_code
    return result if isinstance(result, int) else 0
