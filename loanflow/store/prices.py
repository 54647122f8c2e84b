"""Market price observations in the database: storing them (with every check of a price
entering the desk) and reading the newest one a loan may act on.

`loanflow price` stores one typed by an operator (`record_observation`); the market monitor's
activities store the prices it forms; the `latest_price` activity, `loanflow market status` and
the book read the newest usable one (`latest_observation`). Freshness is the reader's call: this
module returns the newest observation however old it is, with its `observed_at`, but never one a
loan must not act on: an unconfirmed jump, a price outside the asset's sane range, or one
observed in the future (beyond a small clock skew) by the reader's clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from loanflow.db import Database
from loanflow.models import PriceUpdate
from loanflow.money import ASSETS, MAX_CLOCK_SKEW, price_problem, tidy
from loanflow.prices import jumps
from loanflow.schema import PriceObservation, utcnow

# Rows fetched at a time when skipping unusable observations.
_PAGE = 50


class ObservationProblem(ValueError):
    """A price that may not enter the desk; the message names the field."""


def check_observation(asset: str, price: Decimal, observed_at: datetime,
                      now: datetime | None = None) -> None:
    """Raises ObservationProblem naming the field: an unknown asset, a price outside the asset's
    sane range (or not a finite positive number), a naive or future `observed_at`."""
    if asset not in ASSETS:
        raise ObservationProblem(f"asset: {asset!r} is not supported ({', '.join(ASSETS)})")
    problem = price_problem(asset, price)
    if problem:
        raise ObservationProblem(f"price: {problem}")
    if observed_at.tzinfo is None:
        raise ObservationProblem("observed_at: must carry a time zone (UTC)")
    now = now or datetime.now(timezone.utc)
    if observed_at - now > MAX_CLOCK_SKEW:
        raise ObservationProblem(
            f"observed_at: {observed_at.isoformat()} is in the future (now "
            f"{now.isoformat(timespec='seconds')}, at most {_minutes(MAX_CLOCK_SKEW)} ahead)")


async def store_observation(
    db: Database,
    asset: str,
    price: Decimal,
    observed_at: datetime,
    sources: Mapping[str, Decimal] | None = None,
) -> PriceUpdate:
    """Store one market price as accepted and return it as the `price_update` a loan would
    receive, carrying the new `observation_id`. `sources` are the quotes behind it, by source
    name. Raises ValueError (ObservationProblem) for an unknown asset, an insane price or a
    naive time. No jump check and no clock: the caller vouches for it (a test's seed price).
    Prices from outside go through `record_observation`."""
    if asset not in ASSETS:
        raise ObservationProblem(f"unknown asset {asset!r}: expected one of {', '.join(ASSETS)}")
    problem = price_problem(asset, price)
    if problem:
        raise ObservationProblem(f"price {problem}")
    if observed_at.tzinfo is None:
        raise ObservationProblem("observed_at must carry a time zone (UTC)")
    quotes = {name: str(quote) for name, quote in (sources or {}).items()}
    values = {"asset": asset, "price": price, "observed_at": observed_at, "sources": quotes,
              "created_at": utcnow()}
    async with db.transaction() as session:
        new_id = await session.scalar(insert(PriceObservation).values(**values)
                                      .returning(PriceObservation.id))
    return as_update(PriceObservation(id=new_id, disputed=False, **values))


@dataclass(frozen=True)
class Recorded:
    observation: PriceUpdate
    unconfirmed: bool
    last_accepted: Decimal | None


async def record_observation(
    db: Database, asset: str, price: Decimal, observed_at: datetime,
    sources: Mapping[str, Decimal] | None = None, *, max_jump: Decimal | None = jumps.DEFAULT_MAX_JUMP,
    now: datetime | None = None,
) -> Recorded:
    """An observation from outside (an operator's `loanflow price`): checked like every price
    entering the desk (`check_observation`), then stored; flagged unconfirmed if it jumps more
    than `max_jump` from the last accepted observation and no pending one confirms it."""
    check_observation(asset, price, observed_at, now)
    quotes = {name: str(quote) for name, quote in (sources or {}).items()}
    async with db.transaction() as session:
        last, pending = await jump_reference(session, asset, observed_at)
        believed = jumps.accepted(price, last, pending, max_jump)
        row = PriceObservation(asset=asset, price=price, observed_at=observed_at,
                               sources=quotes, unconfirmed=not believed)
        session.add(row)
        await session.flush()
    return Recorded(as_update(row), unconfirmed=not believed, last_accepted=last)


async def jump_reference(
    session: AsyncSession, asset: str, before: datetime
) -> tuple[Decimal | None, Decimal | None]:
    """(the last accepted price, the newest unconfirmed one since) observed before `before`:
    what a new observation's jump is measured against."""
    last = await newest(session, asset, before=before)
    query = _newest_first(asset).where(PriceObservation.unconfirmed.is_(True),
                                        PriceObservation.observed_at < before)
    if last is not None:
        query = query.where(PriceObservation.observed_at > last.observed_at)
    pending = None
    for row in await session.scalars(query.limit(_PAGE)):
        if price_problem(asset, row.price) is None:
            pending = row.price
            break
    return (None if last is None else last.price), pending


def _newest_first(asset: str):  # type: ignore[no-untyped-def]
    return (select(PriceObservation).where(PriceObservation.asset == asset)
            .order_by(PriceObservation.observed_at.desc(), PriceObservation.id.desc()))


async def newest(session: AsyncSession | AsyncConnection, asset: str, *,
                 before: datetime | None = None,
                 not_after: datetime | None = None) -> Row[Any] | None:
    """The newest accepted observation of `asset` a loan may act on: not unconfirmed, inside
    the asset's sane range, observed before `before` / at or before `not_after` (if given).
    A plain row with the observation's columns as attributes (see `_NEWEST`)."""
    bounds = {"before": before or _UNBOUNDED, "not_after": not_after or _UNBOUNDED}
    # Rows stored before prices were bounded may be absurd: skip them, never crash. The newest
    # row is nearly always sane, so the first page is that one row: every loan's daily
    # revaluation reads here, and loading fifty ORM rows to use one was a tenth of a stress
    # worker's time.
    offset, size = 0, 1
    while True:
        rows = (await session.execute(
            _NEWEST, {"asset": asset, **bounds, "offset": offset, "size": size})).all()
        for row in rows:
            if price_problem(asset, row.price) is None:
                return row
        if len(rows) < size:
            return None
        offset, size = offset + size, _PAGE


# One statement for every read of `newest` (built once: read at every loan's revaluation).
# Columns, not ORM objects: the readers only look at the values.
_UNBOUNDED = datetime(9999, 12, 31, tzinfo=timezone.utc)  # a bound not given
_NEWEST = (
    select(*PriceObservation.__table__.c)
    .where(PriceObservation.asset == bindparam("asset"),
           PriceObservation.unconfirmed.is_(False),
           PriceObservation.observed_at < bindparam("before"),
           PriceObservation.observed_at <= bindparam("not_after"))
    .order_by(PriceObservation.observed_at.desc(), PriceObservation.id.desc())
    .offset(bindparam("offset")).limit(bindparam("size"))
)


async def latest_observation(db: Database, asset: str,
                             now: datetime | None = None) -> PriceUpdate | None:
    """The newest usable observation of `asset` (see `newest`) not observed after `now` (the
    reader's clock; the wall clock if None) plus the clock skew, or None."""
    async with db.transaction() as session:
        return await observation_at(session, asset, now)


async def observation_at(target: AsyncSession | AsyncConnection, asset: str,
                         now: datetime | None = None) -> PriceUpdate | None:
    """`latest_observation` in the caller's session or connection (its transaction)."""
    now = now or datetime.now(timezone.utc)
    row = await newest(target, asset, not_after=now + MAX_CLOCK_SKEW)
    return None if row is None else as_update(row)


def as_update(row: PriceObservation | Row[Any]) -> PriceUpdate:
    """A stored observation as the `price_update` a loan receives (with the dispute flags)."""
    return PriceUpdate(
        asset=row.asset,
        price=tidy(row.price),  # 18500, not SQLite's normalised 1.85E+4
        observed_at=row.observed_at,  # aware: UtcDateTime
        source=describe_sources(row.sources, disputed=bool(row.disputed)),
        observation_id=row.id,
        disputed=bool(row.disputed),
        low=None if row.low is None else tidy(row.low),
        high=None if row.high is None else tidy(row.high),
        venues={v: tidy(Decimal(p)) for v, p in row.sources.items()} if row.disputed else None,
    )


def describe_sources(sources: Mapping[str, object], *, disputed: bool = False) -> str:
    """'kraken' for one quote, 'median(bitstamp,coinbase,kraken)' for several,
    'lowest(binance,bitstamp)' when the venues disagreed."""
    names = sorted(sources)
    if not names:
        return "stored"
    how = "lowest" if disputed else "median"
    return names[0] if len(names) == 1 else f"{how}({','.join(names)})"


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} min"
