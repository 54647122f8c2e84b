"""Stored market prices: the newest observation per asset, exact and in UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError

from activities.pricing import PricingActivities, describe_sources, store_observation
from loanflow.effects import PriceRequest

D = Decimal
T0 = datetime(2022, 11, 9, 23, 0, tzinfo=timezone.utc)


async def test_no_price_yet(db, env) -> None:
    latest = await env.run(PricingActivities(db).latest_price, PriceRequest(asset="BTC"))
    assert latest.observation is None


async def test_latest_is_the_newest_observation_of_the_asset(db, env) -> None:
    newest = await store_observation(
        db,
        "BTC",
        D("15682.33"),
        T0 + timedelta(minutes=5),
        {"kraken": D("15680.10"), "coinbase": D("15682.33"), "bitstamp": D("15690")},
    )
    # Stored later but observed earlier (a late quote): it is not the latest.
    await store_observation(db, "BTC", D("16000.00"), T0)
    await store_observation(
        db, "ETH", D("1100.123456789"), T0 + timedelta(minutes=9), {"kraken": D("1100.123456789")}
    )
    btc = (await env.run(PricingActivities(db).latest_price, PriceRequest(asset="BTC"))).observation
    assert btc is not None
    assert (btc.asset, btc.price, btc.observation_id) == (
        "BTC",
        D("15682.33"),
        newest.observation_id,
    )
    assert btc.observed_at == T0 + timedelta(minutes=5) and btc.observed_at.tzinfo == timezone.utc
    assert btc.source == "median(bitstamp,coinbase,kraken)"
    eth = (await env.run(PricingActivities(db).latest_price, PriceRequest(asset="ETH"))).observation
    assert eth is not None and eth.price == D("1100.123456789") and eth.source == "kraken"


async def test_observation_time_in_another_zone_comes_back_in_utc(db, env) -> None:
    local = datetime(2022, 11, 10, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    await store_observation(db, "ETH", D("1200"), local)
    eth = (await env.run(PricingActivities(db).latest_price, PriceRequest(asset="ETH"))).observation
    assert eth is not None and eth.observed_at == T0 and eth.observed_at.tzinfo == timezone.utc


async def test_bad_observations_and_requests_are_refused(db, env) -> None:
    with pytest.raises(ValueError, match="unknown asset"):
        await store_observation(db, "DOGE", D("1"), T0)
    with pytest.raises(ValueError, match="positive"):
        await store_observation(db, "BTC", D("0"), T0)
    with pytest.raises(ValueError, match="time zone"):
        await store_observation(db, "BTC", D("1"), T0.replace(tzinfo=None))
    with pytest.raises(ApplicationError) as err:
        await env.run(PricingActivities(db).latest_price, PriceRequest(asset="DOGE"))
    assert err.value.non_retryable and err.value.type == "UnknownAsset"


def test_describe_sources() -> None:
    assert describe_sources({}) == "stored"
    assert describe_sources({"kraken": "1"}) == "kraken"
