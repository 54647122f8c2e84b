"""How fast does `loanflow book import` bring a book onto the desk?

    python -m bench.book_import --loans 10000

On the benchmark's stack (`bench.stack`: one dev server, a fresh PostgreSQL database, the SMTP
sink, two worker processes) with the market's prices stored first (BTC 26,750, ETH 2,000):
1. writes a book of N ACTIVE loans in the import format (CSV; seeded: 60% BTC, LTVs 20-50%
   at the stored prices, rates 8-14%, originated 1-24 months ago, maturing in the future);
2. runs the real command, `loanflow book import FILE --json`, in a subprocess against the stack
   and times it until it exits (it stores the migration records, then starts the workflows);
3. times, from the same start, until every loan is ACTIVE in the read model and every loan's
   `loan_migrated` notice is recorded (and, as a third figure, mailed);
4. runs the same import again: it must start 0 loans;
and reports loans/s, the CPU share per process kind during the import, the worker processes'
resident memory at the end and the exactly-once checks, in bench/results/book-import-N.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.book import SEED_PRICES, count_state, plan_book
from bench.histories import (IMPORT_NOTICE, cost_line, import_window, sample_cost,
                             whole_history)
from bench.import_plot import plot_import
from bench.market import Monitor, wait_until_quiet
from bench.profiling import (ATTACH_SECONDS, Processes, cpu_share, share_line, snapshot,
                             stack_processes, start_py_spy, stop_py_spy, worker_names,
                             worker_rss)
from bench.report import Bar, console, count_in_log, load, machine, quiet_logs, write_json
from bench.stack import Stack, Tuning, bench_stack, worker_processes
from loanflow.book_import import FIELDS, START_CONCURRENCY
from loanflow.money import usd_down
from loanflow.notice_schema import SENT, NoticeRow, OutboxRow
from loanflow.schema import Loan

RESULTS = Path(__file__).parent / "results"
PREFIX = "IMP"
NOTICE = IMPORT_NOTICE  # workflows/migration.py: the one notice an imported loan sends
# Histories read for the cost per imported loan (after the clock has stopped).
HISTORY_SAMPLE = 50
LOANFLOW = str(Path(sys.executable).with_name("loanflow"))
RATES = [Decimal("0.08") + Decimal("0.005") * i for i in range(13)]  # 8% to 14%
TERMS_DAYS = (365, 730, 1095, 1825)
# The environment of the developer's own desk must not reach the benchmark's CLI.
OWN_ENV = ("TEMPORAL_", "LOANFLOW_", "DATABASE_URL", "SMTP_")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.book_import",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--loans", type=int, default=1000, help="N, the size of the book")
    parser.add_argument("--seed", type=int, default=42, help="the book's random seed")
    parser.add_argument("--latency-ms", type=int, default=20, help="built-in fakes' latency")
    parser.add_argument("--failure-rate", type=Decimal, default=Decimal("0.01"),
                        help="built-in fakes' transient failure rate")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--workflow-tasks", type=int, default=50,
                        help="each worker's concurrent workflow tasks")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds for the command, then for the loans to be ACTIVE")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy each worker process during the import, raw stacks into DIR "
                             "(summary: python -m bench.profile_summary DIR); its timings are "
                             "then not figures of merit")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


# --- the book file ------------------------------------------------------------------------------


def book_rows(n: int, seed: int, today: datetime) -> list[dict[str, str]]:
    """N loans in the import format. Asset, collateral, borrower and LTV (of the debt, at the
    stored prices, 20-50%) as the crash benchmark's book (`plan_book`); then a rate, an
    origination 1-24 months before `today`, a term that ends after it, and the interest
    accrued since the last monthly payment: the principal is sized so that the opening debt
    (principal + accrued interest) is the drawn LTV of the collateral."""
    rng = random.Random(seed + 1)
    rows = []
    for plan in plan_book(n, seed=seed, prices=SEED_PRICES, prefix=PREFIX):
        app = plan.app
        rate = rng.choice(RATES)
        age = rng.randint(30, 730)
        originated = today - timedelta(days=age, hours=rng.randint(0, 23))
        term = rng.choice([t for t in TERMS_DAYS if t > age + 14])
        days_unpaid = Decimal(age % 30)
        principal = usd_down(app.principal_usd / (1 + rate * days_unpaid / 365))
        accrued = usd_down(principal * rate * days_unpaid / 365)
        rows.append({
            "loan_id": app.loan_id, "borrower_id": app.borrower.id,
            "borrower_name": app.borrower.name, "borrower_email": app.borrower.email,
            "borrower_country": app.borrower.country, "collateral_asset": app.collateral_asset,
            "collateral_amount": str(app.collateral_amount), "principal_usd": str(principal),
            "accrued_interest_usd": str(accrued), "annual_rate": f"{rate:.3f}".rstrip("0"),
            "originated_at": iso(originated), "maturity_at": iso(originated + timedelta(days=term)),
        })
    return rows


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_book(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def book_summary(path: Path, rows: list[dict[str, str]]) -> dict[str, Any]:
    btc = sum(1 for r in rows if r["collateral_asset"] == "BTC")
    return {"file": str(path), "loans": len(rows), "btc_loans": btc, "eth_loans": len(rows) - btc,
            "principal_usd": str(sum(Decimal(r["principal_usd"]) for r in rows)),
            "prices": {asset: str(price) for asset, price in SEED_PRICES.items()}}


# --- the command --------------------------------------------------------------------------------


@dataclass
class CliRun:
    seconds: float
    cpu_seconds: float  # the command's own CPU (its rusage as a reaped child)
    exit_code: int
    output: dict[str, Any]
    stderr: str


def cli_environ(stack: Stack) -> dict[str, str]:
    """The command configured for the bench's stack, as an operator's shell would have it."""
    s = stack.settings
    return {**{k: v for k, v in os.environ.items() if not k.startswith(OWN_ENV)},
            "TEMPORAL_ADDRESS": stack.server.address, "DATABASE_URL": s.database_url or "",
            "LOANFLOW_TASK_QUEUE": s.task_queue, "LOANFLOW_VAR_DIR": str(s.var_dir),
            "LOANFLOW_CODEC_KEYS_FILE": str(s.keys_file), "SMTP_PORT": str(s.smtp_port),
            "NO_COLOR": "1"}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def import_command(stack: Stack, book: Path, timeout: float) -> CliRun:
    """`loanflow book import FILE --json` until it exits. Run in the stack's directory, so no
    `.env` file of the developer's is read."""
    cpu, began = children_cpu(), time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        LOANFLOW, "book", "import", str(book), "--json", cwd=stack.root, env=cli_environ(stack),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    seconds = time.monotonic() - began
    # The worker processes and the sink are not reaped before the end: the children's CPU
    # that grew meanwhile is the command's.
    output = json.loads(out) if proc.returncode == 0 else {}
    return CliRun(seconds, children_cpu() - cpu, proc.returncode or 0, output,
                  err.decode(errors="replace")[-2000:])


