"""The crash benchmark as a smoke test: a tiny book through every phase, on its own dev server
and time-skipping server. No timing is asserted (CI machines vary); only that every phase ran,
every affected loan got exactly one margin-call notice and nothing failed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.profile_summary import summarise_dir
from tests.bench.running import run_bench


@pytest.mark.timeout(600)
def test_crash_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    done = run_bench("bench.crash", "--loans", "8", "--quiet-loans", "3", "--quiet-days", "2",
                     "--tick-spacing", "0", "--no-progress", "--out", str(tmp_path), "--profile",
                     str(tmp_path / "profile"), "--profile-seed", str(tmp_path / "seed"),
                     timeout=580)
    assert "ratio to baseline" in done.stdout
    results = json.loads((tmp_path / "crash-8.json").read_text())
    assert (tmp_path / "crash-8.png").stat().st_size > 0

    assert results["seed"]["loans"] == 8 and results["baseline"]["seconds"] > 0
    one = results["crash_one_tick"]
    same = results["baseline_same_work"]
    assert same["workflows"] == one["signalled"] > 0 and same["seconds"] > 0
    # Both figures are rounded to the millisecond in the JSON; the ratio is of the raw ones, so
    # it may differ from the rounded figures' ratio by what half a millisecond either way makes
    # (much, for a baseline of 10 ms).
    notice, base = one["seconds_to_last_notice"], same["seconds"]
    rounding = (notice + 0.0005) / (base - 0.0005) - notice / base
    assert abs(one["ratio_same_work"] - notice / base) <= rounding + 0.001
    assert "ratio to the same-work baseline" in done.stdout
    assert results["quiet_tick"]["signalled"] == 0
    assert results["quiet_tick"]["sampled_loans_woken"] == 0
    for key in ("crash_one_tick", "crash_25_ticks"):
        crash = results[key]
        assert crash["exactly_one_notice_per_affected_loan"], crash
        assert crash["margin_call_notices"] == crash["affected_loans"]
        assert crash["notice_delivery_failures"] == 0
        assert crash["signals_to_ended_loans"] == 0
        # Every called borrower's e-mail was accepted, never before its notice was recorded.
        assert crash["emails_not_accepted"] == 0
        mailed, noticed = crash["email_accepted_per_loan"], crash["per_loan"]
        assert mailed["max"] >= noticed["max"] > 0
        assert crash["timeline_seconds"]["last_email_accepted"] >= crash["seconds_to_last_notice"]
    gradual = results["crash_25_ticks"]
    assert gradual["liquidations"] == gradual["expected_liquidations"]
    assert results["failed_workflows"] == 0
    for rss in (results["worker_rss_mib_after_seeding"], results["worker_rss_mib"]):
        assert sorted(rss) == ["worker-0", "worker-1"]
        assert all(mib > 50 for mib in rss.values())  # a live Python worker
    quiet = results["quiet_month"]
    # Two days, so that every loan's first daily revaluation (a day after it was funded, just
    # before the replay began) falls well inside the replay: over one day it fell at the
    # replay's very end, counted in one run (0.999 tasks a loan-day) and not in another (0).
    assert quiet["loans"] == 3 and quiet["ticks"] == 48 and quiet["tasks_per_loan_day"] > 0
    assert gradual["actual_tick_spacing_seconds"] > 0 and gradual["tick_answered_seconds"]["max"] > 0
    check_costs(results, done.stdout)
    check_cpu_and_profile(results, done.stdout, tmp_path / "profile")
    check_seeding_costs(results["seed"], done.stdout, tmp_path / "seed")


def check_costs(results: dict[str, Any], stdout: str) -> None:
    """Every called loan's window holds the signal's workflow task and the write that recorded
    its notice (no activity through the server); the baseline's at least its two tasks and one
    activity (more only if a task was retried)."""
    call, base = results["cost_per_margin_call"], results["cost_per_baseline_workflow"]
    called = results["crash_one_tick"]["margin_call_notices"]
    assert call["workflows"] == base["workflows"] == min(50, called) > 0
    assert call["without_window"] == base["without_window"] == 0
    assert call["mean"]["workflow_tasks"] >= 1 and call["mean"]["local_activities"] >= 1
    assert call["max"]["activities"] == 0
    assert call["max"]["history_events"] >= call["mean"]["history_events"] > 0
    assert base["mean"]["workflow_tasks"] >= 2 and base["mean"]["activities"] >= 1
    assert base["mean"]["history_events"] >= 11 and base["mean"]["local_activities"] == 0
    assert "cost per margin call vs per baseline workflow" in stdout


def check_cpu_and_profile(results: dict[str, Any], stdout: str, profile: Path) -> None:
    cpu = results["cpu_share"]
    kinds = cpu["by_kind"]
    assert kinds["worker"]["processes"] == 2 and kinds["worker"]["cpu_seconds"] > 0
    assert kinds["temporal_server"]["cpu_seconds"] > 0 and kinds["smtp_sink"]["processes"] == 1
    assert kinds["py-spy"]["processes"] == 2
    if results["config"]["database_url"].startswith("postgresql"):
        assert kinds["postgresql"]["processes"] >= 1
    assert abs(sum(k["share"] for k in kinds.values()) - 1) < 0.01 and cpu["wall_seconds"] > 0
    assert "CPU during the one-tick crash" in stdout
    # The same CPU accounting over the same-work baseline, and both per unit of work.
    same = results["baseline_same_work"]
    # Its CPU is over exactly its timed part (to a reading either side), inside the window
    # that runs on to the visibility count. Two or three baseline workflows cost each worker
    # process a few milliseconds, under the 10 ms ticks of a process's CPU time: a worker may
    # read 0 in either window (runs did, in both); the two worker processes are counted, and
    # the machine as a whole (the server answering the signals) did work.
    timed, to_count = same["cpu_share"], same["cpu_share_to_visibility"]
    assert to_count["by_kind"]["worker"]["processes"] == 2
    assert sum(v["cpu_seconds"] for v in to_count["by_kind"].values()) > 0
    assert same["seconds"] <= timed["wall_seconds"] <= to_count["wall_seconds"] + 0.5
    for kind, v in timed["by_kind"].items():
        assert 0 <= v["cpu_seconds"] <= to_count["by_kind"][kind]["cpu_seconds"] + 0.05, kind
    per_loan = results["cpu_ms_per_signalled_loan"]
    assert per_loan["worker"] > 0 and per_loan["temporal_server"] > 0
    assert set(same["cpu_ms_per_workflow"]) >= {"worker", "temporal_server"}
    assert "per same-work baseline workflow" in stdout
    floor = results["cpu_ratio_same_work"]  # 0 and 0 if the timed part read no CPU at all
    assert 0 <= floor["without_workers"] <= floor["all"] and "without any worker CPU" in stdout
    # A crash of one or two calls is a fraction of a second of CPU: a handful of samples, in no
    # category for sure; that the files are there and read is what this run can show.
    samples, files = summarise_dir(profile)
    assert [f.name for f in files] == ["worker-0.txt", "worker-1.txt"]
    assert all(count >= 0 for count in samples.values())


def check_seeding_costs(seed: dict[str, Any], stdout: str, profile: Path) -> None:
    """What onboarding one loan costs: every process's CPU over the seeding, per loan, and the
    histories of the seeded loans (each went through KYC, approval, funding and disbursement,
    so at least those tasks, its KYC read, its deposit address and payout, and its notices)."""
    kinds = seed["cpu_share"]["by_kind"]
    assert kinds["worker"]["processes"] == 2 and kinds["temporal_server"]["cpu_seconds"] > 0
    per_loan = seed["cpu_ms_per_loan"]
    assert per_loan["worker"] > 0 and per_loan["temporal_server"] > 0
    assert seed["loans_per_second_without_workers"] > 0 and "were the workers free" in stdout
    # One history per loan, each from its start to ACTIVE: 8 loans, all sampled.
    cost = seed["cost_per_loan"]
    assert cost["workflows"] == 8 and cost["without_window"] == 0
    # Activities: the deposit address, the deposit's record and the payout at least; KYC is a
    # local activity, and so are the writes that record its four notices (application received,
    # KYC approved, deposit instructions, loan disbursed).
    assert cost["mean"]["activities"] >= 3 and cost["mean"]["local_activities"] >= 4
    assert cost["mean"]["workflow_tasks"] >= 4
    assert "CPU during seeding" in stdout and "an onboarded loan's history" in stdout
    _, files = summarise_dir(profile)
    assert [f.name for f in files] == ["worker-0.txt", "worker-1.txt"]


@pytest.mark.timeout(300)
def test_queue_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    """Both monitors answer ticks, on the calm desk and through a (tiny) flood of loans."""
    done = run_bench("bench.queues", "--loans", "5", "--calm-seconds", "1", "--seconds", "3",
                     "--out", str(tmp_path), timeout=280)
    results = json.loads((tmp_path / "queues.json").read_text())
    for phase in ("calm", "flood"):
        for queue in ("own", "shared"):
            assert results[phase][queue]["ticks"] >= 1, results[phase]
    assert results["ratio_loans_queue_to_own_queue"]["p50"] > 0
