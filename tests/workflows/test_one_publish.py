"""One read-model write per workflow task (patch `issue12-one-publish-per-task`): a loan that
publishes several times while it works through one task writes its snapshot once, when the
task's work is done, and the read model still ends with the loan's figures and every audit
entry, once each and in order."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from temporalio.api.enums.v1 import EventType

from loanflow.effects import ActivityName
from loanflow.models import LoanState
from loanflow.schema import Loan
from loanflow.store.prices import store_observation
from tests.workflows.book import notices, table
from tests.workflows.conftest import Desk
from tests.workflows.test_import import Ids, handle_of, ids, migrated, run_import  # noqa: F401
from tests.workflows.test_lifecycle import active_loan, wait_state
from workflows.base import LEVELS


async def writes_per_task(handle: Any) -> list[int]:
    """How many read-model writes (RECORD_LOAN local activities, and REFRESH_LOAN: the daily
    look's write with its read) each workflow task of the run made: a task's local activities
    run before it completes, and their markers follow its completion event."""
    history = await handle.fetch_history()
    tasks: list[int] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tasks.append(0)
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "data" in details:  # a local activity's marker (a patch's has "patch-data")
                kind = json.loads(details["data"].payloads[0].data)["activity_type"]
                tasks[-1] += kind in (ActivityName.RECORD_LOAN, ActivityName.REFRESH_LOAN)
    return tasks


async def patches_asked(handle: Any) -> list[str]:
    """The patch ids whose markers the run recorded, in order."""
    history = await handle.fetch_history()
    return [json.loads(event.marker_recorded_event_attributes.details["patch-data"]
                       .payloads[0].data)["id"]
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and "patch-data" in event.marker_recorded_event_attributes.details]


async def audit_trail(desk: Desk, loan_id: str) -> list[tuple[str, str]]:
    """The loan's audit entries as written (by row id): their keys and kinds."""
    t = table("audit_log")
    async with desk.db.sessions() as s:
        rows = await s.execute(select(t.c.key, t.c.kind).where(t.c.loan_id == loan_id)
                               .order_by(t.c.id))
        return [(key, kind) for key, kind in rows.all()]


async def imported_with_a_stored_price(desk: Desk, loan_id: str) -> Any:
    """An imported loan whose first revaluation finds a stored price: ACTIVE at 40% LTV."""
    now = await desk.now()
    await store_observation(desk.db, "BTC", Decimal("100000"), now)
    await run_import(desk, [migrated(loan_id, now, principal_usd=Decimal("40000.00"),
                                     accrued_interest_usd=Decimal("0"),
                                     collateral_amount=Decimal("1"))])
    handle = handle_of(desk, loan_id)
    await wait_state(desk, handle, LoanState.ACTIVE)
    await desk.settle(handle)
    return handle


async def test_an_imported_loan_writes_its_read_model_once_per_task(desk: Desk,
                                                                    ids: Ids) -> None:
    handle = await imported_with_a_stored_price(desk, ids("ONE1"))
    writes = await writes_per_task(handle)
    # Before ONE_PUBLISH 3: at its start, and twice in the task that takes in its opening
    # effects (after adopting the migration record, and after the first revaluation's read of
    # the stored price); before IMPORT_IN_ONE_TASK 2: at its start, and once ACTIVE with its
    # price. Now only the second, in the loan's first task (IMPORT_IN_ONE_TASK).
    assert writes[0] == 1 and sum(writes) == 1
    async with desk.db.sessions() as s:
        row = await s.get(Loan, ids("ONE1"))
    # One version, none lost: ACTIVE with its price, and the application (the contact the
    # import notice is addressed from) in its first and only write.
    assert row is not None and row.version == sum(writes) == 1
    assert row.state == "ACTIVE" and row.ltv == Decimal("0.4")
    assert row.application is not None and row.application["origin"] == "import"
    # A run started with the newest patch in asks for no older patch (each asked cost a marker
    # and a TemporalChangeVersion upsert): 4 more before ONE_PUBLISH, in the same first tasks.
    assert await patches_asked(handle) == [LEVELS[0]]


async def test_an_imported_loan_opens_in_its_first_task(desk: Desk, ids: Ids) -> None:
    """Its opening effects run as local activities in the task that reads its migration
    record, and its notice is recorded with its first write: no activity is scheduled through
    the server (before IMPORT_IN_ONE_TASK the deposit address and the opening balances were two,
    and a task took in their results; before NOTICES_WITH_WRITES the notice was one more)."""
    handle = await imported_with_a_stored_price(desk, ids("ONE3"))
    history = await handle.fetch_history()
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name
                 for e in history.events
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert scheduled == []
    await desk.settle(handle)
    assert await notices(desk.db, ids("ONE3")) == ["loan_migrated"]
    # The local activities each completed task recorded; the first task that recorded any
    # must have recorded them all. (Counted from the fourth event, once a full run saw no
    # marker there: a first task that does not complete is retried whole, its local
    # activities run again in the retry, which records them.)
    tasks: list[list[str]] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tasks.append([])
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and tasks:
            details = event.marker_recorded_event_attributes.details
            if "data" in details:
                tasks[-1].append(json.loads(details["data"].payloads[0].data)["activity_type"])
    first_task = next((task for task in tasks if task), [])
    # The read (with the claim of its id), both opening effects side by side (markers in the
    # order they ended), the look.
    read, *opening, look = first_task
    assert (read, sorted(opening), look) == (
        ActivityName.IMPORTED_LOAN,
        sorted([ActivityName.OPEN_DEPOSIT_ADDRESS, ActivityName.POST_LEDGER]),
        ActivityName.REFRESH_LOAN)
    status = await desk.status(handle)
    assert status.state == LoanState.ACTIVE and status.deposit_address


async def test_an_onboarded_loan_writes_its_read_model_once_per_task(desk: Desk, ids: Ids) -> None:
    handle = await active_loan(desk, ids("ONE2"))
    await desk.settle(handle)
    # The run that onboarded it (it continues as new once ACTIVE, writing nothing more).
    writes = await writes_per_task(desk.client.get_workflow_handle(
        handle.id, run_id=handle.first_execution_run_id))
    # Before the patch the first task alone wrote 4 times (opened, screened, approved, waiting
    # for collateral), 8 writes to ACTIVE in all; now no task writes more than once.
    assert max(writes) == 1
    records = sum(writes)
    async with desk.db.sessions() as s:
        row = await s.get(Loan, ids("ONE2"))
    assert row is not None and row.version == records


async def test_the_read_model_ends_with_the_figures_and_every_audit_entry(desk: Desk,
                                                                         ids: Ids) -> None:
    handle = await imported_with_a_stored_price(desk, ids("ONE3"))
    status = await desk.status(handle)
    async with desk.db.sessions() as s:
        row = await s.get(Loan, ids("ONE3"))
    assert row is not None
    assert (row.state, row.debt_usd, row.collateral_amount) == (
        "ACTIVE", Decimal("40000.00"), Decimal("1"))
    assert row.ltv == status.ltv == Decimal("0.4")
    assert row.margin_call_price == status.trigger_prices["margin_call"]
    assert row.application is not None  # sent with the first snapshot, kept
    trail = await audit_trail(desk, ids("ONE3"))
    # Every decision once, in the order it was taken: the keys count up without a gap.
    assert [key.rsplit(":", 1)[-1] for key, _ in trail] == [
        str(n) for n in range(1, len(trail) + 1)]
    assert [kind for _, kind in trail] == ["state", "imported"]

    # A later task (a repayment) is written as well: nothing published waits for another.
    await handle.execute_update("repay", {"amount_usd": "10000.00", "reference": "r1"})
    status = await desk.settle(handle)
    async with desk.db.sessions() as s:
        row = await s.get(Loan, ids("ONE3"))
    assert row is not None and row.debt_usd == status.debt_usd
    assert row.ltv == status.ltv and status.ltv is not None and status.ltv < Decimal("0.4")
    trail = await audit_trail(desk, ids("ONE3"))
    assert [key.rsplit(":", 1)[-1] for key, _ in trail] == [
        str(n) for n in range(1, len(trail) + 1)]
    assert [kind for _, kind in trail] == ["state", "imported", "repayment"]


async def local_activities_since_last_timer(handle: Any) -> list[str]:
    """The local activities the run ran after its last timer fired, by type."""
    history = await handle.fetch_history()
    kinds: list[str] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            kinds = []
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "data" in details:
                kinds.append(json.loads(details["data"].payloads[0].data)["activity_type"])
    return kinds


async def test_a_daily_look_is_one_local_activity_and_publishes_the_new_price(
        desk: Desk, ids: Ids) -> None:
    """Patch `issue9-one-local-activity-per-look`: the daily revaluation reads the stored
    price and writes the read model in one local activity, and the snapshot it wrote is the
    loan's own view at that price (the task's flush finds nothing more to write)."""
    handle = await imported_with_a_stored_price(desk, ids("ONE4"))
    now = await desk.now()
    # Fresh at the daily look (24 h on, on the minute): LTV about 57%, nothing to decide.
    await store_observation(desk.db, "BTC", Decimal("70000"), now + timedelta(hours=23, minutes=59))
    await desk.env.sleep(timedelta(days=1, minutes=2))
    status = await desk.settle(handle)
    assert await local_activities_since_last_timer(handle) == [ActivityName.REFRESH_LOAN]
    async with desk.db.sessions() as s:
        row = await s.get(Loan, ids("ONE4"))
    assert row is not None and status.ltv is not None
    # A day's interest on 40,000 over 1 BTC at 70,000, worked apart from the loan's code.
    assert row.debt_usd == status.debt_usd and Decimal("40000") < row.debt_usd < Decimal("40020")
    # (PostgreSQL keeps 18 places of the loan's exact figure.)
    assert abs(row.ltv - status.ltv) < Decimal("1e-17")
    assert abs(row.ltv - row.debt_usd / Decimal("70000")) < Decimal("1e-15")
