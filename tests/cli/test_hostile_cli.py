"""Issue 10, item 7: `loanflow deposit` with a tx id another loan counted says so in one line
naming tx_id (it once printed only "Activity task failed"), and books nothing."""

from __future__ import annotations

from tests.cli.conftest import Desk
from tests.cli.support import application, open_flags
from tests.workflows.book import count


async def test_a_tx_id_of_another_loan_is_refused_naming_it(desk: Desk) -> None:
    cli = desk.cli
    first, second = desk.loan_id("T1"), desk.loan_id("T2")
    for loan in (first, second):
        await cli.json(*open_flags(application(loan)))
    await cli.json("price", "ETH", "2000")
    for loan in (first, second):
        await cli.until(loan, "AWAITING_COLLATERAL")
    await cli.json("deposit", first, "20", "--tx-id", "0xshared")
    await cli.until(first, "ACTIVE")

    line = await cli.error("deposit", second, "20", "--tx-id", "0xshared")
    assert line.startswith("tx_id: 0xshared") and first in line, line
    assert await count(desk.db, "custody_transfers", second) == 0
    status = await cli.json("status", second)
    assert status["state"] == "AWAITING_COLLATERAL" and status["collateral_amount"] == "0.000000000000000000"
    # The loan goes on: its own deposit is taken.
    await cli.json("deposit", second, "20", "--tx-id", "0xown")
    await cli.until(second, "ACTIVE")
