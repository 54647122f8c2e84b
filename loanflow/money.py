"""Decimal money: quanta per asset and rounding against the borrower's risk.

Every amount in loanflow is a `Decimal`. USD is kept to the cent, BTC to 8 places (satoshi),
ETH to 18 (wei). Intermediate results are computed in a wide context so that an ETH amount
times a price never loses digits before it is rounded on purpose.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext
from typing import Literal

Asset = Literal["BTC", "ETH"]
ASSETS: tuple[str, ...] = ("BTC", "ETH")

USD = Decimal("0.01")
QUANTUM: dict[str, Decimal] = {"BTC": Decimal("1e-8"), "ETH": Decimal("1e-18")}

# 28 significant digits (the default) is too few for 18-place ETH amounts times prices.
WIDE = Context(prec=60)


def wide() -> object:
    """A context manager for money arithmetic: 60 significant digits."""
    return localcontext(WIDE)


def usd_up(amount: Decimal) -> Decimal:
    """Round a dollar amount up to the cent (debts, fees: against the borrower)."""
    return amount.quantize(USD, rounding=ROUND_CEILING, context=WIDE)


def usd_down(amount: Decimal) -> Decimal:
    """Round a dollar amount down to the cent (collateral value, proceeds credited)."""
    return amount.quantize(USD, rounding=ROUND_FLOOR, context=WIDE)


def quantum(asset: str) -> Decimal:
    try:
        return QUANTUM[asset]
    except KeyError:
        raise ValueError(f"unknown asset {asset!r}: expected one of {', '.join(ASSETS)}") from None


def units_up(asset: str, amount: Decimal) -> Decimal:
    """Round collateral units up to the asset's smallest unit (amounts the borrower must add,
    amounts that must be sold)."""
    return amount.quantize(quantum(asset), rounding=ROUND_CEILING, context=WIDE)


def units_down(asset: str, amount: Decimal) -> Decimal:
    """Round collateral units down to the asset's smallest unit (collateral we count)."""
    return amount.quantize(quantum(asset), rounding=ROUND_FLOOR, context=WIDE)


# Sanity bounds on amounts people type: far above any real loan, far below where Decimal
# arithmetic would run out of digits.
MAX_USD = Decimal(10) ** 15
MAX_UNITS = Decimal(10) ** 12


# The sane range of a market price in USD, per asset: the one place every entry point (the
# CLI's `price`, a manual tick, a venue's reply, the stored observations loans read) checks.
# Wide enough for any real market (BTC traded under $100 in 2013), narrow enough that a typo
# of six zeros, or `1e309` (which no money arithmetic survives), is refused where it enters.
PRICE_BOUNDS: dict[str, tuple[Decimal, Decimal]] = {
    "BTC": (Decimal(10), Decimal(10) ** 7),
    "ETH": (Decimal("0.1"), Decimal(10) ** 6),
    "USDT": (Decimal("0.5"), Decimal(2)),  # the stablecoin's USD rate (quote conversion)
}


# How far ahead of the reader's clock an observation may be stamped (two machines' clocks
# differ a little); anything further is refused where it enters and never read back.
MAX_CLOCK_SKEW = timedelta(minutes=2)


def price_problem(asset: str, price: Decimal) -> str | None:
    """Why `price` (USD per unit of `asset`) cannot be a market price, or None if it can."""
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        return f"must be a positive, finite price (got {price})"
    bounds = PRICE_BOUNDS.get(asset)
    if bounds is None:
        return f"no price range is known for {asset!r}"
    low, high = bounds
    if not low <= price <= high:
        return f"{price} is outside the sane range of {asset} ({low} to {high:,} USD)"
    return None


def is_whole_cents(amount: Decimal) -> bool:
    return amount == amount.quantize(USD, context=WIDE)


def is_whole_units(asset: str, amount: Decimal) -> bool:
    """True if the amount has no digits below the asset's smallest unit."""
    return units_down(asset, amount) == amount


def tidy(amount: Decimal) -> Decimal:
    """The same amount without trailing zeros or an exponent: 100.000 -> 100, 1.50 -> 1.5.
    PostgreSQL hands back NUMERIC(38, 18) with 18 places; receipts read better without."""
    amount = amount.normalize()
    return amount.quantize(Decimal(1)) if amount.as_tuple().exponent > 0 else amount  # type: ignore[operator]


def decimal_text(value: Decimal) -> str:
    """A Decimal as plain digits: no exponent, no trailing zeros (0E-8 is "0", 1.4E+3 is
    "1400"). The one "no exponents" rule for every figure without a unit of its own (a rate, a
    count, an amount whose every digit matters in a refusal). Pure: workflows may use it."""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_usd(amount: Decimal) -> str:
    """People's format: $1,234,567.89 (never through float)."""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(usd_up(amount) if amount < 0 else usd_down(amount)):,.2f}"


def fmt_units(asset: str, amount: Decimal, places: int | None = None) -> str:
    """People's format for collateral: up to 8 places for BTC and ETH, trailing zeros dropped."""
    places = 8 if places is None else places
    q = Decimal(1).scaleb(-places)
    text = f"{amount.quantize(q, rounding=ROUND_CEILING, context=WIDE):,.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} {asset}"


def fmt_units_exact(asset: str, amount: Decimal) -> str:
    """Collateral to the asset's smallest unit, nothing rounded away: the ledger's memos and
    refusals, where every satoshi and wei counts (`1,234.5 ETH`, `0.00000001 BTC`)."""
    step = QUANTUM.get(asset)
    if step is None or not amount.is_finite():
        return f"{decimal_text(amount)} {asset}"
    return fmt_units(asset, amount, -step.as_tuple().exponent)  # type: ignore[operator]


def fmt_ratio(ratio: Decimal | None) -> str:
    """An LTV as a percentage with two decimals: 0.70125 -> 70.13%."""
    if ratio is None:
        return "n/a"
    if ratio.is_infinite():
        return "infinite (collateral worth less than a cent)"
    return f"{(ratio * 100).quantize(USD, rounding=ROUND_CEILING, context=WIDE):,.2f}%"


def check_price(asset: str, price: Decimal) -> Decimal:
    """A price for `asset` that is finite, positive and inside its sane range (`PRICE_BOUNDS`);
    otherwise ValueError saying which bound it broke (for pydantic validators)."""
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        raise ValueError("must be a positive price")
    problem = price_problem(asset, price)
    if problem is not None:
        raise ValueError(problem)
    return price