def command_figures(run: CliRun, loans: int) -> dict[str, Any]:
    return {"seconds": round(run.seconds, 3), "loans_per_second": per_second(loans, run.seconds),
            "exit_code": run.exit_code, "started": len(run.output.get("started", [])),
            "already_present": len(run.output.get("already_present", [])),
            "cpu_seconds": round(run.cpu_seconds, 3),
            **({"stderr": run.stderr} if run.exit_code else {})}


def per_second(count: int, seconds: float | None) -> float | None:
    return round(count / seconds, 2) if seconds else None


# --- the desk's side: every loan ACTIVE, every notice recorded ------------------------------------


async def progress_counts(stack: Stack) -> dict[str, int]:
    """Loans ACTIVE in the read model; loans with their import notice recorded; mailed."""
    async with stack.db.transaction() as s:
        noticed = await s.scalar(select(func.count(func.distinct(NoticeRow.loan_id))).where(
            NoticeRow.kind == NOTICE, NoticeRow.loan_id.like(f"{PREFIX}-%")))
        mailed = await s.scalar(select(func.count()).where(
            OutboxRow.kind == NOTICE, OutboxRow.status == SENT,
            OutboxRow.loan_id.like(f"{PREFIX}-%")))
    return {"active": await count_state(stack.db, "ACTIVE", f"{PREFIX}-"),
            "noticed": int(noticed or 0), "mailed": int(mailed or 0)}


