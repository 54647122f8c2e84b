"""Every failure is one clear line on stderr and a non-zero exit: an unknown loan, an update
its validator refuses, the server unreachable, bad input naming the field, bad settings."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from loanflow.db import Database
from loanflow.ports import free_port
from loanflow.schema import LedgerEntry, LedgerLineRow
from tests.cli.conftest import Desk
from tests.cli.support import Cli, application, open_flags


async def test_an_unknown_loan(desk: Desk) -> None:
    cli = desk.cli
    assert await cli.error("status", "NOPE") == "unknown loan NOPE"
    assert await cli.error("status", "loan-NOPE") == "unknown loan NOPE"
    assert await cli.error("repay", "NOPE", "10.00", "--reference", "w-1") == "unknown loan NOPE"
    assert await cli.error("timeline", "NOPE") == "unknown loan NOPE"


async def test_updates_refused_by_the_loans_validators(desk: Desk) -> None:
    cli, loan = desk.cli, desk.loan_id("V1")
    await cli.ok(*open_flags(application(loan)))  # no price yet: it stays in onboarding
    refused = await cli.error("repay", loan, "100.00", "--reference", "w-1")
    assert refused.startswith(f"repay is not accepted while loan {loan} is ")
    assert refused.endswith("(only in ACTIVE, MARGIN_CALL)")
    refused = await cli.error("extend", loan, "--hours", "24", "--reason", "r", "--operator", "o")
    assert refused.startswith(f"extend_cure is not accepted while loan {loan} is ")
    refused = await cli.error("top-up", loan, "1", "--tx-id", "t-1")
    assert refused.startswith(f"top_up is not accepted while loan {loan} is ")
    assert await cli.error(*open_flags(application(loan))) == (
        f"loan {loan} already exists (workflow loan-{loan}); loan ids are never reused")


async def test_the_server_unreachable(cli: Cli) -> None:
    address = f"127.0.0.1:{free_port()}"
    expected = (f"cannot reach Temporal at {address}: start the stack with `make run` "
                "(or `loanflow up`), or set TEMPORAL_ADDRESS")
    for command in (["status", "L1"], ["list"], ["repay", "L1", "5.00", "--reference", "w"],
                    ["price", "BTC", "50000"]):
        assert await cli.error(*command, TEMPORAL_ADDRESS=address) == expected


async def test_no_worker_polls_the_loans_queue(cli: Cli) -> None:
    """The loan exists but nothing polls its queue: a query and an update each give up after
    LOANFLOW_CLI_ANSWER_SECONDS with the queue to start a worker for, not a hang."""
    loan, queue = f"NW-{cli.env['LOANFLOW_TASK_QUEUE'][-8:]}", cli.env["LOANFLOW_TASK_QUEUE"]
    await cli.ok(*open_flags(application(loan)))
    expected = (f"no worker answered for loan {loan} within 1.5 s: start one for task queue "
                f"'{queue}' with `loanflow worker` (or `loanflow up`)")
    for command in (["status", loan], ["repay", loan, "5.00", "--reference", "w-1"]):
        message = await cli.error(*command, LOANFLOW_CLI_ANSWER_SECONDS="1.5")
        assert message.startswith(expected), message
        assert message.endswith(f"check `loanflow status {loan}` before sending it again")


@pytest.mark.parametrize(("command", "message"), [
    (["deposit", "L1", "abc", "--tx-id", "t"], "amount: Input should be a valid decimal"),
    (["deposit", "L1", "0", "--tx-id", "t"],
     "amount: must be a positive number of collateral units"),
    (["repay", "L1", "10.001", "--reference", "w"], "amount_usd: must be whole cents"),
    (["extend", "L1", "--hours", "0", "--reason", "r", "--operator", "o"],
     "hours: Input should be greater than 0"),
    (["kyc", "approve", "L1", "--reviewer", " ", "--reason", "ok"],
     "reviewer: String should have at least 1 character"),
    (["list", "--state", "BROKE"], "state: 'BROKE' is not a loan state (KYC_REVIEW, "
     "AWAITING_COLLATERAL, ACTIVE, MARGIN_CALL, LIQUIDATING, CLOSED, REJECTED, CANCELLED, "
     "DEFAULTED)"),
    (["list", "--ltv-min", "70"], "ltv-min: '70' looks like a percentage: write 70% or 0.7 "
     "(a ratio)"),
    (["list", "--asset", "XRP"], "asset: 'XRP' is not supported (BTC or ETH)"),
    (["list", "--borrower", "x' OR 1=1"], "borrower: \"x' OR 1=1\" must be non-empty and "
     "contain no quotes"),
    (["price", "DOGE", "1"], "asset: 'DOGE' is not supported (BTC or ETH)"),
    (["price", "BTC", "0"], "price: must be a positive price"),
    (["price", "ETH", "1e309"], "price: 1E+309 is outside the sane range of ETH (0.1 to "
     "1,000,000 USD)"),
    (["price", "BTC", "5"], "price: 5 is outside the sane range of BTC (10 to 10,000,000 USD)"),
    (["price", "BTC", "50000", "--observed-at", "2026-01-01T00:00:00"],
     "observed_at: must carry a time zone (ISO 8601 UTC, e.g. 2022-11-09T23:00:00Z)"),
    (["status", " "], "loan id: must not be empty (e.g. L1 or loan-L1)"),
])
async def test_bad_input_names_the_field(cli: Cli, command: list[str], message: str) -> None:
    # Checked before anything is sent: the server is never asked.
    assert await cli.error(*command, TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}") == message


async def test_a_bad_application_names_the_field(cli: Cli, tmp_path: Path) -> None:
    flags = open_flags(application("L1"))
    no_email = flags[:flags.index("--email")] + flags[flags.index("--email") + 2:]
    assert await cli.error(*no_email) == "borrower.email: Field required"
    assert await cli.error(*flags, "--principal", "lots") == (
        "principal_usd: Input should be a valid decimal")
    assert await cli.error(*flags, "--asset", "XRP") == (
        "collateral_asset: 'XRP' is not supported (BTC or ETH)")
    assert await cli.error(*flags, "--rate", "12") == (
        "annual_rate: must be a fraction in [0, 1), e.g. 0.12 for 12%")
    path = tmp_path / "app.json"
    path.write_text(json.dumps({**application("L1"), "policy": {"margin_call_ltv": "0.9"}}))
    refused = await cli.error("open", "--file", str(path), "--principal", "100")
    assert refused == "policy: margin_call_ltv (0.9) must be below liquidation_ltv (0.80)"
    # A sign typo: the ladder's order holds, but the first sale would sell everything.
    path.write_text(json.dumps({**application("L1"), "policy": {"post_liquidation_ltv": "-0.5"}}))
    assert await cli.error("open", "--file", str(path)) == (
        "policy: post_liquidation_ltv (-0.5) must be above 0: a sale sized to reach it would "
        "sell all the collateral")
    path.write_text("{not json")
    assert "is not JSON" in await cli.error("open", "--file", str(path), code=2)


async def test_usage_errors_are_one_line_too(cli: Cli) -> None:
    assert await cli.error("deposit", "L1", "5", code=2) == (
        "Missing option '--tx-id'. (see `loanflow --help`)")
    assert await cli.error("borrow", code=2) == (
        "No such command 'borrow'. Did you mean 'book'? (see `loanflow --help`)")


async def test_invalid_settings_fail_at_start_up_naming_the_setting(cli: Cli) -> None:
    assert await cli.error("list", SMTP_PORT="lots") == (
        "invalid setting: SMTP_PORT: Input should be a valid integer, unable to parse string "
        "as an integer")
    assert await cli.error("book", LOANFLOW_POLICY_MARGIN_CALL_LTV="0.9") == (
        "invalid setting: LOANFLOW_POLICY_MARGIN_CALL_LTV: margin_call_ltv (0.9) must be "
        "below liquidation_ltv (0.80)")
    assert await cli.error("book", LOANFLOW_POLICY_POST_LIQUIDATION_LTV="0") == (
        "invalid setting: LOANFLOW_POLICY_POST_LIQUIDATION_LTV: post_liquidation_ltv (0) must "
        "be above 0: a sale sized to reach it would sell all the collateral")
    assert await cli.error("book", LOANFLOW_POLICY_CURE_PERIOD_HOURS="soon") == (
        "invalid setting: LOANFLOW_POLICY_CURE_PERIOD_HOURS: Input should be a valid integer, "
        "unable to parse string as an integer")
    # Help still works while a setting is wrong.
    done = await cli.run("list", "--help", SMTP_PORT="lots")
    assert done.returncode == 0 and "--state" in done.stdout and done.stderr == ""


async def test_a_ledger_that_does_not_balance(cli: Cli, store: Database) -> None:
    async with store.transaction() as session:
        session.add(LedgerEntry(key="X:bad", loan_id="X", memo="hand-made", lines=[
            LedgerLineRow(account="cash", currency="USD", amount=Decimal("10.00")),
            LedgerLineRow(account="loan:X:receivable", currency="USD", amount=Decimal("-9.99")),
        ]))
    message = await cli.error("ledger", "check")
    assert message == "the books do not balance: entry 1 is off by 0.01 USD"
    result = json.loads((await cli.run("ledger", "check", "--json")).stdout)
    assert not result["balanced"] and result["problems"] == ["entry 1 is off by 0.01 USD"]


async def test_database_problems(cli: Cli, tmp_path: Path) -> None:
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    assert (await cli.error("book", DATABASE_URL=empty)).endswith(
        "run `loanflow db upgrade`")
    nowhere = f"postgresql://nobody@127.0.0.1:{free_port()}/loanflow"
    message = await cli.error("ledger", "check", DATABASE_URL=nowhere)
    assert message.startswith("database error: ") and message.endswith("(check DATABASE_URL)")
