"""`loanflow book reconcile` (issue 10, item 5): a read-model row that drifted from its loan is
reported, left alone on --dry-run, and repaired from the loan's own `status`."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import update

from loanflow.schema import Loan
from tests.cli.conftest import Desk
from tests.cli.support import application, open_flags


async def stored(desk: Desk, loan_id: str) -> Loan:
    async with desk.db.transaction() as session:
        row = await session.get(Loan, loan_id)
    assert row is not None
    return row


async def test_reconcile_repairs_a_corrupted_read_model_row(desk: Desk) -> None:
    cli, loan = desk.cli, desk.loan_id("R1")
    await cli.json(*open_flags(application(loan)))
    await cli.json("price", "ETH", "2000")
    await cli.until(loan, "AWAITING_COLLATERAL")
    await cli.json("deposit", loan, "20", "--tx-id", f"{loan}-tx")
    status = await cli.until(loan, "ACTIVE")
    clean = await cli.json("book", "reconcile")
    assert clean["drifted"] == [] and clean["unreachable"] == []

    # What a failed workflow task left behind: a margin call the loan never had, no triggers.
    good = await stored(desk, loan)
    async with desk.db.transaction() as session:
        await session.execute(update(Loan).where(Loan.loan_id == loan).values(
            state="MARGIN_CALL", collateral_amount=Decimal("99"), margin_call_price=None))

    dry = await cli.json("book", "reconcile", "--dry-run")
    [drift] = dry["drifted"]
    assert drift["loan_id"] == loan and not drift["repaired"]
    assert set(drift["fields"]) == {"state", "collateral_amount", "margin_call_price"}
    assert drift["fields"]["state"] == ["MARGIN_CALL", "ACTIVE"]
    assert (await stored(desk, loan)).state == "MARGIN_CALL"  # a dry run changes nothing

    done = await cli.json("book", "reconcile")
    [drift] = done["drifted"]
    assert drift["repaired"]
    row = await stored(desk, loan)
    assert (row.state, row.collateral_amount, row.margin_call_price) == (
        "ACTIVE", Decimal(status["collateral_amount"]), good.margin_call_price)
    assert row.version == good.version  # the loan's next publish still wins
    assert (await cli.json("book", "reconcile"))["drifted"] == []
    table = await cli.ok("book", "reconcile", "--dry-run")
    assert "checked" in table and "0 drifted" in table
