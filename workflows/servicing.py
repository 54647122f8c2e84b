"""An active loan: revaluation, warnings, margin calls and cures, liquidation, maturity,
repayment and close-out."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from loanflow import ledger as account
    from loanflow.effects import (
        ActivityName,
        DepositRecord,
        LedgerLine,
        SaleReceipt,
        SaleRequest,
        TransferReceipt,
        effect_key,
    )
    from loanflow.models import CollateralDeposit, LoanState, PriceUpdate, Repayment
    from loanflow.money import USD, fmt_ratio, fmt_units, fmt_usd, wide
    from loanflow.risk import (
        MAX_SALE_STEPS,
        SaleStep,
        after_payment,
        allocate_payment,
        full_liquidation_quantity,
        liquidation_quantity,
        sale_step,
    )
    from workflows.base import CURE_DEADLINE, CURE_TIMER, iso, text
    from workflows.calls import effect
    from workflows.loan_file import DAY
    from workflows.onboarding import PRICE_RECHECK, Onboarding

SERVING = (LoanState.ACTIVE, LoanState.MARGIN_CALL)
# A first liquidation-level observation is confirmed by a later one before anything is sold
# (wick protection); the loan re-reads the stored observations this soon after the first.
CONFIRM_RECHECK = timedelta(minutes=1)
# The re-read is a safety net only: every market tick signals each loan at or past its
# liquidation level (`activities.market.crossed_loans`) and each held price jump comes back
# with the next observation, so the confirmation normally arrives with the next tick. A
# re-read every minute cost a workflow task and a store read per waiting loan per minute: in
# `loanflow stress` on hourly candles, 60 an hour each, and one FTX crash hour of a 1,000-loan
# book took two minutes of which nearly all was 121 loans re-reading. Loans started after this
# patch re-read at the cadence of "waiting for a fresh price" instead (a twelfth of the work;
# a lost signal delays a confirmation by at most five minutes).
SPARSE_RECHECK = "sparse-confirmation-recheck"
# A disputed observation (the venues disagreed) never sells, except at the hard floor when
# it holds at the highest quote. Histories from before it never carry a disputed price.
SALE_NEEDS_AGREEMENT = "sale-needs-agreement"
# The loan's own look-ups (the daily revaluation and the re-reads of the store while a decision
# waits on the market) fall on a whole minute, never earlier than due. Loans then wake
# together: the time-skipping server of `loanflow stress` fires one timer instant at a time and
# waits for its work to settle before the next, so 1,000 daily revaluations due milliseconds
# apart ran one loan after another (22 s of every simulated day of a 1,000-loan book). What
# is promised to the borrower (cure deadline, reminders, maturity) keeps its exact time.
CHECKS_ON_THE_MINUTE = "checks-on-the-minute"
# A margin-call reminder that falls due while the loan has no fresh price reads the store for
# one (and waits for one, re-reading, like a deadline sale). Before it the reminder went out
# only if a signal happened to be fresh: the monitor signals a loan only when a move crosses
# one of its trigger prices, so a loan sitting in a call at a steady price skipped its
# reminders (in the 1,000-loan FTX stress, 384 reminders for 625 loans sold after a call).
# On in runs started with ONE_LOOK; asked of older runs when a reminder falls due.
REMINDER_READS = "issue9-reminder-reads-the-store"
# Partial liquidations sell in limit orders sized to land in [target - 1 pp, target]
# (`risk.sale_step`); histories recorded before sold one market order sized with the buffer.
SALE_SIZING_PATCH = "sale-sizing-limit"
# A loan that takes several prices in one workflow task (its task waited behind a backlog)
# acts on the newest. When that one is past the liquidation level and an earlier one it never
# looked at was at the margin-call level, the borrower was owed a margin call: it is opened
# (with the newest figures, the price the desk now acts on) before the breach waits for its
# confirmation. Before it, such a loan was sold without a call, and its sale notice said the
# price had passed both levels "between two of our price observations": at 10,000 loans,
# 35 loans of the 25-tick crash. Asked only when it applies, so it marks only those runs.
CALL_AFTER_BACKLOG = "issue12-call-after-backlog"
# A partial sale whose remainder would be too small to size with cent-rounded proceeds closes
# the loan out instead (`risk.DUST_WINDOW_USD`): everything sold at the limit, the surplus paid
# out. Before it, such a loan sold dust after dust, each order losing cents to rounding, and a
# loan its collateral covered could end with a shortfall of a cent or two. Asked only when it
# applies.
DUST_CLOSE_OUT = "sale-dust-close-out"


class Servicing(Onboarding):
    async def step_serve(self) -> None:
        while self.f.state in SERVING:
            async with self._lock:
                await self.revalue("timer")
            if self.f.state not in SERVING:
                break
            until, why = self.next_wake()
            await self.wait(until, why)

    # --- revaluation --------------------------------------------------------------------------

    async def revalue(self, cause: str) -> None:
        """Look at the loan with the latest price and act on it. Called under the lock."""
        f, now = self.f, self.now()
        if f.state not in SERVING:
            return
        f.accrue(self.app, now)
        if f.last_revaluation is None or now >= f.last_revaluation + DAY:
            # The daily safety net: a loan that heard no signal still looks at the market.
            await (self.refresh() if self.one_look() else self.fetch_price())
            f.last_revaluation = now
        await self.maturity_duties(now)
        if f.state in SERVING:
            await self.price_duties(now, cause)
        self.publish()

    async def price_duties(self, now: datetime, cause: str) -> None:
        f, p = self.f, self.f.policy
        price = f.fresh_price(now)
        awaiting_confirmation = (
            price is not None and price.observed_at == f.breach_observed_at
        )
        # A price jump held for confirmation: the store may already have the next observation.
        jump_held = f.price_candidate is not None
        if (price is None and self.action_due(now)) or awaiting_confirmation or jump_held:
            # A pending liquidation needs a *later* observation than the one that breached:
            # look at the store rather than wait for the next signal.
            await self.fetch_price()
            price = f.fresh_price(now)
        if price is None:
            return  # a stale or missing price is never acted on
        current = f.ltv_at(price.price)
        if current is None:
            return
        rules = self.price_rules()
        if current >= p.liquidation_ltv:
            if rules:
                self.call_passed_in_backlog(price, current, now)
                self.breach_from_evidence(price, now)
            await self.liquidation_breach(price, current)
            return
        if rules:  # looked at: a price below the level ends any run of breaches
            f.evidence, f.looked_at = [], price.observed_at
        f.breach_observed_at = None
        if f.state == LoanState.MARGIN_CALL:
            await self.margin_call_duties(price, current, now, cause)
        elif current >= p.margin_call_ltv:
            self.open_margin_call(price, current, now)
        elif current >= p.warning_ltv:
            self.warn(price, current)
        elif current <= p.cure_target_ltv:
            f.warned = False  # the warning episode is over

    def action_due(self, now: datetime) -> bool:
        """Is a decision waiting only for a fresh price?"""
        f = self.f
        deadline_due = f.cure_deadline is not None and now >= f.cure_deadline
        grace_over = f.maturity is not None and now >= f.maturity + timedelta(
            hours=f.policy.maturity_grace_hours
        ) and f.debt() > 0
        return (deadline_due or grace_over or f.breach_observed_at is not None
                or self.reminder_due(now))

    def reminder_due(self, now: datetime) -> bool:
        """Is a margin-call reminder due (it needs a fresh price for its figures)?"""
        reminder = self.f.next_reminder()
        due = reminder is not None and now >= reminder[0]
        return due and (self.one_look() or workflow.patched(REMINDER_READS))

    def call_passed_in_backlog(self, price: PriceUpdate, current: Decimal, now: datetime) -> None:
        """An ACTIVE loan at the liquidation level whose unread observations crossed the
        margin-call level first: open the call it was owed (CALL_AFTER_BACKLOG)."""
        f = self.f
        if f.state != LoanState.ACTIVE:
            return
        seen = f.call_level_seen(price, now)
        if seen is None or not workflow.patched(CALL_AFTER_BACKLOG):
            return
        self.audit("margin_call_level_observed", price=seen, ltv=f.ltv_at(seen.price))
        self.open_margin_call(price, current, now)

    def warn(self, price: PriceUpdate, current: Decimal) -> None:
        f = self.f
        if f.warned:
            return
        f.warned = True
        f.warning_seq += 1
        self.audit("ltv_warning", price=price, ltv=current, warning_ltv=f.policy.warning_ltv)
        self.notify(
            "ltv_warning",
            f.warning_seq,
            **self.figures(price, current),
            warning_ltv=text(f.policy.warning_ltv),
            margin_call_price=text(f.triggers()["margin_call"]),
        )

    def open_margin_call(self, price: PriceUpdate, current: Decimal, now: datetime) -> None:
        f = self.f
        f.call_seq += 1
        f.cure_deadline = now + timedelta(hours=f.policy.cure_period_hours)
        f.reminders_sent = [h for h in f.policy.reminder_hours if f.cure_deadline - timedelta(hours=h) <= now]
        f.warned = True
        self.set_state(LoanState.MARGIN_CALL, (f"LTV {fmt_ratio(current)} at or above "
                                                  f"{fmt_ratio(f.policy.margin_call_ltv)}"))
        top_up, repay = f.cure_amounts(self.app.collateral_asset)
        self.audit(
            "margin_call",
            price=price,
            ltv=current,
            margin_call_ltv=f.policy.margin_call_ltv,
            cure_deadline=f.cure_deadline,
            cure_top_up=top_up,
            cure_repay_usd=repay,
        )
        self.notify("margin_call", f.call_seq, **self.call_figures(price, current))

    async def margin_call_duties(
        self, price: PriceUpdate, current: Decimal, now: datetime, cause: str
    ) -> None:
        f = self.f
        if current <= f.policy.cure_target_ltv:
            self.cure(price, current, cause)
            return
        if f.cure_deadline is not None and now >= f.cure_deadline:
            if price.disputed and self.patched(SALE_NEEDS_AGREEMENT):
                await self.deadline_sale_waits(price, current, now, cause)
                return
            f.sale_waits_for = None
            await self.liquidate(price, "cure deadline passed", full=False, cause="cure_deadline")
            return
        reminder = f.next_reminder()
        if reminder is not None and now >= reminder[0]:
            hours = reminder[1]
            f.reminders_sent.append(hours)
            self.audit("reminder", price=price, ltv=current, hours_before=hours)
            left = int((f.cure_deadline - now).total_seconds() // 3600) if f.cure_deadline else 0
            self.notify(
                "margin_call_reminder",
                f"{f.call_seq}:{hours}h",
                **self.call_figures(price, current),
                hours_left=str(left),
            )

    def cure(self, price: PriceUpdate, current: Decimal, cause: str) -> None:
        f = self.f
        how = {"top_up": "top_up", "repay": "repayment"}.get(cause, "market")
        self.audit("cured", price=price, ltv=current, how=how, cure_target_ltv=f.policy.cure_target_ltv)
        self.notify("margin_call_cured", f.call_seq, ltv=text(current), how=how, price=text(price.price))
        f.cure_deadline = None
        f.reminders_sent = []
        f.reason = None
        f.warned = False  # LTV is back at the cure target: a new rise is a new episode
        self.set_state(LoanState.ACTIVE)

    def figures(self, price: PriceUpdate, current: Decimal) -> dict[str, str | None]:
        return {
            "ltv": text(current),
            "price": text(price.price),
            "observed_at": iso(price.observed_at),
            "collateral_asset": self.app.collateral_asset,
            "collateral_amount": text(self.f.collateral),
            "debt_usd": text(self.f.debt()),
            "margin_call_ltv": text(self.f.policy.margin_call_ltv),
        }

    def call_figures(self, price: PriceUpdate, current: Decimal) -> dict[str, str | None]:
        f = self.f
        top_up, repay = f.cure_amounts(self.app.collateral_asset)
        return {
            **self.figures(price, current),
            "cure_target_ltv": text(f.policy.cure_target_ltv),
            "liquidation_ltv": text(f.policy.liquidation_ltv),
            "hard_liquidation_ltv": text(f.policy.hard_liquidation_ltv),
            "cure_deadline": iso(f.cure_deadline),
            "cure_top_up": text(top_up),
            "cure_repay_usd": text(repay),
            "liquidation_price": text(f.triggers()["liquidation"]),
            "post_liquidation_ltv": text(f.policy.post_liquidation_ltv),
            "liquidation_fee": text(f.policy.liquidation_fee),
            "address": f.deposit_address,
        }

    # --- liquidation ---------------------------------------------------------------------------

    def breach_from_evidence(self, price: PriceUpdate, now: datetime) -> None:
        """Observations that came since the last look (several in one workflow task, or late
        ones older than the held price) count: the first of an unbroken run of fresh
        liquidation-level observations before `price` is the breach `price` confirms."""
        f = self.f
        first = f.breach_evidence(price, now, f.policy.liquidation_ltv)
        if f.breach_observed_at is None and first is not None:
            f.breach_observed_at = first.observed_at
            self.audit("liquidation_pending_confirmation", price=first,
                       ltv=f.ltv_at(first.price))

    async def liquidation_breach(self, price: PriceUpdate, current: Decimal) -> None:
        """LTV at or past the liquidation level: sell at once past the hard floor, otherwise only
        once a second, later observation confirms it (a one-print wick sells nothing)."""
        f = self.f
        if price.disputed and self.patched(SALE_NEEDS_AGREEMENT):
            await self.disputed_breach(price, current)
            return
        f.sale_waits_for = None
        if current >= f.policy.hard_liquidation_ltv:
            await self.liquidate(price, f"LTV {fmt_ratio(current)} past the hard floor", full=False,
                                 cause="hard_floor")
        elif f.breach_observed_at is not None and price.observed_at > f.breach_observed_at:
            await self.liquidate(price, f"LTV {fmt_ratio(current)} confirmed at liquidation level",
                                 full=False, cause="liquidation_level")
        elif f.breach_observed_at is None:
            f.breach_observed_at = price.observed_at
            self.audit("liquidation_pending_confirmation", price=price, ltv=current)

    async def disputed_breach(self, price: PriceUpdate, current: Decimal) -> None:
        """Past the liquidation level at the lowest quote, but the venues disagree: only the
        hard floor sells, and only if it holds at the highest quote (then sized at that quote,
        the least that any venue supports); anything else waits for an agreeing observation.
        A disputed observation neither starts nor confirms the wick check, but the margin call
        it calls for at the lowest quote is opened (the borrower hears, and can cure)."""
        f, high = self.f, price.high or price.price
        at_high = f.ltv_at(high)
        if at_high is not None and at_high >= f.policy.hard_liquidation_ltv:
            f.sale_waits_for = None
            await self.liquidate(
                price.model_copy(update={"price": high}),
                f"LTV {fmt_ratio(at_high)} past the hard floor even at the highest quote "
                f"{fmt_usd(high)} (venues disagree: {usd_or_dash(price.low)} to "
                f"{usd_or_dash(price.high)})",
                full=False, cause="hard_floor")
            return
        if f.state == LoanState.ACTIVE:
            self.open_margin_call(price, current, self.now())
        self.sale_waits(price, current, f"breach:{f.liquidation_seq}")

    async def deadline_sale_waits(self, price: PriceUpdate, current: Decimal, now: datetime,
                                  cause: str) -> None:
        """The cure deadline has passed but the venues disagree. An agreeing observation may be
        stored that no signal brought (the move crossed none of this loan's triggers): look,
        and act on it; otherwise wait (the loan re-checks while a decision is due)."""
        await self.fetch_price()
        fresh = self.f.fresh_price(now)
        if fresh is not None and not fresh.disputed:
            await self.price_duties(now, cause)
            return
        self.sale_waits(price, current, f"deadline:{self.f.call_seq}")

    def sale_waits(self, price: PriceUpdate, current: Decimal, episode: str) -> None:
        """Record once per episode that a sale is due but waits for the venues to agree."""
        f = self.f
        if f.sale_waits_for == episode:
            return
        f.sale_waits_for = episode
        self.audit("sale_waits_for_agreement", price=price, ltv=current, episode=episode,
                   low=price.low, high=price.high,
                   venues={v: str(p) for v, p in (price.venues or {}).items()})

    async def liquidate(self, price: PriceUpdate, reason: str, *, full: bool, cause: str) -> None:
        """Sell collateral. `reason` is for the audit; `cause` (cure_deadline, liquidation_level,
        hard_floor, maturity) and the figures of the moment tell the borrower why."""
        f, app, p = self.f, self.app, self.f.policy
        if not full and f.sale_short_observed_at is not None and (
            price.observed_at <= f.sale_short_observed_at
        ):
            return  # the market was below the last order's limit at this price: wait for a newer
        why = self.liquidation_cause(price, cause)
        f.breach_observed_at = None
        self.set_state(LoanState.LIQUIDATING, reason)
        self.publish()
        await self.post_interest()
        first_seq, short, dust = f.liquidation_seq + 1, False, False
        if full or not self.patched(SALE_SIZING_PATCH):
            if full:
                size = full_liquidation_quantity(
                    app.collateral_asset, f.debt(), f.collateral, price.price,
                    p.liquidation_fee, p.liquidation_slippage_buffer,
                )
            else:
                size = liquidation_quantity(
                    app.collateral_asset, f.debt(), f.collateral, price.price,
                    p.post_liquidation_ltv, p.liquidation_fee, p.liquidation_slippage_buffer,
                )
            sale = await self.sell(price, size.quantity, None)
        else:
            sales, short, dust = await self.sell_in_steps(price)
            sale = combined(sales)
        closed_out = {"closed_out": "dust"} if dust else {}
        why |= closed_out  # the sale notice says why everything was sold
        # `cause` and `ltv_before` make the audit trail enough to tell why and from where a
        # sale happened (the stress report reads them); extra detail keys do not touch replay.
        self.audit("liquidation", price=price, reason=reason, cause=cause,
                   ltv_before=why["ltv_before"], quantity=sale.quantity,
                   fill_price=sale.fill_price, gross=sale.gross_usd, fee=sale.fee_usd,
                   applied=sale.applied_usd, ltv_after=f.ltv_at(price.price), **closed_out)
        await self.after_liquidation(price, sale, reason, why, notice_seq=first_seq, short=short)

    async def sell(
        self, price: PriceUpdate, quantity: Decimal, limit: Decimal | None
    ) -> SaleReceipt:
        """One order, exactly once by its key `<loan>:sale:<n>`; its fill applied to the loan."""
        f, app, p = self.f, self.app, self.f.policy
        f.liquidation_seq += 1
        sale = await effect(
            ActivityName.SELL_COLLATERAL,
            SaleRequest(
                key=effect_key(app.loan_id, "sale", f.liquidation_seq),
                loan_id=app.loan_id,
                asset=app.collateral_asset,
                quantity=quantity,
                reference_price=price.price,
                fee_rate=p.liquidation_fee,
                debt_usd=f.debt(),
                limit_price=limit,
            ),
            SaleReceipt,
            summary=f"sell {fmt_units(app.collateral_asset, quantity)}"
            + ("" if limit is None else f" limit {fmt_usd(limit)}"),
        )
        self.apply_sale(sale)
        if sale.surplus_usd > 0:
            await self.pay_surplus(sale)
        return sale

    async def sell_in_steps(self, price: PriceUpdate) -> tuple[list[SaleReceipt], bool, bool]:
        """A partial liquidation at the decision's price: limit orders as `risk.sale_step`
        plans them, each sized with the fills so far, until LTV is at target (it cannot then be
        below target - 1 pp for any fill the plan allows). Returns the fills, and True if the
        loan is still above target because an order filled short of its quantity (the market
        was below the limit) or the step cap was reached: the rest waits for a newer price;
        and True if the loan was closed out because its remainder would have been dust."""
        f, p = self.f, self.f.policy
        sales: list[SaleReceipt] = []
        for _ in range(MAX_SALE_STEPS):
            step = self.next_sale_step(price)
            if step.quantity <= 0:
                return sales, False, False
            sale = await self.sell(price, step.quantity, step.limit_price)
            sales.append(sale)
            left = f.ltv_at(price.price)
            self.audit("liquidation_order", price=price, key=sale.key, asked=step.quantity,
                       limit_price=step.limit_price, quantity=sale.quantity,
                       fill_price=sale.fill_price, ltv_after=left, closed_out=step.closes_out)
            if sale.quantity < step.quantity:
                return sales, True, False
            if step.sells_everything or f.debt() <= 0 or f.collateral <= 0:
                return sales, False, step.closes_out
            if left is not None and left <= p.post_liquidation_ltv:
                return sales, False, False
        return sales, True, False

    def next_sale_step(self, price: PriceUpdate) -> SaleStep:
        """`risk.sale_step` with the loan's figures; a run from before DUST_CLOSE_OUT sizes a
        dust remainder as it did (another partial order)."""
        f, p = self.f, self.f.policy
        figures = (
            self.app.collateral_asset, f.debt(), f.collateral, price.price,
            p.post_liquidation_ltv, p.liquidation_fee, p.liquidation_slippage_buffer,
            p.liquidation_fill_upside,
        )
        step = sale_step(*figures)
        if step.dust and not workflow.patched(DUST_CLOSE_OUT):
            return sale_step(*figures, dust_window=Decimal(0))
        return step

    def liquidation_cause(self, price: PriceUpdate, cause: str) -> dict[str, str | None]:
        """Why a sale happens, in figures the borrower can check: the price and LTV it acted
        on, the levels, and the margin call's deadline if one was open (none when the price
        jumped past the liquidation level between two observations)."""
        f = self.f
        return {
            "cause": cause,
            "price": text(price.price),
            "observed_at": iso(price.observed_at),
            "ltv_before": text(f.ltv_at(price.price)),
            "margin_call_ltv": text(f.policy.margin_call_ltv),
            "liquidation_ltv": text(f.policy.liquidation_ltv),
            "hard_liquidation_ltv": text(f.policy.hard_liquidation_ltv),
            "cure_deadline": iso(f.cure_deadline),
        }

    def apply_sale(self, sale: SaleReceipt) -> None:
        f = self.f
        f.collateral -= sale.quantity
        allocation = allocate_payment(f.balances(), sale.applied_usd)
        self.apply_allocation(allocation)
        f.total_fees += sale.fee_usd

    def apply_allocation(self, allocation) -> None:  # type: ignore[no-untyped-def]
        f = self.f
        after = after_payment(f.balances(), allocation)
        f.principal, f.interest, f.fees = after.principal, after.interest, after.fees
        f.interest_posted -= allocation.interest
        f.total_repaid += allocation.applied

    async def pay_surplus(self, sale: SaleReceipt) -> None:
        step = f"surplus:{self.f.liquidation_seq}"
        await self.pay_out(step, sale.surplus_usd, "surplus", "pay sale surplus to borrower")

    async def after_liquidation(self, price: PriceUpdate, sale: SaleReceipt, reason: str,
                                why: dict[str, str | None], *, notice_seq: int | None = None,
                                short: bool = False) -> None:
        f, app = self.f, self.app
        left_ltv = f.ltv_at(price.price)
        if sale.quantity > 0:
            self.notify_sale(price, sale, reason, why, notice_seq or f.liquidation_seq, left_ltv)
        f.cure_deadline = None if not short else min(f.cure_deadline or self.now(), self.now())
        f.reminders_sent = []
        if f.debt() <= 0:
            await self.close("debt repaid from liquidation proceeds")
        elif f.collateral <= 0:
            await self.default(sale)
        elif short:
            self.sale_pending(price)
        else:
            f.warned = False
            self.set_state(LoanState.ACTIVE, None)
            f.reason = None

    def sale_pending(self, price: PriceUpdate) -> None:
        """The market was below the limit: the rest of the sale is due at once, sized with the
        next (later) price, as a passed cure deadline is; unless that price cures the loan."""
        f = self.f
        f.sale_short_observed_at = price.observed_at
        f.reminders_sent = list(f.policy.reminder_hours)  # the deadline has passed: no reminders
        self.audit("liquidation_short", price=price, ltv=f.ltv_at(price.price),
                   post_liquidation_ltv=f.policy.post_liquidation_ltv)
        self.set_state(LoanState.MARGIN_CALL, "liquidation short of target: the market was "
                       "below the limit price; the rest is sold at the next price")

    def notify_sale(self, price: PriceUpdate, sale: SaleReceipt, reason: str,
                    why: dict[str, str | None], seq: int, left_ltv: Decimal | None) -> None:
        f, app = self.f, self.app
        self.notify(
            "liquidation_executed",
            seq,
            quantity_sold=text(sale.quantity),
            collateral_asset=app.collateral_asset,
            fill_price=text(sale.fill_price),
            gross_usd=text(sale.gross_usd),
            fee_usd=text(sale.fee_usd),
            applied_usd=text(sale.applied_usd),
            surplus_usd=text(sale.surplus_usd),
            ltv_after=text(left_ltv),
            collateral_left=text(f.collateral),
            debt_usd=text(f.debt()),
            reason=reason,
            **why,
        )

    async def default(self, sale: SaleReceipt) -> None:
        f, loan = self.f, self.app.loan_id
        shortfall = f.debt()
        await self.post(
            "shortfall",
            "shortfall written off: collateral exhausted",
            [
                LedgerLine(account=account.SHORTFALL_LOSS, currency="USD", amount=shortfall),
                LedgerLine(account=account.receivable(loan), currency="USD", amount=-shortfall),
            ],
        )
        f.shortfall = shortfall
        f.principal = f.interest = f.interest_posted = f.fees = Decimal(0)
        self.set_state(LoanState.DEFAULTED,
                       f"collateral exhausted with {fmt_usd(shortfall)} unpaid")
        self.notify(
            "loan_defaulted",
            shortfall_usd=text(shortfall),
            quantity_sold=text(sale.quantity),
            collateral_asset=self.app.collateral_asset,
            applied_usd=text(sale.applied_usd),
        )

    # --- maturity ---------------------------------------------------------------------------

    async def maturity_duties(self, now: datetime) -> None:
        f = self.f
        if f.maturity is None:
            return
        for days in sorted(f.policy.maturity_reminder_days, reverse=True):
            if days not in f.maturity_reminders_sent and now >= f.maturity - timedelta(days=days):
                f.maturity_reminders_sent.append(days)
                if now < f.maturity:
                    self.maturity_notice(days)
        if now >= f.maturity and not f.maturity_notice_sent:
            f.maturity_notice_sent = True
            self.maturity_notice(0)
        grace_end = f.maturity + timedelta(hours=f.policy.maturity_grace_hours)
        if now >= grace_end and f.debt() > 0:
            price = f.fresh_price(now)
            if price is None:
                await self.fetch_price()
                price = f.fresh_price(now)
            if price is not None:
                await self.liquidate(price, "debt unpaid after maturity and grace period",
                                     full=True, cause="maturity")

    def maturity_notice(self, days_left: int) -> None:
        f = self.f
        self.notify(
            "maturity_reminder",
            f"{days_left}d",
            maturity=iso(f.maturity),
            debt_usd=text(f.debt()),
            days_left=str(days_left),
        )

    def next_wake(self) -> tuple[datetime, str]:
        """The earliest moment the loan must look at itself again without being asked."""
        f, now = self.f, self.now()
        candidates = self.checks(now)
        if f.cure_deadline is not None:
            if not (f.state == LoanState.MARGIN_CALL and self.patched(CURE_TIMER)):
                candidates.append((f.cure_deadline, CURE_DEADLINE))  # else: its own timer
            reminder = f.next_reminder()
            if reminder is not None:
                candidates.append((reminder[0], f"margin-call reminder {reminder[1]}h"))
        if f.maturity is not None:
            candidates.extend(self.maturity_wakes())
        future = [c for c in candidates if c[0] > now] or [
            (self.on_the_minute(now + PRICE_RECHECK), "re-check")]
        return min(future, key=lambda c: c[0])

    def checks(self, now: datetime) -> list[tuple[datetime, str]]:
        """The loan's own look-ups: the daily revaluation and the re-reads of the store."""
        f = self.f
        checks = [((f.last_revaluation or now) + DAY, "daily revaluation")]
        if f.breach_observed_at is not None or f.price_candidate is not None:
            recheck = now + self.confirm_recheck()
            if f.breach_observed_at is not None:
                checks.append((recheck, "liquidation confirmation re-check"))
            if f.price_candidate is not None:
                checks.append((recheck, "price jump confirmation re-check"))
        if self.action_due(now):
            checks.append((now + PRICE_RECHECK, "waiting for a fresh price"))
        return [(self.on_the_minute(at), why) for at, why in checks]

    def on_the_minute(self, at: datetime) -> datetime:
        """`at`, or the next whole minute after it (loans started after CHECKS_ON_THE_MINUTE)."""
        if not self.patched(CHECKS_ON_THE_MINUTE):
            return at
        whole = at.replace(second=0, microsecond=0)
        return whole if whole == at else whole + timedelta(minutes=1)

    def confirm_recheck(self) -> timedelta:
        """How soon a loan waiting for a confirming observation re-reads the store."""
        return PRICE_RECHECK if self.patched(SPARSE_RECHECK) else CONFIRM_RECHECK

    def maturity_wakes(self) -> list[tuple[datetime, str]]:
        f = self.f
        assert f.maturity is not None
        wakes = [
            (f.maturity - timedelta(days=d), f"maturity reminder {d}d")
            for d in f.policy.maturity_reminder_days
            if d not in f.maturity_reminders_sent
        ]
        if not f.maturity_notice_sent:
            wakes.append((f.maturity, "maturity"))
        grace_end = f.maturity + timedelta(hours=f.policy.maturity_grace_hours)
        wakes.append((grace_end, "maturity grace period ends"))
        return wakes

    # --- the borrower's actions ------------------------------------------------------------------

    async def receive_collateral(self, deposit: CollateralDeposit, kind: str) -> None:
        f, app = self.f, self.app
        receipt = await effect(
            ActivityName.RECORD_DEPOSIT,
            DepositRecord(
                key=effect_key(app.loan_id, kind, deposit.tx_id),
                loan_id=app.loan_id,
                asset=app.collateral_asset,
                amount=deposit.amount,
                tx_id=deposit.tx_id,
                kind=kind,  # type: ignore[arg-type]
            ),
            TransferReceipt,
            summary=f"record {kind}",
        )
        f.tx_ids.append(deposit.tx_id)
        # The custodian's record is the truth: a retried deposit returns the amount it booked.
        f.collateral += receipt.amount
        self.audit(kind, amount=deposit.amount, tx_id=deposit.tx_id, collateral=f.collateral)
        self.notify(
            "collateral_received",
            deposit.tx_id,
            collateral_asset=app.collateral_asset,
            amount_received=text(deposit.amount),
            total_received=text(f.collateral),
            amount_required=text(f.required_collateral),
            tx_id=deposit.tx_id,
        )

    async def receive_repayment(self, repayment: Repayment) -> None:
        f, loan = self.f, self.app.loan_id
        await self.post_interest()
        allocation = allocate_payment(f.balances(), repayment.amount_usd)
        await self.post(
            f"repay:{repayment.reference}",
            f"repayment {repayment.reference}",
            [
                LedgerLine(account=account.CASH, currency="USD", amount=allocation.applied),
                LedgerLine(account=account.receivable(loan), currency="USD", amount=-allocation.applied),
            ],
        )
        f.references.append(repayment.reference)
        self.apply_allocation(allocation)
        self.audit("repayment", amount=repayment.amount_usd, reference=repayment.reference,
                   principal=allocation.principal, interest=allocation.interest, fees=allocation.fees)
        self.notify(
            "repayment_received",
            repayment.reference,
            amount_usd=text(repayment.amount_usd),
            reference=repayment.reference,
            debt_usd=text(f.debt()),
            principal_usd=text(allocation.principal),
            interest_usd=text(allocation.interest),
            fees_usd=text(allocation.fees),
        )
        if f.debt() <= 0:
            await self.close("repaid in full")

    async def close(self, reason: str) -> None:
        f = self.f
        released = f.collateral
        if released > 0:
            await self.release_collateral("close", reason)
        f.cure_deadline = None
        self.set_state(LoanState.CLOSED, reason)
        self.notify(
            "loan_closed",
            collateral_released=text(released),
            collateral_asset=self.app.collateral_asset,
            total_interest_usd=text(f.total_interest),
            total_fees_usd=text(f.total_fees),
            total_repaid_usd=text(f.total_repaid),
            closed_at=iso(self.now()),
        )


