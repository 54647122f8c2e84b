"""One market price from several venues' quotes (DESIGN.md: "never act on a stale or
single-venue price").

1. Quotes for another asset and quotes older than the staleness limit (or from the future,
   beyond a small clock skew) are dropped.
2. Every price is in USD: a quote in USDT is converted with a USDT/USD rate (the median of the
   fresh `USDT` quotes in USD the sources gave, else the rate configured in the rules) or, with
   no rate known, dropped: a stablecoin is never taken to be a dollar (Terra, May 2022: USDT
   traded at 0.95). Quotes in any other currency are dropped.
3. A price outside the asset's sane range (`loanflow.money.PRICE_BOUNDS`) is dropped.
4. One quote per venue counts (its newest): a venue cannot outvote the others.
5. Fewer fresh venues than the quorum: no price.
6. Quotes further than `max_deviation` from the median of the fresh ones are outliers (a wick
   on one venue) and are dropped; if the quorum is left, the price is the median of the rest.
7. Otherwise the venues disagree and nobody can tell which is right: the observation is
   *disputed*. Its price is the LOWEST fresh quote, with `low`/`high` and every venue's quote
   kept: warnings and margin calls act on it (the desk is not blind in the hours that matter),
   but a sale needs agreement (only the hard floor, if it holds at the highest quote, sells).

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

from pydantic import BaseModel, Field, field_validator

from loanflow.money import fmt_usd, price_problem, usd_down
from loanflow.prices.jumps import DEFAULT_MAX_JUMP
from loanflow.prices.sources import Quote

# The stablecoin some venues quote in, and the rate "asset" that converts it.
USDT = "USDT"


class AggregationRules(BaseModel):
    """Defaults: DESIGN.md's 15-minute staleness; 1% from the median is an outlier (venues'
    closes normally agree within 0.2%; the recorded single-venue wicks are 1-3.5% off);
    two venues at least."""

    staleness_seconds: int = Field(900, gt=0)
    max_deviation: Decimal = Field(Decimal("0.01"), gt=0)
    quorum: int = Field(2, ge=1)
    max_clock_skew_seconds: int = Field(60, ge=0)
    # A configured USDT/USD rate, used when no source quotes USDT in USD. None: USDT quotes
    # without a quoted rate are left out.
    usdt_usd: Decimal | None = Field(None, gt=0)
    # A price further than this from the last accepted observation is stored unconfirmed and
    # acted on only once a second observation confirms it (a bad print, a typo). None: off.
    max_jump: Decimal | None = Field(DEFAULT_MAX_JUMP, gt=0)

    @field_validator("usdt_usd")
    @classmethod
    def _sane_rate(cls, v: Decimal | None) -> Decimal | None:
        problem = None if v is None else price_problem(USDT, v)
        if problem:
            raise ValueError(problem)
        return v


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
    # The venues disagreed past the deviation limit: `price` is the lowest quote, `low` and
    # `high` the range, `used` every fresh venue's quote (see the module's rule 7).
    disputed: bool = False
    low: Decimal | None = None
    high: Decimal | None = None
    notes: tuple[str, ...] = ()

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
    sources that could not answer; they are reported with a NoPrice. `quotes` may include
    `USDT` quotes in USD: they are the rate that converts the venues quoting in USDT."""
    rules = rules or AggregationRules()
    quotes = list(quotes)
    rate, notes = usdt_rate(quotes, now, rules)
    fresh, dropped = _usable_quotes(asset, quotes, now, rules, rate)
    fresh, superseded = _newest_per_venue(fresh)
    dropped += superseded
    if len(fresh) < rules.quorum:
        reason = f"only {len(fresh)} fresh venue quote(s), quorum is {rules.quorum}"
        return NoPrice(asset, now, (reason, *problems), tuple(dropped), tuple(fresh))
    centre = median([q.price for q in fresh])
    kept, outliers = _within(fresh, centre, rules.max_deviation)
    if len(kept) < rules.quorum:
        return _disputed(asset, fresh, centre, rules, tuple(dropped), notes)
    return Priced(
        asset=asset,
        price=usd_down(median([q.price for q in kept])),
        observed_at=_oldest(kept),
        used=tuple(sorted(kept, key=lambda q: q.venue)),
        dropped=tuple(dropped + outliers),
        notes=notes,
    )


