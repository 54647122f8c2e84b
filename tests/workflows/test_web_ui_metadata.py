"""What the Web UI shows of a loan (issue 11): its static summary (given at the start), its
current details in people's formats, and, while a margin call is open, a timer named "cure
deadline" whatever else the loan waits for. Read here the way the Web UI reads them: the
`__temporal_workflow_metadata` query, the workflow's description and its history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle

from loanflow.loan_metadata import people_time, start_metadata, static_details, static_summary
from loanflow.models import LoanState
from tests.workflows.book import BORROWER, application
from tests.workflows.conftest import Desk
from tests.workflows.test_lifecycle import active_loan, wait_state


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def timers(desk: Desk, handle: WorkflowHandle[Any, Any]) -> list[tuple[str, datetime]]:
    """The timers the loan started (summary, when it fires), oldest first."""
    started = []
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_TIMER_STARTED:
            continue
        [summary] = await desk.client.data_converter.decode([event.user_metadata.summary])
        fires = event.event_time.ToDatetime(timezone.utc) + \
            event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        started.append((summary, fires))
    return started


def fires_of(named: list[tuple[str, datetime]], summary: str) -> list[datetime]:
    return [at for name, at in named if name == summary]


def near(found: list[datetime], expected: list[datetime]) -> bool:
    """The same moments, give or take the instant between a workflow task's start (the loan's
    clock) and the event's time."""
    return len(found) == len(expected) and all(
        abs(a - b) < timedelta(seconds=2) for a, b in zip(found, expected))


def test_the_summary_names_the_loan_without_personal_data() -> None:
    app = application("S1")
    assert static_summary(app) == "Loan S1 · borrower B-100 · BTC · principal $30,000.00"
    details = static_details(app)
    for fact in ("B-100", "$30,000.00", "1 BTC", "365 days at 12.00% a year"):
        assert fact in details
    for personal in (BORROWER.name, BORROWER.email, BORROWER.country):
        assert personal not in static_summary(app) and personal not in details


def test_deadlines_read_as_people_write_them() -> None:
    assert people_time(datetime.fromisoformat("2026-12-03T16:08:59+00:00")) == \
        "Thu 3 Dec 2026, 16:08 UTC"
    assert people_time(datetime.fromisoformat("2027-01-01T01:30:00+02:00")) == \
        "Thu 31 Dec 2026, 23:30 UTC"


async def test_a_loan_started_with_its_summary_shows_it(desk: Desk) -> None:
    app = application("S2")
    handle = await desk.client.start_workflow(
        "LoanWorkflow", app, id="loan-S2", task_queue=desk.task_queue,
        memo={"search_attributes": False}, **start_metadata(app))
    desk.handles.append(handle)
    description = await handle.describe()
    assert await description.static_summary() == static_summary(app)
    assert await description.static_details() == static_details(app)


async def test_current_details_show_state_ltv_debt_and_deadline(desk: Desk) -> None:
    handle = await active_loan(desk, "S3")
    details = await current_details(handle)
    assert details.startswith("**ACTIVE**")
    assert "LTV 30.00% · debt $30,000.00 · collateral 1 BTC" in details
    maturity = (await desk.status(handle)).maturity
    assert maturity is not None and f"maturity: {people_time(maturity)}" in details
    # The loan continued as new once ACTIVE, and a continued run has no static summary or
    # details of its own: its current details end with them.
    app = application("S3")
    assert details.endswith(f"\n\n{static_summary(app)}\n\n{static_details(app)}")

    await desk.price(handle, "BTC", "42000")
    call = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    details = await current_details(handle)
    assert details.startswith("**MARGIN_CALL**") and "LTV 71.43%" in details
    assert call.cure_deadline is not None
    assert f"cure deadline: {people_time(call.cure_deadline)}" in details
    assert call.cure_deadline.isoformat()[:16] not in details  # not ISO 8601


async def test_an_open_call_waits_on_a_timer_named_cure_deadline(desk: Desk) -> None:
    # The loan wakes up earlier (a revaluation, the 24 h and 4 h reminders), and yet the
    # operator sees the cure deadline as a timer of its own, moved when the call is extended.
    handle = await active_loan(desk, "S4")
    await desk.price(handle, "BTC", "42000")
    call = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    deadline = call.cure_deadline
    assert deadline is not None
    named = await timers(desk, handle)
    assert near(fires_of(named, "cure deadline"), [deadline])
    # ...while the loan's own wake-up (here the daily revaluation) comes earlier.
    assert any(name != "cure deadline" and at < deadline for name, at in named)

    await handle.execute_update("extend_cure", {"hours": 6, "reason": "wire", "operator": "ops"})
    await desk.env.sleep(timedelta(seconds=1))
    named = await timers(desk, handle)
    assert near(fires_of(named, "cure deadline"), [deadline, deadline + timedelta(hours=6)])


async def test_a_loans_own_checks_fall_on_whole_minutes(desk: Desk) -> None:
    # Loans opened together wake together (the time-skipping server of `loanflow stress` fires
    # one timer instant at a time): the daily revaluation is due on the minute, give or take
    # the instant between the loan's clock and the event's time; the cure deadline, promised
    # to the borrower, keeps its exact time.
    handle = await active_loan(desk, "S9")
    await desk.price(handle, "BTC", "42000")
    call = await wait_state(desk, handle, LoanState.MARGIN_CALL)
    named = await timers(desk, handle)
    daily = fires_of(named, "daily revaluation")[-1]
    assert daily - daily.replace(second=0, microsecond=0) < timedelta(seconds=2), daily
    assert call.cure_deadline is not None
    assert near(fires_of(named, "cure deadline"), [call.cure_deadline])
