"""A manual tick of the market monitor, the path operators use (`loanflow market tick`) and the
demo too: the monitor aggregates the quotes, stores the observation and signals the loans whose
trigger prices the move crossed."""

from __future__ import annotations

from typing import Any

from loanflow.prices.messages import LIVE_MONITOR_ID, ManualTick, MonitorInput, TickSummary


async def manual_tick(client: Any, manual: ManualTick, *, task_queue: str,
                      monitor_id: str = LIVE_MONITOR_ID) -> TickSummary:
    """The update `tick`, starting a manual-only monitor on `task_queue` if none runs under
    that id."""
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    start = WithStartWorkflowOperation(
        "MarketMonitor", MonitorInput(), id=monitor_id, task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return await client.execute_update_with_start_workflow(  # type: ignore[no-any-return]
        "tick", manual, start_workflow_operation=start, result_type=TickSummary)
