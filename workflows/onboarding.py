"""From application to disbursement: KYC, approval on a fresh price, collateral funding, payout."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from loanflow.effects import (
        ActivityName,
        CollateralRelease,
        DepositAddress,
        DepositAddressRequest,
        PayoutReceipt,
        PayoutRequest,
        ScreeningRequest,
        ScreeningResult,
        TransferReceipt,
        effect_key,
    )
    from loanflow.loan_metadata import people_time
    from loanflow.models import ApplicationProblem, LoanState, check_application
    from loanflow.money import fmt_ratio, fmt_usd, units_up, wide
    from loanflow.risk import ltv
    from workflows.base import iso, text
    from workflows.calls import effect
    from workflows.migration import Migration

# While a loan needs a fresh price to go on and none has come, it looks at the stored market
# observations this often (the monitor only signals loans that have trigger prices).
PRICE_RECHECK = timedelta(minutes=5)


# Patch: a refused import sends no notice (`Onboarding.refuse_import`). Asked only when an
# import is refused: a refusal from before replays with its notice.
UNADDRESSED_REFUSAL = "import-refusal-unaddressed"


class Onboarding(Migration):
    async def step_open(self) -> None:
        try:
            check_application(self.app)
        except ApplicationProblem as problem:
            self.reject(str(problem))
            return
        if self.is_imported():
            # A migrated loan starts ACTIVE from its migration record (workflows.migration).
            problem = await self.adopt()
            if problem is not None:
                self.refuse_import(problem)
            return
        app = self.app
        self.notify(
            "application_received",
            principal_usd=text(app.principal_usd),
            collateral_asset=app.collateral_asset,
            collateral_amount=text(app.collateral_amount),
            term_days=app.term_days,
            annual_rate=text(app.annual_rate),
        )
        self.audit("application", principal_usd=app.principal_usd, term_days=app.term_days)

    def reject(self, reason: str, kind: str = "application_rejected") -> None:
        self.set_state(LoanState.REJECTED, reason)
        self.notify(kind, reason=reason)

    def refuse_import(self, reason: str) -> None:
        """REJECTED: a start of an imported loan that has no migration record, or names another
        borrower or other figures than its record. It is no one's application: the borrower
        it names did not ask for it, and its contact details may be an attacker's (the stock
        CLI lets anyone with access start one under a real borrower's id). So its snapshot does
        not record them, and, patched, it mails no one: the operator sees the reason on the
        loan. Before, the refusal recorded the start's contact details as the borrower's
        (every later notice of theirs went there) and mailed them the refusal."""
        if not workflow.patched(UNADDRESSED_REFUSAL):
            self.reject(reason)
            return
        self.contact_unverified = True
        self.set_state(LoanState.REJECTED, reason)

    async def step_kyc(self) -> None:
        f = self.f
        if not f.awaiting_kyc_decision:
            result = await self.read(
                ActivityName.SCREEN_BORROWER,
                ScreeningRequest(
                    loan_id=self.app.loan_id,
                    borrower=self.app.borrower,
                    principal_usd=self.app.principal_usd,
                ),
                ScreeningResult,
                summary="KYC screening",
            )
            self.audit("kyc_screening", outcome=result.outcome, reasons=result.reasons)
            if result.outcome != "review":
                self.kyc_outcome(result.outcome == "approved", "; ".join(result.reasons))
                return
            f.awaiting_kyc_decision = True
            f.kyc_deadline = self.now() + timedelta(hours=f.policy.kyc_review_hours)
            f.reason = "manual KYC review: " + "; ".join(result.reasons)
            self.publish()
        while f.awaiting_kyc_decision:
            if self.now() >= f.kyc_deadline:
                f.awaiting_kyc_decision = False
                self.kyc_outcome(False, "KYC review timed out")
                return
            await self.wait(f.kyc_deadline, "KYC review deadline")

    def kyc_outcome(self, approved: bool, reason: str) -> None:
        self.f.kyc_status = "approved" if approved else "rejected"
        if approved:
            self.f.reason = None
            self.notify("kyc_approved")
        else:
            self.reject(reason or "KYC screening failed", kind="kyc_rejected")

    async def step_approve(self) -> None:
        """The requested principal must fit under the max initial LTV at a fresh price."""
        price = await self.await_fresh_price("approval")
        if price is None:
            return
        app, limit = self.app, self.f.policy.max_initial_ltv
        initial = ltv(app.principal_usd, app.collateral_amount, price.price)
        self.audit("approval", price=price, ltv=initial, max_initial_ltv=limit)
        if initial is None or initial > limit:
            self.reject(
                f"requested LTV {fmt_ratio(initial)} is above the maximum initial LTV "
                f"{fmt_ratio(limit)} at {app.collateral_asset} {fmt_usd(price.price)}"
            )

    async def await_fresh_price(self, purpose: str, deadline=None):  # type: ignore[no-untyped-def]
        """Wait for a fresh price: signals, or the stored observations re-read every few minutes.
        Gives up (rejects) after the funding period if the market stays dark."""
        give_up = deadline or self.now() + timedelta(hours=self.f.policy.funding_deadline_hours)
        while True:
            fresh = self.f.fresh_price(self.now())
            if fresh is None:
                await self.fetch_price()
                fresh = self.f.fresh_price(self.now())
            if fresh is not None:
                self.stop_waiting_for_price()
                return fresh
            if self.now() >= give_up:
                self.stop_waiting_for_price()
                self.reject(f"no fresh {self.app.collateral_asset} price for {purpose}")
                return None
            self.audit("waiting_for_price", purpose=purpose)
            # The status says what the loan waits for (a state, not a command: replays as before).
            self.f.waiting_for = "price"
            self.f.reason = self.waiting_for_price(purpose, give_up)
            self.publish()
            await self.wait(min(self.now() + PRICE_RECHECK, give_up), f"price re-check ({purpose})")

    def waiting_for_price(self, purpose: str, give_up) -> str:  # type: ignore[no-untyped-def]
        asset, minutes = self.app.collateral_asset, self.f.policy.price_staleness_minutes
        return (f"waiting for a fresh {asset} price for {purpose} (none observed in the last "
                f"{minutes} min): a market tick or `loanflow price {asset} ...` brings one; it "
                f"gives up {people_time(give_up)}")

    def stop_waiting_for_price(self) -> None:
        f = self.f
        if f.waiting_for == "price":
            f.waiting_for = None
            if f.reason and f.reason.startswith("waiting for a fresh"):
                f.reason = None

    async def step_fund(self) -> None:
        f, app = self.f, self.app
        if f.deposit_address is None:
            address = await effect(
                ActivityName.OPEN_DEPOSIT_ADDRESS,
                DepositAddressRequest(loan_id=app.loan_id, asset=app.collateral_asset),
                DepositAddress,
                summary="open deposit address",
            )
            f.deposit_address = address.address
            f.funding_deadline = self.now() + timedelta(hours=f.policy.funding_deadline_hours)
            self.set_state(LoanState.AWAITING_COLLATERAL)
            self.send_deposit_instructions()
        while f.state == LoanState.AWAITING_COLLATERAL:
            self.publish()
            if f.collateral >= f.required_collateral and await self.fits_at_disbursement():
                return
            if self.now() >= f.funding_deadline:
                await self.cancel_unfunded()
                return
            await self.wait(f.funding_deadline, "collateral funding deadline")

    def send_deposit_instructions(self, seq: int | None = None) -> None:
        f = self.f
        self.notify(
            "deposit_instructions",
            seq,
            address=f.deposit_address,
            collateral_asset=self.app.collateral_asset,
            amount_required=text(f.required_collateral - f.collateral),
            funding_deadline=iso(f.funding_deadline),
        )

    async def fits_at_disbursement(self) -> bool:
        """Disbursement needs a fresh price too; if the market fell while the borrower was
        funding, ask for enough more collateral to fit under the max initial LTV."""
        price = await self.await_fresh_price("disbursement", self.f.funding_deadline)
        if price is None:
            return False
        f, limit = self.f, self.f.policy.max_initial_ltv
        current = ltv(self.app.principal_usd, f.collateral, price.price)
        if current is not None and current <= limit:
            return True
        with wide():
            needed = units_up(self.app.collateral_asset, self.app.principal_usd / (limit * price.price))
        self.audit("collateral_short", price=price, ltv=current, required=needed)
        if needed > f.required_collateral:
            f.required_collateral = needed
            self.send_deposit_instructions(seq=f"more-{needed}")
        return False

    async def cancel_unfunded(self) -> None:
        f = self.f
        self.set_state(LoanState.CANCELLED, "collateral not received by the funding deadline")
        returned = f.collateral
        if returned > 0:
            await self.release_collateral("cancel", "loan cancelled: funding deadline passed")
        self.notify(
            "loan_cancelled",
            reason=f.reason,
            collateral_returned=text(returned),
            collateral_asset=self.app.collateral_asset,
        )

    async def release_collateral(self, step: str, reason: str) -> None:
        f = self.f
        amount = f.collateral
        await effect(
            ActivityName.RELEASE_COLLATERAL,
            CollateralRelease(
                key=effect_key(self.app.loan_id, f"release:{step}"),
                loan_id=self.app.loan_id,
                asset=self.app.collateral_asset,
                amount=amount,
                reason=reason,
            ),
            TransferReceipt,
            summary="release collateral",
        )
        f.collateral -= amount
        self.audit("collateral_released", amount=amount, reason=reason)

    async def pay_out(self, step: str, amount: Decimal, purpose: str, summary: str) -> None:
        """Send dollars to the borrower (the principal, or a sale's surplus), once per key."""
        app = self.app
        await effect(
            ActivityName.DISBURSE,
            PayoutRequest(
                key=effect_key(app.loan_id, step),
                loan_id=app.loan_id,
                borrower_id=app.borrower.id,
                amount_usd=amount,
                purpose=purpose,  # type: ignore[arg-type]
            ),
            PayoutReceipt,
            summary=summary,
        )

    async def step_disburse(self) -> None:
        f, app = self.f, self.app
        await self.pay_out("disburse", app.principal_usd, "disbursement", "disburse principal")
        now = self.now()
        f.principal = app.principal_usd
        f.disbursed_at = f.interest_through = f.last_revaluation = now
        f.maturity = now + timedelta(days=app.term_days)
        self.set_state(LoanState.ACTIVE)
        price = f.price
        self.audit("disbursed", price=price, principal=app.principal_usd, maturity=f.maturity)
        self.notify(
            "loan_disbursed",
            principal_usd=text(app.principal_usd),
            collateral_asset=app.collateral_asset,
            collateral_amount=text(f.collateral),
            ltv=text(f.ltv_at(price.price)) if price else None,
            price=text(price.price) if price else None,
            maturity=iso(f.maturity),
            annual_rate=text(app.annual_rate),
        )
