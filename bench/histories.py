"""What one margin call costs Temporal, read from event histories: the workflow tasks,
activities, local activities, search-attribute upserts, timers and history events that the
crash tick's signal caused in a called loan, against what the same-work baseline's signal
caused in one of its minimal workflows.

A window starts at the signal event and ends with the workflow task that took in the result of
the activity the signal led to (the margin-call notice; the baseline's no-op). Both windows end
the same way (the baseline's with its completion), so the two counts compare like with like.
A loan that records its notices with its read-model write (NOTICES_WITH_WRITES) has no notice
activity: its window ends with the write's marker, in the workflow task that decided the call
(the notice is durable in the outbox from there; the relay mails it outside Temporal).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter

from loanflow.effects import ActivityName
from workflows.base import NOTICES_NAMED

SIGNAL = "price_update"
MARGIN_CALL = "margin_call"
IMPORT_NOTICE = "loan_migrated"  # workflows/migration.py

# The kinds reported, and the event that marks one of each (a marker: its name too; a patch's
# marker is not a local activity).
KINDS: dict[str, tuple[int, str | None]] = {
    "workflow_tasks": (EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, None),
    "activities": (EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, None),
    "local_activities": (EventType.EVENT_TYPE_MARKER_RECORDED, "core_local_activity"),
    "patch_markers": (EventType.EVENT_TYPE_MARKER_RECORDED, "core_patch"),
    "search_attribute_upserts": (EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, None),
    "timers_started": (EventType.EVENT_TYPE_TIMER_STARTED, None),
}
TOTAL = "history_events"

Window = Callable[[Sequence[HistoryEvent], dict[int, str]], Sequence[HistoryEvent]]


class NoWindow(ValueError):
    """The history has no signal followed by the awaited activity (yet)."""


def count(events: Sequence[HistoryEvent]) -> dict[str, int]:
    """Per kind, how many of `events` there are, and the events in all."""
    counts = {kind: sum(1 for e in events if _is_kind(e, event_type, name))
              for kind, (event_type, name) in KINDS.items()}
    return counts | {TOTAL: len(events)}


def _is_kind(event: HistoryEvent, event_type: int, marker_name: str | None) -> bool:
    if event.event_type != event_type:
        return False
    return marker_name is None or event.marker_recorded_event_attributes.marker_name == marker_name


async def notice_kinds(events: Sequence[HistoryEvent],
                       converter: DataConverter) -> dict[int, tuple[str, ...]]:
    """The kinds of the notices each event carries, by event id: a notice activity's scheduled
    event (its summary is the kind) or, in runs that record their notices with their writes
    (NOTICES_WITH_WRITES), the write's local-activity marker (its summary names them). The
    summaries are decoded with the client's converter because the codec may have encrypted
    them."""
    carriers = [e for e in events if _notice_activity(e) or _write_marker(e)]
    if not carriers:
        return {}
    summaries = await converter.decode([e.user_metadata.summary for e in carriers],
                                       [str] * len(carriers))
    kinds = {e.event_id: _kinds(e, summary) for e, summary in zip(carriers, summaries)}
    return {event_id: named for event_id, named in kinds.items() if named}


def _notice_activity(event: HistoryEvent) -> bool:
    return (event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.activity_task_scheduled_event_attributes.activity_type.name
            == ActivityName.RECORD_NOTICE and event.user_metadata.HasField("summary"))


def _write_marker(event: HistoryEvent) -> bool:
    return (_is_kind(event, *KINDS["local_activities"])
            and event.user_metadata.HasField("summary"))


def _kinds(event: HistoryEvent, summary: str) -> tuple[str, ...]:
    if _notice_activity(event):
        return (summary,)
    _, found, named = summary.partition(NOTICES_NAMED)
    return tuple(named.split(", ")) if found else ()


def margin_call_window(events: Sequence[HistoryEvent],
                       kinds: dict[int, str]) -> Sequence[HistoryEvent]:
    """From the last `price_update` signal before the (last) margin-call notice was scheduled,
    to the workflow task that took in the notice's completion. The last one: the history is
    read right after the crash tick, so its call is the newest."""
    calls = [event_id for event_id, named in kinds.items() if MARGIN_CALL in named]
    if not calls:
        raise NoWindow("no margin-call notice scheduled")
    scheduled = max(calls)
    at = _index(events, scheduled)
    start = _last_before(events, at, _is_signal)
    return events[start:_notice_taken(events, at, scheduled) + 1]


def import_window(events: Sequence[HistoryEvent], kinds: dict[int, str]) -> Sequence[HistoryEvent]:
    """An imported loan (`loanflow book import`) from its start to the workflow task that took
    in its `loan_migrated` notice's completion: what bringing one loan in ACTIVE costs."""
    notices = [event_id for event_id, named in kinds.items() if IMPORT_NOTICE in named]
    if not notices:
        raise NoWindow("no import notice scheduled")
    scheduled = min(notices)
    return events[:_notice_taken(events, _index(events, scheduled), scheduled) + 1]


def whole_history(events: Sequence[HistoryEvent], kinds: dict[int, str]) -> Sequence[HistoryEvent]:
    """Every event so far, of every run (`workflow_cost` reads them all; `kinds` unused: the
    signature of a window)."""
    return events


