"""An independent model of loanflow's default risk policy: the test oracle for `loanflow stress`.

Written from DESIGN.md's "Default risk policy" table, the README's "The loan's life" and issue 9
only, in plain `Decimal` arithmetic. It imports nothing from loanflow (not `loanflow.risk`, not
`loanflow.policy`, not `workflows`) on purpose: an oracle that shares the code's math would
agree with the code's mistakes (the last round "matched the risk math" while no cure deadline
could ever fire).

One loan, one venue's hourly candles, simulated observation by observation:

- debt = principal + interest, interest simple actual/365 on the outstanding principal, accrued
  once per whole day since origination, kept unrounded and charged rounded up to the cent;
- LTV = debt / (collateral x price), the collateral value rounded down to the cent;
- warning at LTV >= 65%, once per episode (an episode ends when LTV <= 60%);
- margin call at LTV >= 70%, deadline = the call's time + 48 h;
- cured when LTV <= 60% at an observation before the deadline;
- at the deadline, still in call: partial sale that lands LTV at 50% with a 2% fee (cause
  "deadline");
- LTV >= 80% on two consecutive observations: sale at the second (cause "confirmed"); a
  re-evaluation of the same observation (a daily timer) never confirms;
- LTV >= 90% on one observation: sale at once (cause "hard_floor");
- after a sale the call is closed, the loan ACTIVE; if the collateral cannot bring the debt down
  to target (LTV >= 98%, with the fee), everything is sold and the rest is bad debt ("default").

Timing decisions (each one an `Assumptions` field, so a comparison states what it assumed):

- `candle_time`: a candle's close is observed when the bar closes (timestamp + 1 h: the price
  the venue was showing then, nothing from the future); "open" stamps it at the bar's open.
- Every observation is evaluated in this order: interest accrued to its time (a daily accrual
  due at the same instant counts first), then warning, margin call, sale, cure. Notices come
  before a sale at the same observation (`call_before_sale`): a loan jumping from 60% to 91%
  gets its warning and call at that observation, then the hard-floor sale.
- `staleness` (15 min, DESIGN): a timer (cure deadline, daily accrual, maturity grace) that
  fires between observations acts on the latest observation only if it is at most `staleness`
  old; otherwise the loan waits and acts at the next observation. With hourly candles and calls
  made at observations, a deadline falls exactly on an observation (call + 48 h), so the
  deadline sale happens at that observation's hour with that observation's price, whether the
  timer or the tick is handled first. Only a staleness of an hour or more would let a loan act
  between hourly ticks on the previous candle.
- `deadline_tie`: the observation exactly at the deadline is "at/after the deadline", so a loan
  still in call is sold there even if that observation shows LTV <= 60% ("sell"); "cure" reads
  it as the market's cure arriving in time. At or below the 50% target there is nothing to sell
  and it counts as cured either way.
- When several causes hold at one observation the cause is the most severe: hard_floor, then
  confirmed, then deadline; `ModelEvent.causes` keeps all of them (a comparison may accept any).
- `fill_discount`: the sale fills at the reference price x (1 - discount); 0 by default. The
  sale is sized for that fill with two cents of slack for the rounding of proceeds (down), fee
  (up) and collateral value (down), so LTV after lands a hair at or below 50%.
- Maturity (optional): after `maturity + grace` the loan sells just enough to repay the whole
  debt and closes ("closed"), or sells everything and defaults.

Script mode prints the events of one generated loan per bucket, for comparison by eye:

    python -m tests.stress.model --prices ../shared/data/prices/btc-usd_2022-11_bitstamp_1h.csv \
        --ltv 0.40,0.65
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from pathlib import Path
from typing import Any, Literal

D = Decimal
UTC = timezone.utc
CENT = D("0.01")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "prices"
# The crash windows of issue 9, one USD venue per asset (the data README's primary set).
WINDOWS = {
    "ftx": {"BTC": DATA / "btc-usd_2022-11_bitstamp_1h.csv",
            "ETH": DATA / "eth-usd_2022-11_bitfinex_1h.csv"},
    "terra": {"BTC": DATA / "btc-usd_2022-05-06_bitstamp_1h.csv",
              "ETH": DATA / "eth-usd_2022-05-06_bitstamp_1h.csv"},
}
BUCKETS = ("0.40", "0.50", "0.60", "0.65")
UNITS = {"BTC": D("1e-8"), "ETH": D("1e-18")}  # DESIGN: BTC to 8 places, ETH to 18
PRECISION = 60

Price = tuple[datetime, Decimal]


@dataclass(frozen=True)
class Policy:
    """DESIGN.md's default risk policy table (the hard floor: README and issue 9)."""

    warning: Decimal = D("0.65")
    margin_call: Decimal = D("0.70")
    cure: Decimal = D("0.60")
    cure_period: timedelta = timedelta(hours=48)
    liquidation: Decimal = D("0.80")
    hard_floor: Decimal = D("0.90")
    target: Decimal = D("0.50")
    fee: Decimal = D("0.02")
    maturity_grace: timedelta = timedelta(hours=72)


