"""Does a price tick wait behind the loans? `python -m bench.queues`

Two market monitors in one run on one dev server and one production worker (`build_worker`):
one on the market's own task queue (`loans-market`, as deployed), one on the loans queue (as
before). Each is ticked once a second, independently, first on a calm desk, then while a
burst of new loans floods the loans queue with their workflow tasks and activities (KYC,
notices, read model). Each tick's time from the update sent to its answer is recorded; the
figures of merit are the ratios of the two monitors' p50 and worst tick during the flood,
measured side by side in the same process. The ticks cross no trigger, so they time the
queueing alone, not a fan-out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.book import SEED_PRICES, plan_book, start_loans
from bench.market import Monitor
from bench.report import Bar, machine, quiet_logs, spread
from bench.stack import Tuning, bench_stack
from loanflow.worker import build_worker

RESULTS = Path(__file__).parent / "results"


async def ticking(monitor: Monitor, seconds: float) -> list[float]:
    """A tick a second (or as soon as the last one is answered) for `seconds`; each tick's
    time from sent to answered. A new price each time, crossing nothing."""
    times: list[float] = []
    price, end = SEED_PRICES["BTC"], time.monotonic() + seconds
    while (sent := time.monotonic()) < end:
        price += Decimal("0.01")
        await monitor.tick("BTC", price)
        times.append(time.monotonic() - sent)
        await asyncio.sleep(max(0.0, sent + 1 - time.monotonic()))
    return times


async def both(own: Monitor, shared: Monitor, seconds: float) -> dict[str, list[float]]:
    own_times, shared_times = await asyncio.gather(ticking(own, seconds),
                                                   ticking(shared, seconds))
    return {"own": own_times, "shared": shared_times}


def summary(times: list[float]) -> dict[str, float]:
    return {"ticks": len(times), **spread(times)}


async def measure(args: argparse.Namespace, bar: Bar) -> dict[str, Any]:
    async with bench_stack(Tuning()) as stack:
        settings = stack.settings
        async with build_worker(stack.client, stack.db, settings,
                                max_cached_workflows=args.loans + 100):
            own = await Monitor.start(stack.client, settings.market_queue, 100,
                                      workflow_id="market-own-queue")
            shared = await Monitor.start(stack.client, settings.task_queue, 100,
                                         workflow_id="market-loans-queue")
            calm = await both(own, shared, args.calm_seconds)
            plans = plan_book(args.loans, seed=11, prefix="Q")
            bar.add("started", len(plans))
            flood = asyncio.create_task(start_loans(stack.client, plans, settings.task_queue,
                                                    100, bar))
            busy = await both(own, shared, args.seconds)
            await flood
    during = {k: summary(v) for k, v in busy.items()}
    return {
        "command": f"python -m bench.queues --loans {args.loans} --seconds {args.seconds:g}",
        "machine": machine(),
        "calm": {k: summary(v) for k, v in calm.items()},
        "flood": during,
        "flood_loans": args.loans,
        "ratio_loans_queue_to_own_queue": {
            q: round(during["shared"][q] / during["own"][q], 2) for q in ("p50", "max")},
        "tick_seconds": busy,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.queues",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--loans", type=int, default=1500, help="new loans in the flood")
    parser.add_argument("--calm-seconds", type=float, default=10, help="ticking before the flood")
    parser.add_argument("--seconds", type=float, default=90, help="ticking from the flood on")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    quiet_logs(args.out / "queues.log")
    with Bar() as bar:
        results = asyncio.run(measure(args, bar))
    (args.out / "queues.json").write_text(json.dumps(results, indent=1))
    for phase in ("calm", "flood"):
        print(f"{phase}: tick answered, own queue {results[phase]['own']}, "
              f"loans queue {results[phase]['shared']}")
    print(f"ratio loans queue / own queue during the flood of {args.loans} new loans: "
          f"{results['ratio_loans_queue_to_own_queue']}")


if __name__ == "__main__":
    main()
