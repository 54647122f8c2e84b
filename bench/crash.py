"""The crash benchmark: how fast a price move reaches every affected loan, against what the
Temporal server itself carries.

    python -m bench.crash --loans 1000
    python -m bench.crash --loans 10000 --quiet-loans 100

In one run, on one dev server it starts itself (headless, in a temporary directory):
1. seeds N active loans (60% BTC, 40% ETH; LTVs 25-62.5% after a 20% drawdown) through the
   real LoanWorkflow;
2. the baseline: N minimal workflows, one signal and one no-op activity each, timed from the
   first signal to the last activity completed;
3. a tick that moves BTC 20% and crosses no trigger (zero wake-ups expected);
4. the crash, BTC -25%: as one tick, then (after a recovery) as 25 ticks of 1%, each timed from
   the tick to the last margin-call notice stored, with per-loan p50/p95/p99;
5. a quiet month (2023-07, hourly ticks) on the time-skipping server: workflow tasks per loan
   per day and history events per loan per simulated year;
and prints every figure, the ratio crash / baseline, and writes bench/results/crash-N.json and
a plot of the latency distributions. Around the one-tick crash it also reads each process's
CPU (the share per process kind) and, after it, the histories of up to 50 called loans and as
many same-work baseline workflows (the Temporal work one margin call costs against one baseline
workflow); `--profile DIR` adds a py-spy profile of each worker process during that crash
(`python -m bench.profile_summary DIR` sorts it into categories).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.baseline import run_baseline, workflow_ids
from bench.book import (START_PRICES, SEED_PRICES, Plan, Window, fund_loans, plan_book,
                        start_loans)
from bench.crashes import (CrashResult, gradual_crash, mail_figures, one_tick_crash, quiet_tick,
                            restore)
from bench.histories import (baseline_window, comparison_line, cost_line, margin_call_window,
                             sample_cost, whole_history)
from bench.market import Monitor, wait_until_quiet
from bench.profiling import (measured, share_line, stack_processes, trail, worker_names,
                             worker_rss)
from bench.quiet import SUGGEST_CONTINUE_AS_NEW, QuietResult, quiet_month
from bench.report import (Bar, console, count_in_log, load, machine, plot, quiet_logs, spread,
                          write_json)
from bench.stack import (DYNAMIC_CONFIG, SQLITE_PRAGMAS, Stack, Tuning, bench_stack,
                         worker_processes)

RESULTS = Path(__file__).parent / "results"
PREFIX = "BK-"
SAME_WORK = "same-work"
# Histories read for the cost per margin call: enough for a stable mean, few enough to read
# in seconds at 10,000 loans.
HISTORY_SAMPLE = 50


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.crash", description=__doc__.split("\n")[0])
    parser.add_argument("--loans", type=int, default=1000, help="N, the size of the book")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="signals in flight (fan-out and baseline alike), starts and deposits")
    parser.add_argument("--latency-ms", type=int, default=20, help="built-in fakes' latency")
    parser.add_argument("--failure-rate", type=Decimal, default=Decimal("0.01"),
                        help="built-in fakes' transient failure rate")
    parser.add_argument("--onboarding", type=int, default=500,
                        help="seeding: loans in onboarding (started, not yet active) at a time")
    parser.add_argument("--tick-spacing", type=float, default=1.0,
                        help="seconds between the 25 ticks of the gradual crash")
    parser.add_argument("--quiet-loans", type=int, default=100,
                        help="book of the quiet month (0: skip it; it does not depend on N)")
    parser.add_argument("--quiet-days", type=float, default=31, help="days of 2023-07 replayed")
    parser.add_argument("--timeout", type=float, default=1800, help="per phase, seconds")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql",
                        help="a fresh database on 127.0.0.1:5432 (LOANFLOW_BENCH_PG_URL), or "
                             "SQLite in the temporary directory")
    parser.add_argument("--workflow-tasks", type=int, default=50,
                        help="the worker's concurrent workflow tasks")
    parser.add_argument("--worker-processes", type=int, default=2,
                        help="worker processes (each: every workflow and activity)")
    parser.add_argument("--monitor-queue", choices=("own", "loans"), default="own",
                        help="the monitor on its own task queue (production), or sharing the "
                             "loans queue (as before; for comparison)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy each worker process during the one-tick crash, raw stacks "
                             "into DIR (summary: python -m bench.profile_summary DIR)")
    parser.add_argument("--profile-seed", type=Path, metavar="DIR",
                        help="py-spy each worker process during seeding (the onboarding of "
                             "the book), raw stacks into DIR")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tuning = Tuning(fake_latency_ms=args.latency_ms, fake_failure_rate=args.failure_rate,
                    database=args.database, keep=args.keep,
                    max_concurrent_workflow_tasks=args.workflow_tasks,
                    worker_processes=args.worker_processes)
    results: dict[str, Any] = {
        "command": "python -m bench.crash " + " ".join(_argv(args)),
        "machine": machine(),
        "config": {"loans": args.loans, "concurrency": args.concurrency,
                   "onboarding_window": args.onboarding,
                   "fake_latency_ms": tuning.fake_latency_ms,
                   "fake_failure_rate": str(tuning.fake_failure_rate),
                   "dynamic_config": DYNAMIC_CONFIG,
                   "temporal_sqlite_pragmas": SQLITE_PRAGMAS,
                   "max_concurrent_activities": tuning.max_concurrent_activities,
                   "max_concurrent_workflow_tasks": tuning.max_concurrent_workflow_tasks,
                   "worker_processes": tuning.worker_processes,
                   "monitor_queue": args.monitor_queue,
                   "database": args.database},
        "started_at": datetime.now(timezone.utc).isoformat(),
        "load_before": load(),
    }
    with Bar(enabled=not args.no_progress) as bar:
        async with bench_stack(tuning) as stack:
            results["config"]["database_url"] = stack.settings.db_url
            async with worker_processes(stack, tuning, cache=args.loans + 1000,
                                        log=log_file(args), concurrency=args.concurrency) as workers:
                await desk_phases(stack, workers, args, bar, results)
            results["quiet_month"] = None
            if args.quiet_loans > 0:
                results["quiet_month"] = await quiet_month(
                    stack.root, stack.settings, args.quiet_loans, args.quiet_days, bar)
    results["finished_at"] = datetime.now(timezone.utc).isoformat()
    results["load_after"] = load()
    log = log_file(args)
    results["log"] = {"file": str(log),
                      "slow_workflow_tasks": count_in_log(log, "Workflow task duration exceeded"),
                      "failed_activity_attempts": count_in_log(log, "Completing activity as failed")}
    return results


async def desk_phases(stack: Stack, workers: list[int], args: argparse.Namespace, bar: Bar,
                      results: dict[str, Any]) -> None:
    queue = stack.settings.market_queue if args.monitor_queue == "own" else stack.settings.task_queue
    monitor = await Monitor.start(stack.client, queue, args.concurrency)
    results["seed"] = await seed_phase(stack, workers, monitor, args, bar)
    # Every loan is cached now and nothing else is (the baselines' workflows come next, on
    # the same workers): the figure issue 12 asks for.
    results["worker_rss_mib_after_seeding"] = worker_rss(workers)

    bar.add("baseline started", args.loans)
    bar.add("baseline done", args.loans)
    total, latencies = await run_baseline(stack.client, args.loans, args.concurrency, bar)
    results["baseline"] = {"seconds": round(total, 3), "per_workflow": spread(latencies)}

    start = START_PRICES["BTC"]
    results["quiet_tick"] = await quiet_tick(stack.db, stack.client, monitor, start, PREFIX,
                                             sample=min(args.loans, 300))
    one = await one_tick_phase(stack, workers, monitor, start, args, bar, results)
    results["baseline_same_work"] = await same_work_baseline(stack, workers, one.signalled,
                                                             args, bar)
    results["cpu_ms_per_signalled_loan"] = cpu_per(results["cpu_share"], one.signalled)
    results["cpu_ratio_same_work"] = cpu_floor(
        results["cpu_ms_per_signalled_loan"], results["baseline_same_work"]["cpu_ms_per_workflow"])
    results["cost_per_baseline_workflow"] = await sample_cost(
        stack.client, workflow_ids(SAME_WORK, one.signalled), baseline_window,
        sample=min(HISTORY_SAMPLE, len(one.called)))
    results["recovery"] = await restore(stack.db, monitor, start, bar)
    gradual = await gradual_crash(stack.db, monitor, start, PREFIX, bar, args.tick_spacing,
                                  args.timeout)
    await wait_until_quiet(stack.db, seconds=3, timeout=args.timeout)
    # Every loan has run in both crashes, so each worker's cache holds all it was given.
    results["worker_rss_mib"] = worker_rss(workers)
    results["failed_workflows"] = await failed_workflows(stack)
    same = results["baseline_same_work"]["seconds"]
    results["crash_one_tick"] = crash_summary(one, total, same)
    results["crash_25_ticks"] = crash_summary(gradual, total)
    results["latencies"] = {"baseline": latencies, "one_tick": one.latencies,
                            "gradual": gradual.latencies}


async def one_tick_phase(stack: Stack, workers: list[int], monitor: Monitor, start: Decimal,
                         args: argparse.Namespace, bar: Bar,
                         results: dict[str, Any]) -> CrashResult:
    """The one-tick crash, with each process's CPU (and, on request, a profile of each worker)
    while it runs, then what a margin call cost in Temporal terms (read after the clock)."""
    processes, names = stack_processes(stack, workers), worker_names(workers)
    async with measured(processes, names, args.profile) as cpu:
        one = await one_tick_crash(stack.db, monitor, start, PREFIX, bar, args.timeout)
    results["cpu_share"] = cpu
    await mail_figures(stack.db, one, args.timeout)  # after the clock, as the CPU window ends
    await wait_until_quiet(stack.db, seconds=3, timeout=args.timeout)
    results["cost_per_margin_call"] = await sample_cost(
        stack.client, [f"loan-{loan}" for loan in one.called], margin_call_window,
        sample=HISTORY_SAMPLE)
    return one


async def same_work_baseline(stack: Stack, workers: list[int], signalled: int,
                             args: argparse.Namespace, bar: Bar) -> dict[str, Any]:
    """The honest denominator: as many signal + no-op activity workflows as the one-tick crash
    signalled loans (the N-workflow baseline does several times the crash's work and flatters
    it), with each process's CPU over exactly its timed part, from the first signal to the
    last completion, as the crash's runs from its tick to its last notice. (The run learns
    that its workflows are done from a visibility count, seconds late: CPU to that moment,
    `cpu_share_to_visibility`, holds the server's work of those seconds too.)"""
    bar.add("same-work baseline started", signalled)
    bar.add("same-work baseline done", signalled)
    processes, trails = stack_processes(stack, workers), []

    @contextlib.asynccontextmanager
    async def clock() -> AsyncIterator[None]:  # from the first signal to the visibility count
        async with trail(processes) as readings:
            trails.append(readings)
            yield

    seconds, latencies = await run_baseline(stack.client, signalled, args.concurrency, bar,
                                            prefix=SAME_WORK, bar="same-work baseline",
                                            clock=clock())
    [readings] = trails
    began, ended = readings.samples[0][0], readings.samples[-1][0]
    timed = readings.report(began, began + seconds)
    return {"workflows": signalled, "seconds": round(seconds, 3),
            "per_workflow": spread(latencies), "cpu_share": timed,
            "cpu_share_to_visibility": readings.report(began, ended),
            "cpu_ms_per_workflow": cpu_per(timed, signalled)}


