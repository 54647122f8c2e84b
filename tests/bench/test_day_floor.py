"""The time-skipping server's floor for a daily wave (bench/day_floor.py), as a smoke test: a
few workflows through both shapes. No timing is asserted; every workflow must have lived
through every day, and the figures must be the ones the JSON derives them from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_day_floor_benchmark_runs(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.day_floor", "--loans", "4", "--days", "2",
               "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "day-floor-4.json").read_text())
    assert [s["local_activities"] for s in results["shapes"]] == [0, 2]
    for shape in results["shapes"]:
        assert shape["finished"] == 4  # every workflow ran its two days to the end
        assert shape["seconds"] > 0
        # From the seconds (to the ms) over 8 loan-days, both rounded: within 0.1 ms.
        per_day = 1000 * shape["seconds"] / (4 * 2)
        assert shape["ms_per_loan_day"] == pytest.approx(per_day, abs=0.1)
    assert "ms per loan-day" in done.stdout