def combined(sales: list[SaleReceipt]) -> SaleReceipt:
    """The orders of one liquidation as one sale for the borrower's notice and the audit: the
    amounts summed, the fill price their quantity-weighted average (to the cent)."""
    if len(sales) == 1:
        return sales[0]
    zero = Decimal(0)
    last = sales[-1] if sales else SaleReceipt(
        key="", order_id="", quantity=zero, fill_price=zero, gross_usd=zero, fee_usd=zero,
        applied_usd=zero, surplus_usd=zero, created=False,
    )
    quantity = sum((s.quantity for s in sales), zero)
    with wide():
        paid = sum((s.quantity * s.fill_price for s in sales), zero)
        average = (paid / quantity).quantize(USD) if quantity > 0 else zero
    return SaleReceipt(
        key=last.key, order_id=last.order_id, quantity=quantity, fill_price=average,
        gross_usd=sum((s.gross_usd for s in sales), zero),
        fee_usd=sum((s.fee_usd for s in sales), zero),
        applied_usd=sum((s.applied_usd for s in sales), zero),
        surplus_usd=sum((s.surplus_usd for s in sales), zero),
        created=any(s.created for s in sales),
    )


def usd_or_dash(price: Decimal | None) -> str:
    """A quote for a reason: $1,234.50, or "?" where the observation has none."""
    return "?" if price is None else fmt_usd(price)
