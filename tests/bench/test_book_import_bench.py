"""The book-import benchmark as a smoke test: 20 loans through the real `loanflow book import`
on the benchmark's stack. No timing is asserted (machines vary); only that every figure is
there, every loan came in ACTIVE exactly once with one import notice, and a second import of
the same file started nothing. Plus the generated book: valid for the importer, and realistic."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from bench.book import SEED_PRICES
from bench.book_import import book_rows, write_book
from loanflow.book_import import read_book
from tests.bench.running import run_bench


LOANS = 20


def test_the_generated_book_is_valid_seeded_and_under_the_maximum_ltv(tmp_path: Path) -> None:
    today = datetime(2026, 12, 3, tzinfo=timezone.utc)
    rows = book_rows(200, seed=7, today=today)
    assert rows == book_rows(200, seed=7, today=today)  # seeded
    loans = read_book(write_book(tmp_path / "book.csv", rows))
    assert len({loan.loan_id for loan in loans}) == 200
    assert {loan.collateral_asset for loan in loans} == {"BTC", "ETH"}
    for loan in loans:
        value = loan.collateral_amount * SEED_PRICES[loan.collateral_asset]
        assert Decimal("0.19") < loan.opening_debt / value <= Decimal("0.50")
        assert loan.originated_at < today < loan.maturity_at
        assert Decimal("0.08") <= loan.annual_rate <= Decimal("0.14")


@pytest.mark.timeout(180)
def test_book_import_benchmark_runs_end_to_end(tmp_path: Path) -> None:
    done = run_bench("bench.book_import", "--loans", str(LOANS), "--no-progress", "--timeout",
                     "120", "--out", str(tmp_path), timeout=170)
    results = json.loads((tmp_path / f"book-import-{LOANS}.json").read_text())

    imported = results["import"]
    assert imported["complete"]
    assert imported["command"]["exit_code"] == 0 and imported["command"]["started"] == LOANS
    for key in ("command", "to_active", "to_notices_recorded", "to_active_and_notices",
                "to_notices_mailed"):
        assert imported[key]["seconds"] > 0 and imported[key]["loans_per_second"] > 0, key
    assert imported["to_active_and_notices"]["seconds"] >= imported["to_active"]["seconds"]
    # The counts over time, for the picture: from the command's start, rising, all in at the end.
    progress = imported["progress"]
    assert progress["seconds"][0] < imported["command"]["seconds"]
    assert progress["seconds"] == sorted(progress["seconds"])
    for name in ("active", "noticed", "mailed"):
        assert progress[name] == sorted(progress[name]) and progress[name][-1] == LOANS, name
    assert (tmp_path / f"book-import-{LOANS}.png").stat().st_size > 10_000

    again = results["second_import"]
    assert (again["exit_code"], again["started"], again["already_present"]) == (0, 0, LOANS)

    check = results["check"]
    assert check["exactly_once"], check
    assert check["states"] == {"ACTIVE": LOANS} and check["loan_workflow_runs"] == LOANS
    assert check["import_notices"] == LOANS and check["loans_with_more_than_one_notice"] == 0
    assert check["failed_workflows"] == 0

    for phase in ("command", "import"):
        kinds = imported["cpu_share"][phase]["by_kind"]
        assert kinds["loanflow_cli"]["cpu_seconds"] > 0 and kinds["worker"]["processes"] == 2
        assert abs(sum(k["share"] for k in kinds.values()) - 1) < 0.01
    rss = results["worker_rss_mib"]
    assert len(rss) == 2 and all(mib and mib > 0 for mib in rss.values())
    for window in ("to_notice", "whole_history"):
        cost = results["cost_per_imported_loan"][window]
        assert cost["workflows"] == LOANS and cost["without_window"] == 0, cost
        # Opened in its first task (the read, both opening effects and the first look as
        # local activities), its notice recorded with its first write: no activity through
        # the server.
        assert cost["mean"]["workflow_tasks"] >= 1 and cost["mean"]["activities"] == 0
        assert cost["mean"]["local_activities"] >= 4
    assert "loans/s" in done.stdout and "second import of the same file: 0 started" in done.stdout
