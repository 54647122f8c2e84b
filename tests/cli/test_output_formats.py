"""Issue 11, "Numbers and replies": every figure a person or a program reads is in fixed point
at its unit (never `1.4E+3` or `0E-8`), times are ISO 8601 UTC with `Z`, tables never cut an
id or an amount, update replies say what the loan did, and help is free of type noise. These
are the pure parts; tests/cli/test_update_replies.py runs the commands on a real desk."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console

from loanflow.cli import output, replies
from loanflow.cli.app import app
from loanflow.cli.loans import status_lines
from loanflow.cli.output import jsonable, table
from loanflow.models import (
    CollateralDeposit,
    CureExtension,
    KycDecision,
    LoanState,
    LoanStatus,
    Repayment,
)
from tests.cli.support import Cli

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
EXPONENT = re.compile(r"\d[eE][+-]?\d")


def status(**changes: Any) -> LoanStatus:
    values: dict[str, Any] = dict(
        loan_id="L1", state=LoanState.ACTIVE, ltv=Decimal("0.5999999700000015"),
        collateral_asset="ETH", collateral_amount=Decimal("2E+1"), debt_usd=Decimal("20000"),
        principal_usd=Decimal("2E+4"), interest_usd=Decimal("0E-2"), fees_usd=Decimal(0),
        cure_deadline=None, cure_top_up=None, cure_repay_usd=None, price=Decimal("1.4E+3"),
        price_observed_at=NOW, price_fresh=True, required_collateral=Decimal("20"),
        deposit_address="0xdead", funding_deadline=NOW + timedelta(hours=72),
        disbursed_at=NOW, maturity=NOW + timedelta(days=90), shortfall_usd=Decimal(0),
        reason=None, kyc_status="approved",
        trigger_prices={"warning": Decimal("1.5384615E+3"), "liquidation": None})
    values.update(changes)
    return LoanStatus(**values)


# --- JSON -------------------------------------------------------------------------------------


def test_status_json_has_every_amount_at_its_unit() -> None:
    data = jsonable(status(cure_top_up=Decimal("0E-8"), cure_repay_usd=Decimal("6.4E+3")))
    assert data["collateral_amount"] == "20.000000000000000000"  # ETH: 18 places
    assert data["required_collateral"] == "20.000000000000000000"
    assert data["cure_top_up"] == "0.000000000000000000"
    assert data["debt_usd"] == "20000.00" and data["interest_usd"] == "0.00"
    assert data["cure_repay_usd"] == "6400.00" and data["price"] == "1400.00"
    assert data["ltv"] == "0.600000"  # six places, rounded up (against the borrower)
    assert data["trigger_prices"] == {"warning": "1538.4615", "liquidation": None}
    assert data["price_observed_at"] == "2026-11-21T12:00:00Z"
    assert not EXPONENT.search(json.dumps(data))


def test_btc_amounts_have_eight_places_and_ledger_amounts_their_currency() -> None:
    data = jsonable({"loans": [status(collateral_asset="BTC", collateral_amount=Decimal("0E-8"),
                                      required_collateral=Decimal("1"))],
                     "currencies": [{"currency": "USD", "debits": Decimal("4E+4")},
                                    {"currency": "BTC", "credits": Decimal("1.5")}]})
    loan = data["loans"][0]
    assert (loan["collateral_amount"], loan["required_collateral"]) == ("0.00000000",
                                                                        "1.00000000")
    assert data["currencies"] == [{"currency": "USD", "debits": "40000.00"},
                                  {"currency": "BTC", "credits": "1.50000000"}]


def test_a_figure_is_never_rounded_away_and_odd_values_stay_readable() -> None:
    # A price observed to a tenth of a cent keeps it; an LTV bound of the histogram is an LTV.
    assert jsonable({"asset": "BTC", "price": Decimal("16005.125")})["price"] == "16005.125"
    # PostgreSQL's NUMERIC pads to its scale: the zeros are not digits of the amount.
    assert jsonable({"debt_usd": Decimal("45000.000000000000000000")}) == {"debt_usd": "45000.00"}
    assert jsonable({"asset": "BTC", "amount": Decimal("1.000000000000000000")}) == {
        "asset": "BTC", "amount": "1.00000000"}
    assert jsonable({"histogram": [{"low": Decimal("0.7"), "high": None}]}) == {
        "histogram": [{"low": "0.700000", "high": None}]}
    assert jsonable({"ltv": Decimal("Infinity")}) == {"ltv": "Infinity"}
    assert jsonable({"annual_rate": Decimal("1E-1"), "n": Decimal("0E-8")}) == {
        "annual_rate": "0.1", "n": "0"}


def test_an_ltv_kept_as_text_in_a_decisions_details_is_shortened_too() -> None:
    detail = {"ltv": "0.71428571428571428571428571428571428571428571428571428571428571",
              "max_initial_ltv": "0.5", "reason": "n/a", "cure_target_ltv": "not a number"}
    assert jsonable({"detail": detail})["detail"] == {
        "ltv": "0.714286", "max_initial_ltv": "0.500000", "reason": "n/a",
        "cure_target_ltv": "not a number"}


def test_times_are_utc_with_z_naive_ones_taken_as_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    assert output.iso(datetime(2026, 11, 21, 21, 0, tzinfo=tokyo)) == "2026-11-21T12:00:00Z"
    assert output.iso(datetime(2026, 11, 21, 12, 0)) == "2026-11-21T12:00:00Z"
    assert output.iso_text("2026-11-21T12:00:00.5+00:00") == "2026-11-21T12:00:00.500000Z"
    assert output.iso_text("") == ""


# --- formats for people -----------------------------------------------------------------------


def test_people_formats_have_no_exponent() -> None:
    assert output.usd(Decimal("1.4E+3")) == "$1,400.00"
    assert output.units("BTC", Decimal("0E-8")) == "0 BTC"
    assert output.number(Decimal("1E+1")) == "10"
    assert output.cell_text(Decimal("1.4E+3")).plain == "1400"
    lines = dict(status_lines(status(), NOW))
    assert not any(EXPONENT.search(v) for v in lines.values()), lines


def test_a_defaulted_loan_shows_the_shortfall_written_off() -> None:
    defaulted = status(state=LoanState.DEFAULTED, debt_usd=Decimal(0), ltv=None,
                       collateral_amount=Decimal(0), shortfall_usd=Decimal("1234.5"),
                       reason="collateral exhausted with $1,234.50 unpaid")
    debt = dict(status_lines(defaulted, NOW))["debt"]
    assert debt.startswith("$0.00 after $1,234.50 written off as a loss")


# --- replies to updates -----------------------------------------------------------------------


def test_a_deposit_that_funds_the_loan_is_waited_for_until_it_pays_out() -> None:
    funded = status(state=LoanState.AWAITING_COLLATERAL)
    assert replies.still_acting("confirm_deposit", funded)
    short = status(state=LoanState.AWAITING_COLLATERAL, collateral_amount=Decimal(5))
    assert not replies.still_acting("confirm_deposit", short)
    assert not replies.still_acting("confirm_deposit", status())
    assert replies.still_acting("kyc_decision", status(state=LoanState.KYC_REVIEW))
    assert not replies.still_acting("top_up", status(state=LoanState.MARGIN_CALL))
    # A loan waiting for a fresh price is done acting for now: the reply says so at once.
    assert not replies.still_acting("kyc_decision", status(state=LoanState.KYC_REVIEW,
                                                           waiting_for="price"))
    assert not replies.still_acting("confirm_deposit", status(
        state=LoanState.AWAITING_COLLATERAL, waiting_for="price"))
    said = replies.reply("confirm_deposit", CollateralDeposit(amount=Decimal("20"), tx_id="t"),
                         status(state=LoanState.AWAITING_COLLATERAL, waiting_for="price"),
                         True, NOW)
    assert said == ("deposit of 20 ETH counted for loan L1: fully funded, AWAITING_COLLATERAL: "
                    "it pays out once a fresh ETH price confirms the LTV (`loanflow price ETH "
                    "...` or a market tick brings one)")


def test_replies_say_what_the_loan_did_in_the_commands_words() -> None:
    deposit = CollateralDeposit(amount=Decimal(20), tx_id="0xabc")
    said = replies.reply("confirm_deposit", deposit, status(), True, NOW)
    assert said.startswith("deposit of 20 ETH counted for loan L1: ACTIVE, $20,000.00 paid out")
    short = status(state=LoanState.AWAITING_COLLATERAL, collateral_amount=Decimal(5))
    said = replies.reply("confirm_deposit", CollateralDeposit(amount=Decimal(5), tx_id="t"),
                         short, True, NOW)
    assert "5 ETH of 20 ETH received, it waits for 15 ETH more" in said
    waiting = replies.reply("confirm_deposit", deposit,
                            status(state=LoanState.AWAITING_COLLATERAL), False, NOW)
    assert waiting.endswith("still acting on it: see `loanflow status L1`")

    closed = status(state=LoanState.CLOSED, debt_usd=Decimal(0))
    said = replies.reply("repay", Repayment(amount_usd=Decimal("20016.44"), reference="w"),
                         closed, True, NOW)
    assert said == "repayment of $20,016.44 applied to loan L1: repaid in full, CLOSED, " \
                   "collateral released"

    called = status(state=LoanState.MARGIN_CALL, cure_deadline=NOW + timedelta(hours=72),
                    cure_top_up=Decimal("1.5"), cure_repay_usd=Decimal("2000"))
    said = replies.reply("extend_cure", CureExtension(hours=24, reason="r", operator="o"),
                         called, True, NOW)
    assert said.startswith("cure deadline of loan L1 extended by 24 h to 2026-11-24 12:00 UTC "
                           "(3d 0h left); it is MARGIN_CALL: cure by adding 1.5 ETH or "
                           "repaying $2,000.00")
    said = replies.reply("top_up", CollateralDeposit(amount=Decimal("0.5"), tx_id="t"),
                         called, True, NOW)
    assert "top-up of 0.5 ETH counted" in said and "still in margin call" in said
    approve = KycDecision(approved=True, reviewer="ben", reason="ok")
    said = replies.reply("kyc_decision", approve, status(state=LoanState.KYC_REVIEW), True, NOW)
    assert said == ("KYC approved for loan L1: it is KYC_REVIEW, waiting for a fresh ETH price "
                    "to check its LTV (`loanflow price ETH ...` or a market tick brings one)")


# --- tables -----------------------------------------------------------------------------------

ROW = ["CLI-L1-3f9a0c", "MARGIN_CALL", "ETH", "71.43%", "$40,000.00", "B-7",
       "2026-11-23 12:16 UTC (1d 23h)", "running", "2026-11-21 12:00 UTC"]
COLUMNS = ["loan", "state", "asset", "LTV", "debt", "borrower", "cure deadline", "workflow",
           "started"]


@pytest.mark.parametrize("width", [80, 120])
def test_a_table_never_cuts_an_id_or_an_amount(width: int, monkeypatch: Any) -> None:
    narrow = Console(width=width, highlight=False, record=True, file=open("/dev/null", "w"))
    monkeypatch.setattr(output, "console", narrow)
    output.show(table("loans", COLUMNS, [ROW], right=("LTV", "debt"), keep=("state", "asset"),
                      drop=("started", "workflow", "borrower")))
    text = narrow.export_text()
    for whole in ("CLI-L1-3f9a0c", "MARGIN_CALL", "71.43%", "$40,000.00"):
        assert whole in text, f"{whole!r} cut at {width} columns:\n{text}"
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width


def test_lesser_columns_are_dropped_only_when_needed() -> None:
    cells = [[output.cell_text(c) for c in ROW]]
    whole = {"loan", "state", "asset", "LTV", "debt"}
    drop = ["started", "workflow", "borrower"]
    assert output.fitting(COLUMNS, cells, whole, drop, 250) == COLUMNS
    narrow = output.fitting(COLUMNS, cells, whole, drop, 80)
    assert "started" not in narrow and {"loan", "LTV", "debt", "cure deadline"} <= set(narrow)


# --- help and arguments -----------------------------------------------------------------------


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command of the CLI with its path, sub-commands included."""
    found = []
    for name, command in getattr(group, "commands", {}).items():
        found.append(((*path, name), command))
        found += commands(command, (*path, name))
    return found


