"""Borrower screening by the built-in fake KYC vendor."""

from __future__ import annotations

from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError

from activities.kyc import KycActivities, normalise_name
from activities.support import FakeFaults
from loanflow.effects import ScreeningRequest
from loanflow.models import Borrower


def request(
    name: str = "Ada Lovelace",
    email: str = "ada@example.com",
    country: str = "GB",
    principal: str = "250000.00",
) -> ScreeningRequest:
    return ScreeningRequest(
        loan_id="L1",
        borrower=Borrower(id="B1", name=name, email=email, country=country),
        principal_usd=Decimal(principal),
    )


async def screen(env, req: ScreeningRequest, kyc: KycActivities | None = None):
    return await env.run((kyc or KycActivities()).screen_borrower, req)


async def test_clean_borrower_is_approved(env) -> None:
    result = await screen(env, request())
    assert (result.outcome, result.reasons) == ("approved", [])
    assert (await screen(env, request(country="us"))).outcome == "approved"  # case does not matter


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (request(name="  "), "name is missing"),
        (request(email="ada.example.com"), "not a valid e-mail"),
        (request(email="ada@localhost"), "not a valid e-mail"),
        (request(country="XX"), "not an ISO 3166-1 alpha-2 code"),
        (request(country="UK"), "use GB for the United Kingdom"),
        (request(country="Germany"), "not an ISO 3166-1"),
        (request(country="KP"), "KP is under comprehensive sanctions"),
        (request(country="ir"), "IR is under comprehensive sanctions"),
        (request(name="Viktor Sanctionov"), "matches watch-list entry 'Viktor Sanctionov'"),
        (request(name="SANCTIONOV, Víktor"), "matches watch-list entry"),  # order, case, accents
    ],
)
async def test_rejections_say_why(env, req: ScreeningRequest, reason: str) -> None:
    result = await screen(env, req)
    assert result.outcome == "rejected"
    assert any(reason in r for r in result.reasons), result.reasons


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (request(name="Victor Sanctionov"), "similar to watch-list entry 'Viktor Sanctionov'"),
        (request(name="Erika M. Embargo"), "similar to watch-list entry 'Erika Embargo'"),
        (request(principal="1000000.01"), "above the $1,000,000.00 review threshold"),
    ],
)
async def test_close_calls_go_to_review(env, req: ScreeningRequest, reason: str) -> None:
    result = await screen(env, req)
    assert result.outcome == "review"
    assert any(reason in r for r in result.reasons), result.reasons


async def test_rejection_lists_every_finding(env) -> None:
    result = await screen(env, request(name="Victor Sanctionov", country="SY", principal="5000000"))
    assert result.outcome == "rejected"
    assert len(result.reasons) == 3


async def test_threshold_and_lists_are_configurable(env) -> None:
    kyc = KycActivities(
        watch_list=["Ada Lovelace"], blocked_countries=[], review_threshold_usd=Decimal(100)
    )
    result = await screen(env, request(country="CU"), kyc)
    assert result.outcome == "rejected"  # the name; CU is allowed here
    assert [r.split()[0] for r in result.reasons] == ["name", "principal"]


async def test_vendor_outage_is_a_retryable_failure(env) -> None:
    kyc = KycActivities(FakeFaults(failure_rate=Decimal(1)))
    with pytest.raises(ApplicationError) as err:
        await screen(env, request(), kyc)
    assert not err.value.non_retryable


def test_name_normalisation() -> None:
    assert normalise_name("  Sanctionov,  VÍKTOR ") == normalise_name("viktor sanctionov")
    assert normalise_name("José-María O'Neil") == "jose maria neil o"
