"""The shared machinery of `LoanWorkflow`: the file, the clock, notices, the audit trail, the
read model, waiting, and continue-as-new. The lifecycle itself lives in `onboarding` and
`servicing`; this module holds what both use."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from loanflow import search_attributes as sa
    from loanflow.effects import (
        ActivityName,
        AuditEntry,
        ClaimRequest,
        LatestPrice,
        LedgerLine,
        LedgerPosting,
        LoanRecord,
        LoanSnapshot,
        Notice,
        NoticeReceipt,
        PostingReceipt,
        PriceRequest,
        Refreshed,
        RefreshRequest,
        effect_key,
    )
    from loanflow import ledger as account
    from loanflow.loan_metadata import current_details
    from loanflow.models import LoanApplication, LoanState
    from loanflow.money import usd_up
    from loanflow.risk import ltv as ltv_of
    from loanflow.risk import shown_ltv
    from workflows.calls import NOTICE_HEARTBEAT, NOTICE_TIMEOUT, effect, read, record
    from workflows.loan_file import STEPS, CarriedState, LoanFile

# Patches (workflow.patched) of issue 10; loans started before them replay without them.
# The loan-side price rules: future-dated observations dropped, jumps held for confirmation,
# earlier observations of a batch and late arrivals kept as wick evidence.
PRICE_RULES = "issue10-price-rules"
# A poke that arrives while the loan is busy (revaluing, waiting on an effect) is kept for the
# next wait instead of being cleared on entry to it.
WAKE_KEPT = "issue10-wake-kept"
# Patch of issue 11: a loan's notices are delivered one after another, in the order of its
# events. Run side by side, a notice deferred for a moment (the borrower's contact details not
# yet in the database, a 4xx) was overtaken by the next ("Identity verified" arriving before
# "We have received your application"), and two notices of one workflow task raced over SMTP.
ORDERED_NOTICES = "issue11-ordered-notices"
# Patch of issue 11: while a margin call is open its deadline is a timer of its own, named
# CURE_DEADLINE, so that the operator sees it (`LoanBase.cure_timer`).
CURE_TIMER = "issue11-cure-deadline-timer"
CURE_DEADLINE = "cure deadline"
# Patch of issue 12: `publish()` marks the loan changed, and one flush writes the read model
# (and upserts the search attributes) once the activation's other work is done and no read of
# our own database is in flight, instead of once per call (`LoanBase.flush_when_settled`).
# An imported loan wrote three snapshots in its first tasks, an onboarded one about eight.
# It is also the mark of a run started by code that has every patch above: such a run asks
# for no other patch (`LoanBase.patched`).
ONE_PUBLISH = "issue12-one-publish-per-task"
# Patch of issue 9: a loan's daily look publishes its snapshot and reads the newest stored
# observation in one local activity (`refresh_loan`, `LoanBase.refresh`) instead of two. In
# `loanflow stress` every simulated day wakes every loan at once, and each local activity cost
# a 1,000-loan wave about 2.5 s. Like ONE_PUBLISH before it, it is the first patch a new run
# asks for, and the only one: it implies every patch above.
ONE_LOOK = "issue9-one-local-activity-per-look"
# Patch of issue 12: a run that took a loan through its onboarding continues as new once the
# loan is serving and the run's effects have landed (`LoanBase.fresh_run_due`), so that the run
# a worker keeps cached for the loan's months of servicing starts from the loan's file instead
# of carrying the SDK core's state for its onboarding's 60-odd events (the machines of every
# activity, local activity, timer and upsert, with their payloads). At 10,000 onboarded loans
# that state put each worker process over 1 GiB. A continued run of a run with it does not
# write again what its previous run wrote just before continuing (`LoanBase.shown_as_carried`).
# The first patch a new run asks for, and the only one: it implies every patch above.
FRESH_RUN = "issue12-fresh-run-once-serving"
# Patch of issue 12: an imported loan is opened in its first workflow task. Its two opening
# effects (the deposit address and the opening balances) run as local activities after the read
# of its migration record, and its read model is written (and its search attributes upserted)
# first once it is ACTIVE, not also at its start, where it showed the loan for a moment in the
# state an application opens in. Before, it took three workflow tasks, three activities through
# the server and two writes (27 history events); now two tasks, one activity (its notice) and
# one write (18). `loanflow book import` opens thousands of loans at once. The first patch a new
# run asks for, and the only one: it implies every patch above.
IMPORT_IN_ONE_TASK = "issue12-import-opened-in-one-task"
# Patch: a new loan workflow claims its loan id before anything else (`LoanWorkflow.claimed_by`,
# `loanflow.store.claims`), and refuses itself, writing and sending nothing, if an earlier loan
# holds it. Every effect of a loan is keyed by its loan id: a second workflow under a closed
# loan's id (the stock CLI's default id reuse policy starts one) found the first loan's
# transfers, notices and opening balances done and carried on as if they were its own (an
# imported loan repaid and closed came back ACTIVE with its debt). The first patch a new run
# asks for, and the only one: it implies every patch above.
CLAIMED_ID = "loan-id-claimed-by-its-first-run"
# Patch: a start that will be rejected (a malformed field, an unsafe policy) claims its loan id
# before it rejects itself (`LoanWorkflow.run`, `start_rejection`). Under CLAIMED_ID alone the
# rejection came first, so a start under an ended loan's id with a bad policy scheduled an
# "application rejected" notice keyed by that id; addressed from the earlier loan's
# application, it reached the earlier borrower about a loan they had repaid. Now such a start
# is refused as a reused id and sends nothing. The first patch a new run asks for, and the
# only one: it implies every patch above.
CLAIM_BEFORE_REJECTING = "loan-id-claimed-before-a-rejection"
# Patch of issue 12: a loan's notices are recorded with its read-model write, in the same
# local activity (`LoanRecord.notices`), and the worker's notice relay mails them from the
# outbox (`loanflow.mail.relay`). Each notice was an activity of its own, scheduled through the
# server and completed in a workflow task of its own: in a 1,000-loan import that was a third
# of the server's CPU and one of an imported loan's two workflow tasks; in a crash, one more
# task per called loan while the margin calls queue. The notice is durable from the write
# (the relay resumes after a crash, and each message still goes out once per server
# acceptance), and a slow or absent mail server no longer holds any loan's task. The first
# patch a new run asks for, and the only one: it implies every patch above.
NOTICES_WITH_WRITES = "notices-recorded-with-the-read-model"
# The patches a run's `level` is read from, newest (highest level) first.
LEVELS = (NOTICES_WITH_WRITES, CLAIM_BEFORE_REJECTING, CLAIMED_ID, IMPORT_IN_ONE_TASK,
          FRESH_RUN, ONE_LOOK, ONE_PUBLISH)


class IdTaken(Exception):
    """Raised out of a new loan's steps when its loan id is an earlier loan's (`holder`: that
    loan's first run, empty if it ended before ids were claimed); `LoanWorkflow.run` refuses
    the start. Nothing was written or sent before it."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def reused_id(loan_id: str, holder: str) -> str:
    """Why a start under an earlier loan's id is refused."""
    earlier = f"workflow run {holder}" if holder else "one that ended before ids were claimed"
    return (f"loan_id: {loan_id!r} belongs to an earlier loan ({earlier}): a loan id is never "
            "used again; open this loan under a new id")


IMMINENT = timedelta(minutes=15)
SERVE = STEPS.index("serve")


def iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class LoanBase:
    app: LoanApplication
    f: LoanFile

    def _init_runtime(self) -> None:
        self._wake = False
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._audit: list[AuditEntry] = []
        self._notices: list[Notice] = []  # to be recorded with the next write (NOTICES_WITH_WRITES)
        self._published: tuple[Any, ...] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: datetime | None = None
        self._last_notice: asyncio.Task[None] | None = None
        self._cure_timer: asyncio.Task[None] | None = None
        self._cure_at: datetime | None = None
        self._level: int | None = None  # 7: NOTICES_WITH_WRITES ... 1: ONE_PUBLISH (`level`)
        self._dirty = False  # published but not yet flushed (ONE_PUBLISH)
        self._reads = 0  # reads of our own database in flight (`read`)
        self._flusher: asyncio.Task[None] | None = None
        self._last_record: asyncio.Task[None] | None = None
        self._onboarding_run = False  # this run took the loan through onboarding (FRESH_RUN)
        # The start's contact details are not the borrower's to record (a refused import).
        self.contact_unverified = False

    # --- clock and waiting ------------------------------------------------------------------------

    @staticmethod
    def now() -> datetime:
        return workflow.now()

    def poke(self) -> None:
        """Something changed: the main loop should look at the loan again."""
        self._wake = True

    def patched(self, patch_id: str) -> bool:
        """`workflow.patched`, asked only of runs started before ONE_PUBLISH. The first patch
        a run asks for is ONE_PUBLISH, so it is asked in the run's first task and never after
        another patch was answered False: a run that has it was started by code with every
        older patch, and each of them is on. Asking costs a new run a marker and, on a server
        with search attributes, an upsert of TemporalChangeVersion per patch: an imported loan
        asked for 4 patches in its first tasks (8 of its 36 history events), an onboarded one
        for 7."""
        return self.current() or workflow.patched(patch_id)

    def current(self) -> bool:
        """Was this run started with ONE_PUBLISH in (every older patch of loanflow on)?"""
        return self.level() >= 1

    def one_look(self) -> bool:
        """Was this run started with ONE_LOOK in (the daily look in one local activity)?"""
        return self.level() >= 2

    def level(self) -> int:
        """Which of the patches that imply all older ones this run was started with, asked
        once, in the run's first task, newest first: a new run records only the newest
        patch's marker; a run recorded with an older one (say ONE_LOOK) has no marker of the
        newer ones, so those questions are answered False (no command) and its own as it was
        when the run started."""
        if self._level is None:
            self._level = next((len(LEVELS) - n for n, patch in enumerate(LEVELS)
                                if workflow.patched(patch)), 0)
        return self._level

    def fresh_run(self) -> bool:
        """Was this run started with FRESH_RUN in (a new run once onboarding is done)?"""
        return self.level() >= 3

    def import_in_one_task(self) -> bool:
        """Was this run started with IMPORT_IN_ONE_TASK in (an imported loan is opened in its
        first task and first written once ACTIVE)?"""
        return self.level() >= 4

    def claims_its_id(self) -> bool:
        """Was this run started with CLAIMED_ID in (a new loan claims its loan id first)?"""
        return self.level() >= 5

    def notices_with_writes(self) -> bool:
        """Was this run started with NOTICES_WITH_WRITES in (notices recorded with the
        read-model write, mailed by the relay)?"""
        return self.level() >= 7

    def claims_before_rejecting(self) -> bool:
        """Was this run started with CLAIM_BEFORE_REJECTING in (a start about to be rejected
        claims its loan id first)?"""
        return self.level() >= 6

    def id_claim(self) -> ClaimRequest | None:
        """The claim a new loan makes on its loan id before any effect, as its first run
        (CLAIMED_ID); None for a continued run (its first run claimed), a run from before the
        patch and a start rejected already (a run from before CLAIM_BEFORE_REJECTING
        scheduled its rejection before it claimed); the last two claim with their first write
        (`_claim_run`)."""
        info = workflow.info()
        if info.continued_run_id is not None or self.f.state.is_final:
            return None
        if not self.claims_its_id():
            return None
        self.f.id_claimed = True
        return ClaimRequest(loan_id=self.app.loan_id, run_id=info.first_execution_run_id,
                            borrower_id=self.app.borrower.id)

    def price_rules(self) -> bool:
        return self.patched(PRICE_RULES)

    def rules_clock(self) -> datetime | None:
        """The loan's clock for the price rules; None in runs recorded before them."""
        return self.now() if self.price_rules() else None

    async def wait(self, until: datetime | None, why: str) -> None:
        """Wait until `until` (a named timer, kept across wake-ups while it is unchanged) or until
        something pokes the loan, then continue as new if history has grown large. While a
        margin call is open its deadline wakes the loan too (`cure_timer`)."""
        if not self.patched(WAKE_KEPT):
            self._wake = False  # the old behaviour lost pokes that came while the loan was busy
        if until != self._timer_at:
            self.drop_timer()
            self._timer, self._timer_at = None, until
            if until is not None:
                delay = max(until - self.now(), timedelta(seconds=1))
                self._timer = asyncio.ensure_future(workflow.sleep(delay, summary=why))
        timer, deadline = self._timer, self.cure_timer()
        await workflow.wait_condition(lambda: self._wake or (timer is not None and timer.done())
                                      or (deadline is not None and deadline.done())
                                      or self.fresh_run_due())
        self._wake = False
        if timer is not None and timer.done():
            self._timer, self._timer_at = None, None
        await self.maybe_continue_as_new()

    def cure_timer(self) -> asyncio.Task[None] | None:
        """While a margin call is open, a timer of its own named "cure deadline" that fires at
        the deadline: the operator sees it in the Web UI whatever else the loan waits for (a
        reminder, the daily revaluation). Moved when an operator extends the call, dropped
        when the call ends."""
        f = self.f
        due = f.cure_deadline if f.state == LoanState.MARGIN_CALL else None
        due = due if due is not None and due > self.now() else None
        if due is None and self._cure_timer is None:
            return None
        if not self.patched(CURE_TIMER):
            return None
        if due != self._cure_at:
            self.release(self._cure_timer, self._cure_at)
            self._cure_timer, self._cure_at = None, due
            if due is not None:
                self._cure_timer = asyncio.ensure_future(
                    workflow.sleep(due - self.now(), summary=CURE_DEADLINE))
        return self._cure_timer

    def drop_timer(self) -> None:
        self.release(self._timer, self._timer_at)

    def release(self, timer: asyncio.Task[None] | None, due: datetime | None) -> None:
        """Let go of a timer: cancel it, unless it is due within `IMMINENT`; such a
        timer is left to fire (a wake-up that finds nothing to do). The time-skipping test
        server wedges a run for good when a task's completion cancels a timer that fired while
        the task was in flight (temporalio/sdk-java#3088, open): `loanflow stress` met it in
        every busy crash hour, where a minute passes in real time while the worker catches up
        and the one-minute liquidation re-checks fall due. Far-off timers are still cancelled,
        so histories stay as small as before."""
        if timer is None:
            return
        imminent = due is not None and due - self.now() <= IMMINENT
        if imminent and self.patched("keep-imminent-timers"):
            return
        timer.cancel()

    async def maybe_continue_as_new(self) -> None:
        info = workflow.info()
        limit = self.app.history_limit
        too_long = limit is not None and info.get_current_history_length() >= limit
        if not (info.is_continue_as_new_suggested() or too_long or self.fresh_run_due()):
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self.drain()
        self.drop_timer()
        self.release(self._cure_timer, self._cure_at)
        workflow.logger.info("continuing as new at %s events", info.get_current_history_length())
        carried = CarriedState(from_run=info.run_id, file=self.f.model_dump(mode="json"))
        workflow.continue_as_new(args=[self.app, carried], memo=workflow.memo())

    def fresh_run_due(self) -> bool:
        """FRESH_RUN: this run took the loan through its onboarding, the loan is serving (its
        next step is servicing: a run continued there starts with a look at the loan) and
        everything the run started has landed (no notice, write or read out; nothing
        published and unwritten), so continuing now hands the next run a loan at rest. An
        SMTP outage that holds the disbursement notice only delays it: the loan serves
        meanwhile in this run."""
        return (self._onboarding_run and self.f.step == SERVE and not self.f.state.is_final
                and not self._background and not self._dirty and not self._reads
                and self.fresh_run())

    def shown_as_carried(self) -> None:
        """In a continued run started with FRESH_RUN in: the run before it, whatever its
        code, drained before continuing (`maybe_continue_as_new`): it wrote the read model and
        upserted the search attributes (which the server hands a continued run), so what the
        loan shows is already published and the first flush writes only what changes from
        here. (Without it every onboarded loan wrote its unchanged snapshot once more.)"""
        if workflow.info().continued_run_id is not None and self.fresh_run():
            self._published = self._shown()

    # --- background effects (notices, read model) -----------------------------------------------

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run a side task (a notice, a read-model write) without holding up the loan's
        decisions; `drain` waits for all of them before the run ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        self.flush()  # what was published and not yet written goes before the run ends
        while self._background:
            await asyncio.gather(*list(self._background))

    def notify(self, kind: str, seq: str | int | None = None, **data: Any) -> None:
        """Tell the borrower: one notice per business key, delivered in the background."""
        step = f"notice:{kind}"
        notice = Notice(
            key=effect_key(self.app.loan_id, step, seq),
            loan_id=self.app.loan_id,
            kind=kind,
            # Only the id: the notice activity reads the contact details from the database.
            # (The activity's input changes, not the commands: no patch is needed to replay.)
            borrower_id=self.app.borrower.id,
            data={k: v for k, v in data.items() if v is not None},
        )
        if self.notices_with_writes():
            # Recorded by the task's flush (the level was asked in the run's first task).
            self._notices.append(notice)
            self.mark_dirty()
            return
        if not self.patched(ORDERED_NOTICES):
            self.spawn(self._deliver(notice))  # histories from before: side by side
            return
        # Each notice waits for the one before it; its key still makes it exactly once.
        self._last_notice = self.spawn(self._deliver(notice, after=self._last_notice))

    async def _deliver(self, notice: Notice, after: asyncio.Task[None] | None = None) -> None:
        if after is not None:
            await workflow.wait_condition(after.done)
        try:
            await effect(ActivityName.RECORD_NOTICE, notice, NoticeReceipt,
                         summary=notice.kind, timeout=NOTICE_TIMEOUT,
                         heartbeat=NOTICE_HEARTBEAT)
        except ActivityError as err:
            # A notice that can never be delivered is raised to operations by the notice
            # activity itself; it must not stop the loan.
            workflow.logger.error("notice %s failed: %s", notice.key, err)

    def audit(self, kind: str, *, price: Any = None, **detail: Any) -> None:
        """Record a decision with the price and thresholds it used (flushed with the read model)."""
        self.f.audit_seq += 1
        observation = price if price is not None else None
        self._audit.append(
            AuditEntry(
                key=effect_key(self.app.loan_id, "audit", self.f.audit_seq),
                at=self.now(),
                kind=kind,
                state=self.f.state.value,
                detail={k: _jsonable(v) for k, v in detail.items()},
                price=observation.price if observation is not None else None,
                observation_id=observation.observation_id if observation is not None else None,
            )
        )

    def set_state(self, state: LoanState, reason: str | None = None) -> None:
        if state != self.f.state:
            self.audit("state", previous=self.f.state.value, new=state.value, reason=reason)
            self.f.state = state
        if reason:
            self.f.reason = reason

    async def post(self, step: str, memo: str, lines: list[LedgerLine], *,
                   local: bool = False) -> None:
        """Book a ledger entry once, by its key (`local`: as a local activity)."""
        posting = LedgerPosting(
            key=effect_key(self.app.loan_id, step), loan_id=self.app.loan_id, memo=memo, lines=lines
        )
        await effect(ActivityName.POST_LEDGER, posting, PostingReceipt, summary=memo, local=local)

    async def post_interest(self) -> None:
        """Bring the ledger up to date with accrued interest, rounded up to the cent."""
        self.f.accrue(self.app, self.now())
        amount = usd_up(self.f.interest) - self.f.interest_posted
        self.f.interest = usd_up(self.f.interest)
        if amount <= 0:
            return
        self.f.interest_postings += 1
        loan = self.app.loan_id
        await self.post(
            f"interest:{self.f.interest_postings}",
            f"interest accrued to {iso(self.f.interest_through)}",
            [
                LedgerLine(account=account.receivable(loan), currency="USD", amount=amount),
                LedgerLine(account=account.INTEREST_INCOME, currency="USD", amount=-amount),
            ],
        )
        self.f.interest_posted += amount
        self.f.total_interest += amount

    async def fetch_price(self) -> None:
        """Read the newest stored market observation (the safety net when no signal came)."""
        try:
            latest = await self.read(
                ActivityName.LATEST_PRICE,
                PriceRequest(asset=self.app.collateral_asset, now=self.now()),
                LatestPrice,
                summary="latest stored price",
            )
        except ActivityError as err:
            # An unreadable store (or a stored row no loan may take) is no price: the loan
            # waits for the next chance rather than failing.
            workflow.logger.warning("latest stored price unavailable: %s", err.cause or err)
            return
        if latest.observation is not None:
            self.f.take_price(latest.observation, self.rules_clock(), stored=True)

    # --- the read model, search attributes and UI details -------------------------------------------

    def publish(self) -> None:
        """Publish what changed: read model (with trigger prices and audit entries), search
        attributes and the Web UI's current details. The Web UI's details are set at once (not
        a command: the UI reads them with a query); the rest is written by one flush per
        workflow task (`flush_when_settled`), or at once in runs from before ONE_PUBLISH."""
        self.show_details()
        if not self.current():
            self._write()
            return
        self.mark_dirty()

    def mark_dirty(self) -> None:
        """Something is to be written by the task's flush (`flush_when_settled`)."""
        self._dirty = True
        if self._flusher is None:
            # Not a background task: `drain` flushes what is pending instead of waiting for it.
            self._flusher = asyncio.ensure_future(self.flush_when_settled())

    def show_details(self) -> None:
        """The Web UI's current details (read with a query: no command)."""
        workflow.set_current_details(self._details(self._shown_ltv()))

    async def flush_when_settled(self) -> None:
        """Write what was published, once the loan has settled: the SDK checks conditions only
        when no workflow coroutine is ready to run, and runs the activation until none is and
        no condition holds (temporalio `_WorkflowInstanceImpl._run_once`), so this flush comes
        after the work of the activation that published and before the activation completes.
        While a read of our own database (a local activity) is in flight the loan is still
        busy within the same workflow task: the flush waits for the read's outcome rather than
        write a state about to change. (A condition that holds in the same pass as this one
        may let another coroutine publish after the flush: that is a second write in the
        activation, never a lost one.)"""
        while True:
            await workflow.wait_condition(lambda: self._dirty and not self._reads)
            self.flush()

    def flush(self) -> None:
        """Write now what was published and not yet written (ONE_PUBLISH runs)."""
        if self._dirty:
            self._dirty = False
            self._write()

    async def read(self, *args: Any, **kwargs: Any) -> Any:
        """`workflows.calls.read`, counted: the deferred flush waits for its outcome."""
        self._reads += 1
        try:
            return await read(*args, **kwargs)
        finally:
            self._reads -= 1

    async def written(self) -> None:
        """Flush, and wait until the last read-model write has landed: a run about to fail
        (a read that gave up) leaves the read model as it published it, as the runs that
        wrote at once did. Unpatched runs have nothing pending and the write was started long
        before: this adds no command to them."""
        self.flush()
        last = self._last_record
        if last is not None and not last.done() and self.current():
            await asyncio.wait([last])

    def _shown_ltv(self) -> Decimal | None:
        f = self.f
        return f.ltv_at(f.price.price) if f.price else None

    def _shown(self) -> tuple[Any, ...]:
        """What the read model and the search attributes show of the loan (LTV second)."""
        f = self.f
        return (f.state, self._shown_ltv(), f.collateral, f.debt(), f.cure_deadline,
                f.required_collateral)

    def _write(self) -> None:
        """Write the read model (snapshot and audit entries) and upsert the search attributes,
        if anything shown changed or there are audit entries to write."""
        shown = self._shown()
        if shown == self._published and not self._audit and not self._notices:
            return
        self._show(shown)
        written = self._record()
        self._last_record = self.spawn(
            record(ActivityName.RECORD_LOAN, written,
                   summary=naming_notices("publish loan", written))
        )

    def _show(self, shown: tuple[Any, ...]) -> None:
        """Upsert the search attributes if what they show changed; `shown` is now published."""
        if shown != self._published and self.search_attributes_enabled():
            f, app = self.f, self.app
            workflow.upsert_search_attributes(
                sa.loan_updates(
                    state=shown[0].value,
                    ltv=shown[1],
                    asset=app.collateral_asset,
                    borrower_id=app.borrower.id,
                    cure_deadline=f.cure_deadline,
                    debt_usd=f.debt(),
                )
            )
        self._published = shown

    def _record(self) -> LoanRecord:
        """The next snapshot of the loan as it stands, with the audit entries not yet written."""
        f, app = self.f, self.app
        # The same function as `refresh_loan`'s, so that both publish the same figure.
        ltv = shown_ltv(f.debt(), f.collateral, f.price.price) if f.price else None
        f.snapshot_version += 1
        triggers = f.triggers()
        snapshot = LoanSnapshot(
            loan_id=app.loan_id,
            version=f.snapshot_version,
            borrower_id=app.borrower.id,
            state=f.state.value,
            collateral_asset=app.collateral_asset,
            collateral_amount=f.collateral,
            principal_usd=f.principal,
            debt_usd=f.debt(),
            ltv=ltv,
            cure_deadline=f.cure_deadline,
            warning_price=triggers["warning"],
            margin_call_price=triggers["margin_call"],
            liquidation_price=triggers["liquidation"],
            cure_price=triggers["cure"],
            updated_at=self.now(),
            application=app.model_dump(mode="json", exclude={"resume"})
            if f.snapshot_version == 1
            else None,
        )
        audit, self._audit = self._audit, []
        notices, self._notices = self._notices, []
        return LoanRecord(snapshot=snapshot, audit=audit, contact=not self.contact_unverified,
                          claim_run=self._claim_run(), notices=notices)

    def _claim_run(self) -> str | None:
        """The loan's first run, sent with the loan's first write since it claimed nothing: a
        loan started before claims were kept claims its id with its next write (and says so
        to its continued runs), so that once it ends no start under the id can take it over.
        A write of a loan whose id is held changes no claim."""
        if self.f.id_claimed:
            return None
        self.f.id_claimed = True
        return workflow.info().first_execution_run_id

    async def refresh(self) -> None:
        """The daily look of runs started with ONE_LOOK: publish the loan as it stands and
        read the newest stored observation in one local activity (`refresh_loan`), which
        writes the snapshot with its LTV at the price it read. Once the loan takes that price
        the loan shows what was written and the task's flush has nothing to write; a price it
        does not take (a jump held for confirmation), a decision, or a change made while the
        read was out is written by the flush as usual."""
        shown = self._shown()
        self._dirty = False  # what was published so far goes out with this write
        request = RefreshRequest(asset=self.app.collateral_asset, now=self.now(),
                                 record=self._record())
        try:
            refreshed = await self.read(ActivityName.REFRESH_LOAN, request, Refreshed,
                                        summary=naming_notices(
                                            "daily look: latest stored price, publish loan",
                                            request.record))
        except ActivityError as err:
            # Maybe not written: the entries go back and the next flush writes everything.
            workflow.logger.warning("daily look failed: %s", err.cause or err)
            self._audit[:0] = request.record.audit
            self._notices[:0] = request.record.notices
            self._published, self._dirty = None, True
            return
        observation = refreshed.observation
        if observation is not None:
            _state, _ltv, collateral, debt, *_rest = shown
            written = None if collateral <= 0 else ltv_of(debt, collateral, observation.price)
            shown = (shown[0], written, *shown[2:])
            self.f.take_price(observation, self.rules_clock(), stored=True)
        self._show(shown)

    @staticmethod
    def search_attributes_enabled() -> bool:
        """Search attributes are on unless the run's memo says `search_attributes: false`: the
        time-skipping test server cannot register custom search attributes."""
        return bool(workflow.memo_value("search_attributes", default=True))

    def _details(self, ltv: Decimal | None) -> str:
        f = self.f
        continued = workflow.info().continued_run_id is not None
        return current_details(state=f.state.value, ltv=ltv, debt=f.debt(),
                               collateral=f.collateral, asset=self.app.collateral_asset,
                               deadlines=self._deadlines(), reason=f.reason,
                               started=self.app if continued else None)

    def _deadlines(self) -> list[tuple[str, datetime]]:
        """The deadlines an operator looks for in the loan's present state."""
        f, state = self.f, self.f.state
        named = [("cure deadline", f.cure_deadline),
                 ("KYC review deadline", f.kyc_deadline if f.awaiting_kyc_decision else None),
                 ("funding deadline", f.funding_deadline
                  if state == LoanState.AWAITING_COLLATERAL else None),
                 ("maturity", f.maturity if not state.is_final else None)]
        return [(name, at) for name, at in named if at is not None]


# How a write's summary names the notices it records (`bench.histories` reads it).
NOTICES_NAMED = "; notices: "


def naming_notices(summary: str, written: LoanRecord) -> str:
    """A write's summary with the kinds of the notices it records, if any: in the Web UI's
    timeline the notices show on the write that recorded them."""
    if not written.notices:
        return summary
    return summary + NOTICES_NAMED + ", ".join(n.kind for n in written.notices)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, LoanState):
        return value.value
    return value
