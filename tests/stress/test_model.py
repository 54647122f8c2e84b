"""The oracle itself, on hand-made price paths whose events are worked out by hand here.

Most loans hold 1 BTC against $50,000 at 0% interest, so LTV = 50,000 / price:
price 100,000 -> 50%; 76,000 -> 65.8% (warning); 71,000 -> 70.4% (call); 75,000 -> 66.7%;
84,000 -> 59.5% (cures); 61,000 -> 82.0% (liquidation level); 54,900 -> 91.1% (hard floor).
A partial sale at price p sells q with 50,000 - 0.98 q p = 0.5 (1 - q) p, i.e.
q = (50,000 - 0.5 p) / (0.48 p), and leaves LTV at 50% (a hair below, for the roundings).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.stress.checks import band_problems, call_problems, deadline_sales
from tests.stress.model import (
    BUCKETS,
    WINDOWS,
    Assumptions,
    Loan,
    ModelEvent,
    acts_at,
    book_loan,
    load_prices,
    simulate,
    summarize,
)

D = Decimal
T0 = datetime(2022, 11, 1, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
BAND = (D("0.49"), D("0.50"))


def hour(n: float) -> datetime:
    return T0 + n * H


def path(prices: list[int | str], start: float = 0) -> list[tuple[datetime, Decimal]]:
    """Hourly observations from `start` hours after T0."""
    return [(hour(start + i), D(p)) for i, p in enumerate(prices)]


def btc_loan(principal: int | str = 50_000, collateral: str = "1", rate: str = "0") -> Loan:
    return Loan("BTC", D(collateral), D(principal), D(rate), T0)


def same(x: Decimal, numerator: int | str, denominator: int | str) -> bool:
    """x is numerator / denominator (to 20 places: the model computes with 60 digits)."""
    q = D("1e-20")
    return x.quantize(q) == (D(numerator) / D(denominator)).quantize(q)


def kinds(events: list[ModelEvent]) -> list[tuple[datetime, str, str | None]]:
    return [(e.at, e.kind, e.cause) for e in events]


def test_a_call_cured_by_the_market_and_a_new_episode_warns_again() -> None:
    events = simulate(btc_loan(), path([100_000, 76_000, 71_000, 75_000, 84_000, 76_000])).events

    assert kinds(events) == [(hour(1), "warning", None), (hour(2), "margin_call", None),
                             (hour(4), "cured", None), (hour(5), "warning", None)]
    assert same(events[1].ltv, 50_000, 71_000)
    assert same(events[2].ltv, 50_000, 84_000)


def test_a_call_not_cured_is_sold_at_its_deadline_hour() -> None:
    # Call at hour 1 (71,000), then 72,000 (69.4%: neither cured nor liquidation level).
    result = simulate(btc_loan(), path([100_000, 71_000] + [72_000] * 60))

    assert kinds(result.events) == [(hour(1), "warning", None), (hour(1), "margin_call", None),
                                    (hour(49), "liquidation", "deadline")]
    sale = result.events[-1]
    assert sale.price == 72_000 and same(sale.ltv, 50_000, 72_000)
    # q = (50,000 - 36,000) / (0.48 x 72,000) = 14,000 / 34,560 = 0.40509259...
    assert D("0.40509259") <= sale.quantity_sold <= D("0.40509340")
    assert BAND[0] <= sale.ltv_after <= BAND[1]
    assert result.state == "ACTIVE"


def test_the_market_cures_an_hour_before_the_deadline() -> None:
    events = simulate(btc_loan(), path([100_000, 71_000] + [72_000] * 46 + [84_000])).events

    assert kinds(events)[-1] == (hour(48), "cured", None)


def test_the_observation_at_the_deadline_sells_unless_the_tie_is_read_as_a_cure() -> None:
    prices = path([100_000, 71_000] + [72_000] * 47 + [84_000])  # 84,000 (59.5%) at hour 49

    sold = simulate(btc_loan(), prices).events
    cured = simulate(btc_loan(), prices, assume=Assumptions(deadline_tie="cure")).events

    assert kinds(sold)[-1] == (hour(49), "liquidation", "deadline")
    assert kinds(cured)[-1] == (hour(49), "cured", None)


def test_a_deadline_between_observations_waits_for_a_fresh_price() -> None:
    # Observations on the hour up to hour 48, then the next at 49:10. The deadline (49:00)
    # finds a price 60 minutes old: stale at 15 minutes, so the sale waits for 49:10's price.
    prices = path([100_000, 71_000] + [72_000] * 47) + [(hour(49) + timedelta(minutes=10),
                                                         D(73_000))]
    waits = simulate(btc_loan(), prices).events[-1]
    acts = simulate(btc_loan(), prices,
                    assume=Assumptions(staleness=timedelta(minutes=90))).events[-1]

    assert (waits.at, waits.price, waits.cause) == (hour(49) + timedelta(minutes=10), 73_000,
                                                     "deadline")
    assert (acts.at, acts.price, acts.cause) == (hour(49), 72_000, "deadline")


def test_a_wick_to_the_liquidation_level_is_not_sold() -> None:
    # 61,000 (82%) for one observation, then 75,000 (66.7%), then 61,000 once more.
    events = simulate(btc_loan(), path([100_000, 61_000, 75_000, 61_000, 75_000])).events

    assert kinds(events) == [(hour(1), "warning", None), (hour(1), "margin_call", None)]


def test_two_observations_at_82_percent_sell_at_the_second() -> None:
    result = simulate(btc_loan(), path([100_000, 61_000, 61_000, 61_000]))

    assert kinds(result.events) == [(hour(1), "warning", None), (hour(1), "margin_call", None),
                                    (hour(2), "liquidation", "confirmed")]
    sale = result.events[-1]
    # q = (50,000 - 30,500) / (0.48 x 61,000) = 19,500 / 29,280 = 0.66598360...
    assert D("0.66598360") <= sale.quantity_sold <= D("0.66598450")
    assert BAND[0] <= sale.ltv_after <= BAND[1]


def test_91_percent_sells_at_once_after_the_notices() -> None:
    events = simulate(btc_loan(), path([100_000, 54_900, 54_900])).events

    assert kinds(events) == [(hour(1), "warning", None), (hour(1), "margin_call", None),
                             (hour(1), "liquidation", "hard_floor")]
    assert events[-1].causes == ("hard_floor",)  # not yet confirmed: the first such observation
    assert BAND[0] <= events[-1].ltv_after <= BAND[1]


def test_a_96_percent_eth_loan_lands_in_the_band() -> None:
    # 100 ETH against $96,000: 1,920 -> 50%, 1,000 -> 96%.
    # q = (96,000 - 0.5 x 100 x 1,000) / (0.48 x 1,000) = 46,000 / 480 = 95.8333...
    loan = Loan("ETH", D(100), D(96_000), D(0), T0)
    result = simulate(loan, path([1_920, 1_000]))

    sale = result.events[-1]
    assert (sale.at, sale.kind, sale.cause) == (hour(1), "liquidation", "hard_floor")
    assert D("95.8333") < sale.quantity_sold < D("95.8334")
    assert sale.quantity_sold == sale.quantity_sold.quantize(D("1e-18"))
    assert BAND[0] <= sale.ltv_after <= BAND[1]
    # What is left: 4.1667 ETH against 96,000 - 0.98 x 95,833.33 = 2,083.33, less the few
    # cents the sale's rounding slack (2.5 cents / 480 = 0.00005 ETH) sells on top.
    assert D("4.1666") < result.collateral < D("4.1667")
    assert D("2083.25") <= result.debt <= D("2083.34")


def test_past_98_percent_everything_is_sold_and_the_rest_is_bad_debt() -> None:
    # 100 ETH against $99,000 at 1,000 (99%): proceeds 100,000 - 2% = 98,000; 1,000 unpaid.
    result = simulate(Loan("ETH", D(100), D(99_000), D(0), T0), path([1_980, 1_000, 900]))

    assert kinds(result.events)[-1] == (hour(1), "default", "hard_floor")
    assert result.events[-1].quantity_sold == 100
    assert result.bad_debt == D("1000.00") and result.state == "DEFAULTED"
    assert result.events[-1].to_json()["ltv_after"] is None


def test_interest_after_30_days_crosses_the_warning_level() -> None:
    # $100,000 at 3.65% accrues $10.00 a day: day 29 -> 100,290 / 154,300 = 64.997%,
    # day 30 -> 100,300 / 154,300 = 65.003%: the warning comes at T0 + 30 days exactly.
    loan = btc_loan(principal=100_000, rate="0.0365")
    events = simulate(loan, path([154_300] * (31 * 24))).events

    assert kinds(events) == [(T0 + timedelta(days=30), "warning", None)]
    assert same(events[0].ltv, "100300", "154300")


def test_interest_at_10_percent_is_rounded_up_to_the_cent() -> None:
    # Day 29: 100,000 x 0.10 x 29 / 365 = 794.5205...: debt 100,794.53 rounded up (100,794.52
    # to the nearest cent). At value 143,992.18 the call level 70% is 100,794.526: only the
    # rounded-up debt reaches it, on day 29 (day 28: 767.12 of interest, well below).
    loan = btc_loan(principal=100_000, rate="0.10")
    events = simulate(loan, path(["143992.18"] * (29 * 24 + 2))).events

    call = [e for e in events if e.kind == "margin_call"]
    assert [e.at for e in call] == [T0 + timedelta(days=29)]
    assert same(call[0].ltv, "100794.53", "143992.18")


def test_a_day_that_ends_between_observations_counts_at_the_next_fresh_price() -> None:
    # Originated at 00:30: day 30 ends at 00:30, between the 00:00 and 01:00 observations. The
    # 00:00 price is 30 minutes old then, stale: the warning waits for 01:00. A staleness of an
    # hour lets the daily timer act on it at 00:30.
    loan = Loan("BTC", D(1), D(100_000), D("0.0365"), T0 + timedelta(minutes=30))
    prices = path([154_300] * (31 * 24 + 2))
    late = simulate(loan, prices).events
    timer = simulate(loan, prices, assume=Assumptions(staleness=timedelta(hours=1))).events

    assert [e.at for e in late] == [T0 + timedelta(days=30, hours=1)]
    assert [e.at for e in timer] == [T0 + timedelta(days=30, minutes=30)]


def test_events_have_the_results_json_shape_and_the_summary_counts_causes() -> None:
    events = simulate(btc_loan(), path([100_000, 61_000, 61_000])).events

    assert list(events[-1].to_json()) == ["at", "kind", "ltv", "price", "quantity_sold",
                                          "ltv_after", "cause"]
    assert events[-1].to_json()["at"] == "2022-11-01T02:00:00Z"
    assert summarize(events) == {"warning": 1, "margin_call": 1, "cured": 0, "deadline": 0,
                                 "confirmed": 1, "hard_floor": 0, "default": 0}


@pytest.mark.parametrize("candle_time, first", [("close", hour(1)), ("open", hour(0))])
def test_candles_are_observed_when_they_close(tmp_path, candle_time, first) -> None:
    csv = tmp_path / "btc-usd_x_venue_1h.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n"
                   "2022-11-01T00:00:00Z,1,9,1,100,1\n2022-11-01T01:00:00Z,1,9,1,200,1\n")

    prices = load_prices(csv, Assumptions(candle_time=candle_time))

    assert prices == [(first, D(100)), (first + H, D(200))]


def test_after_a_reported_sale_the_model_goes_on_from_what_was_reported() -> None:
    # The system under test sold 0.70 BTC at 61,000 and reported LTV 0.495 after:
    # 0.30 BTC left, worth 18,300, so debt 0.495 x 18,300 = 9,058.50.
    result = simulate(btc_loan(), path([100_000, 61_000, 61_000, 61_000]),
                      replay_sales=[(D("0.70"), D("0.495"))])

    assert (result.collateral, result.debt) == (D("0.30"), D("9058.50"))
    assert D("0.66598360") <= result.events[-1].quantity_sold <= D("0.66598450")  # the model's


def test_a_timer_acts_at_its_time_on_a_fresh_price_else_at_the_next_observation() -> None:
    times = [hour(0), hour(1), hour(2)]

    assert acts_at(hour(1), times) == hour(1)
    assert acts_at(hour(1) + timedelta(minutes=15), times) == hour(1) + timedelta(minutes=15)
    assert acts_at(hour(1) + timedelta(minutes=16), times) == hour(2)
    assert acts_at(hour(2) + timedelta(minutes=16), times) is None


@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_the_model_keeps_the_core_rule_on_the_crash_windows(window: str) -> None:
    """The oracle's own events obey the rule it is used to check, and the rule is not vacuous
    there: the window has calls the market does not cure, sold at their deadline."""
    deadline_sold = 0
    for asset, csv in WINDOWS[window].items():
        prices = load_prices(csv)
        times = [at for at, _ in prices]
        for ltv0 in BUCKETS:
            events = simulate(book_loan(asset, D(ltv0), prices), prices).to_json()
            assert call_problems(events, times) == [], (asset, ltv0)
            assert band_problems(events) == [], (asset, ltv0)
            deadline_sold += deadline_sales(events)
    assert deadline_sold >= 2


def _event(at: datetime, kind: str, ltv: str = "0.7", cause: str | None = None,
           ltv_after: str | None = None) -> dict[str, object]:
    return {"at": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "kind": kind, "ltv": ltv, "price": "1",
            "quantity_sold": None, "ltv_after": ltv_after, "cause": cause}


def test_the_core_rule_check_catches_a_deadline_that_never_fired() -> None:
    times = [hour(n) for n in range(24 * 40)]
    call = _event(hour(1), "margin_call")
    # The last round's fault: still in call long after the deadline, sold later at 85%.
    late = [call, _event(hour(24 * 29), "liquidation", "0.85", "confirmed", "0.5")]
    cured_late = [call, _event(hour(60), "cured", "0.59")]
    early_low = [call, _event(hour(10), "liquidation", "0.75", "deadline", "0.5")]
    good = [call, _event(hour(49) + timedelta(seconds=3), "liquidation", "0.72", "deadline",
                         "0.4990")]

    assert len(call_problems(late, times)) == 1
    assert len(call_problems(cured_late, times)) == 1
    assert len(call_problems(early_low, times)) == 1
    assert call_problems(good, times) == [] and band_problems(good) == []
    assert call_problems([call], times[:40]) == []  # the window ended before the deadline
    assert len(band_problems([_event(hour(49), "liquidation", "0.72", "deadline", "0.43")])) == 1
