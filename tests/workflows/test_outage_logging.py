"""Issue 11: a built-in fake's simulated outage (`FakeFaults`) is one line on the worker's
console, not the SDK's "Completing activity as failed" with a traceback; a real, unexpected
error keeps its traceback. A real worker on the time-skipping server, its log captured."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest_asyncio
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.support import FakeFaults
from loanflow.db import Database
from loanflow.worker import OutageLines, build_worker
from tests.support import quiet_settings

ATTEMPTS: dict[str, int] = {}


@activity.defn
async def flaky_custodian() -> str:
    """Down at the first attempt (an injected outage), up at the second."""
    ATTEMPTS["flaky"] = ATTEMPTS.get("flaky", 0) + 1
    rate = Decimal(1) if ATTEMPTS["flaky"] == 1 else Decimal(0)
    await FakeFaults(failure_rate=rate).call("custody", "release")
    return "released"


@activity.defn
async def buggy() -> str:
    """A real bug at the first attempt."""
    ATTEMPTS["buggy"] = ATTEMPTS.get("buggy", 0) + 1
    if ATTEMPTS["buggy"] == 1:
        raise ZeroDivisionError("a real bug")
    return "fine"


@workflow.defn(sandboxed=False)
class TwoCalls:
    @workflow.run
    async def run(self) -> list[str]:
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=10), maximum_attempts=3)
        return [await workflow.execute_activity(name, start_to_close_timeout=timedelta(seconds=10),
                                                retry_policy=retry)
                for name in (flaky_custodian, buggy)]


@pytest_asyncio.fixture(loop_scope="session")
async def console(tmp_path: Path, ts_env: WorkflowEnvironment) -> AsyncIterator[io.StringIO]:
    """The SDK activity logger's output as the worker's console shows it (message and any
    traceback), with the filter the worker puts there (`build_worker`)."""
    build_worker(ts_env.client, Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"),
                 quiet_settings(), activities=[])
    logger = logging.getLogger("temporalio.activity")
    assert any(isinstance(f, OutageLines) for f in logger.filters)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    yield out
    logger.removeHandler(handler)


async def test_an_injected_outage_is_one_line_a_bug_keeps_its_traceback(
        ts_env: WorkflowEnvironment, console: io.StringIO) -> None:
    ATTEMPTS.clear()
    queue = f"outage-{uuid.uuid4().hex[:8]}"
    async with Worker(ts_env.client, task_queue=queue, workflows=[TwoCalls],
                      activities=[flaky_custodian, buggy],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        result = await ts_env.client.execute_workflow(TwoCalls.run, id=queue, task_queue=queue)
    assert result == ["released", "fine"]
    text = console.getvalue()
    outage = [line for line in text.splitlines() if "simulated transient fault" in line]
    assert outage == [
        "WARNING custody: release failed: service unavailable (simulated transient fault): "
        f"activity flaky_custodian attempt 1 for {queue}; Temporal retries it"]
    # The bug: the SDK's own line with the whole traceback.
    assert "Completing activity as failed" in text and "ZeroDivisionError: a real bug" in text
    assert text.count("Traceback (most recent call last)") == 1
