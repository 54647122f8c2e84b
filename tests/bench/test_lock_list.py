"""The test server's lock-list probe (bench/lock_list.py), as a smoke test: a few steps on a
fresh server and after one small inflation. No timing is asserted; the rounds must be the ones
asked for and each ratio the one its milliseconds give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.running import run_bench


@pytest.mark.timeout(300)
def test_lock_list_probe_runs(tmp_path: Path) -> None:
    done = run_bench("bench.lock_list", "--steps", "5", "--inflate", "50", "--rounds", "1", "--out",
                     str(tmp_path), timeout=280)
    rounds = json.loads((tmp_path / "lock-list.json").read_text())["rounds"]
    assert [r["entries_added"] for r in rounds] == [0, 100]
    fresh = rounds[0]["ms_per_step"]
    assert fresh > 0
    assert rounds[1]["ratio"] == pytest.approx(rounds[1]["ms_per_step"] / fresh, abs=0.01)
    assert "ms per timer+activity step" in done.stdout
