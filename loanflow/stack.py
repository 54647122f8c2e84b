"""The embedded stack in one process tree: the Temporal dev server (file-backed, with the Web
UI), the worker, SQLite and the local mail sink. Ctrl-C stops it cleanly; started again, it
resumes where it was, because the server, the database and the mail all live under var/."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client

from loanflow import codec_keys, failures, migrations, preflight
from loanflow.codec_server import CodecServer
from loanflow.db import Database
from loanflow.devserver import DevServer
from loanflow.failures import StartupError, silence_stdout
from loanflow.namespace_setup import ensure_search_attributes
from loanflow.narration import narrating
from loanflow.preflight import Plan
from loanflow.settings import Settings, SettingsError
from loanflow.temporal_client import connect
from loanflow.web_ui import MARGIN_CALLS, workflows_url
from loanflow.worker import build_worker

Say = Callable[[str], None]
DEFAULT_TEMPORAL_PORT = 7233


@dataclass
class StackInfo:
    temporal_address: str
    ui_url: str | None
    database: str
    mail_dir: Path | None  # None: mail goes to an SMTP server that is not the local sink
    smtp: str
    codec_url: str | None = None


@contextlib.asynccontextmanager
async def temporal_server(settings: Settings, plan: Plan, say: Say,
                          codec_url: str | None = None) -> AsyncIterator[None]:
    """Start the embedded dev server, unless the plan uses a server already running. Its Web UI
    decrypts payloads through the codec server at `codec_url`."""
    if not plan.start_temporal:
        if plan.ui_url:
            say(f"a Temporal server is already listening on {plan.temporal_address}: using it")
            if codec_url:
                say(f"  (to see payloads decrypted, set its Web UI's codec endpoint to "
                    f"{codec_url})")
        yield
        return
    server = DevServer(
        db_file=settings.var_dir / "temporal.db", log_file=settings.var_dir / "temporal.log",
        port=settings.temporal_port, ui_port=settings.ui_port, codec_endpoint=codec_url,
    )
    say(f"starting the Temporal dev server ({server.db_file}) ...")
    try:
        await server.start()
        yield
    finally:
        # Stopped even if saying so fails (stdout a pipe whose reader is gone).
        try:
            say("stopping the Temporal dev server ...")
        finally:
            server.stop()


@contextlib.asynccontextmanager
async def mail_sink(settings: Settings, plan: Plan, say: Say) -> AsyncIterator[Path | None]:
    """The local SMTP sink, where the plan starts one; else the mail's folder is not ours."""
    from loanflow.mail.sink import start_sink

    if not plan.start_sink:
        local = settings.smtp_host in preflight.LOCAL_HOSTS
        whose = "an SMTP server already listens there" if local else "the configured relay"
        say(f"mail goes to {settings.smtp_host}:{settings.smtp_port} ({whose}; no local sink "
            "started)")
        yield None
        return
    directory = settings.var_dir / "mail"
    server = await start_sink(directory, "127.0.0.1", settings.smtp_port)
    try:
        yield directory
    finally:
        server.close()
        await server.wait_closed()


def dev_keys(settings: Settings, say: Say) -> None:
    """A development machine needs no key set up: without LOANFLOW_CODEC_KEYS the stack keeps
    one in the keys file (var/codec.keys), made once and then reused, so what it encrypted
    stays readable. Bad key settings fail here, in one line, before anything starts."""
    if settings.codec_keys is None and codec_keys.create_file(settings.keys_file):
        say(f"created a development payload key in {settings.keys_file} (keep it: the loans' "
            "histories are encrypted with it)")
    settings.keyring()


@contextlib.contextmanager
def codec_server(settings: Settings, say: Say) -> Iterator[str | None]:
    """The Web UI's codec endpoint, in a thread of this process; None if it cannot listen."""
    try:
        server = CodecServer.from_settings(settings).start()
    except OSError as err:
        say(f"codec server not started ({settings.codec_server_host}:"
            f"{settings.codec_server_port}: {err.strerror or err}): the Web UI shows payloads "
            "encrypted")
        yield None
        return
    try:
        yield server.url
    finally:
        server.stop()