def cpu_per(report: dict[str, Any], units: int) -> dict[str, float]:
    """CPU milliseconds per unit of work (a signalled loan, a baseline workflow), per kind of
    process: what one costs the machine, whatever the wall clock did."""
    return {kind: round(v["cpu_seconds"] * 1000 / max(units, 1), 1)
            for kind, v in report["by_kind"].items() if v["processes"]}


# CPU of the measuring itself, not of the work measured.
INSTRUMENTS = frozenset({"py-spy"})


def cpu_floor(per_loan: dict[str, float], per_baseline: dict[str, float]) -> dict[str, float]:
    """The one-tick crash and the same-work baseline both keep this machine's cores busy, so
    their wall-clock ratio follows the ratio of their CPU per unit of work. `all` is that
    ratio; `without_workers` is what it would be if loanflow's workers cost nothing: the CPU
    the dev server, the database, the mail sink and the driver spend per signalled loan,
    against everything a baseline workflow costs. Above 1.5 it is a floor that no worker-side
    change can take `ratio_same_work` under, on this machine."""
    base = cpu_total(per_baseline)
    if not base:
        return {"all": 0.0, "without_workers": 0.0}
    return {"all": round(cpu_total(per_loan) / base, 2),
            "without_workers": round(cpu_total(per_loan, without_workers=True) / base, 2)}


