"""The risk policy: DESIGN.md's defaults, per-loan overrides, and orderings that make no sense."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loanflow.policy import PolicyOverrides, RiskPolicy, new_loan_problem

D = Decimal


def test_defaults_match_the_design_table():
    p = RiskPolicy()
    # | max initial LTV | 50% | ... (DESIGN.md, "Default risk policy")
    assert p.max_initial_ltv == D("0.50")
    assert p.warning_ltv == D("0.65")
    assert p.margin_call_ltv == D("0.70")
    assert p.cure_target_ltv == D("0.60")
    assert p.cure_period_hours == 48
    assert p.reminder_hours == (24, 4)
    assert p.liquidation_ltv == D("0.80")
    assert p.post_liquidation_ltv == D("0.50")
    assert p.liquidation_fee == D("0.02")
    assert p.funding_deadline_hours == 72
    assert p.price_staleness_minutes == 15


def test_defaults_beyond_the_table_are_consistent():
    p = RiskPolicy()
    assert p.liquidation_ltv < p.hard_liquidation_ltv < 1
    assert D(0) <= p.liquidation_slippage_buffer < D("0.2")
    assert all(0 < h < p.cure_period_hours for h in p.reminder_hours)
    assert p.max_extension_hours > 0 and p.kyc_review_hours > 0
    assert all(isinstance(getattr(p, name), Decimal) for name in (
        "max_initial_ltv", "warning_ltv", "margin_call_ltv", "cure_target_ltv",
        "liquidation_ltv", "hard_liquidation_ltv", "post_liquidation_ltv", "liquidation_fee",
        "liquidation_slippage_buffer",
    ))


def test_policy_is_frozen_and_strict():
    p = RiskPolicy()
    with pytest.raises(ValidationError):
        p.margin_call_ltv = D("0.75")  # type: ignore[misc]
    with pytest.raises(ValidationError, match="margin_call"):
        RiskPolicy(margin_call=D("0.75"))  # type: ignore[call-arg]


def test_policy_json_round_trip_keeps_decimals_exact():
    p = RiskPolicy(liquidation_fee=D("0.0125"))
    again = RiskPolicy.model_validate_json(p.model_dump_json())
    assert again == p
    assert again.liquidation_fee == D("0.0125")
    assert isinstance(again.liquidation_fee, Decimal)


# --- overrides ----------------------------------------------------------------------------------


def test_no_overrides_is_the_base_policy():
    assert PolicyOverrides().apply(RiskPolicy()) == RiskPolicy()


def test_overrides_apply_and_leave_the_rest_alone():
    base = RiskPolicy()
    p = PolicyOverrides(
        margin_call_ltv=D("0.75"), warning_ltv=D("0.70"), cure_period_hours=24,
        reminder_hours=(12, 2), liquidation_fee=D("0.015"),
    ).apply(base)
    assert p.margin_call_ltv == D("0.75")
    assert p.warning_ltv == D("0.70")
    assert p.cure_period_hours == 24
    assert p.reminder_hours == (12, 2)
    assert p.liquidation_fee == D("0.015")
    changed = {"margin_call_ltv", "warning_ltv", "cure_period_hours", "reminder_hours",
               "liquidation_fee"}
    for name, value in base.model_dump().items():
        if name not in changed:
            assert getattr(p, name) == value, name
    assert base.margin_call_ltv == D("0.70"), "the base policy is not changed"


def test_overrides_apply_on_top_of_another_base():
    base = RiskPolicy(post_liquidation_ltv=D("0.40"), max_initial_ltv=D("0.40"))
    p = PolicyOverrides(cure_target_ltv=D("0.55")).apply(base)
    assert p.post_liquidation_ltv == D("0.40") and p.max_initial_ltv == D("0.40")
    assert p.cure_target_ltv == D("0.55")


def test_overrides_from_json_strings():
    o = PolicyOverrides.model_validate_json('{"margin_call_ltv": "0.72", "cure_period_hours": 36}')
    p = o.apply(RiskPolicy())
    assert p.margin_call_ltv == D("0.72")
    assert p.cure_period_hours == 36


def test_unknown_override_is_an_error_naming_it():
    with pytest.raises(ValidationError, match="margin_call_level"):
        PolicyOverrides.model_validate({"margin_call_level": "0.75"})


# --- bad orderings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"cure_target_ltv": D("0.75")}, ("cure_target_ltv", "margin_call_ltv")),
        ({"post_liquidation_ltv": D("0.60")}, ("post_liquidation_ltv", "cure_target_ltv")),
        ({"margin_call_ltv": D("0.85")}, ("margin_call_ltv", "liquidation_ltv")),
        ({"liquidation_ltv": D("0.95")}, ("liquidation_ltv", "hard_liquidation_ltv")),
        ({"hard_liquidation_ltv": D("1.00"), "liquidation_ltv": D("0.80")},
         ("hard_liquidation_ltv",)),
        ({"max_initial_ltv": D("0.70")}, ("max_initial_ltv", "margin_call_ltv")),
        ({"warning_ltv": D("0.72")}, ("warning_ltv", "cure_target_ltv", "margin_call_ltv")),
        ({"warning_ltv": D("0.55")}, ("warning_ltv",)),
        ({"liquidation_fee": D("0.25")}, ("liquidation_fee",)),
        ({"liquidation_fee": D("-0.01")}, ("liquidation_fee",)),
        ({"liquidation_slippage_buffer": D("0.2")}, ("liquidation_slippage_buffer",)),
        ({"cure_period_hours": 0}, ("cure_period_hours",)),
        ({"funding_deadline_hours": -1}, ("funding_deadline_hours",)),
        ({"price_staleness_minutes": 0}, ("price_staleness_minutes",)),
    ],
)
def test_bad_policies_are_rejected_naming_the_fields(overrides: dict, names: tuple[str, ...]):
    with pytest.raises(ValueError) as direct:
        RiskPolicy(**overrides)
    with pytest.raises(ValueError) as via_overrides:
        PolicyOverrides(**overrides).apply(RiskPolicy())
    for err in (direct.value, via_overrides.value):
        for name in names:
            assert name in str(err), (name, str(err))


def test_equal_thresholds_are_rejected():
    with pytest.raises(ValueError, match=r"cure_target_ltv \(0.70\) must be below margin_call"):
        RiskPolicy(cure_target_ltv=D("0.70"), warning_ltv=D("0.70"))


LADDER = ("post_liquidation_ltv", "cure_target_ltv", "margin_call_ltv", "liquidation_ltv",
          "hard_liquidation_ltv")


@settings(max_examples=250, deadline=None)
@given(levels=st.lists(st.integers(1, 99), min_size=5, max_size=5), ascending=st.booleans())
def test_policy_accepts_exactly_the_strictly_increasing_ladders(levels: list[int],
                                                               ascending: bool):
    if ascending:  # half the time a sorted ladder (still with possible ties)
        levels = sorted(levels)
    values = dict(zip(LADDER, (D(n).scaleb(-2) for n in levels)))
    # keep the other rules satisfied whatever the ladder: the initial LTV below the margin
    # call, the warning between the cure target and the margin call
    values["max_initial_ltv"] = min(values["margin_call_ltv"] - D("0.01"), D("0.50"))
    values["warning_ltv"] = values["cure_target_ltv"]
    ordered = all(a < b for a, b in zip(levels, levels[1:]))
    if ordered:
        p = RiskPolicy(**values)
        assert [getattr(p, name) for name in LADDER] == [values[name] for name in LADDER]
        assert PolicyOverrides(**values).apply(RiskPolicy()) == p
    else:
        with pytest.raises(ValueError) as err:
            RiskPolicy(**values)
        # the message names the first pair out of order
        i = next(i for i in range(4) if not levels[i] < levels[i + 1])
        assert LADDER[i] in str(err.value) and LADDER[i + 1] in str(err.value)


def test_periods_that_would_overflow_a_timedelta_are_refused() -> None:
    """A policy override a workflow would turn into `timedelta(hours=10**12)` must be refused
    where it enters, not fail the loan's workflow task."""
    from loanflow.policy import PolicyOverrides

    for override in ({"cure_period_hours": 10**12}, {"reminder_hours": (10**12,)},
                     {"maturity_reminder_days": (10**9,)}, {"max_price_jump": "0"}):
        with pytest.raises(ValueError):
            PolicyOverrides.model_validate(override).apply(RiskPolicy())


@pytest.mark.parametrize("target", ["-0.5", "0", "-0.0001"])
def test_a_new_loan_may_not_aim_its_sales_at_an_ltv_of_zero_or_below(target: str) -> None:
    # RiskPolicy takes it (a running loan's policy must keep validating as it did), but no
    # new loan is opened with it: its first sale would sell all the collateral.
    policy = RiskPolicy(post_liquidation_ltv=D(target))
    assert new_loan_problem(policy) == (
        f"post_liquidation_ltv ({target}) must be above 0: a sale sized to reach it would sell "
        "all the collateral")


def test_a_positive_post_liquidation_ltv_is_fine_for_a_new_loan() -> None:
    assert new_loan_problem(RiskPolicy()) is None
    assert new_loan_problem(RiskPolicy(post_liquidation_ltv=D("0.0001"))) is None
