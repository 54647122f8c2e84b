"""The baseline: what the same server and worker processes need for the simplest possible
version of the crash's work. N minimal workflows each wait for one signal and then run one
no-op activity; timed from the first signal sent to the last activity completed. The signals go
out exactly as the monitor's fan-out sends them (same pool, same concurrency). The workflows run
on the benchmark's worker processes (`bench.worker`), beside the loans."""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.market import bounded
from bench.baseline_workflow import BenchBaseline
from bench.book import Progress
from bench.rpc import again

BASELINE_QUEUE = "bench-baseline"


@activity.defn(name="bench_noop")
async def noop(workflow_id: str) -> float:
    """When it ran: the worker processes share the machine's clock with the driver."""
    return time.time()


def baseline_worker(client: Client, cache: int, concurrency: int) -> Worker:
    return Worker(client, task_queue=BASELINE_QUEUE, workflows=[BenchBaseline],
                  activities=[noop], max_cached_workflows=cache,
                  max_concurrent_activities=concurrency,
                  max_concurrent_workflow_tasks=concurrency)


async def run_baseline(client: Client, n: int, concurrency: int, progress: Progress,
                       prefix: str = "baseline",
                       bar: str = "baseline",
                       clock: AbstractAsyncContextManager[Any] | None = None,
                       ) -> tuple[float, list[float]]:
    """Returns (seconds from the first signal to the last completion, per-workflow seconds).
    Batches of one run need distinct `prefix`es; `bar` names their progress bars. `clock` is
    entered around exactly the timed part (the CPU accounting of `bench.crash`): starting the
    workflows and waiting for them to be idle stay outside, as the loans' onboarding does."""
    ids = workflow_ids(prefix, n)
    already = await completed(client)

    async def start(workflow_id: str) -> None:
        await client.start_workflow(BenchBaseline.run, id=workflow_id, task_queue=BASELINE_QUEUE)
        progress.advance(f"{bar} started")

    await bounded(ids, concurrency, start)

    async def settled(workflow_id: str) -> None:
        # Like the loans before a crash, every workflow is idle before the clock starts. A
        # query waits for the workflow's first task; with 10,000 of those queued it can outlast
        # the RPC deadline, so ask again (a query changes nothing).
        handle = client.get_workflow_handle(workflow_id)
        await again(lambda: handle.query("ready", rpc_timeout=timedelta(seconds=30)), RPCError)

    await bounded(ids, concurrency, settled)
    payload = {"asset": "BTC", "price": "1", "observed_at": "2026-01-01T00:00:00Z"}

    async def signal(workflow_id: str) -> None:
        await client.get_workflow_handle(workflow_id).signal("price_update", payload)

    async with clock or contextlib.nullcontext():
        first = time.time()
        await bounded(ids, concurrency, signal)
        await wait_completed(client, already, n, progress, bar)
    done: list[float] = []

    async def result(workflow_id: str) -> None:
        done.append(await client.get_workflow_handle(workflow_id, result_type=float).result())

    await bounded(ids, concurrency, result)  # after the clock: reading costs the run nothing
    latencies = sorted(t - first for t in done)
    return latencies[-1], latencies


def workflow_ids(prefix: str, n: int) -> list[str]:
    """The ids of a batch of `n` baseline workflows (also for reading their histories)."""
    return [f"{prefix}-{i:06d}" for i in range(n)]


async def completed(client: Client) -> int:
    """Baseline workflows completed so far (earlier batches of the same run included)."""
    query = f"WorkflowType = '{BenchBaseline.__name__}' AND ExecutionStatus = 'Completed'"
    return (await client.count_workflows(query)).count


async def wait_completed(client: Client, already: int, n: int, progress: Progress,
                         bar: str) -> None:
    """Until `n` more baseline workflows than `already` have completed, by a visibility count
    (a light query, a few times a second, instead of N long polls competing with the work
    being timed)."""
    while (count := await completed(client) - already) < n:
        progress.set(f"{bar} done", count)
        await asyncio.sleep(0.25)
    progress.set(f"{bar} done", n)
