"""A small book through the crafted path on the real runner: production LoanWorkflow and
MarketMonitor on a private time-skipping server. The outcomes are worked out by hand from the
default policy (warning 65%, call 70%, 48 h cure period, sale to 49-50%, liquidation 80% once a
later observation confirms it, hard floor 90%) and the path (see `crafted_closes`):

- BTC-60 (60% at 20,000): 70.6% at 17,000: called at the first 17,000 tick, never cured (the
  price stays), sold at its deadline hour, 48 window-hours later, to 49-50%. That is 62-63% at
  13,500 (nothing) and 83-85% at 10,000: past the liquidation level, sold an hour later when
  the next tick confirms it.
- BTC-50 (50% at 20,000): 58.8% at 17,000 (nothing), 74% at 13,500 (called, the warning level
  jumped over), 100% at 10,000: past the hard floor, all collateral sold at once and the rest of
  the debt written off (a default with bad debt).

The same book also runs under a second policy, `patient` (a 72-hour cure period): there the
60% loan's call is still open at 13,500 (LTV 89%), so it is sold when the next tick confirms
the breach, before its deadline, and at 10,000 it stays short of the liquidation level.

Interest accrues on the window's clock: each loan's first sale charges exactly the whole days
since origination (on the wall clock the loans would have accrued none).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from loanflow.db import Database
from loanflow.money import usd_up
from loanflow.risk import daily_interest
from loanflow.schema import LedgerEntry
from loanflow.stress.clock import iso
from loanflow.stress.session import StressOptions, stress
from tests.stress.conftest import T0, tick_at

CALLED_AT = tick_at(7)   # the first 17,000 close
STEP_AT = tick_at(72)    # the first 13,500 close
CRASH_AT = tick_at(82)   # the first 10,000 close
HOUR = timedelta(hours=1)


def options(prices: Path, out: Path, keep: bool = False, processes: int = 1,
            servers: int | None = None) -> StressOptions:
    policies = out.parent / "policies"
    policies.mkdir(exist_ok=True)
    (policies / "default.toml").write_text("")
    (policies / "patient.json").write_text('{"cure_period_hours": 72}')
    return StressOptions(price_files=[str(prices)], ltvs="0.50,0.60", assets="BTC",
                         loans_per_bucket=1, seed=3, out=out, keep_workdir=keep,
                         processes=processes, servers=servers,
                         policy_files=[policies / "default.toml", policies / "patient.json"])


def kinds(loan: dict) -> list[tuple[str, str, str | None]]:
    return [(e["at"], e["kind"], e["cause"]) for e in loan["events"]]


async def test_a_call_not_cured_is_sold_at_its_deadline_hour_and_runs_are_identical(
    crafted_prices: Path, tmp_path: Path,
) -> None:
    first = await stress(options(crafted_prices, tmp_path / "a", keep=True))
    results = first.results
    loans = {x["loan_id"]: x for x in results["loans"]}
    assert list(loans) == ["default-BTC-50-001", "default-BTC-60-001",
                           "patient-BTC-50-001", "patient-BTC-60-001"]
    assert [p["name"] for p in results["policies"]] == ["default", "patient"]
    assert results["policies"][1]["policy"]["cure_period_hours"] == 72

    called = loans["default-BTC-60-001"]
    assert kinds(called) == [
        (iso(CALLED_AT), "margin_call", None),
        (iso(CALLED_AT + timedelta(hours=48)), "liquidation", "deadline"),
        (iso(CRASH_AT + HOUR), "liquidation", "confirmed"),
    ]
    sale = called["events"][1]
    assert sale["price"] == "17000"
    assert Decimal("0.49") <= Decimal(sale["ltv_after"]) <= Decimal("0.50")

    floored = loans["default-BTC-50-001"]
    assert kinds(floored) == [(iso(STEP_AT), "margin_call", None),
                              (iso(CRASH_AT), "liquidation", "hard_floor"),
                              (iso(CRASH_AT), "default", None)]
    assert Decimal(floored["events"][1]["ltv"]) >= Decimal("1")
    assert Decimal(floored["events"][1]["quantity_sold"]) == Decimal(floored["collateral_amount"])
    assert results["no_price_hours"] == []

    assert kinds(loans["patient-BTC-50-001"]) == kinds(floored)
    patient = kinds(loans["patient-BTC-60-001"])
    assert patient[:2] == [(iso(CALLED_AT), "margin_call", None),
                           (iso(STEP_AT + HOUR), "liquidation", "confirmed")]
    # After that sale the 10,000 close leaves it short of the liquidation level (a warning
    # at most, depending on where the sale landed it): no second sale.
    assert [k for _, k, _ in patient[2:]] in ([], ["warning"])
    by_policy = {p["policy"]: p for p in results["summary"]["by_policy"]}
    for name in ("default", "patient"):
        assert by_policy[name]["defaults"] == 1
        assert Decimal(by_policy[name]["bad_debt_usd"]) > 0

    await check_interest(first.workdir, loans)

    # The same inputs again, with the book split over three new private servers (the monitor's
    # server runs one loan, the others one and two) and a second worker process taking part
    # of the work: byte for byte the same results.
    second = await stress(options(crafted_prices, tmp_path / "b", processes=2, servers=3))
    assert second.workdir is None
    assert (tmp_path / "a" / "results.json").read_bytes() == (
        tmp_path / "b" / "results.json").read_bytes()

    check_report(tmp_path / "a", results)


async def check_interest(workdir: Path | None, loans: dict) -> None:
    """Each loan's first sale charged exactly the whole days of interest since origination
    (the window's start): the loans' daily accrual ran on the window's clock."""
    assert workdir is not None
    db = Database(f"sqlite+aiosqlite:///{workdir / 'stress.db'}")
    try:
        async with db.sessions() as session:
            entries = {e.key: e for e in (await session.scalars(select(LedgerEntry))).all()}
        for loan_id, loan in loans.items():
            first_sale = next(e for e in loan["events"] if e["kind"] == "liquidation")
            sold_at = datetime.fromisoformat(first_sale["at"].replace("Z", "+00:00"))
            days = (sold_at - T0).days
            interest = entries[f"{loan_id}:interest:1"]
            [charged] = [x.amount for x in interest.lines if x.amount > 0]
            expected = usd_up(days * daily_interest(Decimal(loan["principal_usd"]),
                                                    Decimal(loan["annual_rate"])))
            assert days >= 2 and charged == expected, (loan_id, days)
    finally:
        await db.dispose()


def check_report(out: Path, results: dict) -> None:
    """The report files exist and carry results.json's figures."""
    assert json.loads((out / "results.json").read_text()) == results
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    policy = results["summary"]["by_policy"][0]
    assert policy["margin_calls"] == 2 and policy["sales"] == 3
    assert policy["sales_by_cause"] == {"deadline": 1, "confirmed": 1, "hard_floor": 1}
    row = "| default | 2 | 0 | 2 | 0 | 3 (1 / 1 / 1) |"
    assert row in md
    sold = ", ".join(f"{q} {a}" for a, q in policy["collateral_sold"].items())
    for text in (md, html):
        assert sold in text and policy["collateral_sold"]["BTC"] in text
        assert f"{policy['emails_sent']}" in text
        bad_debt = Decimal(results["summary"]["by_policy"][1]["bad_debt_usd"])
        assert f"${bad_debt:,.2f}" in text
    for name in ("prices.png", "ltv.png", "outcomes.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
