"""Issue 11 on a real desk: an update's reply is the loan's state after it acted on it (a
deposit answers ACTIVE, not AWAITING_COLLATERAL), `extend` prints the new deadline, every
command's JSON has its amounts at their unit and its times in UTC with `Z`, and tables keep
ids and amounts whole at 80 and 120 columns. (`market status` and `market tick` in JSON:
tests/market/test_cli.py.)"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from loanflow.cli.output import when
from tests.cli.conftest import Desk
from tests.cli.support import Cli, application, open_flags
from tests.cli.test_loan_commands import listed

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
CENTS = re.compile(r"^\d+\.\d\d$")
WEI = re.compile(r"^\d+\.\d{18}$")
LTV = re.compile(r"^\d+\.\d{6}$")


def assert_status_json(status: dict[str, Any]) -> None:
    """An ETH loan's status as scripts read it: cents, 18 places, 6-place LTV, `Z` times."""
    for name in ("debt_usd", "principal_usd", "interest_usd", "fees_usd", "shortfall_usd"):
        assert CENTS.match(status[name]), (name, status[name])
    for name in ("collateral_amount", "required_collateral"):
        assert WEI.match(status[name]), (name, status[name])
    assert status["ltv"] is None or LTV.match(status["ltv"]), status["ltv"]
    for name in ("price_observed_at", "disbursed_at", "maturity", "cure_deadline"):
        assert status[name] is None or ISO_Z.match(status[name]), (name, status[name])


async def test_replies_show_the_state_after_the_loan_acted(desk: Desk) -> None:
    cli, loan = desk.cli, desk.loan_id("R1")
    await cli.json(*open_flags(application(loan)))
    await listed(cli, loan, "--asset", "ETH", "--running")
    await cli.ok("price", "ETH", "2000")
    await cli.until(loan, "AWAITING_COLLATERAL")

    # The deposit funds the loan; its reply waits for the payout the loan makes next.
    said = await cli.ok("deposit", loan, "20", "--tx-id", "0xr1")
    assert said.startswith(f"deposit of 20 ETH counted for loan {loan}: ACTIVE, $20,000.00 "
                           "paid out, LTV 50.00%"), said
    status = await cli.json("status", loan)
    assert status["state"] == "ACTIVE" and status["ltv"] == "0.500000"
    assert status["collateral_amount"] == "20.000000000000000000"
    assert_status_json(status)
    await tables_keep_ids_and_amounts(cli, loan)

    await cli.ok("price", "ETH", "1400")
    called = await cli.until(loan, "MARGIN_CALL")
    extended = await cli.json("extend", loan, "--hours", "24", "--reason", "wire in flight",
                              "--operator", "ops-anna")
    assert extended["state"] == "MARGIN_CALL" and extended["settled"] is True
    before = datetime.fromisoformat(called["cure_deadline"])
    after = datetime.fromisoformat(extended["cure_deadline"])
    assert after - before == timedelta(hours=24) and ISO_Z.match(extended["cure_deadline"])
    assert_status_json(extended["status"])
    said = await cli.ok("extend", loan, "--hours", "1", "--reason", "again", "--operator", "o")
    assert f"extended by 1 h to {when(after + timedelta(hours=1))}" in said, said

    cured = await cli.json("top-up", loan, extended["status"]["cure_top_up"], "--tx-id", "0xr2")
    assert cured["state"] == "ACTIVE" and cured["update"] == "top_up"
    debt = cured["status"]["debt_usd"]
    closed = await cli.json("repay", loan, debt, "--reference", "wire-r1")
    assert closed["state"] == "CLOSED" and closed["status"]["debt_usd"] == "0.00"


async def tables_keep_ids_and_amounts(cli: Cli, loan: str) -> None:
    """`list` and `status` at 80 and 120 columns: the id, the LTV and the debt are whole."""
    await listed(cli, loan, "--state", "ACTIVE")
    for columns in ("80", "120"):
        shown = await cli.ok("list", "--state", "ACTIVE", COLUMNS=columns)
        for whole in (loan, "50.00%", "$20,000.00"):
            assert whole in shown, f"{whole} cut at {columns} columns:\n{shown}"
        assert "…" not in shown
        assert "$20,000.00" in await cli.ok("status", loan, COLUMNS=columns)
