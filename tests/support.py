"""Helpers shared by the test suites (not fixtures): quiet settings, free ports, an inbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from loanflow.settings import Settings

# The payload keys every test process and every `loanflow` subprocess of a test uses (a test
# key, never a secret): the suite runs with encryption on, like production.
TEST_CODEC_KEYS = ("test-current:ePqUZZ2PG1055OzHhzJSWn+jVK2quTPf+JEi/dp+yJw=,"
                   "test-old:qfDtZ6TckqWhoQvh9xxZqj0CdIaiHbEYv5fdwGU2LIM=")


def quiet_settings(**overrides: Any) -> Settings:
    """Built-in fakes without latency or random failures: tests decide every failure."""
    values: dict[str, Any] = {"fake_latency_ms": 0, "fake_failure_rate": Decimal(0), "fake_seed": 7}
    values.update(overrides)
    return Settings(**values)


class Inbox:
    """An aiosmtpd handler that keeps every message a real SMTP session delivered."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


OPEN_TASK = (EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)


async def idle(handle: WorkflowHandle[Any, Any]) -> bool:
    """Nothing of the loan's in flight: no activity pending, no workflow task open."""
    description = await handle.describe()
    return not description.raw_description.pending_activities and \
        not await workflow_task_open(handle)


async def workflow_task_open(handle: WorkflowHandle[Any, Any]) -> bool:
    """Is a workflow task of the loan scheduled or running? Then the loan may be about to
    start an activity: its notices go out one after another, so between two of them none is
    pending, but a task is (the one that schedules the next). The time-skipping server's
    description does not show pending workflow tasks; its history does."""
    last = None
    async for event in handle.fetch_history_events():
        last = event.event_type
    return last in OPEN_TASK
