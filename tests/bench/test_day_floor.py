"""The time-skipping server's floor for a daily wave (bench/day_floor.py), as a smoke test: a
few workflows through both shapes. No timing is asserted; every workflow must have lived
through every day, and the figures must be the ones the JSON derives them from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.running import run_bench


@pytest.mark.timeout(300)
def test_day_floor_benchmark_runs(tmp_path: Path) -> None:
    done = run_bench("bench.day_floor", "--loans", "4", "--days", "2", "--out", str(tmp_path),
                     timeout=280)
    results = json.loads((tmp_path / "day-floor-4.json").read_text())
    assert [s["local_activities"] for s in results["shapes"]] == [0, 2]
    for shape in results["shapes"]:
        assert shape["finished"] == 4  # every workflow ran its two days to the end
        assert shape["seconds"] > 0
        # From the seconds (to the ms) over 8 loan-days, both rounded: within 0.1 ms.
        per_day = 1000 * shape["seconds"] / (4 * 2)
        assert shape["ms_per_loan_day"] == pytest.approx(per_day, abs=0.1)
    assert "ms per loan-day" in done.stdout
