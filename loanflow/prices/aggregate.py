"""One market price from several venues' quotes (DESIGN.md: "never act on a stale or
single-venue price").

1. Quotes for another asset, non-positive ones and quotes older than the staleness limit (or
   from the future, beyond a small clock skew) are dropped.
2. One quote per venue counts (its newest): a venue cannot outvote the others.
3. Fewer fresh venues than the quorum: no price.
4. Quotes further than `max_deviation` from the median of the fresh ones are outliers (a wick
   on one venue, a de-pegged stablecoin quote) and are dropped.
5. Fewer venues left than the quorum: no price (the venues disagree; nobody can tell which is
   right, so nothing acts). Otherwise the price is the median of what is left.

The price is rounded down to the cent: against the borrower's risk like every collateral value
(DESIGN.md), and in the same unit as the trigger prices loans publish, so "which triggers did
this move cross" is an exact comparison of cents (`triggers`). It is as old as its oldest input: `observed_at` is the oldest quote used, so a venue that stopped
updating cannot make an old price look new.

Pure functions over Decimal: used by the monitor's activity and by tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, Field

from loanflow.money import usd_down
from loanflow.prices.sources import Quote


class AggregationRules(BaseModel):
    """Defaults: DESIGN.md's 15-minute staleness; 1% from the median is an outlier (venues'
    closes normally agree within 0.2%; the recorded single-venue wicks are 1-3.5% off);
    two venues at least."""

    staleness_seconds: int = Field(900, gt=0)
    max_deviation: Decimal = Field(Decimal("0.01"), gt=0)
    quorum: int = Field(2, ge=1)
    max_clock_skew_seconds: int = Field(60, ge=0)


@dataclass(frozen=True)
class Dropped:
    quote: Quote
    reason: str


@dataclass(frozen=True)
class Priced:
    asset: str
    price: Decimal
    observed_at: datetime
    used: tuple[Quote, ...]
    dropped: tuple[Dropped, ...] = ()

    @property
    def sources(self) -> dict[str, Decimal]:
        return {q.venue: q.price for q in self.used}


@dataclass(frozen=True)
class NoPrice:
    asset: str
    at: datetime
    reasons: tuple[str, ...]
    dropped: tuple[Dropped, ...] = ()
    used: tuple[Quote, ...] = field(default=())


Outcome = Priced | NoPrice


def median(values: Sequence[Decimal]) -> Decimal:
    """The middle value; the mean of the two middle ones for an even count (exact)."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def aggregate(
    asset: str, quotes: Iterable[Quote], now: datetime, rules: AggregationRules | None = None,
    problems: Iterable[str] = (),
) -> Outcome:
    """The price of `asset` at `now` from `quotes`, or NoPrice with the reasons. `problems` are
    sources that could not answer; they are reported with a NoPrice."""
    rules = rules or AggregationRules()
    fresh, dropped = _fresh_quotes(asset, quotes, now, rules)
    fresh, superseded = _newest_per_venue(fresh)
    dropped += superseded
    if len(fresh) < rules.quorum:
        reason = f"only {len(fresh)} fresh venue quote(s), quorum is {rules.quorum}"
        return NoPrice(asset, now, (reason, *problems), tuple(dropped), tuple(fresh))
    centre = median([q.price for q in fresh])
    kept, outliers = _within(fresh, centre, rules.max_deviation)
    dropped += outliers
    if len(kept) < rules.quorum:
        reason = (f"venues disagree: {len(kept)} of {len(fresh)} quotes within "
                  f"{rules.max_deviation:%} of the median {centre}, quorum is {rules.quorum}")
        return NoPrice(asset, now, (reason, *problems), tuple(dropped), tuple(kept))
    return Priced(
        asset=asset,
        price=usd_down(median([q.price for q in kept])),
        observed_at=min(q.at for q in kept if q.at is not None),
        used=tuple(sorted(kept, key=lambda q: q.venue)),
        dropped=tuple(dropped),
    )


def _fresh_quotes(
    asset: str, quotes: Iterable[Quote], now: datetime, rules: AggregationRules
) -> tuple[list[Quote], list[Dropped]]:
    limit = timedelta(seconds=rules.staleness_seconds)
    skew = timedelta(seconds=rules.max_clock_skew_seconds)
    fresh: list[Quote] = []
    dropped: list[Dropped] = []
    for quote in quotes:
        if quote.asset != asset:
            continue
        quote = quote.stamped(now)
        assert quote.at is not None
        if quote.price <= 0:
            dropped.append(Dropped(quote, "not a positive price"))
        elif now - quote.at > limit:
            dropped.append(Dropped(quote, f"stale: {_age(now - quote.at)} old, limit {_age(limit)}"))
        elif quote.at - now > skew:
            dropped.append(Dropped(quote, f"from the future: {_age(quote.at - now)} ahead"))
        else:
            fresh.append(quote)
    return fresh, dropped


def _newest_per_venue(quotes: list[Quote]) -> tuple[list[Quote], list[Dropped]]:
    newest: dict[str, Quote] = {}
    dropped: list[Dropped] = []
    for quote in sorted(quotes, key=lambda q: q.at):  # type: ignore[arg-type, return-value]
        if quote.venue in newest:
            dropped.append(Dropped(newest[quote.venue], "superseded by a newer quote of the venue"))
        newest[quote.venue] = quote
    return list(newest.values()), dropped


def _within(
    quotes: list[Quote], centre: Decimal, max_deviation: Decimal
) -> tuple[list[Quote], list[Dropped]]:
    kept: list[Quote] = []
    dropped: list[Dropped] = []
    for quote in quotes:
        deviation = abs(quote.price - centre) / centre
        if deviation > max_deviation:
            dropped.append(Dropped(quote, f"outlier: {deviation:.2%} from the median {centre}"))
        else:
            kept.append(quote)
    return kept, dropped


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}min"
    return f"{seconds // 3600}h"
