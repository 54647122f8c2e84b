"""Checks on a loan's events in the results.json shape (issue 9), shared by the model's own tests
and the comparison with `loanflow stress`: they need only the events and the observation times,
not the code that produced them.

The core rule (issue 9): every margin call not cured within its 48 window-hours ends in a sale at
its deadline hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from tests.stress.model import Assumptions, Policy, acts_at, parse_time

SALES = ("liquidation", "default", "closed")
ENDS = ("cured", *SALES)


def hour_of(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def call_problems(events: Sequence[dict[str, Any]], times: Sequence[datetime],
                  policy: Policy = Policy(), assume: Assumptions = Assumptions()) -> list[str]:
    """What breaks the core rule in one loan's events; empty when every call ended well:
    cured by its deadline, sold earlier (liquidation level), sold at the hour its deadline acts
    (the first fresh observation at/after it), or still open because the window ended first."""
    problems = []
    for i, call in enumerate(events):
        if call["kind"] != "margin_call":
            continue
        called = parse_time(call["at"])
        due = acts_at(called + policy.cure_period, times, assume)
        end = next((e for e in events[i + 1:] if e["kind"] in ENDS), None)
        problem = _ending_problem(end, called, due, policy)
        if problem:
            problems.append(f"call at {call['at']} (deadline acts {due}): {problem}")
    return problems


def _ending_problem(end: dict[str, Any] | None, called: datetime, due: datetime | None,
                    policy: Policy) -> str | None:
    if end is None:
        return None if due is None else "never cured nor sold"
    at = parse_time(end["at"])
    if due is None or hour_of(at) < hour_of(due):
        if end["kind"] == "cured" or Decimal(end["ltv"]) >= policy.liquidation:
            return None
        return f"{end['kind']} at {end['at']} before the deadline, below the liquidation level"
    if hour_of(at) > hour_of(due):
        return f"still open at its deadline; ended by {end['kind']} at {end['at']}"
    if end["kind"] == "cured" or end["cause"] == "deadline":
        return None  # cured by the observation at the deadline: the `deadline_tie` reading
    if Decimal(end["ltv"]) >= policy.liquidation:
        return None  # the deadline and the liquidation level at the same observation
    return f"sold at its deadline hour with cause {end['cause']!r}"


def band_problems(events: Sequence[dict[str, Any]], policy: Policy = Policy(),
                  width: Decimal = Decimal("0.01")) -> list[str]:
    """Partial sales must land LTV in [target - 1 pp, target]."""
    return [f"sale at {e['at']}: LTV after {e['ltv_after']}" for e in events
            if e["kind"] == "liquidation"
            and not policy.target - width <= Decimal(e["ltv_after"]) <= policy.target]


def deadline_sales(events: Sequence[dict[str, Any]]) -> int:
    return sum(1 for e in events if e["kind"] in SALES and e["cause"] == "deadline")
