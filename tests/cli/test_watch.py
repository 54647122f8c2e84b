"""`loanflow watch L1`: the loan's state, then one line per change as it happens, until the loan
closes (exit 0) or Ctrl-C (exit 0, nothing on stderr); an unknown loan is one error line."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from decimal import Decimal

from loanflow.cli.watch import changes, first_line, for_scripts
from loanflow.models import LoanState, LoanStatus
from tests.cli.conftest import Desk
from tests.cli.support import LOANFLOW, Cli, application, ctrl_c_works, open_flags


class Watcher:
    """`loanflow watch` running as a subprocess, its output read line by line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []

    async def line_with(self, text: str, timeout: float = 30) -> str:
        """The next line that contains `text` (lines before it are kept in `lines`)."""
        async def read() -> str:
            while True:
                line = await asyncio.to_thread(self.process.stdout.readline)  # type: ignore[union-attr]
                assert line, f"watch ended before {text!r}: {self.lines}"
                self.lines.append(line.rstrip("\n"))
                if text in line:
                    return line.rstrip("\n")
        return await asyncio.wait_for(read(), timeout)

    async def exit_code(self, timeout: float = 30) -> int:
        return await asyncio.to_thread(self.process.wait, timeout)


@asynccontextmanager
async def watching(cli: Cli, loan: str) -> AsyncIterator[Watcher]:
    process = subprocess.Popen([LOANFLOW, "watch", loan, "--interval", "0.2"], cwd=cli.cwd,
                               env=cli.environ(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_works)
    try:
        yield Watcher(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def status(**changed: object) -> LoanStatus:
    values: dict[str, object] = {
        "loan_id": "W1", "state": LoanState.ACTIVE, "ltv": Decimal("0.4"),
        "collateral_asset": "BTC", "collateral_amount": Decimal("1"),
        "debt_usd": Decimal("40000"), "principal_usd": Decimal("40000"),
        "interest_usd": Decimal(0), "fees_usd": Decimal(0), "cure_deadline": None,
        "cure_top_up": None, "cure_repay_usd": None, "price": Decimal("100000"),
        "price_observed_at": datetime(2026, 12, 3, tzinfo=timezone.utc), "price_fresh": True,
        "required_collateral": Decimal("1"), "deposit_address": None, "funding_deadline": None,
        "disbursed_at": None, "maturity": None, "shortfall_usd": Decimal(0), "reason": None,
        "kyc_status": "approved", "trigger_prices": {},
    }
    return LoanStatus.model_validate({**values, **changed})


def test_only_what_changed_is_printed_one_line_each() -> None:
    before = status()
    assert first_line(before) == ("loan W1: state ACTIVE, price $100,000.00 per BTC, "
                                  "LTV 40.00%, debt $40,000.00, collateral 1 BTC")
    assert changes(before, status()) == []
    call = status(state=LoanState.MARGIN_CALL, reason="LTV 71.43% at or above 70.00%",
                  ltv=Decimal("0.7143"), price=Decimal("56000"),
                  cure_deadline=datetime(2026, 12, 5, 4, 14, tzinfo=timezone.utc))
    assert changes(before, call) == [
        "state ACTIVE -> MARGIN_CALL (LTV 71.43% at or above 70.00%)",
        "price $100,000.00 per BTC -> $56,000.00 per BTC",
        "LTV 40.00% -> 71.43%",
        "cure deadline - -> 2026-12-05 04:14 UTC",
    ]


def test_watch_in_json_is_one_object_a_line() -> None:
    """Issue 11: `--json` on every command; `watch --json` is JSON lines, the status in the
    conventions of `status --json` (amounts at their unit, LTV 6 places, times with Z)."""
    import json

    before = status()
    call = status(state=LoanState.MARGIN_CALL, ltv=Decimal("0.71428571428571428571"),
                  price=Decimal("56000"),
                  cure_deadline=datetime(2026, 12, 5, 4, 14, tzinfo=timezone.utc))
    [first] = for_scripts("state", None, before)
    assert json.loads(first)["event"] == "state" and json.loads(first)["changed"] == []
    assert for_scripts("change", before, status()) == []  # nothing changed: nothing said
    [line] = for_scripts("change", before, call)
    change = json.loads(line)
    assert change["event"] == "change" and change["changed"] == [
        "state", "price", "LTV", "cure deadline"]
    assert change["at"].endswith("Z") and change["status"]["ltv"] == "0.714286"
    assert change["status"]["price"] == "56000.00"
    assert change["status"]["cure_deadline"] == "2026-12-05T04:14:00Z"
    assert change["status"]["collateral_amount"] == "1.00000000"


async def test_watch_follows_a_loan_until_it_closes(desk: Desk) -> None:
    cli, loan = desk.cli, desk.loan_id("W1")
    await cli.json(*open_flags(application(loan)))
    async with watching(cli, loan) as watcher:
        first = await watcher.line_with(f"loan {loan}: state")
        assert "KYC_REVIEW" in first or "AWAITING_COLLATERAL" in first
        await cli.ok("price", "ETH", "2000")
        await watcher.line_with("-> AWAITING_COLLATERAL")
        await cli.ok("deposit", loan, "20", "--tx-id", "0xw1")
        await watcher.line_with("state AWAITING_COLLATERAL -> ACTIVE")
        await cli.ok("price", "ETH", "1400")
        await watcher.line_with("state ACTIVE -> MARGIN_CALL")
        debt = (await cli.json("status", loan))["debt_usd"]
        await cli.ok("repay", loan, debt, "--reference", "w1")
        await watcher.line_with("-> CLOSED")
        await watcher.line_with(f"loan {loan} is CLOSED: nothing more will happen")
        assert await watcher.exit_code() == 0
    # One line per change, each stamped with the time: no repeats of unchanged facts.
    changed = [line.split(" ", 1)[1] for line in watcher.lines[1:]]
    assert len(changed) == len(set(changed))
    assert any(line.startswith("LTV 50.00% -> 71.43%") for line in changed), changed


async def test_ctrl_c_ends_the_watch_quietly(desk: Desk) -> None:
    cli, loan = desk.cli, desk.loan_id("W2")
    await cli.json(*open_flags(application(loan)))
    async with watching(cli, loan) as watcher:
        await watcher.line_with(f"loan {loan}: state")
        watcher.process.send_signal(signal.SIGINT)
        assert await watcher.exit_code() == 0
        assert watcher.process.stderr is not None and watcher.process.stderr.read() == ""


async def test_watching_an_unknown_loan_is_one_error_line(desk: Desk) -> None:
    assert await desk.cli.error("watch", "NOPE-1") == "unknown loan NOPE-1"
