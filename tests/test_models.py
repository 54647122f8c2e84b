"""The public operations contract: the application, updates, the price signal and the status."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from loanflow.models import (
    FINAL_STATES,
    ApplicationProblem,
    Borrower,
    CollateralDeposit,
    CureExtension,
    KycDecision,
    LoanApplication,
    LoanState,
    LoanStatus,
    PriceUpdate,
    Repayment,
    RequestError,
    check_application,
    describe_validation_error,
    parse_request,
)
from loanflow.policy import PolicyOverrides, RiskPolicy

D = Decimal


def application(**changes: Any) -> dict[str, Any]:
    """A good application as `temporal workflow start --input` would send it (JSON)."""
    raw: dict[str, Any] = {
        "loan_id": "L-0001",
        "borrower": {"id": "B-1", "name": "Ada Lovelace", "email": "ada@example.com",
                     "country": "GB"},
        "principal_usd": "250000.00",
        "collateral_asset": "BTC",
        "collateral_amount": "12.5",
        "term_days": 365,
        "annual_rate": "0.12",
    }
    raw.update(changes)
    return raw


def problem(**changes: Any) -> str:
    app = LoanApplication.model_validate(application(**changes))
    with pytest.raises(ApplicationProblem) as err:
        check_application(app)
    return str(err.value)


# --- states -------------------------------------------------------------------------------------


def test_states_are_the_contract_names():
    assert [s.value for s in LoanState] == [
        "KYC_REVIEW", "AWAITING_COLLATERAL", "ACTIVE", "MARGIN_CALL", "LIQUIDATING", "CLOSED",
        "REJECTED", "CANCELLED", "DEFAULTED",
    ]
    assert LoanState("MARGIN_CALL") is LoanState.MARGIN_CALL
    assert json.dumps(LoanState.ACTIVE) == '"ACTIVE"'


def test_final_states():
    assert FINAL_STATES == {LoanState.CLOSED, LoanState.REJECTED, LoanState.CANCELLED,
                            LoanState.DEFAULTED}
    for state in LoanState:
        assert state.is_final is (state in FINAL_STATES)
    assert not LoanState.LIQUIDATING.is_final and not LoanState.MARGIN_CALL.is_final


# --- the application ----------------------------------------------------------------------------


def test_a_good_application_is_accepted():
    app = LoanApplication.model_validate(application())
    check_application(app)  # no exception
    assert app.principal_usd == D("250000.00")
    assert app.collateral_amount == D("12.5")
    assert app.annual_rate == D("0.12")
    assert isinstance(app.borrower, Borrower) and app.borrower.email == "ada@example.com"
    assert app.policy is None and app.resume is None and app.history_limit is None


def test_the_cli_json_input_parses_with_exact_decimals():
    text = json.dumps(application(collateral_asset="ETH",
                                  collateral_amount="1234.123456789012345678"))
    app = LoanApplication.model_validate_json(text)
    check_application(app)
    assert app.collateral_amount == D("1234.123456789012345678")
    # and back to JSON: decimals travel as strings, digit for digit
    dumped = json.loads(app.model_dump_json())
    assert dumped["collateral_amount"] == "1234.123456789012345678"
    assert dumped["principal_usd"] == "250000.00"


def test_application_with_policy_overrides():
    app = LoanApplication.model_validate(
        application(policy={"margin_call_ltv": "0.75", "warning_ltv": "0.70"})
    )
    check_application(app)
    assert isinstance(app.policy, PolicyOverrides)
    p = app.policy.apply(RiskPolicy())
    assert p.margin_call_ltv == D("0.75") and p.warning_ltv == D("0.70")
    with pytest.raises(ValidationError, match="margin_call"):
        LoanApplication.model_validate(application(policy={"margin_call": "0.75"}))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"collateral_asset": "DOGE"}, "collateral_asset"),
        ({"collateral_asset": "btc"}, "collateral_asset"),
        ({"principal_usd": "0"}, "principal_usd"),
        ({"principal_usd": "-100"}, "principal_usd"),
        ({"principal_usd": "100.001"}, "principal_usd"),
        ({"collateral_amount": "0"}, "collateral_amount"),
        ({"collateral_amount": "-1"}, "collateral_amount"),
        ({"collateral_amount": "0.000000001"}, "collateral_amount"),  # 9 places: BTC has 8
        ({"collateral_asset": "ETH", "collateral_amount": "0.0000000000000000001"},
         "collateral_amount"),  # 19 places: ETH has 18
        ({"term_days": 0}, "term_days"),
        ({"term_days": -30}, "term_days"),
        ({"term_days": 3651}, "term_days"),
        ({"annual_rate": "-0.01"}, "annual_rate"),
        ({"annual_rate": "1"}, "annual_rate"),
        ({"annual_rate": "12"}, "annual_rate"),  # a percentage where a fraction belongs
        ({"history_limit": 10}, "history_limit"),
    ],
)
def test_each_bad_field_is_rejected_with_its_name(changes: dict[str, Any], field: str):
    message = problem(**changes)
    assert message.startswith(f"{field}:"), message


@pytest.mark.parametrize(
    "changes",
    [
        {"loan_id": ""},
        {"loan_id": "   "},
        {"loan_id": "x" * 65},
        {"loan_id": "L1:disburse"},  # ':' would let one loan's keys reach into another's
        {"borrower": {"id": "B", "name": "n" * 300, "email": "a@b.c", "country": "GB"}},
        {"borrower": {"id": "B", "name": "n", "email": "a@b.c", "country": "GB", "x": 1}},
        {"polcy": {"margin_call_ltv": "0.75"}},  # a misspelt field is refused, not ignored
        {"principal_usd": "NaN"},
    ],
)
def test_malformed_application_fails_at_once_naming_the_field(changes: dict[str, Any]):
    """Nothing can be keyed by a loan id that does not fit its columns: such a start fails
    at once (pydantic's message names the field) and no loan exists to write anything."""
    with pytest.raises(ValidationError) as err:
        LoanApplication.model_validate(application(**changes))
    field = next(iter(changes))
    assert field in describe_validation_error(err.value)


def test_bad_application_messages_say_why():
    assert "BTC or ETH" in problem(collateral_asset="DOGE")
    assert "positive" in problem(principal_usd="-100")
    assert "cents" in problem(principal_usd="100.001")
    assert "decimal places" in problem(collateral_amount="0.000000001")
    assert "BTC" in problem(collateral_amount="0.000000001")
    assert "between 1 and 3650" in problem(term_days=0)
    assert "0.12" in problem(annual_rate="12")


@pytest.mark.parametrize(
    "changes",
    [
        {"collateral_amount": "0.00000001"},
        {"collateral_asset": "ETH", "collateral_amount": "0.000000000000000001"},
        {"collateral_asset": "ETH", "collateral_amount": "10000.123456789012345678"},
        {"principal_usd": "100"},
        {"principal_usd": "100.5"},
        {"principal_usd": "1E+3"},
        {"term_days": 1},
        {"term_days": 3650},
        {"annual_rate": "0"},
        {"annual_rate": "0.9999"},
        {"loan_id": "x" * 64},
        {"history_limit": 200},
    ],
)
def test_boundary_values_are_accepted(changes: dict[str, Any]):
    check_application(LoanApplication.model_validate(application(**changes)))


def test_structurally_bad_application_is_a_validation_error_naming_the_field():
    for bad in ("lots", "NaN", "Infinity"):
        with pytest.raises(ValidationError, match="principal_usd"):
            LoanApplication.model_validate(application(principal_usd=bad))
    raw = application()
    del raw["borrower"]
    with pytest.raises(ValidationError, match="borrower"):
        LoanApplication.model_validate(raw)
    with pytest.raises(ValidationError, match="email"):
        LoanApplication.model_validate(application(borrower={"id": "B", "name": "N",
                                                             "country": "GB"}))


@settings(max_examples=200, deadline=None)
@given(
    asset=st.sampled_from(["BTC", "ETH"]),
    units=st.integers(1, 10**11),
    places=st.integers(0, 20),
    cents=st.integers(1, 10**10),
)
def test_collateral_places_are_checked_per_asset(asset: str, units: int, places: int,
                                                 cents: int):
    amount = D(units).scaleb(-places)
    app = LoanApplication.model_validate(
        application(collateral_asset=asset, collateral_amount=str(amount),
                    principal_usd=str(D(cents).scaleb(-2)))
    )
    allowed = {"BTC": 8, "ETH": 18}[asset]
    # places beyond the asset's that are all zeros are still whole units
    significant = -amount.normalize().as_tuple().exponent
    if significant <= allowed:
        check_application(app)
    else:
        with pytest.raises(ApplicationProblem, match="^collateral_amount:"):
            check_application(app)


def test_an_absurd_principal_is_an_application_problem():
    with pytest.raises(ApplicationProblem, match="principal_usd"):
        check_application(LoanApplication.model_validate(application(principal_usd="1e30")))


# --- updates and signals ------------------------------------------------------------------------


def request_error(model: type[BaseModel], raw: Any) -> str:
    with pytest.raises(RequestError) as err:
        parse_request(model, raw)
    return str(err.value)


@pytest.mark.parametrize("amount", ["-1", "0", "abc", "NaN", "-Infinity", ""])
def test_collateral_deposit_rejects_a_bad_amount_naming_it(amount: str):
    message = request_error(CollateralDeposit, {"amount": amount, "tx_id": "tx-1"})
    assert message.startswith("amount:"), message


def test_collateral_deposit():
    d = parse_request(CollateralDeposit, {"amount": "0.5", "tx_id": "  tx-1  "})
    assert d == CollateralDeposit(amount=D("0.5"), tx_id="tx-1")  # whitespace stripped
    assert "positive number of collateral units" in request_error(
        CollateralDeposit, {"amount": "-1", "tx_id": "tx-1"}
    )
    assert request_error(CollateralDeposit, {"amount": "1", "tx_id": ""}).startswith("tx_id:")
    assert request_error(CollateralDeposit, {"amount": "1", "tx_id": "x" * 129}).startswith(
        "tx_id:"
    )
    assert request_error(CollateralDeposit, {"amount": "1"}).startswith("tx_id:")


def test_unknown_extra_field_is_named():
    message = request_error(CollateralDeposit, {"amount": "1", "tx_id": "t", "txid": "t"})
    assert message.startswith("txid:") and "not permitted" in message


@pytest.mark.parametrize(
    ("amount", "why"),
    [("abc", "amount_usd:"), ("-5", "positive"), ("0", "positive"), ("10.001", "whole cents"),
     ("NaN", "amount_usd:")],
)
def test_repayment_rejects_bad_amounts_naming_the_field(amount: str, why: str):
    message = request_error(Repayment, {"amount_usd": amount, "reference": "wire-1"})
    assert message.startswith("amount_usd:"), message
    assert why in message


def test_repayment():
    r = parse_request(Repayment, {"amount_usd": "1000.50", "reference": "wire-1"})
    assert r.amount_usd == D("1000.50") and r.reference == "wire-1"
    assert request_error(Repayment, {"amount_usd": "1"}).startswith("reference:")


def test_an_absurd_repayment_is_a_request_error():
    assert "amount_usd" in request_error(Repayment, {"amount_usd": "1e30", "reference": "w"})


def test_kyc_decision():
    k = parse_request(KycDecision, {"approved": True, "reviewer": "ops-1", "reason": "docs ok"})
    assert k.approved is True
    assert request_error(KycDecision, {"approved": "maybe", "reviewer": "r", "reason": "x"}
                         ).startswith("approved:")
    assert request_error(KycDecision, {"approved": False, "reviewer": "   ", "reason": "x"}
                         ).startswith("reviewer:")
    assert request_error(KycDecision, {"approved": False, "reviewer": "r"}).startswith("reason:")


def test_cure_extension():
    e = parse_request(CureExtension, {"hours": 24, "reason": "wire in flight", "operator": "o"})
    assert e.hours == 24
    assert request_error(CureExtension, {"hours": 0, "reason": "x", "operator": "o"}
                         ).startswith("hours:")
    assert request_error(CureExtension, {"hours": "soon", "reason": "x", "operator": "o"}
                         ).startswith("hours:")
    assert request_error(CureExtension, {"hours": 1, "reason": "x", "operator": ""}
                         ).startswith("operator:")


def test_several_problems_are_reported_together():
    message = request_error(CollateralDeposit, {"amount": "-1", "tx_id": "", "x": 1})
    assert message.count(";") == 2
    for field in ("amount:", "tx_id:", "x:"):
        assert field in message


def test_parse_request_accepts_models_and_rejects_non_objects():
    d = CollateralDeposit(amount=D("1"), tx_id="t")
    assert parse_request(CollateralDeposit, d) is d
    # another model with the same fields is converted through JSON and validated
    assert parse_request(Repayment, Repayment(amount_usd=D("5.00"), reference="r")).amount_usd == (
        D("5.00")
    )
    assert "expected a JSON object for Repayment, got list" in request_error(Repayment, [1])
    assert "got str" in request_error(Repayment, "5.00")
    assert "got NoneType" in request_error(Repayment, None)


def test_describe_validation_error_strips_pydantic_prefix():
    try:
        CollateralDeposit.model_validate({"amount": "-1", "tx_id": "t"})
    except ValidationError as err:
        assert describe_validation_error(err) == (
            "amount: must be a positive number of collateral units"
        )
    else:  # pragma: no cover
        pytest.fail("expected a validation error")


# --- price_update -------------------------------------------------------------------------------


def test_price_update_requires_a_time_zone():
    message = request_error(PriceUpdate, {"asset": "BTC", "price": "15600.00",
                                          "observed_at": "2022-11-09T23:00:00"})
    assert message.startswith("observed_at:") and "time zone" in message


def test_price_update_is_converted_to_utc():
    u = parse_request(PriceUpdate, {"asset": "BTC", "price": "15600.00",
                                    "observed_at": "2022-11-09T23:00:00Z"})
    assert u.observed_at == datetime(2022, 11, 9, 23, tzinfo=timezone.utc)
    assert u.observed_at.utcoffset() == timedelta(0)
    assert u.price == D("15600.00") and u.source == "manual" and u.observation_id is None
    shifted = parse_request(PriceUpdate, {"asset": "ETH", "price": "1100.5",
                                          "observed_at": "2022-11-10T01:00:00+02:00",
                                          "source": "median", "observation_id": 7})
    assert shifted.observed_at == datetime(2022, 11, 9, 23, tzinfo=timezone.utc)
    assert shifted.observed_at.tzinfo == timezone.utc
    assert shifted.source == "median" and shifted.observation_id == 7


@pytest.mark.parametrize("price", ["0", "-1", "abc", "NaN", "Infinity"])
def test_price_update_rejects_a_bad_price(price: str):
    message = request_error(PriceUpdate, {"asset": "BTC", "price": price,
                                          "observed_at": "2022-11-09T23:00:00Z"})
    assert message.startswith("price:"), message


def test_price_update_keeps_sub_cent_prices_exact():
    u = parse_request(PriceUpdate, {"asset": "ETH", "price": "1234.56789012",
                                    "observed_at": "2022-11-09T23:00:00Z"})
    assert u.price == D("1234.56789012")


# --- status -------------------------------------------------------------------------------------


def test_status_carries_the_contract_fields_as_json():
    status = LoanStatus(
        loan_id="L-1", state=LoanState.MARGIN_CALL, ltv=D("0.7012345"), collateral_asset="BTC",
        collateral_amount=D("1.23456789"), debt_usd=D("35000.01"), principal_usd=D("35000"),
        interest_usd=D("0.01"), fees_usd=D("0"),
        cure_deadline=datetime(2022, 11, 11, 23, tzinfo=timezone.utc),
        cure_top_up=D("0.1"), cure_repay_usd=D("5000.00"), price=D("40000"),
        price_observed_at=datetime(2022, 11, 9, 23, tzinfo=timezone.utc), price_fresh=True,
        required_collateral=D("1.23456789"), deposit_address=None, funding_deadline=None,
        disbursed_at=None, maturity=None, shortfall_usd=D("0"), reason=None, kyc_status="approved",
        trigger_prices={"margin_call": D("40000.00"), "cure": None},
    )
    data = json.loads(status.model_dump_json())
    for key in ("loan_id", "state", "ltv", "collateral_asset", "collateral_amount", "debt_usd",
                "cure_deadline", "cure_top_up", "cure_repay_usd"):
        assert key in data, key
    assert data["state"] == "MARGIN_CALL"
    assert data["debt_usd"] == "35000.01"  # decimals as strings
    assert data["collateral_amount"] == "1.23456789"
    assert data["cure_deadline"].startswith("2022-11-11T23:00:00")
    assert data["trigger_prices"] == {"margin_call": "40000.00", "cure": None}
    assert LoanStatus.model_validate_json(status.model_dump_json()) == status