def _notice_taken(events: Sequence[HistoryEvent], at: int, scheduled: int) -> int:
    """The index of the event that ends a notice's window: the workflow task that took in its
    activity's completion, or the write's marker itself (recorded with its task's commands:
    the notice is in the outbox once the write's task completes)."""
    if events[at].event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        return at
    return _taken_in(events, at, scheduled)


def _taken_in(events: Sequence[HistoryEvent], at: int, scheduled: int) -> int:
    """The index of the workflow task that took in the completion of the activity scheduled
    at `at` (event id `scheduled`)."""
    done = _first_after(events, at, lambda e: e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                        and e.activity_task_completed_event_attributes.scheduled_event_id == scheduled)
    return _first_after(events, done, _is_task_completed)


def baseline_window(events: Sequence[HistoryEvent], kinds: dict[int, str]) -> Sequence[HistoryEvent]:
    """From the baseline workflow's signal to its completion (`kinds` unused: it has no
    notices; the same signature as `margin_call_window`)."""
    start = _last_before(events, len(events), _is_signal)
    end = _first_after(events, start, lambda e: e.event_type
                       == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
    return events[start:end + 1]


def _is_signal(event: HistoryEvent) -> bool:
    return (event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and event.workflow_execution_signaled_event_attributes.signal_name == SIGNAL)


def _is_task_completed(event: HistoryEvent) -> bool:
    return event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


def _index(events: Sequence[HistoryEvent], event_id: int) -> int:
    return next(i for i, e in enumerate(events) if e.event_id == event_id)


def _last_before(events: Sequence[HistoryEvent], stop: int,
                 match: Callable[[HistoryEvent], bool]) -> int:
    for i in range(stop - 1, -1, -1):
        if match(events[i]):
            return i
    raise NoWindow("no price_update signal before it")


def _first_after(events: Sequence[HistoryEvent], start: int,
                 match: Callable[[HistoryEvent], bool]) -> int:
    for i in range(start + 1, len(events)):
        if match(events[i]):
            return i
    raise NoWindow("the window has not closed yet")


def summarise(costs: Sequence[dict[str, int]]) -> dict[str, Any]:
    """Mean and max per kind over the sampled workflows."""
    kinds = [*KINDS, TOTAL]
    if not costs:
        return {"workflows": 0, "mean": None, "max": None}
    return {"workflows": len(costs),
            "mean": {k: round(sum(c[k] for c in costs) / len(costs), 2) for k in kinds},
            "max": {k: max(c[k] for c in costs) for k in kinds}}


async def runs(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The history of every run of a workflow, its first run first: an onboarded loan
    continues as new once ACTIVE, and onboarding it took both runs."""
    histories: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        histories.insert(0, history)
        started = history.events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return histories
        run_id = started.continued_execution_run_id


async def every_run(client: Client, workflow_id: str) -> list[HistoryEvent]:
    """The events of every run, the first run's first. (Event ids start again in each run:
    only for windows that do not look events up by id.)"""
    return [event for history in await runs(client, workflow_id) for event in history.events]


async def workflow_cost(client: Client, workflow_id: str, window: Window,
                        attempts: int = 20) -> dict[str, int]:
    """The counts of one workflow's window, in its latest run (`whole_history`: in all of
    them). The benchmark stops its clock at the notice row stored, before the activity has
    completed: a window not closed yet is read again."""
    for attempt in range(attempts):
        if window is whole_history:
            events = await every_run(client, workflow_id)
        else:
            events = list((await client.get_workflow_handle(workflow_id).fetch_history()).events)
        kinds = await notice_kinds(events, client.data_converter)
        try:
            return count(window(events, kinds))
        except NoWindow:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def sample_cost(client: Client, workflow_ids: Sequence[str], window: Window,
                      sample: int = 50, concurrency: int = 10) -> dict[str, Any]:
    """The summary over the first `sample` of `workflow_ids` (sorted, so a rerun reads the
    same loans); a few histories at a time, to keep the read light after the timed phase."""
    chosen = sorted(workflow_ids)[:sample]
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str) -> dict[str, int] | None:
        async with gate:
            try:
                return await workflow_cost(client, workflow_id, window)
            except NoWindow:  # reported, not fatal: the run's other figures still stand
                return None

    costs = await asyncio.gather(*(one(w) for w in chosen))
    found = [c for c in costs if c is not None]
    return summarise(found) | {"without_window": len(costs) - len(found)}


def comparison_line(call: dict[str, Any], base: dict[str, Any]) -> str:
    """One line: per kind, the margin call's mean against the baseline's."""
    if not call["mean"] or not base["mean"]:
        return "cost per margin call: no sample"
    parts = [f"{kind.replace('_', ' ')} {call['mean'][kind]:g} vs {base['mean'][kind]:g}"
             for kind in [*KINDS, TOTAL]]
    return (f"cost per margin call vs per baseline workflow (mean of {call['workflows']} / "
            f"{base['workflows']}): " + "; ".join(parts))


def cost_line(cost: dict[str, Any], what: str) -> str:
    """One line: the mean per kind over the sampled workflows of one window."""
    if not cost["mean"]:
        return f"cost of {what}: no sample"
    parts = [f"{kind.replace('_', ' ')} {cost['mean'][kind]:g}" for kind in [*KINDS, TOTAL]]
    return f"cost of {what} (mean of {cost['workflows']}): " + "; ".join(parts)
