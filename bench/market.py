"""Driving the market in the benchmark: the monitor takes manual ticks (three venues quoting the
same price, as in a fast, orderly crash), and the database tells what the loans did."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError

from bench.rpc import again
from loanflow.db import Database
from loanflow.notice_schema import NoticeRow, OutboxRow
from loanflow.prices.aggregate import AggregationRules
from loanflow.prices.messages import LIVE_MONITOR_ID, ManualTick, MonitorInput, TickSummary
from loanflow.prices.sources import Quote
from loanflow.schema import Loan, MarketTick

VENUES = ("bitstamp", "coinbase", "kraken")


class Monitor:
    def __init__(self, handle: WorkflowHandle[Any, Any]) -> None:
        self.handle = handle

    @classmethod
    async def start(cls, client: Client, task_queue: str, concurrency: int,
                    memo: dict[str, Any] | None = None,
                    workflow_id: str = LIVE_MONITOR_ID) -> Monitor:
        # The crash's restore is one tick of +33% (back from -25%): the jump check, which would
        # hold it for a confirming tick, is set wide so the bench measures the same work.
        spec = MonitorInput(fan_out_concurrency=concurrency,
                            rules=AggregationRules(max_jump=Decimal("0.5")))
        handle = await client.start_workflow("MarketMonitor", spec, id=workflow_id,
                                             task_queue=task_queue, memo=memo)
        return cls(handle)

    async def tick(self, asset: str, price: Decimal) -> TickSummary:
        """One manual tick. Under load the update's RPC can time out before the monitor has
        taken it; sent again with the same update id, the server runs it at most once."""
        quotes = [Quote(venue=v, asset=asset, price=price) for v in VENUES]
        update_id = f"bench-tick-{uuid.uuid4().hex}"
        return await again(lambda: self.handle.execute_update(
            "tick", ManualTick(quotes=quotes), id=update_id, result_type=TickSummary),
            WorkflowUpdateRPCTimeoutOrCancelledError)


@dataclass(frozen=True)
class LoanLevels:
    loan_id: str
    state: str
    margin_call: Decimal | None
    liquidation: Decimal | None


async def book_levels(db: Database, asset: str, prefix: str) -> list[LoanLevels]:
    async with db.transaction() as s:
        rows = await s.execute(
            select(Loan.loan_id, Loan.state, Loan.margin_call_price, Loan.liquidation_price)
            .where(Loan.collateral_asset == asset, Loan.loan_id.like(f"{prefix}%")))
        return [LoanLevels(*row) for row in rows]


async def notices_since(db: Database, kind: str, since: datetime,
                        loan_ids: Iterable[str] | None = None) -> list[tuple[str, datetime]]:
    """(loan_id, created_at) of every notice of `kind` recorded since `since`."""
    query = select(NoticeRow.loan_id, NoticeRow.created_at).where(
        NoticeRow.kind == kind, NoticeRow.created_at >= since)
    async with db.transaction() as s:
        rows = [(r[0], r[1]) for r in await s.execute(query)]
    if loan_ids is not None:
        wanted = set(loan_ids)
        rows = [r for r in rows if r[0] in wanted]
    return rows


async def mailed_since(db: Database, kind: str, since: datetime) -> list[tuple[str, datetime | None]]:
    """(loan_id, sent_at) of the e-mail of every notice of `kind` recorded since `since`; None
    while the relay has not accepted it."""
    query = select(OutboxRow.loan_id, OutboxRow.sent_at).where(
        OutboxRow.kind == kind, OutboxRow.created_at >= since)
    async with db.transaction() as s:
        return [(r[0], r[1]) for r in await s.execute(query)]


async def wait_for_mail(db: Database, kind: str, since: datetime, expected: int,
                        timeout: float) -> list[tuple[str, datetime | None]]:
    """Poll until the e-mails of `expected` notices of `kind` since `since` are accepted by the
    relay (or the timeout); the rows as `mailed_since` gives them."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await mailed_since(db, kind, since)
        if sum(1 for _, at in rows if at) >= expected or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def count_notices(db: Database, kind: str, since: datetime) -> int:
    async with db.transaction() as s:
        query = select(func.count()).where(NoticeRow.kind == kind, NoticeRow.created_at >= since)
        return int(await s.scalar(query) or 0)


# A wait for notices gives up this long after the last new one: the run then reports the
# loans still missing instead of idling out its whole timeout (at 10,000 loans, 40 minutes
# for 35 notices that could not come).
STALL_SECONDS = 120.0


async def wait_for_notices(db: Database, kind: str, since: datetime, expected: int,
                           progress: Any, label: str, timeout: float,
                           stall: float = STALL_SECONDS) -> int:
    """Poll until `expected` notices of `kind` exist since `since`, the timeout passes, or
    none has come for `stall` seconds."""
    now = time.monotonic()
    deadline, last_new, found = now + timeout, now, -1
    while True:
        count = await count_notices(db, kind, since)
        now = time.monotonic()
        if count != found:
            found, last_new = count, now
        progress.set(label, found)
        if found >= expected or now > deadline or now - last_new > stall:
            return found
        await asyncio.sleep(0.1)


async def wait_until_quiet(db: Database, seconds: float = 3.0, timeout: float = 600) -> None:
    """Until no notice has been recorded and no loan changed for `seconds`."""
    deadline = time.monotonic() + timeout
    last: tuple[Any, ...] = ()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        async with db.transaction() as s:
            now = (await s.scalar(select(func.count()).select_from(NoticeRow)),
                   await s.scalar(select(func.max(Loan.updated_at))),
                   await s.scalar(select(func.sum(Loan.version))))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= seconds:
            return
        await asyncio.sleep(0.25)


async def delivery_failures(db: Database) -> int:
    async with db.transaction() as s:
        query = select(func.count()).where(OutboxRow.status.in_(("failed", "unconfirmed")))
        return int(await s.scalar(query) or 0)


async def tick_rows(db: Database, ids: Iterable[int]) -> list[MarketTick]:
    async with db.transaction() as s:
        return list(await s.scalars(select(MarketTick).where(MarketTick.id.in_(list(ids)))))