@dataclass
class Progress:
    """The counts of `progress_counts` over the import, once a second (`watch`, for the plot)."""

    seconds: list[float] = field(default_factory=list)
    counts: dict[str, list[int]] = field(
        default_factory=lambda: {"active": [], "noticed": [], "mailed": []})

    def add(self, at: float, counts: dict[str, int]) -> None:
        self.seconds.append(round(at, 2))
        for name, count in counts.items():
            self.counts[name].append(count)

    def as_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, **self.counts}


async def watch(stack: Stack, began: float, progress: Progress, every: float = 1.0) -> None:
    """Sample `progress_counts` into `progress` from `began` on, until cancelled."""
    while True:
        progress.add(time.monotonic() - began, await progress_counts(stack))
        await asyncio.sleep(every)


async def until_done(stack: Stack, n: int, began: float, deadline: float, bar: Bar,
                     mail_grace: float = 300, poll: float = 0.25) -> dict[str, float | None]:
    """Seconds from `began` until each count of `progress_counts` reached N (None: not by
    the deadline). Once every loan is ACTIVE with its notice recorded, the mail gets at most
    `mail_grace` seconds more: a notice whose delivery is deferred must not hold the run."""
    reached: dict[str, float | None] = {"active": None, "noticed": None, "mailed": None}
    while time.monotonic() < deadline:
        counts = await progress_counts(stack)
        for name, count in counts.items():
            bar.set(name, count)
            if count >= n and reached[name] is None:
                reached[name] = time.monotonic() - began
                if reached["active"] is not None and reached["noticed"] is not None:
                    deadline = min(deadline, time.monotonic() + mail_grace)
        if all(v is not None for v in reached.values()):
            break
        await asyncio.sleep(poll)
    return reached


@dataclass
class Phase:
    """CPU readings at the start of a phase (`bench.profiling`)."""

    processes: Processes
    kinds: dict[str, list[int]]
    before: dict[int, float]
    began: float

    @classmethod
    async def start(cls, processes: Processes) -> Phase:
        kinds = await processes.current()
        return cls(processes, kinds, snapshot(kinds), time.monotonic())

    async def share(self, cli_cpu: float) -> dict[str, Any]:
        """Per process kind, since the start; the command's CPU (a child reaped meanwhile)
        as `loanflow_cli`."""
        wall = time.monotonic() - self.began
        kinds = await self.processes.current()
        by_kind = cpu_share(kinds, self.before, snapshot(kinds), wall,
                            ended={"loanflow_cli": cli_cpu})
        return {"wall_seconds": round(wall, 3), "cores": os.cpu_count(), "by_kind": by_kind,
                "notes": self.processes.notes}


async def timed_import(stack: Stack, workers: list[int], book: Path, n: int,
                       args: argparse.Namespace, bar: Bar) -> dict[str, Any]:
    """The import, timed from the command's start: to its exit, then to every loan ACTIVE
    with its notice recorded (and mailed); the CPU share per kind over both spans."""
    for name in ("active", "noticed", "mailed"):
        bar.add(name, n)
    processes = stack_processes(stack, workers)
    spies = await profiling(workers, args.profile)
    if spies:  # what the profile cost the machine
        processes.kinds["py-spy"] = [p.pid for p in spies]
    try:
        phase = await Phase.start(processes)
        progress = Progress()
        watching = asyncio.create_task(watch(stack, phase.began, progress))
        try:
            run = await import_command(stack, book, args.timeout)
            during_command = await phase.share(run.cpu_seconds)
            if run.exit_code:
                raise RuntimeError(f"loanflow book import failed ({run.exit_code}): "
                                   f"{run.stderr}")
            reached = await until_done(stack, n, phase.began, time.monotonic() + args.timeout,
                                       bar)
            during_import = await phase.share(run.cpu_seconds)
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        progress.add(time.monotonic() - phase.began, await progress_counts(stack))
    finally:
        await stop_py_spy(spies)
    active, noticed = reached["active"], reached["noticed"]
    done = max(active, noticed) if active is not None and noticed is not None else None
    return {
        "command": command_figures(run, n),
        "to_active": span(n, reached["active"]),
        "to_notices_recorded": span(n, reached["noticed"]),
        "to_active_and_notices": span(n, done),
        "to_notices_mailed": span(n, reached["mailed"]),
        "complete": done is not None,
        "cpu_share": {"command": during_command, "import": during_import},
        "progress": progress.as_json(),
    }


