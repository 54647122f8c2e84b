"""The loan's file: every fact the workflow keeps, and the figures derived from them.

`LoanFile` is the one state object of `LoanWorkflow`. It is carried whole across
continue-as-new (as JSON inside `LoanApplication.resume`), so nothing a loan knows lives
anywhere else. Everything here is pure and deterministic: no clock, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from loanflow.models import LoanApplication, LoanState, LoanStatus, PriceUpdate
from loanflow.money import usd_up
from loanflow.policy import RiskPolicy
from loanflow.risk import Balances, cure_repay, cure_top_up, daily_interest, ltv, trigger_price

ZERO = Decimal(0)
DAY = timedelta(days=1)
# How far in the future (by the loan's own clock) an observation may be dated: venues' and
# our clocks differ by seconds, never minutes. Beyond it the observation is dropped (a price
# dated 2030 once "cured" 50 margin calls and then hid every real price until 2030).
CLOCK_SKEW = timedelta(minutes=2)
# Observations the loan keeps as evidence between two looks at its price (wick confirmation).
EVIDENCE_LIMIT = 10

# Steps of a loan's life, in order; `LoanFile.step` says which one a resumed run continues.
STEPS = ("open", "kyc", "approve", "fund", "disburse", "serve")


class CarriedState(BaseModel):
    """What a loan's own continue-as-new hands its next run, as that run's second argument.
    Honoured only in a run continued from the run named here (a fresh start cannot carry it:
    a start input with state once made an ACTIVE loan of collateral never deposited)."""

    from_run: str
    file: dict[str, Any]


class LoanFile(BaseModel):
    state: LoanState = LoanState.KYC_REVIEW
    step: int = 0
    reason: str | None = None
    policy: RiskPolicy
    opened_at: datetime
    awaiting_kyc_decision: bool = False
    kyc_status: str = "screening"
    kyc_deadline: datetime | None = None

    # collateral
    required_collateral: Decimal
    collateral: Decimal = ZERO
    deposit_address: str | None = None
    funding_deadline: datetime | None = None
    tx_ids: list[str] = Field(default_factory=list)

    # debt: the ledger's receivable always equals principal + interest_posted + fees
    principal: Decimal = ZERO
    interest: Decimal = ZERO  # accrued, unrounded until posted
    interest_posted: Decimal = ZERO
    fees: Decimal = ZERO
    interest_through: datetime | None = None
    disbursed_at: datetime | None = None
    maturity: datetime | None = None
    references: list[str] = Field(default_factory=list)
    total_repaid: Decimal = ZERO
    total_interest: Decimal = ZERO
    total_fees: Decimal = ZERO
    shortfall: Decimal = ZERO

    # prices
    price: PriceUpdate | None = None
    breach_observed_at: datetime | None = None  # first liquidation-level observation (wick check)
    # The sale episode ("breach:<n>" or "deadline:<call>") that waits for the venues to agree,
    # so its audit entry is written once.
    sale_waits_for: str | None = None
    # What the loan waits for before it can go on: "price" while it needs a fresh price
    # (approval, disbursement) and none has come; the status shows it (issue 11).
    waiting_for: str | None = None
    # A price that jumped more than `policy.max_price_jump` from `price`: held, not acted on,
    # until a later observation in line with it confirms it.
    price_candidate: PriceUpdate | None = None
    # Observations received since the loan last looked at its price, other than the one it
    # now holds (earlier ones of a batch, late arrivals): evidence for the wick check.
    evidence: list[PriceUpdate] = Field(default_factory=list)
    looked_at: datetime | None = None  # observed_at of the price the loan last looked at

    # margin calls
    warned: bool = False
    warning_seq: int = 0
    call_seq: int = 0
    cure_deadline: datetime | None = None
    reminders_sent: list[int] = Field(default_factory=list)
    extension_seq: int = 0
    liquidation_seq: int = 0
    # the observation a partial liquidation's limit order could not (fully) fill at: the rest
    # of the sale waits for a later one
    sale_short_observed_at: datetime | None = None
    maturity_reminders_sent: list[int] = Field(default_factory=list)
    maturity_notice_sent: bool = False

    # bookkeeping of effects
    interest_postings: int = 0
    audit_seq: int = 0
    snapshot_version: int = 0
    # The loan id is claimed for the loan's first run (`LoanBase.id_claim`, `_claim_run`):
    # carried, so that a continued run does not claim it again.
    id_claimed: bool = False
    last_revaluation: datetime | None = None

    @classmethod
    def open(cls, app: LoanApplication, policy: RiskPolicy, now: datetime) -> LoanFile:
        return cls(policy=policy, opened_at=now, required_collateral=app.collateral_amount)

    # --- debt -----------------------------------------------------------------------------------

    def accrue(self, app: LoanApplication, now: datetime) -> None:
        """Accrue simple interest (actual/365) for every whole day elapsed since the last."""
        if self.interest_through is None or self.principal <= 0:
            return
        while self.interest_through + DAY <= now:
            self.interest += daily_interest(self.principal, app.annual_rate)
            self.interest_through += DAY

    def interest_due_now(self, app: LoanApplication, now: datetime) -> Decimal:
        """Interest accrued to `now` without changing the file (for validators and queries)."""
        probe = self.model_copy()
        probe.accrue(app, now)
        return probe.interest

    def debt(self) -> Decimal:
        return usd_up(self.principal + self.interest + self.fees)

    def debt_now(self, app: LoanApplication, now: datetime) -> Decimal:
        return usd_up(self.principal + self.interest_due_now(app, now) + self.fees)

    def balances(self) -> Balances:
        return Balances(principal=self.principal, interest=self.interest, fees=self.fees)

    # --- prices ---------------------------------------------------------------------------------

    def fresh_price(self, now: datetime) -> PriceUpdate | None:
        """The latest observation if it is fresh; a stale price is never acted on."""
        if self.price is None:
            return None
        return self.fresh_price_at(self.price, now)

    def take_price(self, update: PriceUpdate, now: datetime | None = None, *,
                   stored: bool = False) -> bool:
        """Keep the newest observation; True if the loan should look again. Without `now`
        (histories recorded before issue 10) simply the newest wins; with it, the rules of
        `take_observation` apply."""
        if now is not None:
            return self.take_observation(update, now, stored=stored)
        if self.price is not None and update.observed_at <= self.price.observed_at:
            return False
        self.price = update
        return True

    def take_observation(self, update: PriceUpdate, now: datetime, *, stored: bool = False) -> bool:
        """The loan-side price rules. An observation dated beyond the clock skew is dropped.
        One older than the held price is kept only as wick evidence. One that jumps more than
        `max_price_jump` from the held price is held as a candidate until a later observation
        in line with it confirms it (then both count); an observation in line with the held
        price discards a lone candidate. What the desk's own store holds (`stored`: written by
        the market monitor from its venues, or by an operator) is the desk's word, not a
        caller's, and needs no confirmation: the monitor signals only the loans a tick crossed,
        so a loan's last price can be far behind a real move."""
        if update.observed_at > now + CLOCK_SKEW:
            return False
        held = self.price
        if held is not None and update.observed_at <= held.observed_at:
            self.remember(update)
            return False
        candidate = self.price_candidate
        if stored:
            if candidate is not None and candidate.observed_at <= update.observed_at:
                self.price_candidate = None
            self.accept(update)
            return True
        if held is not None and self.jumps(held.price, update.price):
            if candidate is not None and update.observed_at > candidate.observed_at \
                    and not self.jumps(candidate.price, update.price):
                self.accept(candidate)
            elif not self.corroborated(update, now):
                if candidate is None or update.observed_at > candidate.observed_at:
                    if candidate is not None:
                        self.remember(candidate)
                    self.price_candidate = update
                else:
                    self.remember(update)  # evidence for a later confirmation
                return True  # the loan schedules a look at the store for a confirmation
        self.price_candidate = None
        self.accept(update)
        return True

    def corroborated(self, update: PriceUpdate, now: datetime) -> bool:
        """Does a fresh observation received since the last look (one that came late, older
        than the held price) already say what this jump says?"""
        return any(o.observed_at < update.observed_at and self.fresh_price_at(o, now)
                   and not self.jumps(o.price, update.price) for o in self.evidence)

    def accept(self, update: PriceUpdate) -> None:
        # The price it replaces is evidence only if the loan never looked at it (an earlier
        # observation of the same batch); one it looked at already had its say.
        if self.price is not None and self.price.observed_at != self.looked_at:
            self.remember(self.price)
        self.price = update

    def remember(self, update: PriceUpdate) -> None:
        self.evidence = [*self.evidence, update][-EVIDENCE_LIMIT:]

    def jumps(self, reference: Decimal, price: Decimal) -> bool:
        return abs(price - reference) > reference * self.policy.max_price_jump

    def breach_evidence(self, latest: PriceUpdate, now: datetime, level: Decimal) -> PriceUpdate | None:
        """The first observation of an unbroken run of fresh liquidation-level observations
        before `latest`, among those received since the last look (which are used up)."""
        seen, self.evidence, self.looked_at = self.evidence, [], latest.observed_at
        first: PriceUpdate | None = None
        for o in sorted(seen, key=lambda o: o.observed_at):
            if o.observed_at >= latest.observed_at or self.fresh_price_at(o, now) is None:
                continue
            current = self.ltv_at(o.price)
            if current is not None and current >= level:
                first = first or o
            else:
                first = None
        return first

    def call_level_seen(self, latest: PriceUpdate, now: datetime) -> PriceUpdate | None:
        """The newest fresh observation at the margin-call level but short of liquidation that
        came after the last look and before `latest`: one the loan never acted on because a
        later price reached it in the same workflow task (behind a backlog in a crash)."""
        call, floor = self.policy.margin_call_ltv, self.policy.liquidation_ltv

        def owed(o: PriceUpdate) -> bool:
            if o.observed_at >= latest.observed_at or (
                    self.looked_at is not None and o.observed_at <= self.looked_at):
                return False
            current = self.ltv_at(o.price) if self.fresh_price_at(o, now) else None
            return current is not None and call <= current < floor

        return max(filter(owed, self.evidence), key=lambda o: o.observed_at, default=None)

    def fresh_price_at(self, update: PriceUpdate, now: datetime) -> PriceUpdate | None:
        age = now - update.observed_at
        return None if age > timedelta(minutes=self.policy.price_staleness_minutes) else update

    def ltv_at(self, price: Decimal, debt: Decimal | None = None) -> Decimal | None:
        if self.collateral <= 0:
            return None
        return ltv(self.debt() if debt is None else debt, self.collateral, price)

    def triggers(self) -> dict[str, Decimal | None]:
        """Prices at which this loan must be looked at again (published for the market monitor)."""
        p, debt, amount = self.policy, self.debt(), self.collateral
        if self.state not in (LoanState.ACTIVE, LoanState.MARGIN_CALL):
            return {"warning": None, "margin_call": None, "liquidation": None, "cure": None}
        return {
            "warning": trigger_price(debt, amount, p.warning_ltv),
            "margin_call": trigger_price(debt, amount, p.margin_call_ltv),
            "liquidation": trigger_price(debt, amount, p.liquidation_ltv),
            "cure": trigger_price(debt, amount, p.cure_target_ltv),
        }

    def cure_amounts(self, asset: str) -> tuple[Decimal | None, Decimal | None]:
        """What cures the open call at the latest price: (top-up units, repayment USD)."""
        if self.state != LoanState.MARGIN_CALL or self.price is None:
            return None, None
        target, price = self.policy.cure_target_ltv, self.price.price
        return (
            cure_top_up(asset, self.debt(), self.collateral, price, target),
            cure_repay(self.debt(), self.collateral, price, target),
        )

    def next_reminder(self) -> tuple[datetime, int] | None:
        """The next margin-call reminder due (time, hours before the deadline)."""
        if self.state != LoanState.MARGIN_CALL or self.cure_deadline is None:
            return None
        due = [
            (self.cure_deadline - timedelta(hours=h), h)
            for h in sorted(self.policy.reminder_hours, reverse=True)
            if h not in self.reminders_sent
        ]
        return due[0] if due else None

    # --- the status query -------------------------------------------------------------------------

    def status(self, app: LoanApplication, now: datetime) -> LoanStatus:
        price = self.price.price if self.price else None
        top_up, repay = self.cure_amounts(app.collateral_asset)
        return LoanStatus(
            loan_id=app.loan_id,
            state=self.state,
            ltv=self.ltv_at(price) if price is not None else None,
            collateral_asset=app.collateral_asset,
            collateral_amount=self.collateral,
            debt_usd=self.debt_now(app, now),
            principal_usd=self.principal,
            interest_usd=usd_up(self.interest_due_now(app, now)),
            fees_usd=self.fees,
            cure_deadline=self.cure_deadline,
            cure_top_up=top_up,
            cure_repay_usd=repay,
            price=price,
            price_observed_at=self.price.observed_at if self.price else None,
            price_fresh=self.fresh_price(now) is not None,
            required_collateral=self.required_collateral,
            deposit_address=self.deposit_address,
            funding_deadline=self.funding_deadline,
            disbursed_at=self.disbursed_at,
            maturity=self.maturity,
            shortfall_usd=self.shortfall,
            reason=self.reason,
            waiting_for=self.waiting_for,
            kyc_status="manual_review" if self.awaiting_kyc_decision else self.kyc_status,
            trigger_prices=self.triggers(),
        )
