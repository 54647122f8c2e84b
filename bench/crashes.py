"""The crash scenarios on the seeded book: BTC -25% as one tick and as 25 ticks of 1%, timed
from the tick to the last margin-call notice stored, plus the tick that crosses nothing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from temporalio.client import Client

from bench.market import (
    LoanLevels,
    Monitor,
    book_levels,
    delivery_failures,
    notices_since,
    tick_rows,
    wait_for_mail,
    wait_for_notices,
    wait_until_quiet,
)
from bench.report import spread
from loanflow.db import Database


@dataclass
class CrashResult:
    name: str
    ticks: int
    affected: int
    notices: int
    seconds: float  # from the (first) tick to the last margin-call notice stored
    latencies: list[float]  # per loan: from the tick that crossed its call level to its notice
    duplicates: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    signalled: int = 0
    gone: int = 0
    fan_out_seconds: float = 0.0
    liquidations: int = 0
    expected_liquidations: int = 0
    delivery_failures: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    called: list[str] = field(default_factory=list)  # affected loans that got their notice
    since: datetime | None = None  # notices recorded from here on are the crash's
    crossed_at: dict[str, float] = field(default_factory=dict)  # as `latencies` counts from
    first: float = 0.0  # the (first) tick

    @property
    def exact(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def called_at(loan: LoanLevels, price: Decimal) -> bool:
    """An ACTIVE loan whose LTV at `price` is at or past the call level."""
    return loan.state == "ACTIVE" and loan.margin_call is not None and price <= loan.margin_call


async def quiet_tick(db: Database, client: Client, monitor: Monitor, price: Decimal,
                     prefix: str, sample: int) -> dict[str, Any]:
    """A big move that crosses no trigger: how many loans it signals and woke (history sizes of
    a sample of loans before and after)."""
    levels = await book_levels(db, "BTC", prefix)
    chosen = [loan.loan_id for loan in levels[:sample]]
    before = await history_lengths(client, chosen)
    summary = await monitor.tick("BTC", price)
    await asyncio.sleep(2)
    after = await history_lengths(client, chosen)
    grew = sum(1 for loan_id in chosen if after[loan_id] != before[loan_id])
    [tick] = summary.ticks
    return {"price": str(price), "previous": str(tick.previous_price), "targets": tick.targets,
            "signalled": summary.signalled, "sampled_loans": len(chosen),
            "sampled_loans_woken": grew}


async def history_lengths(client: Client, loan_ids: list[str]) -> dict[str, int]:
    async def one(loan_id: str) -> tuple[str, int]:
        description = await client.get_workflow_handle(f"loan-{loan_id}").describe()
        return loan_id, description.history_length

    pairs = await asyncio.gather(*(one(loan_id) for loan_id in loan_ids))
    return dict(pairs)


async def one_tick_crash(db: Database, monitor: Monitor, start: Decimal, prefix: str,
                         progress: Any, timeout: float) -> CrashResult:
    crash = (start * Decimal("0.75")).quantize(Decimal("0.01"))
    levels = await book_levels(db, "BTC", prefix)
    # LTV in [70%, 80%): a margin call. At 80% and past: a first liquidation-level breach that
    # waits for a second observation instead (no call notice by design).
    affected = {loan.loan_id for loan in levels if called_at(loan, crash)
                and not (loan.liquidation is not None and crash <= loan.liquidation)}
    breached = sum(1 for loan in levels if loan.liquidation is not None and crash <= loan.liquidation)
    progress.add("one-tick crash: margin calls", len(affected))
    since = utcnow()
    first = time.time()
    summary = await monitor.tick("BTC", crash)
    await wait_for_notices(db, "margin_call", since, len(affected), progress,
                           "one-tick crash: margin calls", timeout)
    result = await measure(db, "one tick of -25%", since, {loan: first for loan in affected},
                           first, summary.ticks[0].tick_id)
    result.ticks = 1
    result.extra["liquidation_breaches_waiting_for_confirmation"] = breached
    result.extra["signals_per_second"] = round(
        summary.signalled / max(result.extra["timeline_seconds"]["first_fan_out_done"] or 1, 0.001), 1)
    return result


async def restore(db: Database, monitor: Monitor, start: Decimal, progress: Any) -> dict[str, Any]:
    """Back to the starting price: calls are cured by the market, breaches cleared."""
    since = utcnow()
    summary = await monitor.tick("BTC", start)
    await asyncio.sleep(1)
    await wait_until_quiet(db, seconds=3)
    cured = await notices_since(db, "margin_call_cured", since)
    return {"signalled": summary.signalled, "cured": len(cured)}


async def gradual_crash(db: Database, monitor: Monitor, start: Decimal, prefix: str,
                        progress: Any, spacing: float, timeout: float) -> CrashResult:
    prices = [(start * (1 - Decimal(k) / 100)).quantize(Decimal("0.01")) for k in range(1, 26)]
    levels = await book_levels(db, "BTC", prefix)
    affected = [loan for loan in levels if called_at(loan, prices[-1])]
    # Liquidated: past the level by the 24th tick, so the 25th confirms it.
    expected_liquidations = sum(
        1 for loan in levels if loan.liquidation is not None and prices[-2] <= loan.liquidation)
    progress.add("25 x 1%: margin calls", len(affected))
    since = utcnow()
    tick_times: list[float] = []
    tick_ids: list[int] = []
    answered: list[float] = []  # each tick's update, sent to answered: how long a price waits
    for price in prices:
        tick_times.append(time.time())
        summary = await monitor.tick("BTC", price)
        answered.append(time.time() - tick_times[-1])
        tick_ids.append(summary.ticks[0].tick_id)
        pause = tick_times[-1] + spacing - time.time()
        if pause > 0:
            await asyncio.sleep(pause)
    crossed_at = {loan.loan_id: tick_times[first_below(prices, loan.margin_call)]
                  for loan in affected if loan.margin_call is not None}
    await wait_for_notices(db, "margin_call", since, len(affected), progress,
                           "25 x 1%: margin calls", timeout)
    result = await measure(db, "25 ticks of -1%", since, crossed_at, tick_times[0], *tick_ids)
    await mail_figures(db, result, timeout)
    result.ticks = len(prices)
    result.expected_liquidations = expected_liquidations
    result.extra["seconds_after_last_tick"] = round(
        max(tick_times[0] + result.seconds - tick_times[-1], 0.0), 3)
    result.extra["tick_spacing_seconds"] = spacing
    result.extra["actual_tick_spacing_seconds"] = round(
        (tick_times[-1] - tick_times[0]) / (len(tick_times) - 1), 3)
    result.extra["tick_answered_seconds"] = spread(answered)
    progress.add("25 x 1%: liquidations", expected_liquidations)
    await wait_for_notices(db, "liquidation_executed", since, expected_liquidations, progress,
                           "25 x 1%: liquidations", timeout)
    result.liquidations = len(await notices_since(db, "liquidation_executed", since))
    return result


async def mail_figures(db: Database, result: CrashResult, timeout: float) -> None:
    """When the borrowers' e-mails were accepted by the relay, beside when the notices were
    recorded (the figure of merit): per loan from its crossing tick, and the last. Waits for
    them first (the notice activity sends right after recording)."""
    assert result.since is not None
    mailed = await wait_for_mail(db, "margin_call", result.since, len(result.crossed_at),
                                 timeout)
    sent = {loan: at.timestamp() for loan, at in mailed
            if at is not None and loan in result.crossed_at}
    result.extra["email_accepted_per_loan"] = spread(
        [at - result.crossed_at[loan] for loan, at in sent.items()])
    result.extra["timeline_seconds"]["last_email_accepted"] = (
        round(max(sent.values()) - result.first, 3) if sent else None)
    result.extra["emails_not_accepted"] = len(result.crossed_at) - len(sent)


def first_below(prices: list[Decimal], level: Decimal | None) -> int:
    assert level is not None
    return next(i for i, price in enumerate(prices) if price <= level)


async def measure(db: Database, name: str, since: datetime, crossed_at: dict[str, float],
                  first: float, *tick_ids: int) -> CrashResult:
    """Per-loan latency from the tick that crossed its level to its margin-call notice, and
    whether every affected loan got exactly one notice (and no other loan any)."""
    rows = await notices_since(db, "margin_call", since)
    seen: dict[str, list[datetime]] = {}
    for loan_id, at in rows:
        seen.setdefault(loan_id, []).append(at)
    latencies = sorted(min(seen[loan]).timestamp() - crossed_at[loan]
                       for loan in crossed_at if loan in seen)
    last = max((at.timestamp() for _, at in rows), default=first)
    ticks = await tick_rows(db, tick_ids)
    fan_out = [(t.fanned_out_at - t.at).total_seconds() for t in ticks if t.fanned_out_at]
    first_tick = min(ticks, key=lambda t: t.id)
    timeline = {  # seconds from the (first) tick: where the time goes
        "observation_stored": round(first_tick.created_at.timestamp() - first, 3),
        "first_fan_out_done": round(first_tick.fanned_out_at.timestamp() - first, 3)
        if first_tick.fanned_out_at else None,
        "first_notice": round(min((at.timestamp() for _, at in rows), default=first) - first, 3),
        "last_notice": round(last - first, 3),
    }
    return CrashResult(
        name=name,
        ticks=len(tick_ids),
        affected=len(crossed_at),
        notices=len(rows),
        seconds=last - first,
        latencies=latencies,
        duplicates=sorted(loan for loan, times in seen.items() if len(times) > 1),
        missing=sorted(set(crossed_at) - set(seen)),
        unexpected=sorted(set(seen) - set(crossed_at)),
        signalled=sum(t.signalled or 0 for t in ticks),
        gone=sum(t.gone or 0 for t in ticks),
        fan_out_seconds=round(max(fan_out, default=0.0), 3),
        delivery_failures=await delivery_failures(db),
        extra={"timeline_seconds": timeline},
        called=sorted(set(crossed_at) & set(seen)),
        since=since,
        crossed_at=crossed_at,
        first=first,
    )