def test_every_argument_and_option_is_explained() -> None:
    import typer.main

    root = typer.main.get_command(app)
    for path, command in commands(root):
        for param in command.params:
            if getattr(param, "hidden", False):
                continue  # not shown in help (a second spelling of a shown option)
            assert getattr(param, "help", None), f"loanflow {' '.join(path)}: {param.name} " \
                                                  "has no help"
        assert command.help or command.short_help, f"loanflow {' '.join(path)} has no help"


@pytest.mark.parametrize("args", [("top-up", "--help"), ("list", "--help"),
                                  ("market", "tick", "--help"), ("mail", "outbox", "--help"),
                                  ("--help",)])
async def test_help_has_no_type_noise(cli: Cli, args: tuple[str, ...]) -> None:
    shown = await cli.ok(*args)
    assert not re.search(r"<(bool|str|int|list\[str\]|float)>", shown), shown
    assert "Usage: loanflow" in shown


@pytest.mark.parametrize(("args", "message"), [
    (("top-up", "L1", "-1", "--tx-id", "t"), "amount: must be a positive number of collateral "
                                             "units"),
    (("deposit", "L1", "-0.5", "--tx-id", "t"), "amount: must be a positive number of "
                                                "collateral units"),
    (("repay", "L1", "-5", "--reference", "w"), "amount_usd: must be a positive dollar amount"),
    (("price", "BTC", "-3"), "price: must be a positive price"),
])
async def test_a_negative_amount_reaches_the_validator(cli: Cli, args: tuple[str, ...],
                                                       message: str) -> None:
    assert await cli.error(*args) == message


def test_the_demo_narrates_a_closed_loan_without_an_exponent() -> None:
    from loanflow.demo import loan_line

    closed = status(loan_id="DEMO-1", state=LoanState.CLOSED, collateral_asset="BTC",
                    collateral_amount=Decimal("0E-8"), debt_usd=Decimal("0E-2"), ltv=None)
    line = loan_line(closed)
    assert "debt $0.00" in line and "collateral 0 BTC" in line and not EXPONENT.search(line)


def test_the_list_query_has_plain_ltvs() -> None:
    from loanflow.cli.visibility import list_query, make_filters

    filters = make_filters(states=[], asset=None, borrower=None, ltv_min="7e-1", ltv_max="80%",
                           running_only=False)
    assert list_query(filters).endswith("LoanLtv >= 0.7 AND LoanLtv <= 0.8")
