"""How much resident memory one cached loan costs a worker process (issue 12: at most 1 GiB per
worker process with every loan of a 10,000-loan book cached):

    python -m bench.loan_memory --steps 200,400

For each workflow runner, a fresh Python process runs the production worker (`build_worker`,
every activity, a cache large enough for every loan) against a private time-skipping server,
a private SQLite database and the loopback mail sink, and imports ACTIVE loans through
`import_book` in steps; after each step, once every loan is ACTIVE and garbage is collected,
it reads its VmRSS. The figure of merit is the marginal cost between the last two steps (the
first loans also pay for one-off imports and caches), and the resident memory it projects for
a worker process holding 5,000 loans (10,000 on the two worker processes of this machine).

Runners: `sandboxed` (each loan in the SDK's workflow sandbox, as the test suite runs them,
`LOANFLOW_WORKFLOW_SANDBOX=true`) and `unsandboxed` (the production worker's default since
2026-12-03, and `loanflow stress`). Writes
bench/results/loan-memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.report import load

RESULTS = Path(__file__).parent / "results"
RUNNERS = ("sandboxed", "unsandboxed")
PROJECTED_LOANS = 5000  # one of two worker processes with a 10,000-loan book
QUEUE = "loan-memory"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def book(count: int, first: int, now: datetime) -> list[Any]:
    from loanflow.imported import ImportedLoan

    return [ImportedLoan.model_validate({
        "loan_id": f"MEM{n:05d}", "borrower_id": f"MB{n:05d}", "borrower_name": f"Borrower {n}",
        "borrower_email": f"borrower{n}@memory.example", "borrower_country": "US",
        "collateral_asset": "BTC", "collateral_amount": Decimal("1.5"),
        "principal_usd": Decimal("30000.00"), "accrued_interest_usd": Decimal("100.00"),
        "annual_rate": Decimal("0.12"), "originated_at": now - timedelta(days=100),
        "maturity_at": now + timedelta(days=265)}) for n in range(first, first + count)]


async def all_active(db: Any, count: int, limit: float = 600) -> int:
    from sqlalchemy import func, select

    from loanflow.schema import Loan

    active = 0
    for _ in range(int(limit * 2)):
        async with db.transaction() as session:
            active = (await session.execute(select(func.count()).select_from(Loan)
                                            .where(Loan.state == "ACTIVE"))).scalar_one()
        if active >= count:
            break
        await asyncio.sleep(0.5)
    return int(active)


async def child(runner: str, steps: list[int]) -> None:
    """One worker process's measurements, one JSON line per step on stdout."""
    from temporalio.testing import WorkflowEnvironment

    from activities.registry import build_activities
    from bench.report import quiet_logs
    from loanflow.binaries import test_server
    from loanflow.book_import import import_book
    from loanflow.db import Database
    from loanflow.mail.sink import start_sink
    from loanflow.ports import free_port
    from loanflow.settings import Settings
    from loanflow.temporal_client import data_converter
    from loanflow.worker import build_worker

    work = Path(tempfile.mkdtemp(prefix="loan-memory-"))
    quiet_logs(work / "worker.log")
    port = free_port()
    sink = await start_sink(work / "mail", port=port)
    db = Database(f"sqlite+aiosqlite:///{work / 'memory.db'}")
    await db.create_all()
    settings = Settings(smtp_port=port, fake_latency_ms=0, fake_failure_rate=Decimal(0),
                        var_dir=work, workflow_sandbox=runner == "sandboxed")
    env = await WorkflowEnvironment.start_time_skipping(data_converter=data_converter(settings),
                                                        test_server_existing_path=test_server())
    options: dict[str, Any] = {"max_cached_workflows": max(steps) + 100}
    try:
        async with build_worker(env.client, db, settings, task_queue=QUEUE,
                                activities=build_activities(db, settings), **options):
            gc.collect()
            print(json.dumps({"loans": 0, "rss_mib": round(rss_mib(), 1)}), flush=True)
            done = 0
            for total in steps:
                now = await env.get_current_time()
                await import_book(env.client, db, book(total - done, done, now),
                                  task_queue=QUEUE, memo={"search_attributes": False})
                done = total
                active = await all_active(db, total)
                await asyncio.sleep(2)  # the loans' last read-model writes and notices
                gc.collect()
                print(json.dumps({"loans": total, "active": active,
                                  "rss_mib": round(rss_mib(), 1)}), flush=True)
    finally:
        await env.shutdown()
        sink.close()
        await sink.wait_closed()
        await db.dispose()


def measure(runner: str, steps: list[int]) -> dict[str, Any]:
    env = dict(os.environ)
    if not env.get("LOANFLOW_CODEC_KEYS") and not env.get("LOANFLOW_CODEC_KEYS_FILE"):
        key = base64.b64encode(os.urandom(32)).decode()
        env["LOANFLOW_CODEC_KEYS"] = f"bench:{key}"  # a throwaway key: the run is private
    done = subprocess.run([sys.executable, "-m", "bench.loan_memory", "--child", runner,
                           "--steps", ",".join(map(str, steps))],
                          capture_output=True, text=True, env=env, timeout=3600)
    points = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or len(points) != len(steps) + 1:
        raise RuntimeError(f"{runner} worker failed:\n{done.stderr[-3000:]}")
    (before, last) = points[-2], points[-1]
    per_loan_kib = 1024 * (last["rss_mib"] - before["rss_mib"]) / (last["loans"] - before["loans"])
    projected = last["rss_mib"] + per_loan_kib * (PROJECTED_LOANS - last["loans"]) / 1024
    return {"runner": runner, "points": points, "marginal_kib_per_loan": round(per_loan_kib, 1),
            "projected_mib_at_5000": round(projected)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="200,400", help="cumulative loan counts")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=RUNNERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = sorted({int(s) for s in args.steps.split(",")})
    if len(steps) < 2 or steps[0] < 1:
        parser.error("--steps: at least two positive loan counts, e.g. 200,400")
    if args.child:
        asyncio.run(child(args.child, steps))
        return
    results = {"load_before": load(), "steps": steps,
               "runners": [measure(runner, steps) for runner in RUNNERS], "load_after": load()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loan-memory.json").write_text(json.dumps(results, indent=2))
    for r in results["runners"]:
        curve = ", ".join(f"{p['loans']}: {p['rss_mib']:.0f} MiB" for p in r["points"])
        print(f"{r['runner']:>11}: {curve}; {r['marginal_kib_per_loan']:.0f} KiB per cached "
              f"loan; {PROJECTED_LOANS:,} loans: about {r['projected_mib_at_5000']:,} MiB")


if __name__ == "__main__":
    main()
