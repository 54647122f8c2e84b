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

from loanflow import codec_keys, migrations
from loanflow.codec_server import CodecServer
from loanflow.db import Database
from loanflow.devserver import DevServer, port_open
from loanflow.namespace_setup import ensure_search_attributes
from loanflow.narration import narrating
from loanflow.settings import Settings
from loanflow.temporal_client import connect
from loanflow.web_ui import MARGIN_CALLS, workflows_url
from loanflow.worker import build_worker

Say = Callable[[str], None]


@dataclass
class StackInfo:
    temporal_address: str
    ui_url: str | None
    database: str
    mail_dir: Path
    smtp: str
    codec_url: str | None = None


@contextlib.asynccontextmanager
async def temporal_server(settings: Settings, say: Say, codec_url: str | None = None
                          ) -> AsyncIterator[tuple[str, str | None]]:
    """Start the embedded dev server, unless TEMPORAL_ADDRESS names another one or one is
    already listening on the default port (then it is used as it is). Its Web UI decrypts
    payloads through the codec server at `codec_url`."""
    if os.environ.get("TEMPORAL_ADDRESS"):
        yield os.environ["TEMPORAL_ADDRESS"], None
        return
    server = DevServer(
        db_file=settings.var_dir / "temporal.db", log_file=settings.var_dir / "temporal.log",
        codec_endpoint=codec_url,
    )
    if port_open("127.0.0.1", server.port):
        say(f"a Temporal server is already listening on {server.address}: using it")
        if codec_url:
            say(f"  (to see payloads decrypted, set its Web UI's codec endpoint to {codec_url})")
        yield server.address, server.ui_url
        return
    say(f"starting the Temporal dev server ({server.db_file}) ...")
    await server.start()
    try:
        yield server.address, server.ui_url
    finally:
        say("stopping the Temporal dev server ...")
        server.stop()


@contextlib.asynccontextmanager
async def mail_sink(settings: Settings, say: Say) -> AsyncIterator[Path]:
    """The local SMTP sink, where the settings point e-mail at this machine."""
    from loanflow.mail.sink import start_sink

    directory = settings.var_dir / "mail"
    if settings.smtp_host not in ("127.0.0.1", "localhost") or port_open(
        "127.0.0.1", settings.smtp_port
    ):
        say(f"mail goes to {settings.smtp_host}:{settings.smtp_port} (no local sink started)")
        yield directory
        return
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
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")


def stop_event() -> asyncio.Event:
    """Set on Ctrl-C or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_stack(settings: Settings, *, demo: bool, say: Say = print) -> None:
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    dev_keys(settings, say)
    stop = stop_event()
    with codec_server(settings, say) as codec_url:
        await run_servers(settings, demo, say, stop, codec_url)


async def run_servers(settings: Settings, demo: bool, say: Say, stop: asyncio.Event,
                      codec_url: str | None) -> None:
    async with temporal_server(settings, say, codec_url) as (address, ui), \
            mail_sink(settings, say) as mail:
        client = await connect_when_ready(address, settings=settings)
        # The embedded stack owns its database: bring it to the latest schema (a database made
        # before migrations existed is adopted at the first revision).
        await asyncio.to_thread(migrations.upgrade, settings.db_url)
        db = Database(settings.db_url)
        info = StackInfo(address, ui, settings.db_url, mail, f"127.0.0.1:{settings.smtp_port}",
                         codec_url)
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


def banner(info: StackInfo, settings: Settings, say: Say) -> None:
    say("")
    say("loanflow is up")
    say(f"  Temporal        {info.temporal_address} (task queues '{settings.task_queue}', "
        f"'{settings.market_queue}')")
    if info.ui_url:
        say(f"  Web UI          {workflows_url(info.ui_url)}")
        say(f"  margin calls    {workflows_url(info.ui_url, MARGIN_CALLS)}")
    say(f"  database        {info.database}")
    say(f"  mail sink       {info.smtp} -> {info.mail_dir}")
    if info.codec_url:
        say(f"  codec server    {info.codec_url} (payloads are encrypted; the Web UI decrypts "
            "through it)")
    say("")
