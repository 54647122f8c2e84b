"""`loanflow stress` against the independent model (tests/stress/model.py), hour by hour.

For FTX (2022-11) and Terra (2022-05-06), a generated book at LTV 40/50/60/65% on BTC and ETH,
one USD venue per asset, is run through the real command; then, loan by loan:

- the core rule on the command's own events: every call not cured within 48 window-hours ends
  in a sale at its deadline hour (tests/stress/checks.py, no model needed);
- partial sales land LTV in [49%, 50%];
- the events equal the model's for the same loan and price file: the same kinds at the same
  hours (warnings, calls, cures, sales with their cause). Times are compared by the hour: the
  command may stamp an event a moment after the observation it acted on.

What is read from results.json (issue 9, part 3): each loan's `asset`, `collateral_amount`,
`principal_usd`, `annual_rate`, `ltv0` and `events`; the window's `start`. A loan's origination is
its `originated_at` if the file carries one, else the window's start, with no interest accrued
before (a generated book is opened at the start of the window).

The model's timing assumptions are its defaults (model.py's docstring): a candle is observed
when it closes; the cure deadline acts at the observation 48 h after the call; notices come
before a sale at the same observation. A difference is printed as both event lists side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.cli.support import LOANFLOW, clean_environ
from tests.stress.checks import SALES, band_problems, call_problems, deadline_sales, hour_of
from tests.stress.model import (
    BUCKETS,
    WINDOWS,
    Loan,
    Price,
    asset_of,
    iso,
    load_prices,
    parse_time,
    simulate,
)

D = Decimal
RUN_SECONDS = 1800  # Terra is 61 days of hourly ticks for 8 loans on the time-skipping server
pytestmark = pytest.mark.timeout(RUN_SECONDS + 120)
LTV_TOLERANCE = D("0.0002")
# A window the developers have not seen: STRESS_ORACLE_PRICES=/path/btc-usd_x.csv,/path/eth-usd_x.csv
EXTRA = os.environ.get("STRESS_ORACLE_PRICES", "")
if EXTRA:
    WINDOWS = {**WINDOWS, "extra": {asset_of(f): Path(f) for f in EXTRA.split(",")}}


def run_stress(window: str, out: Path) -> dict[str, Any]:
    files = WINDOWS[window]
    prices = [arg for asset in sorted(files) for arg in ("--prices", str(files[asset]))]
    args = [LOANFLOW, "stress", *prices, "--ltv", ",".join(BUCKETS),
            "--assets", ",".join(sorted(files)),
            "--loans-per-bucket", "1", "--seed", "1", "--out", str(out)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=out.parent,
                          env=clean_environ(), timeout=RUN_SECONDS)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stderr or done.stdout}"
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module", params=sorted(WINDOWS))
def run(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    window = request.param
    return window, run_stress(window, tmp_path_factory.mktemp(window) / "out")


def price_path(window: str, asset: str) -> list[Price]:
    return load_prices(WINDOWS[window][asset])


def model_loan(loan: dict[str, Any], results: dict[str, Any]) -> Loan:
    start = loan.get("originated_at") or results["window"]["start"]
    return Loan(loan["asset"], D(loan["collateral_amount"]), D(loan["principal_usd"]),
                D(loan["annual_rate"]), parse_time(start))


def reported_sales(events: list[dict[str, Any]]) -> list[tuple[Decimal, Decimal]]:
    return [(D(e["quantity_sold"]), D(e["ltv_after"])) for e in events
            if e["kind"] == "liquidation"]


def canonical(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(hour, kind, cause) per event; a default reported as a liquidation followed by a default
    at the same hour counts once, as the default with the sale's cause."""
    out: list[tuple[str, str, str | None]] = []
    for e in events:
        row = (iso(hour_of(parse_time(e["at"]))), e["kind"], e["cause"])
        if out and row[1] == "default" and out[-1][:2] == (row[0], "liquidation"):
            row = (row[0], "default", row[2] or out[-1][2])
            out.pop()
        out.append(row)
    return out


def model_events(loan: dict[str, Any], results: dict[str, Any],
                 window: str) -> list[dict[str, Any]]:
    """The model's events for this loan, following the command's reported fills."""
    prices = price_path(window, loan["asset"])
    result = simulate(model_loan(loan, results), prices,
                      replay_sales=reported_sales(loan["events"]))
    events = result.to_json()
    for event, modelled in zip(events, result.events):
        event["causes"] = list(modelled.causes)
    return events


