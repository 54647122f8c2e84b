"""A long `--json` answer reaches a slow reader whole. The 10,000-loan import's second run
printed 131,072 of its bytes to the benchmark's pipe and exited 0: the command's stdout had
been left non-blocking, a write the pipe could not take at once raised BlockingIOError, and
the final flush swallowed it as a reader gone."""

from __future__ import annotations

import json
import subprocess
import sys
import time

# A child that leaves its stdout non-blocking (as an event loop can), then prints a long answer
# the way every `loanflow ... --json` command does, and exits the way `loanflow` exits.
CHILD = """
import importlib, os
os.set_blocking(1, False)
from loanflow.cli.output import print_json
print_json([{"loan_id": f"L{n}", "state": "ACTIVE"} for n in range(20000)])
importlib.import_module("loanflow.cli.app").finish(0)
"""


def test_a_long_json_answer_reaches_a_slow_reader_whole() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    time.sleep(1.0)  # the reader is slow: the pipe (64 KiB) fills long before it reads
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err.decode()
    rows = json.loads(out)
    assert len(rows) == 20000 and rows[-1] == {"loan_id": "L19999", "state": "ACTIVE"}
