"""`loanflow book` on a seeded book (SQLite and PostgreSQL), and its figures as pure functions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from loanflow.book import (
    BookLoan,
    MarketPrice,
    bucket_of,
    by_state,
    histogram,
    margin_calls,
    marked_ltv,
    policy_of,
)
from loanflow.db import Database
from loanflow.policy import RiskPolicy
from loanflow.schema import Loan
from loanflow.store.prices import store_observation
from tests.cli.support import Cli

NOW = datetime.now(timezone.utc).replace(microsecond=0)

# (loan, state, asset, collateral, debt, cure deadline in hours, policy overrides)
SEED: list[tuple[str, str, str, str, str, int | None, dict[str, str] | None]] = [
    ("A", "ACTIVE", "BTC", "1", "20000", None, None),               # 40% at BTC 50,000
    ("B", "ACTIVE", "BTC", "2", "64000", None, None),               # 64%
    ("C", "MARGIN_CALL", "BTC", "1", "36000", 10, None),            # 72%, deadline in 10 h
    ("D", "MARGIN_CALL", "ETH", "10", "14500", 2, {"cure_target_ltv": "0.55"}),  # 72.5%, in 2 h
    ("E", "CLOSED", "BTC", "0", "0", None, None),
    ("F", "AWAITING_COLLATERAL", "ETH", "5", "0", None, None),     # part-funded, no debt yet
    ("G", "LIQUIDATING", "BTC", "1", "45000", None, None),          # 90%
    ("H", "ACTIVE", "ETH", "1", "2100", None, None),                # 105% at ETH 2,000
]


async def seed(db: Database) -> None:
    # An older BTC price first: the book must mark to the newest observation.
    await store_observation(db, "BTC", Decimal("60000"), NOW - timedelta(hours=1))
    await store_observation(db, "BTC", Decimal("50000"), NOW - timedelta(minutes=5))
    await store_observation(db, "ETH", Decimal("2000"), NOW - timedelta(minutes=5))
    async with db.transaction() as session:
        for loan_id, state, asset, amount, debt, hours, policy in SEED:
            session.add(Loan(
                loan_id=loan_id, version=3, borrower_id=f"B-{loan_id}", state=state,
                collateral_asset=asset, collateral_amount=Decimal(amount),
                principal_usd=Decimal(debt), debt_usd=Decimal(debt), ltv=None,
                cure_deadline=NOW + timedelta(hours=hours) if hours else None,
                updated_at=NOW, application={"loan_id": loan_id, "policy": policy},
            ))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_the_book_of_a_seeded_desk(cli: Cli, store: Database) -> None:
    await seed(store)
    book = await cli.json("book")

    # Amounts at their unit: dollars to the cent, collateral to the asset's smallest unit,
    # LTVs to six places (issue 11).
    states = {s["state"]: (s["loans"], s["debt_usd"]) for s in book["states"]}
    assert states == {
        "KYC_REVIEW": (0, "0.00"), "AWAITING_COLLATERAL": (1, "0.00"),
        "ACTIVE": (3, "86100.00"), "MARGIN_CALL": (2, "50500.00"),
        "LIQUIDATING": (1, "45000.00"), "CLOSED": (1, "0.00"), "REJECTED": (0, "0.00"),
        "CANCELLED": (0, "0.00"), "DEFAULTED": (0, "0.00"),
    }
    assert book["loans"] == 8 and book["debt_usd"] == "181600.00"

    collateral = {c["asset"]: c for c in book["collateral"]}
    assert (collateral["BTC"]["loans"], collateral["BTC"]["amount"],
            collateral["BTC"]["price"], collateral["BTC"]["value_usd"]) == (
        4, "5.00000000", "50000.00", "250000.00")
    assert (collateral["ETH"]["loans"], collateral["ETH"]["amount"],
            collateral["ETH"]["value_usd"]) == (3, "16.000000000000000000", "32000.00")

    counts = {(b["low"], b["high"]): b["loans"] for b in book["histogram"]}
    assert counts[("0.400000", "0.450000")] == 1 and counts[("0.600000", "0.650000")] == 1
    assert counts[("0.700000", "0.750000")] == 2 and counts[("0.900000", "0.950000")] == 1
    assert counts[("1.000000", None)] == 1
    assert len(counts) == 13 and sum(counts.values()) == 6  # 40% .. 100%+, gaps included
    assert book["unpriced"] == 0

    # Nearest deadline first; D cures to its own target (55%), C to the default (60%).
    d, c = book["margin_calls"]
    assert (d["loan_id"], d["cure_target_ltv"], d["cure_top_up"], d["cure_repay_usd"]) == (
        "D", "0.550000", "3.181820000000000000", "3500.00")
    assert (c["loan_id"], c["cure_target_ltv"], c["cure_top_up"], c["cure_repay_usd"]) == (
        "C", "0.600000", "0.20000000", "6000.00")
    assert d["ltv"] == "0.725000" and c["ltv"] == "0.720000"

    table = await cli.ok("book")
    for text in ("MARGIN_CALL", "$250,000.00", "70%-75%", "100% and up", "██", "3.18182 ETH",
                 "$3,500.00"):
        assert text in table, f"{text!r} not in:\n{table}"
    assert table.index("│ D ") < table.index("│ C ")


async def test_an_empty_book(cli: Cli, store: Database) -> None:
    book = await cli.json("book")
    assert book["loans"] == 0 and book["histogram"] == [] and book["margin_calls"] == []
    assert "0 loan(s)" in await cli.ok("book")


# --- the figures as pure functions ----------------------------------------------------------------


def loan(loan_id: str, state: str = "ACTIVE", debt: str = "50", amount: str = "1",
         deadline: datetime | None = None, ltv: str | None = None) -> BookLoan:
    return BookLoan(loan_id, "B", state, "BTC", Decimal(amount), Decimal(debt),
                    Decimal(ltv) if ltv else None, deadline)


@pytest.mark.parametrize(("ltv", "bucket"), [
    ("0", 0), ("0.0499", 0), ("0.05", 1), ("0.6999", 13), ("0.7", 14), ("0.99", 19),
    ("1", 20), ("7.5", 20), ("Infinity", 20),
])
def test_bucket_of(ltv: str, bucket: int) -> None:
    assert bucket_of(Decimal(ltv)) == bucket


def test_histogram_spans_the_buckets_in_use() -> None:
    loans = [loan("a"), loan("b"), loan("c")]
    marked: dict[str, Any] = {"a": Decimal("0.42"), "b": Decimal("0.58"), "c": None}
    buckets = histogram(loans, marked)
    assert [(b.low, b.loans) for b in buckets] == [
        (Decimal("0.40"), 1), (Decimal("0.45"), 0), (Decimal("0.50"), 0), (Decimal("0.55"), 1)]
    assert histogram([], {}) == []


def test_marked_ltv_uses_the_latest_price_or_the_loans_own() -> None:
    prices = {"BTC": MarketPrice("BTC", Decimal("100"), NOW)}
    assert marked_ltv(loan("a", debt="50"), prices) == Decimal("0.5")
    assert marked_ltv(loan("a", ltv="0.61"), {}) == Decimal("0.61")
    assert marked_ltv(loan("a", amount="0", ltv=None), prices) is None


def test_every_state_is_counted_in_order() -> None:
    totals = by_state([loan("a"), loan("b", "CLOSED", debt="0"), loan("c")])
    assert [t.state for t in totals][:3] == ["KYC_REVIEW", "AWAITING_COLLATERAL", "ACTIVE"]
    assert [(t.loans, t.debt_usd) for t in totals if t.loans] == [(2, Decimal(100)), (1, 0)]


def test_margin_calls_nearest_deadline_first_without_a_deadline_last() -> None:
    calls = [loan("late", "MARGIN_CALL", deadline=NOW + timedelta(hours=5)),
             loan("none", "MARGIN_CALL"),
             loan("soon", "MARGIN_CALL", deadline=NOW + timedelta(hours=1)),
             loan("active")]
    ordered = margin_calls(calls, {}, {c.loan_id: None for c in calls})
    assert [c.loan_id for c in ordered] == ["soon", "late", "none"]
    assert ordered[0].cure_top_up is None  # no price, no cure amounts


def test_policy_of_an_application() -> None:
    assert policy_of(None) == RiskPolicy()
    assert policy_of({"policy": {"cure_target_ltv": "0.55"}}).cure_target_ltv == Decimal("0.55")
    assert policy_of({"policy": {"margin_call_ltv": "0.95"}}) == RiskPolicy()  # invalid: default
