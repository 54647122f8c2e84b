"""Running a benchmark as a developer does, `python -m bench.NAME ARGS` from the project root,
for the smoke tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(module: str, *args: str | Path, timeout: int) -> subprocess.CompletedProcess[str]:
    """The finished run; the test fails with the tail of its output if it did not exit 0."""
    command = [sys.executable, "-m", module, *map(str, args)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done
