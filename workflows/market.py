"""`MarketMonitor`: the market side of the desk as one long-running workflow.

On each tick it asks its activity to gather quotes, aggregate them and store the observation
(or the no-price condition) together with the loans whose trigger prices the move since the
last tick crossed; then a second activity signals just those loans. A tick that crosses no
trigger runs no fan-out at all and wakes no loan. The fan-out lives in an activity (not one
signal command per loan here) so this workflow's history stays a few events per tick however
large the book is; it continues as new every `ticks_per_run` ticks.

Three ways to tick, which combine: every `interval_seconds` (live, from the HTTP venues), along
a `replay` plan (historical candles at a chosen speed), and on demand through the update `tick`
(an operator's manual quotes; the benchmark's crash). Ticks never overlap: the order of ticks
is what defines "crossed since the last tick".
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from loanflow.money import ASSETS, fmt_usd
    from loanflow.prices.messages import (
        MONITOR_WORKFLOW,
        AssetTick,
        FanOutRequest,
        FanOutResult,
        LastPrice,
        ManualTick,
        MarketActivity,
        MonitorInput,
        MonitorProgress,
        MonitorState,
        ObserveRequest,
        ObserveResult,
        TickSummary,
    )
    from loanflow.prices.sources import Quote

# Observing is cheap and idempotent by the tick key: retry quickly, for as long as it takes.
OBSERVE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=10))
FAN_OUT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=30))


@workflow.defn(name=MONITOR_WORKFLOW)
class MarketMonitor:
    @workflow.init
    def __init__(self, spec: MonitorInput) -> None:
        self.spec = spec
        self.state = spec.state.model_copy(deep=True)
        self._queue: list[tuple[int, ManualTick]] = []
        self._answers: dict[int, TickSummary] = {}
        self._tickets = 0
        self._stop = False
        self._ticks_this_run = 0
        self._last: TickSummary | None = None
        self._ticking = False  # a tick is between its observe and what it remembers

    @workflow.run
    async def run(self, spec: MonitorInput) -> MonitorProgress:
        if self.state.chain is None:
            self.state.chain = workflow.info().run_id
        self.show()
        while not self._stop:
            if self._queue:
                ticket, manual = self._queue.pop(0)
                self._answers[ticket] = await self.manual_tick(manual)
            elif self.replay_finished():
                break
            elif await self.wait_for_schedule():
                await self.scheduled_tick()
            if not self._queue and not self.replay_finished() and self.run_is_long():
                await self.continue_as_new()
        # Refuse new manual ticks, but answer the ones already accepted before ending.
        self._stop = True
        while self._queue:
            ticket, manual = self._queue.pop(0)
            self._answers[ticket] = await self.manual_tick(manual)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.progress()

    # --- operators' handles -------------------------------------------------------------------

    @workflow.update(name="tick")
    async def tick(self, manual: ManualTick) -> TickSummary:
        """Tick now with these quotes; returns what the tick found and whom it signalled."""
        self._tickets += 1
        ticket = self._tickets
        self._queue.append((ticket, manual))
        await workflow.wait_condition(lambda: ticket in self._answers)
        return self._answers.pop(ticket)

    @tick.validator
    def _validate_tick(self, manual: ManualTick) -> None:
        if self._stop:
            raise ApplicationError("the monitor is stopping", type="Stopping", non_retryable=True)
        for asset in self.manual_assets(manual):
            if asset not in ASSETS:
                raise ApplicationError(f"asset: {asset!r} is not supported (BTC or ETH)",
                                       type="InvalidRequest", non_retryable=True)
        # Out of range (1e309), not positive, or from the future: refused here, so it never
        # reaches the observe activity (which drops such quotes too).
        problem = manual.problem(workflow.now())
        if problem:
            raise ApplicationError(problem, type="InvalidRequest", non_retryable=True)

    @workflow.signal(name="stop")
    def stop(self) -> None:
        """Finish the tick in progress and end (a replay also ends by itself)."""
        self._stop = True

    @workflow.query(name="progress")
    def progress(self) -> MonitorProgress:
        plan = self.spec.replay
        replay_at = None
        if plan is not None and self.state.replay_index > 0:
            replay_at = plan.at(self.state.replay_index - 1)
        return MonitorProgress(
            state=self.state,
            mode=self.mode(),
            total_ticks=plan.total_ticks if plan else None,
            replay_at=replay_at,
            # The replay's last tick counts its index before it observes: until it has
            # remembered its prices the replay is not done (`market replay` printed "6 prices"
            # of 8 when its query fell in between).
            done=self._stop or (self.replay_finished() and not self._ticking),
            last=self._last,
        )

    # --- scheduling ---------------------------------------------------------------------------

    def mode(self) -> str:
        if self.spec.replay is not None:
            return f"replay {self.spec.feed.replay.window if self.spec.feed.replay else ''}".strip()
        if self.spec.interval_seconds:
            return f"live every {self.spec.interval_seconds}s"
        return "manual"

    def replay_finished(self) -> bool:
        plan = self.spec.replay
        return plan is not None and self.state.replay_index >= plan.total_ticks

    def pause(self) -> timedelta | None:
        """Time between scheduled ticks; None when the monitor only ticks on demand."""
        if self.spec.replay is not None:
            return self.spec.replay.pause()
        if self.spec.interval_seconds:
            return timedelta(seconds=self.spec.interval_seconds)
        return None

    async def wait_for_schedule(self) -> bool:
        """Wait for the next scheduled tick; False if a manual tick or a stop came first."""
        interrupted = lambda: bool(self._queue) or self._stop  # noqa: E731
        if self.pause() is None:
            await workflow.wait_condition(interrupted)
            return False
        due = self.state.next_due or self.first_due() or workflow.now()
        delay = due - workflow.now()
        if delay <= timedelta(0):
            return not interrupted()
        try:
            await workflow.wait_condition(interrupted, timeout=delay, timeout_summary="next tick")
        except asyncio.TimeoutError:
            return True
        return False

    def first_due(self) -> datetime | None:
        """An anchored replay's first tick waits for its anchor (None: tick at once)."""
        plan = self.spec.replay
        return plan.due(self.state.replay_index) if plan is not None else None

    async def scheduled_tick(self) -> None:
        pause = self.pause()
        assert pause is not None
        self.state.next_due = workflow.now() + pause
        replay_at = stamped = None
        plan = self.spec.replay
        if plan is not None:
            replay_at = plan.at(self.state.replay_index)
            # Anchored: the tick is stamped with its due time and the next one is due a whole
            # pause after it, so a slow tick never shifts the clock of the ones after it.
            stamped = plan.due(self.state.replay_index)
            self.state.replay_index += 1
            self.state.next_due = plan.due(self.state.replay_index) or self.state.next_due
        await self.run_tick(self.spec.assets, replay_at, [], at=stamped)

    def manual_assets(self, manual: ManualTick) -> list[str]:
        return manual.assets_to_tick(self.spec.assets)

    async def manual_tick(self, manual: ManualTick) -> TickSummary:
        return await self.run_tick(self.manual_assets(manual), None, manual.quotes)

    # --- one tick -----------------------------------------------------------------------------

    async def run_tick(
        self, assets: list[str], replay_at: datetime | None, quotes: list[Quote],
        at: datetime | None = None,
    ) -> TickSummary:
        self._ticking = True
        try:
            return await self._run_tick(assets, replay_at, quotes, at)
        finally:
            self._ticking = False

    async def _run_tick(
        self, assets: list[str], replay_at: datetime | None, quotes: list[Quote],
        at: datetime | None,
    ) -> TickSummary:
        self.state.seq += 1
        self._ticks_this_run += 1
        seq, now = self.state.seq, at or workflow.now()
        observed = await workflow.execute_activity(
            MarketActivity.OBSERVE,
            ObserveRequest(
                monitor_id=workflow.info().workflow_id,
                chain=self.state.chain or "",
                seq=seq,
                at=now,
                replay_at=replay_at,
                assets=assets,
                previous={a: p.price for a, p in self.state.last.items() if a in assets},
                feed=self.spec.feed,
                manual=quotes,
                rules=self.spec.rules,
            ),
            result_type=ObserveResult,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=OBSERVE_RETRY,
            summary=f"tick {seq}: quotes, price, crossed loans",
        )
        signalled = await self.fan_out(seq, observed.ticks)
        self.remember(observed.ticks, signalled, replay_at or now)
        summary = TickSummary(seq=seq, at=now, replay_at=replay_at, ticks=observed.ticks,
                              signalled=signalled)
        self._last = summary
        self.show()
        return summary

    async def fan_out(self, seq: int, ticks: list[AssetTick]) -> int:
        selected = [t for t in ticks if t.targets > 0]
        if not selected:
            return 0  # nothing crossed: no activity, no loan woken
        count = sum(t.targets for t in selected)
        result = await workflow.execute_activity(
            MarketActivity.FAN_OUT,
            FanOutRequest(tick_ids=[t.tick_id for t in selected],
                          concurrency=self.spec.fan_out_concurrency),
            result_type=FanOutResult,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(seconds=60),
            retry_policy=FAN_OUT_RETRY,
            summary=f"tick {seq}: signal {count} loan(s)",
        )
        return result.signalled

    def remember(self, ticks: list[AssetTick], signalled: int, at: datetime) -> None:
        for tick in ticks:
            observation = tick.observation
            priced = observation is not None and observation.observation_id is not None
            self.state.record_dark(tick.asset, at, priced, "; ".join(tick.reasons)[:300])
            if not priced:
                self.state.no_price += 1
                continue
            assert observation is not None and observation.observation_id is not None
            self.state.priced += 1
            self.state.disputed += int(observation.disputed)
            if tick.unconfirmed:
                # Not the price moves are measured from until a second observation confirms it.
                self.state.unconfirmed += 1
                continue
            self.state.last[tick.asset] = LastPrice(
                price=observation.price,
                observation_id=observation.observation_id,
                observed_at=observation.observed_at,
            )
        self.state.signalled += signalled

    # --- history size -------------------------------------------------------------------------

    def run_is_long(self) -> bool:
        return (self._ticks_this_run >= self.spec.ticks_per_run
                or workflow.info().is_continue_as_new_suggested())

    async def continue_as_new(self) -> None:
        # Updates still waiting for their answer must get it from this run.
        await workflow.wait_condition(lambda: workflow.all_handlers_finished() or bool(self._queue))
        if self._queue:
            return  # a manual tick came in meanwhile: serve it first, roll over after
        self.state.runs += 1
        workflow.continue_as_new(self.spec.model_copy(update={"state": self.state}))

    # --- the Web UI ---------------------------------------------------------------------------

    def show(self) -> None:
        """The monitor's current details in the Web UI: the last price of each asset, or the
        no-price condition and why."""
        lines = [f"**market monitor** ({self.mode()}) · tick {self.state.seq}"]
        plan = self.spec.replay
        if plan is not None:
            lines.append(f"replay {self.state.replay_index}/{plan.total_ticks} ticks")
        if self._last is not None:
            for tick in self._last.ticks:
                lines.append(_describe(tick))
            lines.append(f"last tick signalled {self._last.signalled} loan(s)")
        lines += _dark_lines(self.state)
        workflow.set_current_details("\n\n".join(lines))


