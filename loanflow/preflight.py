"""What `loanflow up` checks before it starts anything: every port it will listen on is free, or
held by the very kind of server it would have started (a Temporal server, an SMTP server), which
it then uses as it is. Any other holder is one line naming the port and what to do, before a
child process or a thread exists: found later, a taken port was a traceback after 10 s (7233), a
traceback whose cause was only in a log file (8233), or a demo stalled by SMTP errors (8025)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from loanflow.failures import StartupError
from loanflow.ports import port_taken, speaks_smtp
from loanflow.settings import Settings

LOCAL_HOSTS = ("127.0.0.1", "localhost")
# How long a program on the frontend port has to answer as Temporal does.
PROBE_SECONDS = 3


@dataclass(frozen=True)
class Plan:
    """What to start, and what to use that is already running."""

    temporal_address: str
    ui_url: str | None
    start_temporal: bool
    start_sink: bool


def taken(port: int, what: str, holder: str, option: str, setting: str) -> StartupError:
    return StartupError(f"port {port} ({what}) is taken by {holder}: stop it or pass "
                        f"{option} N (or set {setting}=N)")


async def check(settings: Settings) -> Plan:
    address, ui_url, start_temporal = await check_temporal(settings)
    return Plan(address, ui_url, start_temporal, check_sink(settings, start_temporal))


async def check_temporal(settings: Settings) -> tuple[str, str | None, bool]:
    """TEMPORAL_ADDRESS names a server to use; else the dev server's two ports must be free,
    unless a Temporal server answers on the frontend port (it is used, with its own UI)."""
    if os.environ.get("TEMPORAL_ADDRESS"):
        return os.environ["TEMPORAL_ADDRESS"], None, False
    port, ui_port = settings.temporal_port, settings.ui_port
    address, ui_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    if port_taken(port):
        if await answers_as_temporal(address):
            return address, ui_url, False
        raise taken(port, "Temporal frontend", "a program that is not a Temporal server",
                    "--port", "LOANFLOW_TEMPORAL_PORT")
    if ui_port == port:
        raise StartupError(f"--port and --ui-port are both {port}: give the Web UI its own port")
    if port_taken(ui_port):
        raise taken(ui_port, "Temporal Web UI", "another program", "--ui-port",
                    "LOANFLOW_UI_PORT")
    return address, ui_url, True


def check_sink(settings: Settings, start_temporal: bool) -> bool:
    """Whether to start the local mail sink: mail goes to this machine and nothing listens on
    the port. An SMTP server already there is used; anything else is a conflict."""
    port = settings.smtp_port
    if settings.smtp_host not in LOCAL_HOSTS:
        return False
    if start_temporal and port in (settings.temporal_port, settings.ui_port):
        raise StartupError(f"--smtp-port {port} is also the Temporal server's: give the mail "
                           "sink its own port")
    if not port_taken(port):
        return True
    if speaks_smtp(port):
        return False
    raise taken(port, "mail sink", "a program that does not speak SMTP", "--smtp-port",
                "SMTP_PORT")


async def answers_as_temporal(address: str) -> bool:
    from temporalio.client import Client

    try:
        await asyncio.wait_for(Client.connect(address), PROBE_SECONDS)
    except Exception:  # noqa: BLE001  (refused, not gRPC, silent: all mean "not Temporal")
        return False
    return True
