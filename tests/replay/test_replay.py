"""Saved histories of loans started by earlier code must replay on the current code: a change
that would break running loans fails here (use `workflow.patched` for such a change, and record
new histories with `python -m tests.replay.record_histories`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.loan import LoanWorkflow
from workflows.market import MarketMonitor

HISTORIES = sorted(Path(__file__).with_name("histories").glob("*.json"))


def test_there_are_histories_to_replay() -> None:
    assert len(HISTORIES) >= 9


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays_on_current_code(path: Path) -> None:
    history = WorkflowHistory.from_json(f"loan-{path.stem}", path.read_text())
    replayer = Replayer(workflows=[LoanWorkflow, MarketMonitor],
                        data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None, result.replay_failure