def _disputed(asset: str, fresh: list[Quote], centre: Decimal, rules: AggregationRules,
              dropped: tuple[Dropped, ...], notes: tuple[str, ...]) -> Priced:
    ordered = sorted(fresh, key=lambda q: (q.price, q.venue))
    low, high = ordered[0], ordered[-1]
    reason = (f"venues disagree: {low.venue} {fmt_usd(low.price)} to {high.venue} "
              f"{fmt_usd(high.price)}, more than {rules.max_deviation:%} from the median "
              f"{fmt_usd(centre)}; the lowest acts for "
              f"warnings and margin calls, a sale waits for agreement")
    return Priced(
        asset=asset,
        price=usd_down(low.price),
        observed_at=_oldest(fresh),
        used=tuple(sorted(fresh, key=lambda q: q.venue)),
        dropped=dropped,
        disputed=True,
        low=usd_down(low.price),
        high=usd_down(high.price),
        notes=(reason, *notes),
    )


def _oldest(quotes: Sequence[Quote]) -> datetime:
    return min(q.at for q in quotes if q.at is not None)


def usdt_rate(
    quotes: Sequence[Quote], now: datetime, rules: AggregationRules
) -> tuple[Decimal | None, tuple[str, ...]]:
    """The USDT/USD rate at `now`: the median of the fresh `USDT` quotes in USD (one per venue),
    else the configured rate, else None. With a note saying where it came from."""
    candidates = [q for q in quotes if q.asset == USDT and q.currency == "USD"]
    fresh, _ = _usable_quotes(USDT, candidates, now, rules, None)
    fresh, _ = _newest_per_venue(fresh)
    if fresh:
        rate = median([q.price for q in fresh])
        venues = ",".join(sorted(q.venue for q in fresh))
        return rate, (f"USDT/USD {rate} (median of {venues})",)
    if rules.usdt_usd is not None:
        return rules.usdt_usd, (f"USDT/USD {rules.usdt_usd} (configured)",)
    return None, ()


def _usable_quotes(
    asset: str, quotes: Iterable[Quote], now: datetime, rules: AggregationRules,
    rate: Decimal | None,
) -> tuple[list[Quote], list[Dropped]]:
    """The quotes of `asset` that are fresh, in USD (converted if need be) and sane."""
    limit = timedelta(seconds=rules.staleness_seconds)
    skew = timedelta(seconds=rules.max_clock_skew_seconds)
    fresh: list[Quote] = []
    dropped: list[Dropped] = []
    for quote in quotes:
        if quote.asset != asset:
            continue
        quote = quote.stamped(now)
        assert quote.at is not None
        reason = None
        if now - quote.at > limit:
            reason = f"stale: {_age(now - quote.at)} old, limit {_age(limit)}"
        elif quote.at - now > skew:
            reason = f"from the future: {_age(quote.at - now)} ahead"
        else:  # sane as quoted (so no arithmetic on an absurd number), then in USD
            reason = _insane(asset, quote)
        if reason is None:
            quote, reason = in_usd(quote, rate)
            reason = reason or _insane(asset, quote)
        if reason is None:
            fresh.append(quote)
        else:
            dropped.append(Dropped(quote, reason))
    return fresh, dropped


def _insane(asset: str, quote: Quote) -> str | None:
    problem = price_problem(asset, quote.price)
    return None if problem is None else f"not a sane price: {problem}"


def in_usd(quote: Quote, rate: Decimal | None) -> tuple[Quote, str | None]:
    """The quote in USD, or the reason it cannot be: a USDT quote needs a USDT/USD rate."""
    if quote.currency == "USD":
        return quote, None
    if quote.currency != USDT:
        return quote, f"quoted in {quote.currency}: only USD, or USDT with a USDT/USD rate"
    if rate is None:
        return quote, ("quoted in USDT and no USDT/USD rate is known (a USDT quote in USD, "
                       "or a configured usdt_usd): a stablecoin is not a dollar")
    converted = quote.model_copy(update={
        "price": quote.price * rate, "currency": "USD",
        "quoted": f"{quote.price} USDT at {rate} USD"})
    return converted, None


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
            dropped.append(Dropped(quote, f"outlier: {deviation:.2%} from the median "
                                          f"{fmt_usd(centre)}"))
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
