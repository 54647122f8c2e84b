"""What the time-skipping test server's lock list costs (issue 9: why `loanflow stress` splits a
book over several servers):

    python -m bench.lock_list --steps 300 --inflate 100000 --rounds 3

The test server records every time lock taken and released in one list (`lockEvents` in
sdk-java's `SelfAdvancingTimerImpl`): two entries per workflow task and per activity, never
dropped, and walked from its start on every state change and every timer that fires. This
times the same workflow (a timer, then an activity, `--steps` times) on a fresh server, then
again after each of `--rounds` inflations of the list by `2 x --inflate` entries (lock and
unlock calls through the server's own test API, which add entries and walk nothing), and
prints each round's milliseconds per step and its ratio to the fresh server's. Writes
bench/results/lock-list.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.api.testservice.v1 import LockTimeSkippingRequest, UnlockTimeSkippingRequest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from bench.report import load, machine, quiet_logs
from loanflow.binaries import test_server

RESULTS = Path(__file__).parent / "results"
QUEUE = "lock-list"


@activity.defn(name="lock_list_noop")
async def noop() -> None:
    return None


@workflow.defn(name="LockListSteps")
class Steps:
    @workflow.run
    async def run(self, steps: int) -> int:
        for _ in range(steps):
            await workflow.sleep(timedelta(minutes=1))
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
        return steps


async def timed(env: WorkflowEnvironment, name: str, steps: int) -> float:
    """Milliseconds per step of one run of `Steps`."""
    started = time.monotonic()
    await env.client.execute_workflow(Steps.run, steps, id=name, task_queue=QUEUE)
    return 1000 * (time.monotonic() - started) / steps


async def inflate(env: WorkflowEnvironment, pairs: int) -> None:
    service, gate = env.client.test_service, asyncio.Semaphore(64)

    async def one() -> None:
        async with gate:
            await service.lock_time_skipping(LockTimeSkippingRequest())
            await service.unlock_time_skipping(UnlockTimeSkippingRequest())

    await asyncio.gather(*(one() for _ in range(pairs)))


async def measure(steps: int, pairs: int, rounds: int) -> dict[str, Any]:
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=test_server())
    try:
        async with Worker(env.client, task_queue=QUEUE, workflows=[Steps], activities=[noop],
                          workflow_runner=UnsandboxedWorkflowRunner()):
            fresh = await timed(env, "fresh", steps)
            rows = [{"entries_added": 0, "ms_per_step": round(fresh, 2), "ratio": 1.0}]
            for n in range(1, rounds + 1):
                await inflate(env, pairs)
                ms = await timed(env, f"round-{n}", steps)
                rows.append({"entries_added": 2 * pairs * n, "ms_per_step": round(ms, 2),
                             "ratio": round(ms / fresh, 2)})
    finally:
        await env.shutdown()
    return {"steps": steps, "load_before": load(), "machine": machine(), "rounds": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--inflate", type=int, default=100_000,
                        help="lock/unlock pairs added per round (two list entries each)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    quiet_logs(args.out / "lock-list.log")
    results = asyncio.run(measure(args.steps, args.inflate, args.rounds))
    (args.out / "lock-list.json").write_text(json.dumps(results, indent=2) + "\n")
    for row in results["rounds"]:
        print(f"{row['entries_added']:>9,} entries added: {row['ms_per_step']:7.1f} ms per "
              f"timer+activity step, x{row['ratio']:.1f}", flush=True)


if __name__ == "__main__":
    from loanflow.worker import stop

    main()
    stop(None, 0)
