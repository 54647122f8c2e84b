"""Which loans a price move affects: pure crossing selection over published trigger prices.

A loan publishes, per trigger kind, the highest price at which its LTV is at or above that
threshold (`loanflow.risk.trigger_price`): at the trigger LTV >= threshold, one cent above it
LTV < threshold. So for a move from `old` to `new`:

- down (new < old): a trigger T is crossed when new <= T < old: LTV was below the threshold
  at `old` and is at or above it at `new`. A price that stops exactly on T has crossed it; a
  move that starts on T had crossed it already at the previous tick.
- up (new > old): T is crossed when old <= T <= new: LTV was at or above the threshold and may
  now be below it. The upper end is inclusive because at exactly T the LTV can equal the
  threshold, which already cures a call (cure is "LTV <= target"): a spare wake-up, never a
  late one.

Only the kinds that can change what a loan does are considered per direction:
down: `warning`, `margin_call` and `liquidation`; up: `cure` (ends a call, or a warning
episode) and `liquidation` (clears a breach that waits for confirmation). The state the read
model shows does not narrow this down: ACTIVE and MARGIN_CALL loans alike are signalled when
their triggers are crossed, because the read model can lag behind the loan (a loan cured a
moment ago may still read MARGIN_CALL and would miss its next call); the loan decides.

One more, on any tick with a price, moved or not: `confirm`, for a loan that is still at or
past its liquidation level (new <= T) without having crossed it on this tick. Such a loan has
recorded a first breach and liquidates only on a second, later observation (wick protection):
this tick's observation is that confirmation, so it is sent at once rather than left for the
loan to find. Such loans are few and leave the set as soon as they have sold; in a quiet market
there are none, and a tick that crosses nothing still wakes no loan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

KINDS = ("warning", "margin_call", "liquidation", "cure", "confirm")
DOWN_KINDS = ("warning", "margin_call", "liquidation")
UP_KINDS = ("cure", "liquidation")
SERVING_STATES = ("ACTIVE", "MARGIN_CALL")


@dataclass(frozen=True)
class Band:
    """The trigger prices a move crosses: [low, high) going down, [low, high] going up."""

    low: Decimal
    high: Decimal
    down: bool

    def contains(self, trigger: Decimal) -> bool:
        if self.down:
            return self.low <= trigger < self.high
        return self.low <= trigger <= self.high

    @property
    def kinds(self) -> tuple[str, ...]:
        return DOWN_KINDS if self.down else UP_KINDS


def band(old: Decimal, new: Decimal) -> Band | None:
    """The crossing band of a move; None when the price did not move."""
    if new == old:
        return None
    return Band(low=new, high=old, down=True) if new < old else Band(low=old, high=new, down=False)


def crossed_kinds(
    state: str, triggers: Mapping[str, Decimal | None], old: Decimal, new: Decimal
) -> list[str]:
    """The trigger kinds of one loan that a move from `old` to `new` crosses."""
    if state not in SERVING_STATES:
        return []
    kinds = []
    move = band(old, new)
    for kind in move.kinds if move is not None else ():
        trigger = triggers.get(kind)
        if trigger is not None and move.contains(trigger):
            kinds.append(kind)
    if "liquidation" not in kinds and in_liquidation_zone(triggers, new):
        kinds.append("confirm")
    return kinds


def in_liquidation_zone(triggers: Mapping[str, Decimal | None], price: Decimal) -> bool:
    """At `price` the loan's LTV is at or past its liquidation level."""
    level = triggers.get("liquidation")
    return level is not None and price <= level


@dataclass(frozen=True)
class LoanTriggers:
    loan_id: str
    state: str
    triggers: Mapping[str, Decimal | None]


def select_crossed(
    loans: Iterable[LoanTriggers], old: Decimal, new: Decimal
) -> dict[str, list[str]]:
    """{loan_id: crossed kinds} for every loan the move affects, and only those."""
    selected: dict[str, list[str]] = {}
    for loan in loans:
        kinds = crossed_kinds(loan.state, loan.triggers, old, new)
        if kinds:
            selected[loan.loan_id] = kinds
    return selected
