"""A price that jumps too far from the last accepted observation is not believed at once.

A jump of more than `max_jump` (a fraction, 0.30 by default: `AggregationRules`) from the last
accepted observation is a bad print or a typo far more often than a market: it is stored
*unconfirmed*, signalled to no loan and read by none. A second, later observation confirms
it: one within `max_jump` of the pending (unconfirmed) one says the market really is there.
One within `max_jump` of the last accepted price is simply accepted (the jump was a blip).

Pure Decimal arithmetic, used by the monitor's activity and `loanflow price`.
"""

from __future__ import annotations

from decimal import Decimal

# The default limit (the monitor's `AggregationRules.max_jump`, `loanflow price`).
DEFAULT_MAX_JUMP = Decimal("0.30")


def move(old: Decimal, new: Decimal) -> Decimal:
    """The relative move from `old` to `new` (0.3 for a 30% rise or fall)."""
    return abs(new - old) / old


def accepted(price: Decimal, last_accepted: Decimal | None, pending: Decimal | None,
             max_jump: Decimal | None) -> bool:
    """Is `price` acted on now? `pending` is the newest unconfirmed observation since the last
    accepted one (None if there is none)."""
    if max_jump is None or last_accepted is None:
        return True  # nothing to compare with: the first price of an asset stands
    if move(last_accepted, price) <= max_jump:
        return True
    return pending is not None and move(pending, price) <= max_jump