def seeding_ceiling(per_loan: dict[str, float], cores: int) -> float:
    """Loans a second this machine could onboard if loanflow's workers cost nothing: its cores
    over what the dev server, the database, the sink and the driver spend per loan."""
    rest = cpu_total(per_loan, without_workers=True)
    return round(cores * 1000 / rest, 1) if rest else 0.0


def cpu_total(per_unit: dict[str, float], *, without_workers: bool = False) -> float:
    """CPU ms per unit of work over every kind of process but the instruments (and the
    workers, if asked)."""
    skip = INSTRUMENTS | {"worker"} if without_workers else INSTRUMENTS
    return sum(v for kind, v in per_unit.items() if kind not in skip)


async def seed_phase(stack: Stack, workers: list[int], monitor: Monitor,
                     args: argparse.Namespace, bar: Bar) -> dict[str, Any]:
    """Seeding is the real onboarding of N loans (issue 12's 20 loans a second): with each
    process's CPU while it runs (and, on request, a profile of each worker), then what one
    onboarded loan cost Temporal, from the histories of the first loans (start to ACTIVE,
    plus the price ticks of the seed that woke it)."""
    processes, names = stack_processes(stack, workers), worker_names(workers)
    plans = plan_book(args.loans)
    async with measured(processes, names, args.profile_seed) as cpu:
        figures = await seed(stack, monitor, plans, args, bar)
    ids = [f"loan-{plan.loan_id}" for plan in plans]
    per_loan = cpu_per(cpu, args.loans)
    return figures | {
        "cpu_share": cpu, "cpu_ms_per_loan": per_loan,
        "loans_per_second_without_workers": seeding_ceiling(per_loan, cpu["cores"]),
        "cost_per_loan": await sample_cost(stack.client, ids, whole_history,
                                           sample=HISTORY_SAMPLE)}


