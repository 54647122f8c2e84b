"""A workflow that stands in for a loan where a test only cares which loans were signalled. Its
own module with nothing else imported: workflow modules are re-imported in the sandbox."""

from __future__ import annotations

from typing import Any

from temporalio import workflow


@workflow.defn(name="PriceRecorder")
class PriceRecorder:
    """Keeps every `price_update` it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.signal(name="price_update")
    def price_update(self, raw: dict[str, Any]) -> None:
        self.received.append(raw)

    @workflow.signal
    def finish(self) -> None:
        self.done = True

    @workflow.query
    def prices(self) -> list[dict[str, Any]]:
        return self.received
