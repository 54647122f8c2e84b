"""The baseline's minimal workflow, in a module of its own: workflow modules are re-imported in
the sandbox, so this one imports nothing but the SDK."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow


@workflow.defn(name="BenchBaseline")
class BenchBaseline:
    """Waits for one signal, then runs one no-op activity."""

    def __init__(self) -> None:
        self.signalled = False

    @workflow.run
    async def run(self) -> float:
        """Returns the wall-clock time at which the activity ran (its worker's clock)."""
        await workflow.wait_condition(lambda: self.signalled)
        return await workflow.execute_activity("bench_noop", workflow.info().workflow_id,
                                               start_to_close_timeout=timedelta(seconds=60),
                                               result_type=float)

    @workflow.query
    def ready(self) -> bool:
        """Answered once the first workflow task has run: the workflow is idle, waiting."""
        return True

    @workflow.signal(name="price_update")
    def price_update(self, raw: dict[str, Any]) -> None:
        self.signalled = True
