"""Saved histories of loans started by earlier code must replay on the current code: a change
that would break running loans fails here (use `workflow.patched` for such a change, and record
new histories with `python -m tests.replay.record_histories`)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from loanflow.temporal_client import data_converter
from workflows.loan import LoanWorkflow
from workflows.market import MarketMonitor

HISTORIES = sorted(Path(__file__).with_name("histories").glob("*.json"))


def workflow_id(path: Path) -> str:
    """The id the recorded run had: a loan's is `loan-<loan_id>` (the loan checks it), taken
    from the start input; the monitor's does not matter."""
    started = json.loads(path.read_text())["events"][0]
    payloads = started["workflowExecutionStartedEventAttributes"]["input"]["payloads"]
    first = json.loads(base64.b64decode(payloads[0]["data"]))
    loan_id = first.get("loan_id") if isinstance(first, dict) else None
    return f"loan-{loan_id}" if loan_id else f"monitor-{path.stem}"


def test_there_are_histories_to_replay() -> None:
    assert len(HISTORIES) >= 9


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays_on_current_code(path: Path) -> None:
    history = WorkflowHistory.from_json(workflow_id(path), path.read_text())
    replayer = Replayer(workflows=[LoanWorkflow, MarketMonitor],
                        data_converter=data_converter())
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None, result.replay_failure
