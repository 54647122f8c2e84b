"""Stored market prices: the newest observation per asset, exact and in UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from temporalio.exceptions import ApplicationError

from sqlalchemy import update

from activities.pricing import PricingActivities
from loanflow.effects import PriceRequest
from loanflow.schema import PriceObservation
from loanflow.store.prices import (
    ObservationProblem,
    describe_sources,
    latest_observation,
    record_observation,
    store_observation,
)

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
        await store_observation(db, "BTC", D("16000"), T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="outside the sane range of ETH"):
        await store_observation(db, "ETH", D("1e309"), T0)
    with pytest.raises(ApplicationError) as err:
        await env.run(PricingActivities(db).latest_price, PriceRequest(asset="DOGE"))
    assert err.value.non_retryable and err.value.type == "UnknownAsset"


def test_describe_sources() -> None:
    assert describe_sources({}) == "stored"
    assert describe_sources({"kraken": "1"}) == "kraken"


# --- what a loan may read, and what may enter ----------------------------------------------------


async def test_the_latest_read_never_returns_a_future_unconfirmed_or_insane_observation(db, env):
    good = await store_observation(db, "BTC", D("16000"), T0)
    now = datetime.now(timezone.utc)
    # Rows that could only have been stored before prices were checked where they enter:
    future = await store_observation(db, "BTC", D("60000"), datetime(2030, 1, 1, tzinfo=timezone.utc))
    absurd = await store_observation(db, "BTC", D("16001"), T0 + timedelta(minutes=1))
    async with db.transaction() as session:
        await session.execute(update(PriceObservation).where(
            PriceObservation.id == absurd.observation_id).values(price=D("99999999999")))
    jumped = await record_observation(db, "BTC", D("8000"), T0 + timedelta(minutes=2), now=now)
    assert jumped.unconfirmed and jumped.last_accepted == D("16000")

    latest = (await env.run(PricingActivities(db).latest_price, PriceRequest(asset="BTC"))).observation
    assert latest is not None and latest.observation_id == good.observation_id
    # By a clock past 2030 the future row is simply the newest.
    later = await latest_observation(db, "BTC", datetime(2030, 1, 1, 0, 1, tzinfo=timezone.utc))
    assert later is not None and later.observation_id == future.observation_id


async def test_entering_prices_are_checked_and_a_jump_waits_for_a_second_observation(db) -> None:
    now = T0 + timedelta(hours=1)
    for price, at, field in ((D("1e309"), T0, "price: 1E+309 is outside the sane range of ETH"),
                             (D("0"), T0, "price: must be a positive"),
                             (D("1200"), now + timedelta(minutes=3), "observed_at: ")):
        with pytest.raises(ObservationProblem) as err:
            await record_observation(db, "ETH", price, at, now=now)
        assert str(err.value).startswith(field)
    # 2 minutes of clock skew are tolerated
    first = await record_observation(db, "ETH", D("1200"), now + timedelta(minutes=2), now=now)
    assert not first.unconfirmed and first.last_accepted is None  # the first price stands

    # 1200 -> 700 is 41.7%: unconfirmed, read by no loan ...
    jump = await record_observation(db, "ETH", D("700"), now + timedelta(minutes=3),
                                    now=now + timedelta(minutes=3))
    assert jump.unconfirmed
    latest = await latest_observation(db, "ETH", now + timedelta(minutes=3))
    assert latest is not None and latest.price == D("1200")
    # ... until a second observation near it confirms the move
    confirm = await record_observation(db, "ETH", D("710"), now + timedelta(minutes=4),
                                       now=now + timedelta(minutes=4))
    assert not confirm.unconfirmed
    latest = await latest_observation(db, "ETH", now + timedelta(minutes=4))
    assert latest is not None and latest.price == D("710")
    # A blip that comes back is just accepted against the last accepted price.
    blip = await record_observation(db, "ETH", D("2000"), now + timedelta(minutes=5),
                                    now=now + timedelta(minutes=5))
    back = await record_observation(db, "ETH", D("705"), now + timedelta(minutes=6),
                                    now=now + timedelta(minutes=6))
    assert blip.unconfirmed and not back.unconfirmed
    # No limit, no check.
    off = await record_observation(db, "ETH", D("3000"), now + timedelta(minutes=7),
                                   now=now + timedelta(minutes=7), max_jump=None)
    assert not off.unconfirmed


async def test_a_disputed_observation_reads_back_flagged(db, env) -> None:
    async with db.transaction() as session:
        row = PriceObservation(asset="BTC", price=D("25401.05"), observed_at=T0,
                               sources={"bitstamp": "25401.05", "binance": "26700"},
                               disputed=True, low=D("25401.05"), high=D("26700"))
        session.add(row)
    latest = (await env.run(PricingActivities(db).latest_price, PriceRequest(asset="BTC"))).observation
    assert latest is not None and latest.disputed
    assert (latest.price, latest.low, latest.high) == (D("25401.05"), D("25401.05"), D("26700"))
    assert latest.venues == {"bitstamp": D("25401.05"), "binance": D("26700")}
    assert latest.source == "lowest(binance,bitstamp)"
    # the signal a loan gets carries the flags; a plain one stays the plain contract
    assert latest.payload()["disputed"] is True and latest.payload()["high"] == "26700"
    plain = await store_observation(db, "ETH", D("1200"), T0)
    assert set(plain.payload()) == {"asset", "price", "observed_at", "source", "observation_id"}


async def test_the_loan_reads_by_its_own_clock(db, env) -> None:
    """A loan sends its clock with the request (a time-skipping server's clock is not this
    worker's): an observation later than that, beyond the skew, is not read."""
    past = await store_observation(db, "BTC", D("16000"), T0)
    await store_observation(db, "BTC", D("16100"), T0 + timedelta(minutes=3))
    request = PriceRequest(asset="BTC", now=T0 + timedelta(seconds=59))
    latest = (await env.run(PricingActivities(db).latest_price, request)).observation
    assert latest is not None and latest.observation_id == past.observation_id
    later = PriceRequest(asset="BTC", now=T0 + timedelta(minutes=1))  # 2 min of skew allowed
    latest = (await env.run(PricingActivities(db).latest_price, later)).observation
    assert latest is not None and latest.price == D("16100")
