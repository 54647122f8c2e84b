"""Risk math: pure functions over Decimal.

Conventions (DESIGN.md): LTV = debt / (collateral amount x price). Round against the
borrower's risk: collateral value down to the cent, debt up to the cent, amounts the borrower
must add or that must be sold up to the asset's smallest unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal

from loanflow.money import USD, WIDE, units_down, units_up, usd_down, usd_up, wide

ZERO = Decimal(0)


def collateral_value(amount: Decimal, price: Decimal) -> Decimal:
    """What the collateral is worth, rounded down to the cent."""
    with wide():  # an 18-place ETH amount times a price needs more than 28 digits
        return usd_down(amount * price)


def ltv(debt: Decimal, amount: Decimal, price: Decimal) -> Decimal | None:
    """Loan-to-value as a ratio (0.7 = 70%); None when the collateral is worth nothing."""
    value = collateral_value(amount, price)
    if value <= 0:
        return None if debt <= 0 else Decimal("Infinity")
    with wide():
        return usd_up(debt) / value


def shown_ltv(debt: Decimal, amount: Decimal, price: Decimal) -> Decimal | None:
    """The LTV a loan publishes (read model, search attributes): `ltv`, or None when there is
    no collateral or it is worth nothing against a debt."""
    if amount <= 0:
        return None
    current = ltv(debt, amount, price)
    return current if current is not None and current.is_finite() else None


def ltv_at_or_above(debt: Decimal, amount: Decimal, price: Decimal, threshold: Decimal) -> bool:
    current = ltv(debt, amount, price)
    return current is not None and current >= threshold


def trigger_price(debt: Decimal, amount: Decimal, threshold: Decimal) -> Decimal | None:
    """The highest price in cents at which LTV (as `ltv` rounds it) reaches `threshold`: at this
    price LTV >= threshold, one cent above it LTV < threshold, so a trigger never fires late.
    None when there is no collateral or no debt."""
    if amount <= 0 or debt <= 0:
        return None
    with wide():
        # LTV >= threshold  <=>  value <= debt / threshold  <=>  value <= the last cent below
        # that; value is amount x price rounded down, so: amount x price < that cent + 1 cent.
        limit = (usd_down(usd_up(debt) / threshold) + USD) / amount
        return usd_up(limit) - USD


def cure_top_up(
    asset: str, debt: Decimal, amount: Decimal, price: Decimal, target: Decimal
) -> Decimal:
    """Collateral units to add so that LTV <= target at this price (0 if already there)."""
    with wide():
        needed_value = usd_up(usd_up(debt) / target)
        top_up = units_up(asset, needed_value / price - amount)
    return max(top_up, ZERO)


def cure_repay(debt: Decimal, amount: Decimal, price: Decimal, target: Decimal) -> Decimal:
    """Dollars to repay so that LTV <= target at this price (0 if already there)."""
    with wide():
        repay = usd_up(usd_up(debt) - target * collateral_value(amount, price))
    return max(repay, ZERO)


@dataclass(frozen=True)
class SaleSize:
    """How much collateral to sell and what it is expected to bring."""

    quantity: Decimal
    sells_everything: bool


def liquidation_quantity(
    asset: str,
    debt: Decimal,
    amount: Decimal,
    price: Decimal,
    target: Decimal,
    fee: Decimal,
    slippage: Decimal = ZERO,
) -> SaleSize:
    """The least collateral to sell so that, after the fee is taken from the proceeds and the
    rest applied to the debt, LTV <= target at `price`, even if the sale fills `slippage` below
    `price`. Proceeds and values are rounded to the cent as `sale_proceeds` and `ltv` round them.

    Selling q at fill f = price x (1 - slippage) reduces the debt by q f (1 - fee) and the
    collateral by q. We need D - q f (1 - fee) <= target x price x (C - q), so
    q >= (D - target price C) / (f (1 - fee) - target price).
    """
    with wide():
        fill = price * (1 - slippage)
    return least_to_target(asset, debt, amount, price, target, fee, fill)


def least_to_target(
    asset: str, debt: Decimal, amount: Decimal, price: Decimal, target: Decimal, fee: Decimal,
    fill: Decimal,
) -> SaleSize:
    """`liquidation_quantity` for a sale that fills at `fill`: the least quantity that leaves
    LTV <= target at `price`, or everything when no quantity short of everything does."""
    debt = usd_up(debt)
    if debt <= 0:
        return SaleSize(ZERO, False)
    with wide():
        per_unit = fill * (1 - fee) - target * price
        excess = debt - target * price * amount
        if debt <= target * collateral_value(amount, price):  # LTV <= target, as `ltv` rounds
            return SaleSize(ZERO, False)
        if per_unit <= 0:
            return SaleSize(amount, True)
        # The formula is a lower bound: the proceeds are rounded to the cent (gross down, fee up:
        # up to 2 cents less) and so is the collateral value left (down: target x 1 cent less).
        # `enough` covers that worst case. In between, only the quantities at which the gross
        # proceeds reach a new cent can be the least that works: try them in order.
        q = max(units_up(asset, excess / per_unit), ZERO)
        enough = units_up(asset, (excess + 2 * USD + target * USD) / per_unit)
        for _ in range(1000):
            if q >= enough or q >= amount:
                break
            if _reaches_target(debt, amount, price, target, q, fill, fee):
                break
            q = units_up(asset, (usd_down(q * fill) + USD) / fill)
        else:
            q = enough
        q = min(q, enough)
    if q >= amount:
        return SaleSize(amount, True)
    return SaleSize(q, False)


# --- sale steps: a partial liquidation that lands in [target - band, target] -------------------

# A partial liquidation leaves LTV at most this far below its target (1 percentage point).
POST_LIQUIDATION_BAND = Decimal("0.01")
# A liquidation stops (and sells the rest at the next price) after this many orders; with the
# default policy the slowest case is four (97%, every order filled at its limit).
MAX_SALE_STEPS = 6
# A partial sale must leave a remainder whose band is at least this wide in dollars (band x
# the remainder's value at target): proceeds are rounded to the cent (gross down, fee up), so a
# narrower window cannot be aimed at, and chasing it sells dust after dust, each order losing
# cents to rounding, until a loan that the collateral covered ends with a shortfall. Below it
# the loan is closed out instead: everything sold at the limit, the surplus paid out.
DUST_WINDOW_USD = Decimal("0.10")


@dataclass(frozen=True)
class SaleStep:
    """One order of a partial liquidation.

    `limit_price` is None for a sale of everything because the debt exceeds what the
    collateral covers (a market order: there is nothing to size). A `dust` step is sized by
    the dust rule (`DUST_WINDOW_USD`): what a partial sale would leave is too small to size
    with cent-rounded proceeds, so it sells everything at the limit (a close-out: the
    collateral covers the debt), or, when that falls a cent short of the debt, the least that
    reaches the target.
    `last` is True when any fill in [limit_price, best_fill] lands LTV in the band, so no
    further step can be needed; otherwise the step is the most that can be sold without the
    best fill taking LTV below the band, and the loan looks again after its fill."""

    quantity: Decimal
    limit_price: Decimal | None
    sells_everything: bool
    last: bool
    dust: bool = False

    @property
    def closes_out(self) -> bool:
        """Everything sold by the dust rule: the loan repaid in full, the rest paid out."""
        return self.dust and self.sells_everything


def sale_step(
    asset: str, debt: Decimal, amount: Decimal, price: Decimal, target: Decimal, fee: Decimal,
    buffer: Decimal, upside: Decimal, band: Decimal = POST_LIQUIDATION_BAND,
    dust_window: Decimal = DUST_WINDOW_USD,
) -> SaleStep:
    """The next order of a partial liquidation at reference `price`.

    The order is a sell limit at `limit_price` = price x (1 - buffer), rounded up to the cent,
    so it never fills below that. Fills up to `best_fill` = price x (1 + upside) are planned
    for; LTV after a fill f is L(q, f), decreasing in f (`ltv_after`, exact cent rounding).

    - Nothing to sell when LTV <= target already.
    - Everything (market order) when even all the collateral sold at the limit cannot bring
      LTV to target: the debt is more than the collateral covers after the fee.
    - Everything at the limit (`dust`) when the least sale to target would leave a remainder
      worth so little that its band is narrower than `dust_window` dollars (0 turns this off)
      and everything sold at the limit repays the debt; short of that by rounding, q_lo.
    - One last step of q_lo, the least quantity with L(q_lo, limit) <= target, when also
      L(q_lo, best_fill) >= target - band: every fill in between lands in the band.
    - Otherwise q_hi, the most with L(q_hi, best_fill) >= target - band, i.e.
      q_hi = floor((D - (t - band) P C) / (best_fill (1 - fee) - (t - band) P)): rounding
      only raises L (proceeds down, debt up, value down), so no fill <= best_fill takes LTV
      below the band. A fill >= limit leaves the debt below what the rest covers at the limit,
      so the next step is never "sell everything"; each step shrinks the excess by about
      (buffer + upside) x q / (C - q), and a few steps reach the last one.
    """
    with wide():
        limit = usd_up(price * (1 - buffer))
        best = price * (1 + upside)
    least = least_to_target(asset, debt, amount, price, target, fee, limit)
    if least.quantity <= 0:
        return SaleStep(ZERO, limit, False, True)
    if least.sells_everything:
        return SaleStep(amount, None, True, True)
    if band * collateral_value(amount - least.quantity, price) < dust_window:
        if sale_proceeds(amount, limit, fee).net >= usd_up(debt):
            return SaleStep(amount, limit, True, True, dust=True)
        # Cent rounding can leave everything at the limit a cent short of the debt: then
        # reach the target (the band's upper end), as for dust in units below.
        return SaleStep(least.quantity, limit, False, True, dust=True)
    floor = target - band
    if ltv_after(debt, amount, price, least.quantity, best, fee) >= floor:
        return SaleStep(least.quantity, limit, False, True)
    with wide():
        excess = usd_up(debt) - floor * price * amount
        most = units_down(asset, excess / (best * (1 - fee) - floor * price))
    if most <= 0:
        # Dust: one smallest unit moves LTV by more than the band, so no order can promise
        # it; reach the target (the band's upper end) at least.
        return SaleStep(least.quantity, limit, False, True)
    return SaleStep(min(most, least.quantity), limit, False, False)


def ltv_after(
    debt: Decimal, amount: Decimal, price: Decimal, q: Decimal, fill: Decimal, fee: Decimal
) -> Decimal:
    """LTV at `price` after selling q at `fill` and applying the net proceeds (0 when they
    repay the whole debt), rounded as the loan rounds it."""
    after = ltv(max(usd_up(debt) - sale_proceeds(q, fill, fee).net, ZERO), amount - q, price)
    return ZERO if after is None else after


def _reaches_target(
    debt: Decimal, amount: Decimal, price: Decimal, target: Decimal, q: Decimal, fill: Decimal,
    fee: Decimal,
) -> bool:
    """Selling q at `fill` and applying the net proceeds leaves LTV <= target at `price`."""
    after = ltv(debt - sale_proceeds(q, fill, fee).net, amount - q, price)
    return after is None or after <= target


def full_liquidation_quantity(
    asset: str, debt: Decimal, amount: Decimal, price: Decimal, fee: Decimal, slippage: Decimal
) -> SaleSize:
    """Collateral to sell so that net proceeds repay the whole debt (maturity default)."""
    debt = usd_up(debt)
    if debt <= 0:
        return SaleSize(ZERO, False)
    with wide():
        fill = price * (1 - slippage)
        net_per_unit = fill * (1 - fee)
        if net_per_unit <= 0:
            return SaleSize(amount, True)
        q = units_up(asset, debt / net_per_unit)
        # Net proceeds are rounded to the cent (gross down, fee up) and may fall a cent or two
        # short: move on to where the gross proceeds reach the next cent until they cover the debt.
        while q < amount and sale_proceeds(q, fill, fee).net < debt:
            q = units_up(asset, (usd_down(q * fill) + USD) / fill)
    if q >= amount:
        return SaleSize(amount, True)
    return SaleSize(q, False)


@dataclass(frozen=True)
class SaleProceeds:
    gross: Decimal
    fee: Decimal
    net: Decimal


def sale_proceeds(quantity: Decimal, fill_price: Decimal, fee_rate: Decimal) -> SaleProceeds:
    """Gross proceeds rounded down to the cent; the fee rounded up; the rest is applied."""
    with wide():
        gross = usd_down(quantity * fill_price)
        fee = min(usd_up(gross * fee_rate), gross)
    return SaleProceeds(gross=gross, fee=fee, net=gross - fee)


def daily_interest(principal: Decimal, annual_rate: Decimal) -> Decimal:
    """One day's simple interest, actual/365, kept unrounded (to 1e-10 USD) while it accrues;
    the debt is rounded up to the cent where it is shown or charged. The 1e-10 is cut off
    (rounded down): rounding it up, or to nearest, would let n days of accrual add up to more
    than n/365 of a year's interest and cost the borrower a cent once rounded up
    (100,000 at 12% for 365 days must be 12,000.00, not 12,000.01)."""
    with wide():
        return (principal * annual_rate / 365).quantize(
            Decimal("1e-10"), rounding=ROUND_FLOOR, context=WIDE
        )


def days_between(start: date, end: date) -> int:
    return max((end - start).days, 0)


@dataclass(frozen=True)
class Balances:
    """What the borrower owes, by component. `interest` may carry sub-cent accrual."""

    principal: Decimal
    interest: Decimal
    fees: Decimal

    @property
    def total(self) -> Decimal:
        return usd_up(self.principal + self.interest + self.fees)


@dataclass(frozen=True)
class Allocation:
    fees: Decimal
    interest: Decimal
    principal: Decimal
    unapplied: Decimal

    @property
    def applied(self) -> Decimal:
        return self.fees + self.interest + self.principal


def allocate_payment(balances: Balances, amount: Decimal) -> Allocation:
    """Apply a payment to fees, then interest, then principal (the usual waterfall).

    Interest is settled to the cent: a payment that covers the rounded-up interest clears the
    sub-cent remainder too, so a loan repaid in full owes exactly zero.
    """
    remaining = amount
    fees = min(remaining, balances.fees)
    remaining -= fees
    interest_due = usd_up(balances.interest)
    interest = min(remaining, interest_due)
    remaining -= interest
    principal = min(remaining, balances.principal)
    remaining -= principal
    return Allocation(fees=fees, interest=interest, principal=principal, unapplied=remaining)


def after_payment(balances: Balances, allocation: Allocation) -> Balances:
    interest_left = balances.interest - allocation.interest
    if allocation.interest >= usd_up(balances.interest):
        interest_left = ZERO
    return Balances(
        principal=balances.principal - allocation.principal,
        interest=max(interest_left, ZERO),
        fees=balances.fees - allocation.fees,
    )


def count_collateral(asset: str, amount: Decimal) -> Decimal:
    """Collateral as the desk counts it: never a fraction of the smallest unit."""
    return units_down(asset, amount)