@dataclass(frozen=True)
class Assumptions:
    """How the model reads the timing questions the policy leaves open (module docstring)."""

    candle_time: Literal["close", "open"] = "close"
    staleness: timedelta = timedelta(minutes=15)
    deadline_tie: Literal["sell", "cure"] = "sell"
    call_before_sale: bool = True
    fill_discount: Decimal = D(0)


@dataclass(frozen=True)
class Loan:
    asset: str
    collateral: Decimal
    principal: Decimal
    annual_rate: Decimal
    originated_at: datetime
    maturity: datetime | None = None
    accrued_interest: Decimal = D(0)


@dataclass(frozen=True)
class ModelEvent:
    at: datetime
    kind: str
    ltv: Decimal
    price: Decimal
    quantity_sold: Decimal | None = None
    ltv_after: Decimal | None = None
    cause: str | None = None
    causes: tuple[str, ...] = ()  # every cause that held (the first is `cause`)

    def to_json(self) -> dict[str, Any]:
        """Exactly the shape of an event in `loanflow stress`'s results.json (issue 9)."""
        return {"at": iso(self.at), "kind": self.kind, "ltv": _text(self.ltv, "0.000001"),
                "price": str(self.price), "quantity_sold": _text(self.quantity_sold),
                "ltv_after": _text(self.ltv_after, "0.000001"), "cause": self.cause}


@dataclass
class ModelResult:
    events: list[ModelEvent]
    state: str
    collateral: Decimal
    debt: Decimal
    bad_debt: Decimal = D(0)

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.events]


# ---- rounding (DESIGN: against the borrower's risk: collateral value down, debt up) ----------

def up(x: Decimal, unit: Decimal = CENT) -> Decimal:
    return x.quantize(unit, rounding=ROUND_CEILING)


def down(x: Decimal, unit: Decimal = CENT) -> Decimal:
    return x.quantize(unit, rounding=ROUND_FLOOR)


def _text(x: Decimal | None, unit: str | None = None) -> str | None:
    if x is None:
        return None
    return str(x.quantize(D(unit)) if unit else x)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if at.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return at.astimezone(UTC)


# ---- prices -----------------------------------------------------------------------------------

def load_prices(path: Path | str, assume: Assumptions = Assumptions(),
                field_name: str = "close") -> list[Price]:
    """One venue's candles as (observed_at, price): the bar's close stamped at the bar's close
    (or open, per `assume.candle_time`). The bar length is read from the file's own spacing."""
    with open(path, newline="") as f:
        rows = [(parse_time(r["timestamp"]), D(r[field_name])) for r in csv.DictReader(f)]
    if len(rows) < 2:
        raise ValueError(f"{path}: needs at least two candles")
    step = rows[1][0] - rows[0][0]
    shift = step if assume.candle_time == "close" else timedelta(0)
    return [(at + shift, price) for at, price in rows]


def asset_of(path: Path | str) -> str:
    """`btc-usd_2022-11_bitstamp_1h.csv` -> BTC (the data README's file naming)."""
    return Path(path).name.split("-", 1)[0].upper()


# ---- the loan's money -------------------------------------------------------------------------

@dataclass
class _Books:
    """Principal, unrounded accrued interest and collateral of one loan."""

    loan: Loan
    principal: Decimal
    accrued: Decimal
    collateral: Decimal
    days: int = 0

    def accrue_to(self, at: datetime) -> None:
        """One accrual per whole day since origination, on the principal then outstanding."""
        due = (at - self.loan.originated_at) // DAY
        while self.days < due:
            self.accrued += self.principal * self.loan.annual_rate / 365
            self.days += 1

    def debt(self) -> Decimal:
        return self.principal + up(self.accrued)

    def ltv(self, price: Decimal) -> Decimal:
        value = down(self.collateral * price)
        return self.debt() / value if value > 0 else D("Infinity")

    def pay(self, net: Decimal) -> Decimal:
        """Proceeds pay the interest (charged, rounded up), then principal; the surplus."""
        self.principal += up(self.accrued)
        self.accrued = D(0)
        paid = min(net, self.principal)
        self.principal -= paid
        return net - paid


