"""The loan's file: every fact the workflow keeps, and the figures derived from them.

`LoanFile` is the one state object of `LoanWorkflow`. It is carried whole across
continue-as-new (as JSON inside `LoanApplication.resume`), so nothing a loan knows lives
anywhere else. Everything here is pure and deterministic: no clock, no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, Field

from loanflow.models import LoanApplication, LoanState, LoanStatus, PriceUpdate
from loanflow.money import usd_up
from loanflow.policy import RiskPolicy
from loanflow.risk import Balances, cure_repay, cure_top_up, daily_interest, ltv, trigger_price

ZERO = Decimal(0)
DAY = timedelta(days=1)

# Steps of a loan's life, in order; `LoanFile.step` says which one a resumed run continues.
STEPS = ("open", "kyc", "approve", "fund", "disburse", "serve")


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
        age = now - self.price.observed_at
        if age > timedelta(minutes=self.policy.price_staleness_minutes):
            return None
        return self.price

    def take_price(self, update: PriceUpdate) -> bool:
        """Keep the newest observation; True if this one is newer than what we had."""
        if self.price is not None and update.observed_at <= self.price.observed_at:
            return False
        self.price = update
        return True

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
            kyc_status="manual_review" if self.awaiting_kyc_decision else self.kyc_status,
            trigger_prices=self.triggers(),
        )
