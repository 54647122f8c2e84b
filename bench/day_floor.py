"""What a simulated day costs the time-skipping server by itself (issue 9's floor):

    python -m bench.day_floor --loans 1000 --days 3

`loanflow stress` spends most of a replay in the daily waves: every loan's daily revaluation
wakes it once a simulated day (a timer, a workflow task, a price read and a read-model write,
two local activities), and the time-skipping server moves on to the next instant only when the
wave has settled. This measures the same wave with nothing of loanflow in it: N workflows on
a private time-skipping server, each sleeping to the next whole day and then running K no-op
local activities, for D days, on one worker configured as the stress run's (no sandbox, every
workflow cached). Same work per wake-up in Temporal terms, none of the database, rules or
rendering. Printed per shape (K = 0 and 2): seconds, milliseconds per loan-day, and what a
1,000-loan, 30-day replay would spend in its daily waves at that rate; the stress run's own
per-day figure (README, "Stress") set against it says how much of a day is loanflow's own
work and how much the server's floor.

Writes bench/results/day-floor-N.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.report import load, machine, quiet_logs
from loanflow.binaries import test_server

RESULTS = Path(__file__).parent / "results"
QUEUE = "day-floor"
SHAPES = (0, 2)  # no-op local activities per wake-up: none, and a loan's daily two


@dataclass
class DayInput:
    days: int
    local_activities: int


@activity.defn(name="day_floor_noop")
async def noop(step: int) -> int:
    return step


@workflow.defn(name="DayFloor")
class DayFloor:
    @workflow.run
    async def run(self, spec: DayInput) -> int:
        for _ in range(spec.days):
            now = workflow.now()
            midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0,
                                                         microsecond=0)
            await workflow.sleep(midnight - now)  # every workflow wakes at the same instant
            for step in range(spec.local_activities):
                await workflow.execute_local_activity(
                    noop, step, start_to_close_timeout=timedelta(seconds=30))
        return spec.days


async def wave(env: WorkflowEnvironment, loans: int, days: int, las: int) -> dict[str, Any]:
    """Start `loans` workflows, then let the server skip through `days` days; the wall time of
    that skip is the days' cost (the server waits for each wave to settle)."""
    spec = DayInput(days=days, local_activities=las)
    handles = [await env.client.start_workflow(DayFloor.run, spec, id=f"floor-{las}-{i}",
                                               task_queue=QUEUE) for i in range(loans)]
    started = time.monotonic()
    await env.sleep(timedelta(days=days, hours=1))
    seconds = time.monotonic() - started
    finished = 0
    for handle in handles:  # one at a time: each result() takes the server's time lock
        finished += await handle.result() == days
    per_loan_day_ms = 1000 * seconds / (loans * days)
    return {"local_activities": las, "seconds": round(seconds, 3), "finished": finished,
            "ms_per_loan_day": round(per_loan_day_ms, 2),
            "book_1000_30_days_s": round(per_loan_day_ms * 1000 * 30 / 1000, 1)}


async def measure(loans: int, days: int) -> dict[str, Any]:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server())
    try:
        async with Worker(env.client, task_queue=QUEUE, workflows=[DayFloor], activities=[noop],
                          workflow_runner=UnsandboxedWorkflowRunner(),
                          max_cached_workflows=2 * loans + 10):
            shapes = [await wave(env, loans, days, las) for las in SHAPES]
    finally:
        await env.shutdown()
    return {"loans": loans, "days": days, "load_before": load(), "machine": machine(),
            "shapes": shapes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=1000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    quiet_logs(args.out / f"day-floor-{args.loans}.log")
    results = asyncio.run(measure(args.loans, args.days))
    (args.out / f"day-floor-{args.loans}.json").write_text(json.dumps(results, indent=2))
    print(f"{args.loans} workflows x {args.days} days on the time-skipping server "
          f"(load {results['load_before'][0]:.1f}):")
    for shape in results["shapes"]:
        print(f"  {shape['local_activities']} local activities a wake-up: "
              f"{shape['seconds']:.1f} s, {shape['ms_per_loan_day']:.1f} ms per loan-day "
              f"(a 1,000-loan 30-day book: {shape['book_1000_30_days_s']:.0f} s in daily waves)")


if __name__ == "__main__":
    main()
