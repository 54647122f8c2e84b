"""`LoanWorkflow`: one loan, from application to close-out, as one durable workflow.

The public surface (names operators depend on, DESIGN.md): updates `kyc_decision`,
`confirm_deposit`, `top_up`, `repay`, `extend_cure`; signal `price_update`; query `status`.
Updates take one JSON object; validators reject bad input before anything is recorded, with a
message that names the field. Each update returns the loan's new state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import pydantic

    from loanflow.models import (
        CollateralDeposit,
        CureExtension,
        KycDecision,
        LoanApplication,
        LoanState,
        LoanStatus,
        PriceUpdate,
        RequestError,
        Repayment,
        parse_request,
    )
    from loanflow.money import is_whole_units
    from loanflow.policy import RiskPolicy
    from workflows.base import iso
    from workflows.loan_file import STEPS, LoanFile
    from workflows.servicing import SERVING, Servicing

WORKFLOW_TYPE = "LoanWorkflow"


def refuse(message: str, kind: str = "Rejected") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def parse(model: type[Any], raw: Any) -> Any:
    try:
        return parse_request(model, raw)
    except RequestError as err:
        raise refuse(str(err), "InvalidRequest") from None


# A malformed start input (say, "abc" for an amount) fails the run at once with pydantic's
# message naming the field, instead of retrying a workflow task forever.
@workflow.defn(name=WORKFLOW_TYPE, failure_exception_types=[pydantic.ValidationError])
class LoanWorkflow(Servicing):
    @workflow.init
    def __init__(self, app: LoanApplication) -> None:
        self.app = app
        self._init_runtime()
        if app.resume is not None:
            self.f = LoanFile.model_validate(app.resume)
            self.app = app.model_copy(update={"resume": None})
        else:
            self.f = LoanFile.open(app, self._policy(app), workflow.now())

    @staticmethod
    def _policy(app: LoanApplication) -> RiskPolicy:
        base = RiskPolicy()
        if app.policy is None:
            return base
        try:
            return app.policy.apply(base)
        except (ValueError, pydantic.ValidationError):
            return base  # reported and rejected in step_open

    @workflow.run
    async def run(self, app: LoanApplication) -> LoanStatus:
        if app.policy is not None and self.f.step == 0:
            try:
                app.policy.apply(RiskPolicy())
            except (ValueError, pydantic.ValidationError) as err:
                self.reject(f"policy: {err}")
        self.publish()
        while not self.f.state.is_final and self.f.step < len(STEPS):
            await getattr(self, f"step_{STEPS[self.f.step]}")()
            self.publish()
            if self.f.state.is_final:
                break
            self.f.step += 1
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.publish()
        await self.drain()
        return self.f.status(self.app, self.now())

    # --- query ------------------------------------------------------------------------------

    @workflow.query(name="status")
    def status(self) -> LoanStatus:
        return self.f.status(self.app, self.now())

    # --- signal -----------------------------------------------------------------------------

    @workflow.signal(name="price_update")
    def price_update(self, raw: dict[str, Any]) -> None:
        """A market observation. Signals cannot be refused, so bad ones are logged and dropped."""
        try:
            update = parse_request(PriceUpdate, raw)
        except RequestError as err:
            workflow.logger.warning("price_update ignored: %s", err)
            return
        if update.asset != self.app.collateral_asset:
            workflow.logger.warning(
                "price_update ignored: asset %s is not this loan's %s",
                update.asset,
                self.app.collateral_asset,
            )
            return
        if self.f.take_price(update):
            self.poke()

    # --- updates ----------------------------------------------------------------------------

    @workflow.update(name="kyc_decision")
    async def kyc_decision(self, raw: dict[str, Any]) -> str:
        decision = parse(KycDecision, raw)
        self.f.awaiting_kyc_decision = False
        self.audit("kyc_decision", approved=decision.approved, reviewer=decision.reviewer,
                   reason=decision.reason)
        self.kyc_outcome(decision.approved, f"{decision.reason} (reviewer {decision.reviewer})")
        self.publish()
        self.poke()
        return self.f.state.value

    @kyc_decision.validator
    def _validate_kyc_decision(self, raw: dict[str, Any]) -> None:
        parse(KycDecision, raw)
        if not self.f.awaiting_kyc_decision:
            raise refuse(f"loan {self.app.loan_id} is not waiting for a KYC decision "
                         f"(state {self.f.state.value})", "WrongState")

    @workflow.update(name="confirm_deposit")
    async def confirm_deposit(self, raw: dict[str, Any]) -> str:
        return await self._collateral_in(raw, "deposit", (LoanState.AWAITING_COLLATERAL,))

    @confirm_deposit.validator
    def _validate_confirm_deposit(self, raw: dict[str, Any]) -> None:
        self._check_collateral_in(raw, (LoanState.AWAITING_COLLATERAL,), "confirm_deposit")

    @workflow.update(name="top_up")
    async def top_up(self, raw: dict[str, Any]) -> str:
        return await self._collateral_in(raw, "top_up", SERVING)

    @top_up.validator
    def _validate_top_up(self, raw: dict[str, Any]) -> None:
        self._check_collateral_in(raw, SERVING, "top_up")

    def _check_collateral_in(self, raw: Any, states: tuple[LoanState, ...], name: str) -> None:
        deposit = parse(CollateralDeposit, raw)
        self._require_state(states, name)
        if not is_whole_units(self.app.collateral_asset, deposit.amount):
            raise refuse(f"amount: more decimal places than {self.app.collateral_asset} has",
                         "InvalidRequest")
        if deposit.tx_id in self.f.tx_ids:
            raise refuse(f"tx_id: {deposit.tx_id} was already counted for this loan",
                         "DuplicateTransaction")

    async def _collateral_in(self, raw: Any, kind: str, states: tuple[LoanState, ...]) -> str:
        async with self._lock:
            self._check_collateral_in(raw, states, kind)  # again: another update may have won
            await self.receive_collateral(parse(CollateralDeposit, raw), kind)
            if self.f.state in SERVING:
                await self.revalue(kind)
            self.publish()
        self.poke()
        return self.f.state.value

    @workflow.update(name="repay")
    async def repay(self, raw: dict[str, Any]) -> str:
        async with self._lock:
            self._validate_repay(raw)
            await self.receive_repayment(parse(Repayment, raw))
            if self.f.state in SERVING:
                await self.revalue("repay")
            self.publish()
        self.poke()
        return self.f.state.value

    @repay.validator
    def _validate_repay(self, raw: dict[str, Any]) -> None:
        repayment = parse(Repayment, raw)
        self._require_state(SERVING, "repay")
        if repayment.reference in self.f.references:
            raise refuse(f"reference: {repayment.reference} was already applied to this loan",
                         "DuplicateReference")
        debt = self.f.debt_now(self.app, self.now())
        if repayment.amount_usd > debt:
            raise refuse(f"amount_usd: {repayment.amount_usd} exceeds the debt of {debt} USD",
                         "InvalidRequest")

    @workflow.update(name="extend_cure")
    async def extend_cure(self, raw: dict[str, Any]) -> str:
        async with self._lock:
            self._validate_extend_cure(raw)
            ext = parse(CureExtension, raw)
            f = self.f
            assert f.cure_deadline is not None
            previous = f.cure_deadline
            f.cure_deadline = previous + timedelta(hours=ext.hours)
            f.extension_seq += 1
            # Reminders are relative to the deadline: those not yet due fall due again.
            f.reminders_sent = [
                h for h in f.reminders_sent
                if f.cure_deadline - timedelta(hours=h) <= self.now()
            ]
            self.audit("cure_extended", hours=ext.hours, reason=ext.reason, operator=ext.operator,
                       previous=previous, cure_deadline=f.cure_deadline)
            self.notify("cure_extended", f"{f.call_seq}:{f.extension_seq}",
                        cure_deadline=iso(f.cure_deadline), previous_deadline=iso(previous),
                        hours=str(ext.hours), reason=ext.reason)
            self.publish()
        self.poke()
        return self.f.state.value

    @extend_cure.validator
    def _validate_extend_cure(self, raw: dict[str, Any]) -> None:
        ext = parse(CureExtension, raw)
        self._require_state((LoanState.MARGIN_CALL,), "extend_cure")
        limit = self.f.policy.max_extension_hours
        if ext.hours > limit:
            raise refuse(f"hours: at most {limit} hours per extension", "InvalidRequest")

    def _require_state(self, states: tuple[LoanState, ...], name: str) -> None:
        if self.f.state not in states:
            allowed = ", ".join(s.value for s in states)
            raise refuse(
                f"{name} is not accepted while loan {self.app.loan_id} is {self.f.state.value} "
                f"(only in {allowed})",
                "WrongState",
            )
