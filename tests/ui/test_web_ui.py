"""The Temporal Web UI finds a loan in margin call: start the stack (dev server with its Web UI,
worker, mail sink, codec server), drive a loan into margin call with the `loanflow` command, then
open the UI's workflow list filtered by `LoanState="MARGIN_CALL"` and the loan's own pages (its
encrypted input shown decrypted through the codec server) in headless
Chromium (Debian's `chromium` package). Screenshots are saved under test-artifacts/ui/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from datetime import datetime, timedelta

import pytest_asyncio
from temporalio.client import Client, WorkflowHandle

from activities.registry import build_activities
from loanflow.codec_server import CodecServer
from loanflow.db import Database
from loanflow.devserver import DevServer
from loanflow.loan_metadata import people_time
from loanflow.mail.sink import start_sink
from loanflow.ports import free_ports
from loanflow.settings import PROJECT_ROOT
from loanflow.stack import connect_when_ready
from loanflow.web_ui import MARGIN_CALLS, workflows_url
from loanflow.worker import build_worker
from tests.cli.support import Cli, application, open_flags
from tests.support import quiet_settings
from tests.ui.browser import Browser

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"


@dataclass
class Stack:
    server: DevServer
    cli: Cli
    client: Client


@pytest_asyncio.fixture(loop_scope="session")
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """What `loanflow up` runs, on free ports: the dev server with its Web UI and the loan
    search attributes, the local mail sink, and the worker."""
    server_port, ui_port, codec_port = free_ports(3)
    settings = quiet_settings(task_queue="loans-ui", var_dir=tmp_path,
                              codec_cors_origins=f"http://127.0.0.1:{ui_port}")
    # The Web UI decrypts the loans' payloads through the codec server, as under `loanflow up`.
    codec = CodecServer.from_settings(settings, port=codec_port).start()
    server = DevServer(db_file=tmp_path / "temporal.db", port=server_port, ui_port=ui_port,
                       headless=False, log_file=tmp_path / "temporal.log",
                       codec_endpoint=codec.url)
    await server.start()
    sink = await start_sink(tmp_path / "mail", "127.0.0.1", 0)
    smtp_port = sink.sockets[0].getsockname()[1]
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'loanflow.db'}")
    try:
        client = await connect_when_ready(server.address)
        await db.create_all()
        settings = settings.model_copy(update={"smtp_port": smtp_port})
        cli = Cli(tmp_path, {"TEMPORAL_ADDRESS": server.address, "DATABASE_URL": db.url,
                             "LOANFLOW_TASK_QUEUE": "loans-ui", "SMTP_PORT": str(smtp_port),
                             "LOANFLOW_VAR_DIR": str(tmp_path)})
        async with build_worker(client, db, settings, activities=build_activities(db, settings)):
            yield Stack(server, cli, client)
    finally:
        await db.dispose()
        sink.close()
        server.stop()
        codec.stop()


@dataclass(frozen=True)
class Page:
    url: str
    expected: tuple[str, ...]  # texts to wait for
    screenshot: Path
    reveal: str | None = None  # scroll to this text before the screenshot


def visit(profile: Path, pages: list[Page]) -> list[str]:
    """Open each page in one headless Chromium, wait for its texts, save its screenshot;
    the pages' HTML."""
    browser = Browser(profile)
    try:
        found = []
        for page in pages:
            found.append(browser.open(page.url, *page.expected))
            if page.reveal:
                browser.reveal(page.reveal)
            browser.screenshot(page.screenshot)
        return found
    finally:
        browser.close()


# The loan's static summary, as `loanflow open` gives it (the borrower's id, never a name).
SUMMARY = "Loan {loan} · borrower B-7 · ETH · principal $20,000.00"


