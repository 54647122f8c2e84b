"""The per-loan memory benchmark (bench/loan_memory.py) as a smoke test: a few loans in each
runner's own worker process. No figure is asserted; every loan must have gone ACTIVE at each
step and the projection must follow from the measured points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
def test_loan_memory_benchmark_runs(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.loan_memory", "--steps", "3,6", "--out",
               str(tmp_path)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=380)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "loan-memory.json").read_text())
    assert [r["runner"] for r in results["runners"]] == ["sandboxed", "unsandboxed"]
    for runner in results["runners"]:
        points = runner["points"]
        assert [p["loans"] for p in points] == [0, 3, 6]
        assert [p["active"] for p in points[1:]] == [3, 6]  # every imported loan went ACTIVE
        assert all(p["rss_mib"] > 0 for p in points)
        per_loan = 1024 * (points[2]["rss_mib"] - points[1]["rss_mib"]) / 3
        assert runner["marginal_kib_per_loan"] == pytest.approx(per_loan, abs=0.1)
        projected = points[2]["rss_mib"] + per_loan * (5000 - 6) / 1024
        assert runner["projected_mib_at_5000"] == pytest.approx(projected, abs=1)
    assert "KiB per cached loan" in done.stdout