async def seed(stack: Stack, monitor: Monitor, plans: list[Plan], args: argparse.Namespace,
               bar: Bar) -> dict[str, Any]:
    began = time.monotonic()
    for asset, price in SEED_PRICES.items():
        await monitor.tick(asset, price)
    for name in ("started", "funded", "active"):
        bar.add(name, args.loans)
    refresher = asyncio.create_task(refresh_prices(monitor))
    window = Window(args.onboarding)
    try:  # deposits are confirmed while later loans are still being opened
        await asyncio.gather(
            start_loans(stack.client, plans, stack.settings.task_queue, args.concurrency, bar,
                        window=window),
            fund_loans(stack.client, stack.db, plans, args.concurrency, bar, window=window),
        )
    finally:
        refresher.cancel()
    await monitor.tick("BTC", SEED_PRICES["BTC"])  # a fresh price for what follows
    await wait_until_quiet(stack.db, seconds=3, timeout=args.timeout)
    btc = sum(1 for p in plans if p.app.collateral_asset == "BTC")
    return {"loans": len(plans), "btc_loans": btc, "eth_loans": len(plans) - btc,
            "seconds": round(time.monotonic() - began, 1)}


async def refresh_prices(monitor: Monitor, every: float = 240) -> None:
    """A seed that takes longer than the 15-minute staleness limit still approves on a fresh
    price: the market 'ticks' at the same price (which crosses nothing)."""
    while True:
        await asyncio.sleep(every)
        for asset, price in SEED_PRICES.items():
            await monitor.tick(asset, price)