@dataclass(frozen=True)
class _Fill:
    quantity: Decimal
    net: Decimal


def _fill(quantity: Decimal, price: Decimal, fee: Decimal) -> _Fill:
    gross = down(quantity * price)
    return _Fill(quantity, gross - up(gross * fee))


def partial_quantity(debt: Decimal, collateral: Decimal, price: Decimal, fill_price: Decimal,
                     policy: Policy, unit: Decimal) -> Decimal:
    """The collateral to sell so that (debt - net proceeds) / (rest x price) <= target.

    debt - (1 - fee) q f = target (C - q) p  =>  q = (debt - target C p) / ((1 - fee) f - target p),
    with 2 cents + 1 cent x target added to the debt side for the roundings, rounded up to the
    asset's unit. May exceed the collateral (then nothing less than everything will do)."""
    slack = 2 * CENT + CENT * policy.target
    denominator = (1 - policy.fee) * fill_price - policy.target * price
    return up((debt + slack - policy.target * collateral * price) / denominator, unit)


# ---- the simulation ---------------------------------------------------------------------------

@dataclass
class _Sim:
    loan: Loan
    policy: Policy
    assume: Assumptions
    books: _Books
    events: list[ModelEvent] = field(default_factory=list)
    state: str = "ACTIVE"
    warned: bool = False
    deadline: datetime | None = None
    pending: int | None = None  # the observation that first showed LTV >= liquidation
    bad_debt: Decimal = D(0)
    replay_sales: Sequence[tuple[Decimal, Decimal]] = ()
    sales: int = 0

    @property
    def over(self) -> bool:
        return self.state in ("CLOSED", "DEFAULTED")

    def timers(self, after: datetime, before: datetime) -> list[datetime]:
        """The loan's timers strictly between two observations."""
        found = [t for t in (self.deadline, self._maturity_due()) if t is not None]
        day = self.loan.originated_at + (self.books.days + 1) * DAY
        while day < before:
            found.append(day)
            day += DAY
        return sorted(t for t in found if after < t < before)

    def _maturity_due(self) -> datetime | None:
        if self.loan.maturity is None:
            return None
        return self.loan.maturity + self.policy.maturity_grace

    def evaluate(self, at: datetime, price: Decimal, obs: int, fresh_observation: bool) -> None:
        self.books.accrue_to(at)
        ltv = self.books.ltv(price)
        if (due := self._maturity_due()) is not None and at >= due:
            self._close_at_maturity(at, price, ltv)
            return
        self._notices(at, price, ltv)
        causes = self._sale_causes(ltv, obs, fresh_observation, at)
        if causes:
            self._sell(at, price, ltv, causes)
        elif self.state == "MARGIN_CALL" and (ltv <= self.policy.cure or self._cured_at_deadline(
                at, ltv)):
            self.state, self.deadline = "ACTIVE", None
            self.events.append(ModelEvent(at, "cured", ltv, price))
        if self.books.ltv(price) <= self.policy.cure:
            self.warned = False  # the episode ends

    def _notices(self, at: datetime, price: Decimal, ltv: Decimal) -> None:
        if ltv >= self.policy.warning and not self.warned:
            self.warned = True
            self.events.append(ModelEvent(at, "warning", ltv, price))
        if ltv >= self.policy.margin_call and self.state == "ACTIVE":
            if not self.assume.call_before_sale and ltv >= self.policy.hard_floor:
                return
            self.state, self.deadline = "MARGIN_CALL", at + self.policy.cure_period
            self.events.append(ModelEvent(at, "margin_call", ltv, price))

    def _sale_causes(self, ltv: Decimal, obs: int, fresh: bool, at: datetime) -> list[str]:
        causes = []
        if ltv >= self.policy.hard_floor:
            causes.append("hard_floor")
        if ltv >= self.policy.liquidation:
            if self.pending is not None and self.pending != obs:
                causes.append("confirmed")
            elif fresh:
                self.pending = obs
        else:
            self.pending = None
        if self._deadline_passed(at) and not self._cured_at_deadline(at, ltv):
            causes.append("deadline")
        return causes

    def _deadline_passed(self, at: datetime) -> bool:
        return self.state == "MARGIN_CALL" and self.deadline is not None and at >= self.deadline

    def _cured_at_deadline(self, at: datetime, ltv: Decimal) -> bool:
        """At/after the deadline: nothing to sell at or below target; the tie at the cure level
        per `deadline_tie`. Before it: the ordinary cure rule applies (caller)."""
        if not self._deadline_passed(at):
            return False
        return ltv <= self.policy.target or (
            ltv <= self.policy.cure and self.assume.deadline_tie == "cure")

    def _sell(self, at: datetime, price: Decimal, ltv: Decimal, causes: list[str]) -> None:
        books, policy = self.books, self.policy
        fill_price = price * (1 - self.assume.fill_discount)
        unit = UNITS[self.loan.asset]
        debt = books.debt()
        quantity = partial_quantity(debt, books.collateral, price, fill_price, policy, unit)
        self.state, self.deadline, self.pending = "ACTIVE", None, None
        if quantity >= books.collateral:
            self._sell_everything(at, price, ltv, fill_price, causes)
            return
        fill = _fill(quantity, fill_price, policy.fee)
        books.collateral -= quantity
        books.pay(fill.net)
        after = books.ltv(price)
        assert after <= policy.target, f"model sized a sale that leaves LTV {after}"
        self.events.append(ModelEvent(at, "liquidation", ltv, price, quantity, after,
                                      causes[0], tuple(causes)))
        self._follow_reported_sale(books, quantity, price)
        self.warned = False  # LTV is at target: the episode ends

    def _follow_reported_sale(self, books: _Books, quantity: Decimal, price: Decimal) -> None:
        """Continue from the collateral and LTV the system under test reported for this sale
        (its fill is not the model's reference-price fill); the model's own sizing stays in
        the event."""
        if self.sales < len(self.replay_sales):
            sold, ltv_after = self.replay_sales[self.sales]
            books.collateral += quantity - sold
            books.principal = up(ltv_after * down(books.collateral * price))
        self.sales += 1

    def _sell_everything(self, at: datetime, price: Decimal, ltv: Decimal, fill_price: Decimal,
                         causes: list[str]) -> None:
        books = self.books
        debt = books.debt()
        fill = _fill(books.collateral, fill_price, self.policy.fee)
        books.pay(fill.net)
        kind = "closed" if fill.net >= debt else "default"
        self.bad_debt = max(debt - fill.net, D(0))
        self.state = "CLOSED" if kind == "closed" else "DEFAULTED"
        self.events.append(ModelEvent(at, kind, ltv, price, books.collateral, None,
                                      causes[0] if causes else None, tuple(causes)))
        books.collateral = D(0)

    def _close_at_maturity(self, at: datetime, price: Decimal, ltv: Decimal) -> None:
        books, policy = self.books, self.policy
        fill_price = price * (1 - self.assume.fill_discount)
        debt = books.debt()
        quantity = up((debt + 2 * CENT) / ((1 - policy.fee) * fill_price), UNITS[self.loan.asset])
        if quantity >= books.collateral:
            self._sell_everything(at, price, ltv, fill_price, [])
            return
        fill = _fill(quantity, fill_price, policy.fee)
        books.collateral -= quantity
        books.pay(fill.net)
        self.state = "CLOSED"
        self.events.append(ModelEvent(at, "closed", ltv, price, quantity, D(0)))