async def profiling(workers: list[int], out: Path | None) -> list[Any]:
    """With `--profile DIR`: one py-spy per worker process (`bench.profiling`), attached."""
    if out is None:
        return []
    spies = start_py_spy(worker_names(workers), out)
    await asyncio.sleep(ATTACH_SECONDS)
    return spies


def span(n: int, seconds: float | None) -> dict[str, Any]:
    return {"seconds": round(seconds, 3) if seconds else None,
            "loans_per_second": per_second(n, seconds)}


# --- after the import -----------------------------------------------------------------------------


async def exactly_once(stack: Stack, n: int) -> dict[str, Any]:
    """Every loan ACTIVE once: the read model's states, one workflow run per loan id (loan
    workflows counted by the server's visibility), one import notice per loan."""
    async with stack.db.transaction() as s:
        states = dict((await s.execute(select(Loan.state, func.count()).where(
            Loan.loan_id.like(f"{PREFIX}-%")).group_by(Loan.state))).all())
        per_loan = select(NoticeRow.loan_id, func.count().label("k")).where(
            NoticeRow.kind == NOTICE).group_by(NoticeRow.loan_id).subquery()
        twice = await s.scalar(select(func.count()).select_from(per_loan).where(per_loan.c.k > 1))
        notices = await s.scalar(select(func.count()).where(NoticeRow.kind == NOTICE))
    runs = (await stack.client.count_workflows("WorkflowType = 'LoanWorkflow'")).count
    failed = (await stack.client.count_workflows("ExecutionStatus = 'Failed'")).count
    return {"states": states, "active": states.get("ACTIVE", 0),
            "loan_workflow_runs": runs, "import_notices": int(notices or 0),
            "loans_with_more_than_one_notice": int(twice or 0), "failed_workflows": failed,
            "exactly_once": states == {"ACTIVE": n} and runs == n and notices == n and not twice}


async def second_import(stack: Stack, book: Path, n: int, timeout: float) -> dict[str, Any]:
    """The same file again: idempotent by loan id, it must start nothing."""
    run = await import_command(stack, book, timeout)
    if run.exit_code:
        raise RuntimeError(f"the second import failed ({run.exit_code}): {run.stderr}")
    return command_figures(run, n)


# --- the run --------------------------------------------------------------------------------------


def tuning_of(args: argparse.Namespace) -> Tuning:
    return Tuning(fake_latency_ms=args.latency_ms, fake_failure_rate=args.failure_rate,
                  database=args.database, keep=args.keep, worker_processes=args.worker_processes,
                  max_concurrent_workflow_tasks=args.workflow_tasks)


def config_of(args: argparse.Namespace, tuning: Tuning) -> dict[str, Any]:
    return {"loans": args.loans, "seed": args.seed, "fake_latency_ms": tuning.fake_latency_ms,
            "fake_failure_rate": str(tuning.fake_failure_rate), "database": args.database,
            "worker_processes": tuning.worker_processes,
            "max_concurrent_activities": tuning.max_concurrent_activities,
            "max_concurrent_workflow_tasks": tuning.max_concurrent_workflow_tasks,
            "cli_start_concurrency": START_CONCURRENCY}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tuning = tuning_of(args)
    results: dict[str, Any] = {
        "command": f"python -m bench.book_import --loans {args.loans}"
                   + (f" --profile {args.profile}" if args.profile else ""),
        "machine": machine(),
        "config": config_of(args, tuning),
        "started_at": datetime.now(timezone.utc).isoformat(), "load_before": load()}
    with Bar(enabled=not args.no_progress) as bar:
        async with bench_stack(tuning) as stack:
            async with worker_processes(stack, tuning, cache=args.loans + 100,
                                        log=log_file(args), concurrency=100) as workers:
                await desk_phases(stack, workers, args, bar, results)
    results["finished_at"] = datetime.now(timezone.utc).isoformat()
    results["load_after"] = load()
    results["log"] = {"file": str(log_file(args)),
                      "slow_workflow_tasks": count_in_log(log_file(args),
                                                          "Workflow task duration exceeded"),
                      "failed_activity_attempts": count_in_log(log_file(args),
                                                               "Completing activity as failed")}
    return results


