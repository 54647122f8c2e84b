"""The stress benchmark (issue 9, part 5): an N-loan book over the FTX month (2022-11) through
`loanflow stress`, timed. Target: 1,000 loans in under 10 minutes on the 2-core machine.

    python -m bench.stress --loans 1000          # 125 loans per asset and LTV bucket

Prints the run's phases (import, replay), simulated hours per second and the book's outcome,
and writes bench/results/stress-<N>.json (the timings) beside the run's own files in --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from loanflow.stress.book import DEFAULT_LTVS
from loanflow.stress.runner import Progress
from loanflow.stress.session import StressOptions, stress

ASSETS = ("BTC", "ETH")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=1000, help="book size (a multiple of 8)")
    parser.add_argument("--window", default="2022-11")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--workers", type=int, default=2, help="worker processes (one per core)")
    parser.add_argument("--servers", type=int, default=None,
                        help="private test servers (default: one per 250 loans, at most 8)")
    args = parser.parse_args()
    per_bucket = max(args.loans // (len(ASSETS) * len(DEFAULT_LTVS)), 1)
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="WARN")))),
        error_if_already_set=False)
    options = StressOptions(window=args.window, loans_per_bucket=per_bucket, seed=1,
                            out=args.out / f"stress-{args.loans}", processes=args.workers,
                            servers=args.servers)
    started, last = time.monotonic(), [0.0]

    def show(p: Progress) -> None:
        if time.monotonic() - last[0] >= 10:
            last[0] = time.monotonic()
            print(f"{time.monotonic() - started:6.0f} s  {p.phase} {p.done}/{p.total}", flush=True)

    run = asyncio.run(stress(options, show))
    summary = run.results["summary"]
    hours = summary["hours"]
    figures = {
        "loans": summary["loans"], "window": args.window, "hours": hours,
        "worker_processes": args.workers, "servers": args.servers or "default",
        "seconds": {k: round(v, 1) for k, v in run.seconds.items()},
        "simulated_hours_per_second": round(hours / run.seconds["replay"], 2),
        "by_policy": summary["by_policy"],
    }
    (args.out / f"stress-{args.loans}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "by_policy"}, indent=2))


if __name__ == "__main__":
    main()
