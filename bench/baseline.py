"""The baseline: what the same server and worker need for the simplest possible version of
the crash's work. N minimal workflows each wait for one signal and then run one no-op
activity; timed from the first signal sent to the last activity completed. The signals go out
exactly as the monitor's fan-out sends them (same pool, same concurrency)."""

from __future__ import annotations

import asyncio
import time

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.market import bounded
from bench.baseline_workflow import BenchBaseline
from bench.book import Progress

BASELINE_QUEUE = "bench-baseline"


class Clock:
    """When each no-op activity ran (wall clock of this process)."""

    def __init__(self) -> None:
        self.done: dict[str, float] = {}

    @activity.defn(name="bench_noop")
    async def noop(self, workflow_id: str) -> None:
        self.done[workflow_id] = time.time()


def baseline_worker(client: Client, clock: Clock, cache: int, concurrency: int) -> Worker:
    return Worker(client, task_queue=BASELINE_QUEUE, workflows=[BenchBaseline],
                  activities=[clock.noop], max_cached_workflows=cache,
                  max_concurrent_activities=concurrency,
                  max_concurrent_workflow_tasks=concurrency)


async def run_baseline(client: Client, n: int, concurrency: int, progress: Progress,
                       prefix: str = "baseline") -> tuple[float, list[float]]:
    """Returns (seconds from the first signal to the last completion, per-workflow seconds)."""
    clock = Clock()
    ids = [f"{prefix}-{i:06d}" for i in range(n)]
    async with baseline_worker(client, clock, cache=n + 100, concurrency=200):
        async def start(workflow_id: str) -> None:
            await client.start_workflow(BenchBaseline.run, id=workflow_id, task_queue=BASELINE_QUEUE)
            progress.advance("baseline started")

        await bounded(ids, concurrency, start)

        async def settled(workflow_id: str) -> None:
            # Like the loans before a crash, every workflow is idle before the clock starts.
            await client.get_workflow_handle(workflow_id).query("ready")

        await bounded(ids, concurrency, settled)
        payload = {"asset": "BTC", "price": "1", "observed_at": "2026-01-01T00:00:00Z"}

        async def signal(workflow_id: str) -> None:
            await client.get_workflow_handle(workflow_id).signal("price_update", payload)

        first = time.time()
        await bounded(ids, concurrency, signal)
        while len(clock.done) < n:
            progress.set("baseline done", len(clock.done))
            await asyncio.sleep(0.05)
        progress.set("baseline done", n)
    latencies = sorted(t - first for t in clock.done.values())
    return latencies[-1], latencies