async def desk_phases(stack: Stack, workers: list[int], args: argparse.Namespace, bar: Bar,
                      results: dict[str, Any]) -> None:
    monitor = await Monitor.start(stack.client, stack.settings.market_queue, 100)
    for asset, price in SEED_PRICES.items():  # a fresh stored price for every loan
        await monitor.tick(asset, price)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = book_rows(args.loans, args.seed, today)
    book = write_book(stack.root / f"book-{args.loans}.csv", rows)
    results["book"] = book_summary(book, rows)
    results["import"] = await timed_import(stack, workers, book, args.loans, args, bar)
    results["second_import"] = await second_import(stack, book, args.loans, args.timeout)
    await wait_until_quiet(stack.db, seconds=2, timeout=args.timeout)
    results["check"] = await exactly_once(stack, args.loans)
    results["worker_rss_mib"] = worker_rss(workers)
    results["cost_per_imported_loan"] = await import_costs(stack, rows)


async def import_costs(stack: Stack, rows: list[dict[str, str]]) -> dict[str, Any]:
    """What one imported loan cost Temporal (`bench.histories`), over the first loans: from its
    start to its import notice taken in, and its whole history once the desk is quiet."""
    ids = [f"loan-{r['loan_id']}" for r in rows]
    return {"to_notice": await sample_cost(stack.client, ids, import_window, HISTORY_SAMPLE),
            "whole_history": await sample_cost(stack.client, ids, whole_history, HISTORY_SAMPLE)}


def print_figures(results: dict[str, Any]) -> None:
    imp, n = results["import"], results["config"]["loans"]
    m = results["machine"]
    console.print(f"\n[bold]loanflow book import benchmark[/]  {results['command']}")
    console.print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['temporal']}")
    console.print(f"book: {n} loans ({results['book']['btc_loans']} BTC)")
    cmd = imp["command"]
    console.print(f"command (loanflow book import, to its exit): {cmd['seconds']} s, "
                  f"[bold]{cmd['loans_per_second']} loans/s[/], {cmd['started']} started, "
                  f"its own CPU {cmd['cpu_seconds']} s")
    for key, label in (("to_active", "every loan ACTIVE"),
                       ("to_notices_recorded", "every import notice recorded"),
                       ("to_active_and_notices", "both"),
                       ("to_notices_mailed", "every import notice mailed")):
        figure = imp[key]
        console.print(f"{label}: {figure['seconds']} s, {figure['loans_per_second']} loans/s")
    console.print(share_line(imp["cpu_share"]["command"], "the command"))
    console.print(share_line(imp["cpu_share"]["import"], "the import (to the last notice mailed)"))
    again = results["second_import"]
    console.print(f"second import of the same file: {again['started']} started, "
                  f"{again['already_present']} already present, {again['seconds']} s")
    check = results["check"]
    console.print(f"exactly once: {check['exactly_once']} (states {check['states']}, "
                  f"{check['loan_workflow_runs']} loan workflow runs, "
                  f"{check['import_notices']} import notices)")
    console.print(f"worker resident memory (MiB): {results['worker_rss_mib']}")
    for window, cost in results["cost_per_imported_loan"].items():
        console.print(cost_line(cost, f"an imported loan, {window.replace('_', ' ')}"))


def log_file(args: argparse.Namespace) -> Path:
    return args.out / f"book-import-{args.loans}.log"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    quiet_logs(log_file(args))
    results = asyncio.run(run(args))
    print_figures(results)
    out = args.out / f"book-import-{args.loans}.json"
    write_json(out, results)
    plot_import(out.with_suffix(".png"), results)
    console.print(f"results: {out} and {out.with_suffix('.png')}")
    return results


if __name__ == "__main__":
    main()
