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
    """Built-in fakes without latency or random failures: tests decide every failure. Workflow
    code runs in the SDK's sandbox here, which production skips for speed: the suite is where
    a non-deterministic call in workflow code is caught."""
    values: dict[str, Any] = {"fake_latency_ms": 0, "fake_failure_rate": Decimal(0), "fake_seed": 7,
                              "workflow_sandbox": True}
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
    """Nothing of the loan's in flight: no activity pending, no workflow task open. The
    history is read on both sides of the description, and nothing may have happened between:
    a workflow task that took in one notice and scheduled the next (notices go out one after
    another) between a description without pending activities and a history read ending in
    that scheduling passed for idle, and the test read the notices before the last one."""
    before = await last_event(handle)
    description = await handle.describe()
    if description.raw_description.pending_activities:
        return False
    after = await last_event(handle)
    return after == before and after[1] not in OPEN_TASK


async def last_event(handle: WorkflowHandle[Any, Any]) -> tuple[int, int]:
    """The id and type of the loan's newest history event. The time-skipping server's
    description does not show pending workflow tasks; its history does."""
    last = (0, 0)
    async for event in handle.fetch_history_events():
        last = (event.event_id, event.event_type)
    return last
