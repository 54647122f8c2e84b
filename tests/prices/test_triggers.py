"""Trigger-crossing selection: which loans a move from `old` to `new` affects, down and up, at
the exact boundaries, and in agreement with the risk math the loans themselves use."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from loanflow.prices.triggers import LoanTriggers, band, crossed_kinds, select_crossed
from loanflow.risk import ltv, trigger_price

D = Decimal
# One loan of $30,000 against 1 BTC: warning 46,153.84, call 42,857.14, liquidation 37,500.00,
# cure 50,000.00 (the highest prices at which LTV reaches 65/70/80/60%).
TRIGGERS = {
    "warning": trigger_price(D("30000"), D(1), D("0.65")),
    "margin_call": trigger_price(D("30000"), D(1), D("0.70")),
    "liquidation": trigger_price(D("30000"), D(1), D("0.80")),
    "cure": trigger_price(D("30000"), D(1), D("0.60")),
}


def test_the_fixture_triggers() -> None:
    assert TRIGGERS == {"warning": D("46153.84"), "margin_call": D("42857.14"),
                        "liquidation": D("37500.00"), "cure": D("50000.00")}


def test_no_move_crosses_nothing() -> None:
    assert band(D(100), D(100)) is None
    assert crossed_kinds("ACTIVE", TRIGGERS, D("42857.14"), D("42857.14")) == []


def test_a_loan_past_its_liquidation_level_gets_every_tick_as_confirmation() -> None:
    level = TRIGGERS["liquidation"]
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("37000"), D("37000")) == ["confirm"]
    # a rise that stops exactly on the level is a crossing up (inclusive): signalled either way
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("36000"), level) == ["liquidation"]
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("37000"), D("36000")) == ["confirm"]
    # crossing it on this tick is the first breach, not a confirmation
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("38000"), level) == ["liquidation"]
    # leaving it is a crossing up
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, level, level + D("0.01")) == ["liquidation"]
    assert crossed_kinds("LIQUIDATING", TRIGGERS, D("37000"), D("37000")) == []


def test_down_move_exact_boundaries() -> None:
    call = TRIGGERS["margin_call"]
    # stopping exactly on the trigger crosses it (LTV is at the threshold there)
    assert crossed_kinds("ACTIVE", TRIGGERS, call + D("0.01"), call) == ["margin_call"]
    # a cent above it does not
    assert crossed_kinds("ACTIVE", TRIGGERS, D("44000"), call + D("0.01")) == []
    # starting on it: crossed already at the previous tick
    assert crossed_kinds("ACTIVE", TRIGGERS, call, call - D("0.01")) == []


def test_crash_crosses_every_level_on_the_way() -> None:
    kinds = crossed_kinds("ACTIVE", TRIGGERS, D("60000"), D("30000"))
    assert kinds == ["warning", "margin_call", "liquidation"]


def test_a_loan_the_read_model_shows_in_a_call_is_woken_like_an_active_one() -> None:
    """The read model can lag (a cure not yet published): the monitor signals ACTIVE and
    MARGIN_CALL loans alike when their warning or call level is crossed; the loan decides."""
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("47000"), D("42000")) == [
        "warning", "margin_call"]
    assert (crossed_kinds("MARGIN_CALL", TRIGGERS, D("47000"), D("42000"))
            == crossed_kinds("ACTIVE", TRIGGERS, D("47000"), D("42000")))
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("47000"), D("37000")) == [
        "warning", "margin_call", "liquidation"]
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("37000"), D("38000")) == ["liquidation"]


def test_up_move_exact_boundaries() -> None:
    cure = TRIGGERS["cure"]
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("45000"), cure) == ["cure"]
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, cure, D("51000")) == ["cure"]
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, cure + D("0.01"), D("51000")) == []
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("45000"), cure - D("0.01")) == []
    # a rise through the warning or call levels changes nothing a loan does
    assert crossed_kinds("ACTIVE", TRIGGERS, D("40000"), D("47000")) == []
    # a rise through the liquidation level clears a breach waiting for confirmation
    assert crossed_kinds("MARGIN_CALL", TRIGGERS, D("30000"), D("38000")) == ["liquidation"]


def test_loans_without_triggers_or_not_serving_are_never_selected() -> None:
    none = dict.fromkeys(TRIGGERS)
    assert crossed_kinds("ACTIVE", none, D("60000"), D("1")) == []
    assert crossed_kinds("CLOSED", TRIGGERS, D("60000"), D("1")) == []


def test_select_crossed_picks_only_the_crossed_loans() -> None:
    def loan(loan_id: str, principal: str, state: str = "ACTIVE") -> LoanTriggers:
        debt = D(principal)
        return LoanTriggers(loan_id, state, {
            "warning": trigger_price(debt, D(1), D("0.65")),
            "margin_call": trigger_price(debt, D(1), D("0.70")),
            "liquidation": trigger_price(debt, D(1), D("0.80")),
            "cure": trigger_price(debt, D(1), D("0.60")),
        })

    book = [loan("low", "10000"), loan("mid", "14000"), loan("high", "17500"),
            loan("called", "14000", "MARGIN_CALL")]
    # 21,000 -> 20,000: mid's call level (14,000 / 0.7 = 20,000.00) is hit exactly; high's
    # liquidation level (21,875.00) lies above the move: crossed before, high is still past
    # it, and this tick is its confirmation.
    assert select_crossed(book, D("21000"), D("20000")) == {
        "mid": ["margin_call"], "high": ["confirm"], "called": ["margin_call"]}
    assert select_crossed(book[:2], D("21000"), D("20000")) == {"mid": ["margin_call"]}
    # 20,000 -> 24,000: the cure level of mid and called (23,333.33) and high's liquidation
    # level; high's cure level (29,166.66) is still above.
    assert select_crossed(book, D("20000"), D("24000")) == {
        "mid": ["cure"], "high": ["liquidation"], "called": ["cure"],
    }


prices = st.integers(min_value=100, max_value=10_000_000).map(lambda c: D(c) / 100)
debts = st.integers(min_value=1_00, max_value=5_000_000_00).map(lambda c: D(c) / 100)
amounts = st.integers(min_value=1, max_value=10**10).map(lambda s: D(s) / 10**8)
thresholds = st.sampled_from([D("0.60"), D("0.65"), D("0.70"), D("0.80")])


@settings(max_examples=300, deadline=None)
@given(debt=debts, amount=amounts, threshold=thresholds, old=prices, new=prices)
def test_crossing_agrees_with_the_loans_own_ltv(
    debt: Decimal, amount: Decimal, threshold: Decimal, old: Decimal, new: Decimal
) -> None:
    """Down: crossed exactly when LTV goes from below the threshold to at or above it. Up:
    every move that takes LTV from above the threshold to at or below it is crossed (never
    late); anything crossed started at or above the threshold."""
    trigger = trigger_price(debt, amount, threshold)
    assert trigger is not None
    kinds = crossed_kinds("ACTIVE", {"margin_call": trigger, "cure": trigger}, old, new)
    assert "confirm" not in kinds  # no liquidation level given
    before, after = ltv(debt, amount, old), ltv(debt, amount, new)
    assert before is not None and after is not None
    if new < old:
        assert ("margin_call" in kinds) == (before < threshold <= after)
    elif new > old:
        if before > threshold >= after:
            assert "cure" in kinds
        if "cure" in kinds:
            assert before >= threshold
