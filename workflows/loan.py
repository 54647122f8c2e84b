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
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    import pydantic

    from loanflow.models import (
        WORKFLOW_PREFIX,
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
    from loanflow.effects import ActivityName, Claim
    from loanflow.money import fmt_usd, is_whole_units
    from loanflow.policy import RiskPolicy, new_loan_problem
    from workflows.base import SERVE, IdTaken, iso, reused_id
    from workflows.calls import effect
    from workflows.loan_file import STEPS, CarriedState, LoanFile
    from workflows.servicing import SERVING, Servicing

WORKFLOW_TYPE = "LoanWorkflow"
# Patch: a start whose loan_id is not its workflow's is refused (issue 10, item 4).
IDENTITY_CHECK = "issue10-identity-check"
# Patch: a new loan whose policy has a post-liquidation LTV of 0 or below is rejected (its first
# sale would sell everything). Asked only when it applies: a loan started before with such a
# policy replays as it ran.
POSITIVE_TARGET = "policy-positive-post-liquidation-ltv"


def refuse(message: str, kind: str = "Rejected") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def one_argument(args: Any) -> Any:
    """The single JSON object a handler takes; RequestError for any other shape (the stock CLI
    lets an operator send `--input 1 --input 2`)."""
    if not isinstance(args, tuple):
        return args
    if len(args) != 1:
        raise RequestError(f"expected exactly one JSON object, got {len(args)} arguments")
    return args[0]


def parse(model: type[Any], args: Any) -> Any:
    """Validate an update's arguments; a refusal naming the field (validators refuse before
    anything is recorded, so a malformed update never reaches its handler)."""
    try:
        return parse_request(model, one_argument(args))
    except RequestError as err:
        raise refuse(str(err), "InvalidRequest") from None


def custody_refusal(deposit: CollateralDeposit, err: ActivityError) -> Exception:
    """The custodian's refusal of a deposit (a tx id another loan counted, an amount that did
    not arrive) as the update's own one-line answer, naming the field; nothing was booked."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return refuse(f"tx_id: {deposit.tx_id}: {cause.message}", cause.type or "Refused")
    return err


# What a run is given when its input cannot be a loan at all (the run fails at once with the
# error naming the field; this only gives the failing run's queries something to read).
PLACEHOLDER = {"loan_id": "invalid", "borrower": {"id": "-", "name": "-", "email": "-",
                                                  "country": "-"},
               "principal_usd": "1", "collateral_asset": "BTC", "collateral_amount": "1",
               "term_days": 1, "annual_rate": "0"}


def start_arguments(
    args: tuple[Any, ...],
) -> tuple[LoanApplication, CarriedState | None, Exception | None]:
    """The application and the carried state from a run's arguments; an error for any other
    shape (raised by `run`, failing the run with a message naming the field)."""
    try:
        if not 1 <= len(args) <= 2:
            raise refuse(f"expected the application (and nothing else), got {len(args)} "
                         "arguments", "InvalidRequest")
        app = as_model(LoanApplication, args[0])
        carried = as_model(CarriedState, args[1]) if len(args) == 2 and args[1] is not None \
            else None
        return app, carried, None
    except (pydantic.ValidationError, ApplicationError) as err:
        return LoanApplication.model_validate(PLACEHOLDER), None, err


def as_model(model: type[Any], value: Any) -> Any:
    if isinstance(value, model):
        return value
    if not isinstance(value, dict):
        raise refuse(f"expected a JSON object for {model.__name__}, got "
                     f"{type(value).__name__}", "InvalidRequest")
    return model.model_validate(value)


def start_problem(app: LoanApplication, carried: CarriedState | None) -> str | None:
    """Why this run may not be the loan its input names, or may not carry the state it
    brings; None if it may."""
    info = workflow.info()
    expected = f"{WORKFLOW_PREFIX}{app.loan_id}"
    if info.workflow_id != expected:
        return (f"loan_id: {app.loan_id!r} does not match the workflow id {info.workflow_id!r} "
                f"(a loan's workflow id is {WORKFLOW_PREFIX}<loan_id>)")
    if (carried is not None or app.resume is not None) and carried_state(app, carried) is None:
        return "resume: state is carried only by the loan's own continue-as-new, never sent"
    return None


def carried_state(app: LoanApplication, carried: CarriedState | None) -> dict[str, Any] | None:
    """The state this run continues with: only in a run continued from the loan's own previous
    run (not a fresh start, not a cron run re-using its input)."""
    info = workflow.info()
    continued = info.continued_run_id is not None and not info.cron_schedule
    if not continued:
        return None
    if carried is not None:
        return carried.file if carried.from_run == info.continued_run_id else None
    return app.resume  # a run continued by loanflow before the state moved out of the input


# A malformed start input (say, "abc" for an amount) fails the run at once with pydantic's
# message naming the field, instead of retrying a workflow task forever.
@workflow.defn(name=WORKFLOW_TYPE, failure_exception_types=[pydantic.ValidationError])
class LoanWorkflow(Servicing):
    @workflow.init
    def __init__(self, *args: Any) -> None:
        # Arguments arrive untyped (the SDK gives up on type hints when the count differs, and
        # a caller may send any count): validated here, so that no start input fails a task.
        self._init_runtime()
        self.refused = False  # a start refused for its identity: it writes nothing at all
        app, carried, self.bad_input = start_arguments(args)
        self.app = app.model_copy(update={"resume": None})
        self.start_problem = start_problem(app, carried)
        state = carried_state(app, carried)
        if state is not None and self.start_problem is None:
            self.f = LoanFile.model_validate(state)
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
    async def run(self, *args: Any) -> LoanStatus:
        if self.bad_input is not None:
            raise self.bad_input
        app = self.app
        problem = self.start_problem
        if problem is not None and problem.startswith("loan_id"):
            # Patched: a run started before the check (its ids may disagree) replays as it ran.
            if self.patched(IDENTITY_CHECK):
                return self.refuse_identity(problem)
            problem = None  # such a run went on, unrejected
        rejection = self.start_rejection(problem)
        if rejection is not None:
            if self.claims_before_rejecting():
                holder = await self.claim_id()
                if holder is not None:
                    return self.refuse_identity(reused_id(app.loan_id, holder))
            self.reject(rejection)
        self._onboarding_run = self.f.step < SERVE and not self.is_imported()
        self.shown_as_carried()
        holder = await self.claimed_by()
        if holder is not None:
            return self.refuse_identity(reused_id(app.loan_id, holder))
        if self.adopts_unwritten():
            self.show_details()
        else:
            self.publish()
        try:
            await self.steps()
        except IdTaken as taken:  # an imported loan's claim, made with its first read
            return self.refuse_identity(reused_id(app.loan_id, taken.holder))
        except ActivityError:
            await self.written()  # a read that gave up fails the loan: not before its record
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.publish()
        await self.drain()
        return self.f.status(self.app, self.now())

    async def steps(self) -> None:
        while not self.f.state.is_final and self.f.step < len(STEPS):
            await getattr(self, f"step_{STEPS[self.f.step]}")()
            self.publish()
            if self.f.state.is_final:
                break
            self.f.step += 1

    def start_rejection(self, problem: str | None) -> str | None:
        """Why this start is rejected at once (`problem`: a malformed start; else an unsafe
        policy); None if it goes on. Decides only: `run` claims the loan id before it acts."""
        app = self.app
        if problem is not None:
            return problem
        if app.policy is None or self.f.step != 0 or self.f.state.is_final:
            return None
        try:
            app.policy.apply(RiskPolicy())
        except (ValueError, pydantic.ValidationError) as err:
            return f"policy: {err}"
        unsafe = new_loan_problem(self.f.policy)
        if unsafe is not None and workflow.patched(POSITIVE_TARGET):
            return f"policy: {unsafe}"
        return None

    async def claimed_by(self) -> str | None:
        """A new loan's claim on its loan id (`id_claim`), before any effect: the first run of
        the workflow that holds the id if that is another loan's, else None. Asked where the
        run first asks for its patch level, so that older runs ask at the same point. An
        imported loan claims with the read of its migration record (`Migration.adopt`)."""
        if self.is_imported():
            return None
        return await self.claim_id()

    async def claim_id(self) -> str | None:
        """Claim the loan id for this run (`id_claim`, a local activity): the run holding it if
        that is another loan's, else None (also when this run makes no claim)."""
        request = self.id_claim()
        if request is None:
            return None
        claim = await effect(ActivityName.CLAIM_LOAN_ID, request, Claim,
                             summary="claim loan id", local=True)
        return None if claim.run_id == request.run_id else claim.run_id

    def refuse_identity(self, problem: str) -> LoanStatus:
        """A start whose loan_id is not its workflow's: REJECTED, and nothing written at all.
        Every record, notice and ledger key of a loan is keyed by loan_id, so anything this
        run wrote would land on (or block) the loan it names."""
        self.refused = True
        self.f.state, self.f.reason = LoanState.REJECTED, problem
        workflow.logger.warning("start refused: %s", problem)
        workflow.set_current_details(f"**REJECTED**\n\nreason: {problem}")
        return self.f.status(self.app, self.now())

    # --- query ------------------------------------------------------------------------------

    @workflow.query(name="status")
    def status(self) -> LoanStatus:
        return self.f.status(self.app, self.now())

    # --- signal -----------------------------------------------------------------------------

    @workflow.signal(name="price_update")
    def price_update(self, *args: Any) -> None:
        """A market observation. Signals cannot be refused, so anything malformed (wrong type,
        several arguments, out-of-range price) is logged and dropped: no input fails the task."""
        try:
            update = parse_request(PriceUpdate, one_argument(args))
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
        if self.f.state.is_final or self.refused:
            return
        if self.f.take_price(update, self.rules_clock()):
            self.poke()

    # --- updates ----------------------------------------------------------------------------

    @workflow.update(name="kyc_decision")
    async def kyc_decision(self, *args: Any) -> str:
        decision = parse(KycDecision, args)
        self.f.awaiting_kyc_decision = False
        self.audit("kyc_decision", approved=decision.approved, reviewer=decision.reviewer,
                   reason=decision.reason)
        self.kyc_outcome(decision.approved, f"{decision.reason} (reviewer {decision.reviewer})")
        self.publish()
        self.poke()
        return self.f.state.value

    @kyc_decision.validator
    def _validate_kyc_decision(self, *args: Any) -> None:
        parse(KycDecision, args)
        if not self.f.awaiting_kyc_decision:
            raise refuse(f"loan {self.app.loan_id} is not waiting for a KYC decision "
                         f"(state {self.f.state.value})", "WrongState")

    @workflow.update(name="confirm_deposit")
    async def confirm_deposit(self, *args: Any) -> str:
        return await self._collateral_in(args, "deposit", (LoanState.AWAITING_COLLATERAL,))

    @confirm_deposit.validator
    def _validate_confirm_deposit(self, *args: Any) -> None:
        self._check_collateral_in(args, (LoanState.AWAITING_COLLATERAL,), "confirm_deposit")

    @workflow.update(name="top_up")
    async def top_up(self, *args: Any) -> str:
        return await self._collateral_in(args, "top_up", SERVING)

    @top_up.validator
    def _validate_top_up(self, *args: Any) -> None:
        self._check_collateral_in(args, SERVING, "top_up")

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
            deposit = parse(CollateralDeposit, raw)
            try:
                await self.receive_collateral(deposit, kind)
            except ActivityError as err:
                raise custody_refusal(deposit, err) from None
            if self.f.state in SERVING:
                await self.revalue(kind)
            self.publish()
        self.poke()
        return self.f.state.value

    @workflow.update(name="repay")
    async def repay(self, *args: Any) -> str:
        async with self._lock:
            self._validate_repay(*args)
            await self.receive_repayment(parse(Repayment, args))
            if self.f.state in SERVING:
                await self.revalue("repay")
            self.publish()
        self.poke()
        return self.f.state.value

    @repay.validator
    def _validate_repay(self, *args: Any) -> None:
        repayment = parse(Repayment, args)
        self._require_state(SERVING, "repay")
        if repayment.reference in self.f.references:
            raise refuse(f"reference: {repayment.reference} was already applied to this loan",
                         "DuplicateReference")
        debt = self.f.debt_now(self.app, self.now())
        if repayment.amount_usd > debt:
            raise refuse(f"amount_usd: {fmt_usd(repayment.amount_usd)} exceeds the debt of "
                         f"{fmt_usd(debt)}",
                         "InvalidRequest")

    @workflow.update(name="extend_cure")
    async def extend_cure(self, *args: Any) -> str:
        async with self._lock:
            self._validate_extend_cure(*args)
            ext = parse(CureExtension, args)
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
    def _validate_extend_cure(self, *args: Any) -> None:
        ext = parse(CureExtension, args)
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