async def test_an_operator_finds_a_margin_call_in_the_web_ui(stack: Stack, tmp_path: Path) -> None:
    cli, loan = stack.cli, "UI-1"
    first_run = (await cli.json(*open_flags(application(loan))))["run_id"]
    await cli.ok("price", "ETH", "2000")
    await cli.until(loan, "AWAITING_COLLATERAL")
    await cli.ok("deposit", loan, "20", "--tx-id", "0xui")
    await cli.until(loan, "ACTIVE")
    # The run the list links to: the loan continues as new once ACTIVE and its notices are
    # out (then its summary and terms are in its current details). Waited for here so that
    # the run shows its daily revaluation before the call.
    handle = stack.client.get_workflow_handle(f"loan-{loan}")
    run_id = await until_continued(handle, first_run)
    await cli.ok("price", "ETH", "1400")
    call = await cli.until(loan, "MARGIN_CALL")
    await until_listed(cli, loan)
    deadline = people_time(moment(call["cure_deadline"]))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    workflows = workflows_url(stack.server.ui_url)
    loan_page = f"{workflows}/loan-{loan}/{run_id}"
    listing, landing, details, history, decrypted = await asyncio.to_thread(
        visit, tmp_path / "chromium", [
            # The `make run` banner's "margin calls" link: the list filtered by the query.
            Page(workflows_url(stack.server.ui_url, MARGIN_CALLS), (f"loan-{loan}",),
                 ARTIFACTS / "margin-call-list.png"),
            # The page an operator lands on: the loan's timeline, where the cure deadline is
            # a named timer of its own (the loan wakes up earlier, for what comes first).
            Page(loan_page, (f"loan-{loan}", "Timeline", first_wake(call), "cure deadline"),
                 ARTIFACTS / "loan-timeline.png"),
            # The loan's summary (no personal data), its terms, and its current details in
            # people's formats (the Web UI 2.54 shows user metadata on this tab only).
            Page(f"{loan_page}/user-metadata", (SUMMARY.format(loan=loan), "MARGIN_CALL",
                                                "LTV 71.43%", "debt $20,0",
                                                f"cure deadline: {deadline}",
                                                "90 days at 10.00% a year"),
                 ARTIFACTS / "loan-details.png"),
            # Its history: the named timers it waited and waits on, and its activities. (The
            # timeline of Web UI 2.54 did not draw the daily revaluation of a continued run,
            # started in its first task and cancelled by the call; the history lists it.)
            Page(f"{loan_page}/history", ("Timer Started", "daily revaluation", "cure deadline",
                                          "publish loan"),
                 ARTIFACTS / "loan-history.png", reveal="cure deadline"),
            # The start input, encrypted in Temporal, decrypted by the codec server for the UI.
            Page(f"{loan_page}/history", ("Input", "Grace Hopper", "grace@example.com"),
                 ARTIFACTS / "loan-input-decrypted.png", reveal="Grace Hopper"),
        ])
    assert f"loan-{loan}" in listing and "MARGIN_CALL" in listing
    assert f"loan-{loan}" in landing
    assert f"loan-{loan}" in details and f"loan-{loan}" in history
    assert "Grace Hopper" in decrypted
    for shot in ARTIFACTS.glob("*.png"):
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"


def moment(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def first_wake(status: dict[str, Any]) -> str:
    """The timer a loan just called waits on, from the default policy: its first reminder, 24 h
    before the 48 h deadline, unless its daily revaluation (a day after disbursement, on the next
    whole minute) comes first, as it does when the call fell in a later minute than the
    disbursement (a slow machine)."""
    after_a_day = moment(status["disbursed_at"]) + timedelta(days=1)
    revaluation = after_a_day.replace(second=0, microsecond=0)
    if revaluation < after_a_day:
        revaluation += timedelta(minutes=1)
    reminder = moment(status["cure_deadline"]) - timedelta(hours=24)
    return "daily revaluation" if revaluation <= reminder else "margin-call reminder 24h"


async def until_continued(handle: WorkflowHandle[Any, Any], first_run: str,
                          timeout: float = 15) -> str:
    """The id of the run the loan continued in."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (run_id := (await handle.describe()).run_id) == first_run:
        assert asyncio.get_running_loop().time() < deadline, f"{handle.id} never continued"
        await asyncio.sleep(0.2)
    return run_id


async def until_listed(cli: Cli, loan: str, timeout: float = 15) -> None:
    """Visibility shows the loan in margin call (what the UI's list asks too)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(r["loan_id"] == loan
                  for r in (await cli.json("list", "--state", "MARGIN_CALL"))["loans"]):
        assert asyncio.get_running_loop().time() < deadline, f"{loan} never listed"
        await asyncio.sleep(0.3)
