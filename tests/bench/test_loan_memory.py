"""The per-loan memory benchmark (bench/loan_memory.py) as a smoke test: a few loans in each
runner's own worker process. No figure is asserted; every loan must have gone ACTIVE at each
step and the projection must follow from the measured points."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.running import run_bench


@pytest.mark.timeout(400)
def test_loan_memory_benchmark_runs(tmp_path: Path) -> None:
    done = run_bench("bench.loan_memory", "--steps", "3,6", "--out", str(tmp_path), timeout=380)
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
