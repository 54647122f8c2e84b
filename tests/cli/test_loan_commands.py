"""A loan's whole life through the `loanflow` command alone, on SQLite and PostgreSQL: open,
price, deposit, list, margin call, extend, book, top-up, repay, timeline, ledger check."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.cli.conftest import Desk
from tests.cli.support import Cli, application, open_flags


async def listed(cli: Cli, loan_id: str, *filters: str, timeout: float = 15) -> dict[str, Any]:
    """The loan's row in `loanflow list`, once visibility shows it with these filters."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = (await cli.json("list", *filters))["loans"]
        found = [r for r in rows if r["loan_id"] == loan_id]
        if found:
            return found[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{loan_id} not listed with {filters}: {rows}")
        await asyncio.sleep(0.3)


async def in_book(cli: Cli, loan_id: str, timeout: float = 15) -> dict[str, Any]:
    """The loan's margin call in `loanflow book`, once the read model has it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        book = await cli.json("book")
        calls = [c for c in book["margin_calls"] if c["loan_id"] == loan_id]
        if calls:
            return calls[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{loan_id} not in the book's margin calls: {book}")
        await asyncio.sleep(0.3)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_loan_from_open_to_close_with_the_cli(desk: Desk) -> None:
    cli, loan = desk.cli, desk.loan_id("L1")
    opened = await cli.json(*open_flags(application(loan)))
    assert opened["workflow_id"] == f"loan-{loan}" and opened["task_queue"] == desk.task_queue

    # A desk price reaches every running ETH loan (the loan also finds it in the store).
    await listed(cli, loan, "--asset", "ETH", "--running")
    priced = await cli.json("price", "ETH", "2000")
    assert loan in priced["signalled"] and priced["observation_id"] >= 1
    await cli.until(loan, "AWAITING_COLLATERAL")

    assert (await cli.json("deposit", loan, "20", "--tx-id", "0xabc"))["update"] == "confirm_deposit"
    active = await cli.until(f"loan-{loan}", "ACTIVE")  # the workflow id works too
    assert Decimal(active["ltv"]) == Decimal("0.5")
    refused = await cli.error("top-up", loan, "1", "--tx-id", "0xabc")
    assert refused == "tx_id: 0xabc was already counted for this loan"

    row = await listed(cli, loan, "--state", "ACTIVE", "--asset", "ETH", "--borrower", "B-7",
                       "--ltv-max", "50%")
    assert row["state"] == "ACTIVE" and row["workflow_status"] == "RUNNING"

    # ETH falls to 1,400: LTV 71.4%, a margin call with a deadline and the exact cures.
    await cli.ok("price", "ETH", "1400")
    called = await cli.until(loan, "MARGIN_CALL")
    assert called["cure_deadline"] and called["cure_top_up"] and called["cure_repay_usd"]
    await listed(cli, loan, "--state", "MARGIN_CALL", "--ltv-min", "0.7")
    # The run that onboarded it (continued as new once ACTIVE, its search attributes as they
    # were then) is not the loan: no list shows it as ACTIVE any more.
    assert loan not in [r["loan_id"] for r in (await cli.json("list", "--state", "ACTIVE"))["loans"]]
    table = await cli.ok("list", "--state", "MARGIN_CALL", "--asset", "ETH")
    assert loan in table and "71.43%" in table and "LoanState IN ('MARGIN_CALL')" in table
    table = await cli.ok("status", loan)
    assert "MARGIN_CALL" in table and "cure deadline" in table and "ETH" in table

    extended = await cli.json("extend", loan, "--hours", "24", "--reason", "wire in flight",
                              "--operator", "ops-anna")
    assert extended["state"] == "MARGIN_CALL"
    later = await cli.json("status", loan)
    moved = datetime.fromisoformat(later["cure_deadline"]) - datetime.fromisoformat(
        called["cure_deadline"])
    assert moved.total_seconds() == 24 * 3600

    # The book marks the call to the same price and finds the same cures as the loan itself.
    call = await in_book(cli, loan)
    assert Decimal(call["cure_repay_usd"]) == Decimal(later["cure_repay_usd"])
    assert Decimal(call["cure_top_up"]) == Decimal(later["cure_top_up"])

    await cli.ok("top-up", loan, later["cure_top_up"], "--tx-id", "0xdef")
    cured = await cli.until(loan, "ACTIVE")
    await cli.ok("repay", loan, cured["debt_usd"], "--reference", "wire-1")
    closed = await cli.until(loan, "CLOSED")
    assert Decimal(closed["collateral_amount"]) == 0
    assert await cli.error("repay", loan, "1.00", "--reference", "wire-2") == (
        f"loan {loan} is CLOSED: it accepts no more updates")

    await assert_timeline(cli, loan)
    check = await cli.json("ledger", "check")
    assert check["balanced"] and check["entries"] > 0 and check["problems"] == []
    assert "the books balance" in await cli.ok("ledger", "check")


async def assert_timeline(cli: Cli, loan: str) -> None:
    """Decisions, notices and ledger entries, in time order; the table shows them too."""
    events = (await cli.json("timeline", loan))["events"]
    times = [e["at"] for e in events]
    assert times == sorted(times)
    kinds = {(e["source"], e["kind"]) for e in events}
    for expected in [("decision", "state"), ("decision", "margin_call"),
                     ("decision", "cure_extended"), ("notice", "margin_call"),
                     ("notice", "cure_extended"), ("notice", "loan_closed"), ("ledger", "entry")]:
        assert expected in kinds, f"{expected} missing from the timeline: {sorted(kinds)}"
    table = await cli.ok("timeline", loan)
    assert "cure_extended" in table and "ledger" in table
    assert "price=1400" in table and "E+" not in table  # plain decimals on both databases


async def test_manual_kyc_review_approved_and_rejected(desk: Desk, tmp_path: Any) -> None:
    """Large loans wait for a person: `kyc approve` lets one go on, `kyc reject` ends one."""
    cli, k1, k2 = desk.cli, desk.loan_id("K1"), desk.loan_id("K2")
    big = application(k1, principal_usd="1200000.00", collateral_asset="BTC",
                      collateral_amount="30")
    path = tmp_path / "application.json"
    path.write_text(json.dumps({**big, "loan_id": "from-the-file"}))
    # The file is the base; a flag overrides one of its fields.
    await cli.ok("open", "--file", str(path), "--loan-id", k1)
    await cli.ok("open", "--file", "-", stdin=json.dumps({**big, "loan_id": k2}))

    for loan in (k1, k2):
        await until_manual_review(cli, loan)
    approved = await cli.json("kyc", "approve", k1, "--reviewer", "ops-ben",
                              "--reason", "documents verified")
    assert approved["update"] == "kyc_decision"
    # No price stored yet: the loan waits for one, and says so. The reply knows at once (it
    # waited the full 10 s for a loan that could not go on, then said "still acting").
    assert approved["settled"] is True and approved["state"] == "KYC_REVIEW"
    assert approved["status"]["waiting_for"] == "price"
    assert approved["status"]["reason"].startswith(
        "waiting for a fresh BTC price for approval (none observed in the last 15 min): a "
        "market tick or `loanflow price BTC ...` brings one; it gives up ")
    await cli.ok("kyc", "reject", k2, "--reviewer", "ops-ben", "--reason", "sanctions hit")
    rejected = await cli.until(k2, "REJECTED")
    assert "sanctions hit" in rejected["reason"]

    await cli.ok("price", "BTC", "100000")
    going_on = await cli.until(k1, "AWAITING_COLLATERAL")
    assert going_on["waiting_for"] is None and going_on["reason"] is None
    refused = await cli.error("kyc", "approve", k1, "--reviewer", "ops-ben", "--reason", "again")
    assert refused == f"loan {k1} is not waiting for a KYC decision (state AWAITING_COLLATERAL)"


async def until_manual_review(cli: Cli, loan: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await cli.json("status", loan))["kyc_status"] != "manual_review":
        assert asyncio.get_running_loop().time() < deadline, f"{loan} never reached review"
        await asyncio.sleep(0.3)


async def test_a_price_reaches_only_loans_of_its_asset(desk: Desk) -> None:
    cli, eth, btc = desk.cli, desk.loan_id("P1"), desk.loan_id("P2")
    await cli.ok(*open_flags(application(eth)))
    await cli.ok(*open_flags(application(btc, collateral_asset="BTC", collateral_amount="1")))
    await listed(cli, eth, "--asset", "ETH", "--running")
    await listed(cli, btc, "--asset", "BTC", "--running")
    priced = await cli.json("price", "BTC", "100000", "--observed-at",
                            datetime.now().astimezone().isoformat(), "--source", "kraken")
    assert btc in priced["signalled"] and eth not in priced["signalled"]
    assert priced["source"] == "kraken"
    line = await cli.ok("price", "ETH", "2000")
    assert f"{eth}" in line and btc not in line