async def failed_workflows(stack: Stack) -> int:
    count = await stack.client.count_workflows("ExecutionStatus = 'Failed'")
    return count.count


def crash_summary(result: CrashResult, baseline: float,
                  same_work: float | None = None) -> dict[str, Any]:
    ratio_same = round(result.seconds / same_work, 3) if same_work else None
    return {
        "ticks": result.ticks,
        "affected_loans": result.affected,
        "margin_call_notices": result.notices,
        "seconds_to_last_notice": round(result.seconds, 3),
        "ratio_to_baseline": round(result.seconds / baseline, 3) if baseline else None,
        **({"ratio_same_work": ratio_same} if same_work is not None else {}),
        "per_loan": spread(result.latencies),
        "exactly_one_notice_per_affected_loan": result.exact,
        "duplicates": result.duplicates[:20],
        "missing": result.missing[:20],
        "unexpected": result.unexpected[:20],
        "signalled": result.signalled,
        "signals_to_ended_loans": result.gone,
        "slowest_fan_out_seconds": result.fan_out_seconds,
        "liquidations": result.liquidations,
        "expected_liquidations": result.expected_liquidations,
        "notice_delivery_failures": result.delivery_failures,
        **result.extra,
    }


def print_figures(results: dict[str, Any]) -> None:
    base = results["baseline"]
    console.print(f"\n[bold]loanflow crash benchmark[/]  {results['command']}")
    m = results["machine"]
    console.print(f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; {m['temporal']}")
    seeded = results["seed"]
    console.print(f"seed: {seeded['loans']} loans ({seeded['btc_loans']} BTC) in "
                  f"{seeded['seconds']} s; CPU ms per onboarded loan {seeded['cpu_ms_per_loan']}; "
                  f"at most {seeded['loans_per_second_without_workers']} loans/s on "
                  f"{m['cores']} cores were the workers free")
    console.print(share_line(seeded["cpu_share"], "seeding"))
    console.print(cost_line(seeded["cost_per_loan"], "an onboarded loan's history after seeding"))
    console.print(f"baseline: {base['seconds']} s for {results['config']['loans']} "
                  f"signal + no-op activity workflows; per workflow {base['per_workflow']}")
    same = results["baseline_same_work"]
    console.print(f"same-work baseline: {same['seconds']} s for {same['workflows']} signal + "
                  f"no-op activity workflows (as many as the one-tick crash signalled); per "
                  f"workflow {same['per_workflow']}")
    q = results["quiet_tick"]
    console.print(f"tick crossing no trigger (BTC {q['previous']} -> {q['price']}): "
                  f"{q['signalled']} loans signalled, {q['sampled_loans_woken']} of "
                  f"{q['sampled_loans']} sampled loans woken")
    for key in ("crash_one_tick", "crash_25_ticks"):
        c = results[key]
        console.print(
            f"{key}: {c['affected_loans']} affected, {c['margin_call_notices']} margin-call notices, "
            f"last after {c['seconds_to_last_notice']} s, ratio to baseline "
            f"[bold]{c['ratio_to_baseline']}[/]{same_work_text(c)}; per loan {c['per_loan']}; exactly one each: "
            f"{c['exactly_one_notice_per_affected_loan']}; liquidations {c['liquidations']}/"
            f"{c['expected_liquidations']}; delivery failures {c['notice_delivery_failures']}")
        console.print(f"  their e-mails accepted by the relay: last after "
                      f"{c['timeline_seconds']['last_email_accepted']} s, per loan "
                      f"{c['email_accepted_per_loan']}; not accepted {c['emails_not_accepted']}")
    console.print(comparison_line(results["cost_per_margin_call"],
                                  results["cost_per_baseline_workflow"]))
    console.print(share_line(results["cpu_share"]))
    console.print(share_line(same["cpu_share"], "the same-work baseline's timed part"))
    console.print(f"CPU ms per signalled loan {results['cpu_ms_per_signalled_loan']}; per "
                  f"same-work baseline workflow {same['cpu_ms_per_workflow']}")
    floor = results["cpu_ratio_same_work"]
    console.print(f"CPU per signalled loan / per same-work baseline workflow: {floor['all']}; "
                  f"without any worker CPU {floor['without_workers']} (the floor of "
                  f"ratio_same_work on this machine for any worker-side change)")
    if "profile" in results["cpu_share"]:
        console.print(f"profile: python -m bench.profile_summary {results['cpu_share']['profile']['dir']}")
    g = results["crash_25_ticks"]
    console.print(f"25 ticks meant {g['tick_spacing_seconds']} s apart came "
                  f"{g['actual_tick_spacing_seconds']} s apart; a tick answered in "
                  f"{g['tick_answered_seconds']} s (monitor queue: "
                  f"{results['config']['monitor_queue']})")
    console.print(f"worker resident memory (MiB): after seeding, every loan cached "
                  f"{results['worker_rss_mib_after_seeding']}; at the end, with the baselines' "
                  f"workflows cached too {results['worker_rss_mib']}")
    console.print(f"failed workflows: {results['failed_workflows']}; slow workflow tasks (> 5 s): "
                  f"{results['log']['slow_workflow_tasks']}; failed activity attempts (retried): "
                  f"{results['log']['failed_activity_attempts']}; load {results['load_before']} -> "
                  f"{results['load_after']}")
    quiet: QuietResult | None = results["quiet_month"]
    if quiet is None:
        console.print("quiet month: skipped (--quiet-loans 0)")
        return
    console.print(
        f"quiet month ({quiet.loans} loans, {quiet.days} days of 2023-07, {quiet.ticks} hourly "
        f"ticks, {quiet.signalled} signals): {quiet.tasks_per_loan_day} workflow tasks per loan "
        f"per day (max {quiet.tasks_per_loan_day_max}); {quiet.events_per_loan_year} history "
        f"events per loan per year (max {quiet.events_per_loan_year_max}, continue-as-new "
        f"suggested at {SUGGEST_CONTINUE_AS_NEW}); {quiet.continued_as_new} loans continued as "
        f"new; {quiet.wall_seconds} s")


def same_work_text(crash: dict[str, Any]) -> str:
    ratio = crash.get("ratio_same_work")
    return "" if ratio is None else f", ratio to the same-work baseline [bold]{ratio}[/]"


def _argv(args: argparse.Namespace) -> list[str]:
    parts = [f"--loans {args.loans}"]
    if args.quiet_loans != 100:
        parts.append(f"--quiet-loans {args.quiet_loans}")
    if args.quiet_days != 31:
        parts.append(f"--quiet-days {args.quiet_days:g}")
    if args.concurrency != 100:
        parts.append(f"--concurrency {args.concurrency}")
    if args.worker_processes != 2:
        parts.append(f"--worker-processes {args.worker_processes}")
    if args.monitor_queue != "own":
        parts.append(f"--monitor-queue {args.monitor_queue}")
    if args.profile is not None:
        parts.append(f"--profile {args.profile}")
    if args.profile_seed is not None:
        parts.append(f"--profile-seed {args.profile_seed}")
    return parts


def log_file(args: argparse.Namespace) -> Path:
    return args.out / f"crash-{args.loans}.log"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    quiet_logs(log_file(args))
    results = asyncio.run(run(args))
    latencies = results.pop("latencies")
    print_figures(results)
    out = args.out / f"crash-{args.loans}.json"
    write_json(out, results | {"latencies_seconds": latencies})
    plot(args.out / f"crash-{args.loans}.png",
         {"baseline (signal + no-op activity)": latencies["baseline"],
          "one tick of -25%": latencies["one_tick"],
          "25 ticks of -1% (from each loan's tick)": latencies["gradual"]},
         f"Time to margin-call notice, {args.loans} loans ({results['seed']['btc_loans']} BTC)")
    console.print(f"results: {out} and {out.with_suffix('.png')}")
    return results


if __name__ == "__main__":
    main()
