"""`loanflow watch L1`: follow one loan as it lives. The loan's state first, then one line for
each change (state, price, LTV, debt, collateral, cure deadline) as it happens, until the loan
reaches a final state or the operator presses Ctrl-C (exit 0 either way).

It asks the loan's `status` query every `--interval` seconds and prints only what changed, so
watching costs one query per interval and changes nothing. `--json` prints one JSON object a
line instead (`{"at", "event": "state"|"change"|"final", "changed", "status"}`), for scripts."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Annotated, TypeVar

import typer

from loanflow.cli.errors import run
from loanflow.cli.ids import loan_id_of
from loanflow.cli.output import jsonable, ratio, units, usd, when
from loanflow.cli.params import AsJson, LoanRef
from loanflow.models import LoanStatus

PANEL = "Loans"
commands = typer.Typer()
T = TypeVar("T")

Interval = Annotated[float, typer.Option(
    "--interval", min=0.2, max=3600,
    help="Seconds between two looks at the loan (its status query).")]


def facts(s: LoanStatus) -> dict[str, str]:
    """What a watcher sees of the loan, in people's formats, in reading order."""
    asset = s.collateral_asset
    return {
        "state": s.state.value + (f" ({s.reason})" if s.reason else ""),
        "price": "-" if s.price is None else
                 f"{usd(s.price)} per {asset}" + ("" if s.price_fresh else " (STALE)"),
        "LTV": ratio(s.ltv),
        "debt": usd(s.debt_usd),
        "collateral": units(asset, s.collateral_amount),
        "cure deadline": when(s.cure_deadline),
    }


def first_line(s: LoanStatus) -> str:
    shown = facts(s)
    return f"loan {s.loan_id}: " + ", ".join(f"{name} {value}" for name, value in shown.items()
                                             if value != "-")


def changes(before: LoanStatus, after: LoanStatus) -> list[str]:
    """One line per fact that changed: `LTV 40.00% -> 71.43%`."""
    old, new = facts(before), facts(after)
    return [f"{name} {old[name]} -> {new[name]}" for name in new if new[name] != old[name]]


def stamp(line: str) -> str:
    return f"{datetime.now(timezone.utc):%H:%M:%S} {line}"


# What is said of the loan: the first look, a change (with the previous look), the end.
Render = Callable[[str, LoanStatus | None, LoanStatus], list[str]]


def for_people(event: str, before: LoanStatus | None, after: LoanStatus) -> list[str]:
    if event == "state":
        return [stamp(first_line(after))]
    if event == "final":
        return [stamp(f"loan {after.loan_id} is {after.state.value}: nothing more will happen")]
    assert before is not None
    return [stamp(line) for line in changes(before, after)]


def for_scripts(event: str, before: LoanStatus | None, after: LoanStatus) -> list[str]:
    """One JSON object a line: the whole status (the JSON conventions of `status --json`),
    and for a change the facts that changed (the names `facts` gives them)."""
    changed: list[str] = []
    if event == "change":
        assert before is not None
        old, new = facts(before), facts(after)
        changed = [name for name in new if new[name] != old[name]]
        if not changed:
            return []
    record = {"at": datetime.now(timezone.utc), "event": event, "changed": changed,
              "status": after}
    return [json.dumps(jsonable(record))]


async def first_of(call: Awaitable[T], stop: asyncio.Event) -> T | None:
    """The call's result, or None if `stop` is set first (the call is then cancelled)."""
    task = asyncio.ensure_future(call)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    return None


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`; True at once if `stop` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False


def stop_on_signals() -> asyncio.Event:
    """Set on Ctrl-C or SIGTERM: the watcher ends quietly instead of with a traceback."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def follow(status: Callable[[], Awaitable[LoanStatus]], interval: float,
                 say: Callable[[str], None], stop: asyncio.Event,
                 render: Render = for_people) -> None:
    """Say the loan's state, then its changes, until it is final or `stop` is set."""
    previous = await first_of(status(), stop)
    if previous is None:
        return
    for line in render("state", None, previous):
        say(line)
    while not previous.state.is_final:
        if await stopped_within(stop, interval):
            return
        current = await first_of(status(), stop)
        if current is None:
            return
        for line in render("change", previous, current):
            say(line)
        previous = current
    for line in render("final", None, previous):
        say(line)


async def watch_loan(ref: str, interval: float, as_json: bool = False) -> None:
    from loanflow.cli.client import Loan, connect_desk

    stop = stop_on_signals()
    client = await first_of(connect_desk(), stop)
    if client is not None:
        loan = Loan(client, loan_id_of(ref))
        await follow(loan.status, interval, lambda line: typer.echo(line), stop,
                     for_scripts if as_json else for_people)


@commands.command(rich_help_panel=PANEL)
def watch(loan: LoanRef, interval: Interval = 1.0, as_json: AsJson = False) -> None:
    """Follow a loan: its state now, then one line for each change as it happens, until the
    loan closes (or Ctrl-C). --json: one JSON object a line."""
    run(watch_loan(loan, interval, as_json))