def _describe(tick: AssetTick) -> str:
    if tick.observation is None:
        return f"**{tick.asset}: NO PRICE**: {'; '.join(tick.reasons)}"
    obs, used = tick.observation, ", ".join(tick.used)
    if tick.unconfirmed:
        return (f"**{tick.asset} {fmt_usd(obs.price)} UNCONFIRMED** ({used}): "
                f"{'; '.join(tick.reasons)}")
    if obs.disputed:
        return (f"**{tick.asset} {fmt_usd(obs.price)} DISPUTED** (low {quote(obs.low)}, "
                f"high {quote(obs.high)}: {used}; "
                f"calls act on the lowest, sales wait for agreement) observation "
                f"#{obs.observation_id}; {tick.targets} loan(s) crossed")
    return (f"**{tick.asset}** {fmt_usd(obs.price)} (median of {used}) "
            f"observation #{obs.observation_id}; {tick.targets} loan(s) crossed")


def quote(price: Decimal | None) -> str:
    """A venue's quote in the details: $19,500.00 ("?" if the observation has none)."""
    return "?" if price is None else fmt_usd(price)


def _dark_lines(state: MonitorState) -> list[str]:
    """The latest no-price periods (all of them are in the database: `market status`)."""
    if not state.dark:
        return []
    lines = [f"**no-price periods** ({state.no_price} tick(s) without a price in all)"]
    for period in state.dark:
        until = f"{period.end:%Y-%m-%d %H:%M}Z" if period.end else "**still no price**"
        lines.append(f"- {period.asset}: {period.start:%Y-%m-%d %H:%M}Z to {until}, "
                     f"{period.ticks} tick(s): {period.reason}")
    return lines