def matches(stress: list[tuple[str, str, str | None]], model: list[dict[str, Any]]) -> bool:
    """Same hours and kinds; a sale's cause is one of those that held at that observation."""
    expected = canonical(model)
    if [row[:2] for row in stress] != [row[:2] for row in expected]:
        return False
    return all(s[2] == m[2] or s[2] in e.get("causes", ())
               for s, m, e in zip(stress, expected, model))


def side_by_side(stress: list[dict[str, Any]], model: list[dict[str, Any]]) -> str:
    """Both event lists, one row per event, with LTVs (to see how near a level a difference is)."""
    def rows(events: list[dict[str, Any]]) -> list[str]:
        return [f"{at} {kind} {cause or ''} ltv {D(e['ltv']):.5f}".rstrip()
                for (at, kind, cause), e in zip(canonical(events), events)]

    left, right = rows(stress), rows(model)
    width = max([len(s) for s in left] + [20])
    lines = [f"{'loanflow stress':<{width}} | model"]
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        lines.append(f"{a:<{width}} | {b}{'' if a[:30] == b[:30] else '   <--'}")
    return "\n".join(lines)


def label(loan: dict[str, Any]) -> str:
    return f"{loan['loan_id']} {loan['asset']} LTV0 {loan['ltv0']}"


def test_the_book_has_every_bucket_on_both_assets(run: tuple[str, dict[str, Any]]) -> None:
    window, results = run
    book = sorted((loan["asset"], D(loan["ltv0"])) for loan in results["loans"])

    assert book == sorted((asset, D(b)) for asset in WINDOWS[window] for b in BUCKETS)
    assert len(results["policies"]) == 1  # the default policy: what the model implements


def test_every_call_not_cured_in_48_hours_is_sold_at_its_deadline_hour(
        run: tuple[str, dict[str, Any]]) -> None:
    window, results = run
    problems = {}
    for loan in results["loans"]:
        times = [at for at, _ in price_path(window, loan["asset"])]
        if found := call_problems(loan["events"], times):
            problems[label(loan)] = found

    assert problems == {}


def test_partial_sales_land_in_the_band(run: tuple[str, dict[str, Any]]) -> None:
    _, results = run
    problems = {label(loan): found for loan in results["loans"]
                if (found := band_problems(loan["events"]))}

    assert problems == {}


def test_events_equal_the_model_hour_by_hour(run: tuple[str, dict[str, Any]]) -> None:
    window, results = run
    differ = []
    for loan in results["loans"]:
        model = model_events(loan, results, window)
        if not matches(canonical(loan["events"]), model):
            differ.append(f"{label(loan)}:\n{side_by_side(loan['events'], model)}")

    assert not differ, "\n\n".join(differ)


def test_matched_events_have_the_model_s_ltv_and_price(run: tuple[str, dict[str, Any]]) -> None:
    """Where the hours and kinds agree, the LTV agrees too (to 0.0002: a missing day of interest
    at 10% moves it 0.00018 at 65%, a week 0.0012), and a notice names the candle's close."""
    window, results = run
    differ = []
    for loan in results["loans"]:
        model = model_events(loan, results, window)
        for s, m in zip(loan["events"], model):
            if (canonical([s])[0][:2] != canonical([m])[0][:2]) or s["kind"] == "default":
                break
            notice = s["kind"] in ("warning", "margin_call", "cured")
            if abs(D(s["ltv"]) - D(m["ltv"])) > LTV_TOLERANCE or (
                    notice and D(s["price"]) != D(m["price"])):
                differ.append(f"{label(loan)} {s['at']} {s['kind']}: ltv {s['ltv']} price "
                              f"{s['price']}; model ltv {m['ltv']} price {m['price']}")

    assert not differ, "\n".join(differ)


def test_the_window_really_tests_deadlines(run: tuple[str, dict[str, Any]]) -> None:
    """Not vacuous: the command sold at a cure deadline in this window, as the model does."""
    window, results = run
    sold = sum(deadline_sales(loan["events"]) for loan in results["loans"])
    modelled = sum(deadline_sales(model_events(loan, results, window))
                   for loan in results["loans"])

    assert sold == modelled
    assert sold >= 1 or window == "extra"  # FTX and Terra both have calls the market leaves
    assert all(e["kind"] in ("warning", "margin_call", "cured", *SALES)
               for loan in results["loans"] for e in loan["events"])