def simulate(loan: Loan, prices: Sequence[Price], policy: Policy = Policy(),
             assume: Assumptions = Assumptions(),
             replay_sales: Sequence[tuple[Decimal, Decimal]] = ()) -> ModelResult:
    """Walk the price path observation by observation, with the loan's timers in between.

    `replay_sales`: (quantity sold, LTV after) of the system under test's partial sales, in
    order; after its k-th sale the model goes on from those, so a fill that differs from the
    model's (checked on its own: the band) does not shift every later event."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        books = _Books(loan, loan.principal, loan.accrued_interest, loan.collateral)
        sim = _Sim(loan, policy, assume, books, replay_sales=replay_sales)
        for i, (at, price) in enumerate(prices):
            if at < loan.originated_at:
                continue
            sim.evaluate(at, price, i, fresh_observation=True)
            following = prices[i + 1][0] if i + 1 < len(prices) else at
            for timer in sim.timers(at, following):
                if sim.over or timer - at > assume.staleness:
                    break  # a stale price never acts: wait for the next observation
                sim.evaluate(timer, price, i, fresh_observation=False)
            if sim.over:
                break
        state = sim.state
        return ModelResult(sim.events, state, books.collateral, books.debt(), sim.bad_debt)


def acts_at(timer: datetime, times: Sequence[datetime],
            assume: Assumptions = Assumptions()) -> datetime | None:
    """When a loan's timer set for `timer` acts, given observations at `times` (sorted): at
    the timer if the latest observation is fresh then, else at the next observation (None: after
    the last one)."""
    latest = [t for t in times if t <= timer]
    if latest and timer - latest[-1] <= assume.staleness:
        return timer
    return next((t for t in times if t >= timer), None)


# ---- a generated book, for script mode and the report table -----------------------------------

def book_loan(asset: str, ltv0: Decimal, prices: Sequence[Price],
              principal: Decimal = D(100_000), rate: Decimal = D("0.10")) -> Loan:
    """A loan at `ltv0` of the first observation's price, originated then (the collateral
    rounded up to the asset's unit, so LTV starts at most `ltv0` before the value's rounding)."""
    at, price = prices[0]
    collateral = up(principal / (ltv0 * price), UNITS[asset])
    return Loan(asset, collateral, principal, rate, at)


def summarize(events: Iterable[ModelEvent]) -> dict[str, int]:
    counts = {"warning": 0, "margin_call": 0, "cured": 0, "deadline": 0, "confirmed": 0,
              "hard_floor": 0, "default": 0}
    for event in events:
        if event.kind == "liquidation":
            counts[event.cause or "deadline"] += 1
        elif event.kind in counts:
            counts[event.kind] += 1
    return counts


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.stress.model", description=(
        "Print the independent model's events for one generated loan per LTV bucket."))
    parser.add_argument("--prices", required=True, action="append", help="candle CSV (repeat)")
    parser.add_argument("--ltv", default="0.40,0.50,0.60,0.65")
    parser.add_argument("--principal", default="100000")
    parser.add_argument("--rate", default="0.10")
    parser.add_argument("--collateral", help="collateral amount instead of the bucket's")
    parser.add_argument("--originated", help="ISO time (default: the first observation)")
    parser.add_argument("--candle-time", choices=("close", "open"), default="close")
    parser.add_argument("--staleness-minutes", type=int, default=15)
    parser.add_argument("--deadline-tie", choices=("sell", "cure"), default="sell")
    parser.add_argument("--json", action="store_true", help="events as results.json events")
    parser.add_argument("--table", action="store_true", help="one Markdown row of counts a loan")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    assume = Assumptions(candle_time=args.candle_time, deadline_tie=args.deadline_tie,
                         staleness=timedelta(minutes=args.staleness_minutes))
    out: dict[str, Any] = {}
    for path in args.prices:
        asset, prices = asset_of(path), load_prices(path, assume)
        for ltv0 in args.ltv.split(","):
            loan = book_loan(asset, D(ltv0), prices, D(args.principal), D(args.rate))
            if args.collateral:
                loan = replace(loan, collateral=D(args.collateral))
            if args.originated:
                loan = replace(loan, originated_at=parse_time(args.originated))
            result = simulate(loan, prices, assume=assume)
            key = f"{asset} {ltv0}"
            out[key] = result.to_json()
            if args.table:
                _row(Path(path).name, asset, ltv0, result)
            elif not args.json:
                _print(key, loan, result)
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        print()
    return 0


TABLE_HEAD = ("| file | asset | LTV0 | warnings | calls | cures | sales: deadline | confirmed "
              "| hard floor | defaults | bad debt |\n|---|---|---|---|---|---|---|---|---|---|---|")


def _row(name: str, asset: str, ltv0: str, result: ModelResult) -> None:
    if not getattr(_row, "headed", False):
        print(TABLE_HEAD)
        _row.headed = True  # type: ignore[attr-defined]
    counts = summarize(result.events)
    cells = [name, asset, ltv0, *(str(counts[k]) for k in counts), str(result.bad_debt)]
    print("| " + " | ".join(cells) + " |")


def _print(key: str, loan: Loan, result: ModelResult) -> None:
    print(f"== {key}: collateral {loan.collateral}, principal {loan.principal}, "
          f"rate {loan.annual_rate}, from {iso(loan.originated_at)}")
    for e in result.events:
        sale = (f" sold {e.quantity_sold} -> {e.ltv_after.quantize(D('0.0001'))}"
                if e.ltv_after is not None else
                f" sold {e.quantity_sold}" if e.quantity_sold is not None else "")
        print(f"  {iso(e.at)}  {e.kind:<12} ltv {e.ltv.quantize(D('0.0001'))}  "
              f"price {e.price}{sale}{'  ' + e.cause if e.cause else ''}")
    print(f"  end: {result.state}, {summarize(result.events)}, bad debt {result.bad_debt}")


if __name__ == "__main__":
    sys.exit(main())