async def connect_when_ready(address: str, attempts: int = 50,
                             settings: Settings | None = None) -> Client:
    """The dev server listens a moment before it answers; keep trying for a few seconds."""
    for attempt in range(attempts):
        try:
            client = await connect(target_host=address, settings=settings)
            await ensure_search_attributes(client)
            return client
        except SettingsError:
            raise  # no usable payload key: waiting will not make one
        except Exception as err:
            if attempt == attempts - 1:
                # Out of reach, or a call it refused: said in one line (no traceback).
                reason = failures.explain(err) or f"the Temporal server at {address} does " \
                    f"not answer: {first_line(err)}"
                raise StartupError(reason) from None
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def stop_event() -> asyncio.Event:
    """Set on Ctrl-C or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_stack(settings: Settings, *, demo: bool, say: Say = print) -> None:
    say = unbreakable(say)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    dev_keys(settings, say)
    plan = await preflight.check(settings)  # before anything starts: a taken port is one line
    stop = stop_event()
    with codec_server(settings, say) as codec_url:
        await run_servers(settings, plan, demo, say, stop, codec_url)


async def run_servers(settings: Settings, plan: Plan, demo: bool, say: Say, stop: asyncio.Event,
                      codec_url: str | None) -> None:
    async with temporal_server(settings, plan, say, codec_url), \
            mail_sink(settings, plan, say) as mail:
        client = await connect_when_ready(plan.temporal_address, settings=settings)
        # The embedded stack owns its database: bring it to the latest schema (a database made
        # before migrations existed is adopted at the first revision).
        await asyncio.to_thread(migrations.upgrade, settings.db_url)
        db = Database(settings.db_url)
        info = StackInfo(plan.temporal_address, plan.ui_url, settings.db_url, mail,
                         f"{settings.smtp_host}:{settings.smtp_port}", codec_url)
        try:
            async with build_worker(client, db, settings), narrating(db, say):
                banner(info, settings, say)
                if demo:
                    from loanflow.demo import run_demo

                    await run_demo(client, settings, say)
                say("running; Ctrl-C to stop (everything is kept under var/)")
                await stop.wait()
                say("stopping the worker ...")
        finally:
            await db.dispose()


def unbreakable(say: Say) -> Say:
    """`say` that never raises: with stdout a pipe whose reader is gone (`make run | tee log`,
    and Ctrl-C ends tee too) a print raised BrokenPipeError on the way out, before the dev
    server was stopped, and left it running. Once the output is gone, nothing more is said."""
    broken = False

    def say_safely(text: str) -> None:
        nonlocal broken
        if broken:
            return
        try:
            say(text)
        except OSError:  # BrokenPipeError, or EIO from a terminal that has closed
            broken = True
            silence_stdout()

    return say_safely


def banner(info: StackInfo, settings: Settings, say: Say) -> None:
    say("")
    say("loanflow is up")
    say(f"  Temporal        {info.temporal_address} (task queues '{settings.task_queue}', "
        f"'{settings.market_queue}')")
    if info.ui_url:
        say(f"  Web UI          {workflows_url(info.ui_url)}")
        say(f"  margin calls    {workflows_url(info.ui_url, MARGIN_CALLS)}")
    if needs_port_hint(settings):
        say(f"                  (other loanflow commands find it when "
            f"LOANFLOW_TEMPORAL_PORT={settings.temporal_port} is in the environment or .env)")
    say(f"  database        {info.database}")
    if info.mail_dir:
        say(f"  mail sink       {info.smtp} -> {info.mail_dir}")
    else:
        say(f"  mail            {info.smtp} (an SMTP server that is not the local sink)")
    if info.codec_url:
        say(f"  codec server    {info.codec_url} (payloads are encrypted; the Web UI decrypts "
            "through it)")
    say("")


def needs_port_hint(settings: Settings) -> bool:
    """Whether the server is on a port other commands would not look at by default."""
    own_server = not os.environ.get("TEMPORAL_ADDRESS")
    return own_server and settings.temporal_port != DEFAULT_TEMPORAL_PORT
