"""Running the real `loanflow` command as a subprocess, the way an operator does.

Always off the event loop (`asyncio.to_thread`): the tests' worker runs on the loop, and a
blocking call there would stall it while the CLI waits for the worker's answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import TEST_CODEC_KEYS

LOANFLOW = str(Path(sys.executable).parent / "loanflow")

# The developer's own Temporal and database settings must not leak into a test's CLI.
_OWN = ("TEMPORAL_", "LOANFLOW_", "DATABASE_URL", "SMTP_")


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWN)}


def ctrl_c_works() -> None:
    """`preexec_fn` of a child the test will stop with Ctrl-C (SIGINT): a suite started in the
    background by a shell without job control (`nohup make test &`) hands its children SIGINT
    ignored, and Python then installs no KeyboardInterrupt: `loanflow worker` and
    `codec-server` ran on after the test's Ctrl-C and the suite hung at its end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Cli:
    """The `loanflow` command configured for one test: its server, database, task queue and
    SMTP port. Runs in `cwd` (a temporary directory) so no `.env` file is picked up."""

    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def environ(self, **overrides: str) -> dict[str, str]:
        # A wide terminal: tables are not wrapped or cut where the tests look for a value.
        return {**clean_environ(), "COLUMNS": "250", "NO_COLOR": "1",
                "LOANFLOW_CODEC_KEYS": TEST_CODEC_KEYS, **self.env, **overrides}

    def run_blocking(self, *args: str, stdin: str | None = None,
                     **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([LOANFLOW, *args], capture_output=True, text=True, input=stdin,
                              cwd=self.cwd, env=self.environ(**env), timeout=90)

    async def run(self, *args: str, stdin: str | None = None,
                  **env: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self.run_blocking, *args, stdin=stdin, **env)

    async def ok(self, *args: str, **env: str) -> str:
        """Run a command that must succeed; its stdout."""
        done = await self.run(*args, **env)
        assert done.returncode == 0, f"loanflow {' '.join(args)}: {done.stderr or done.stdout}"
        return done.stdout

    async def json(self, *args: str, **env: str) -> Any:
        return json.loads(await self.ok(*args, "--json", **env))

    async def error(self, *args: str, code: int = 1, **env: str) -> str:
        """Run a command that must fail with one clear line; that line."""
        done = await self.run(*args, **env)
        assert done.returncode == code, (
            f"loanflow {' '.join(args)}: exit {done.returncode}: {done.stderr or done.stdout}")
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        return lines[0].removeprefix("error: ")

    async def until(self, loan: str, state: str, timeout: float = 30) -> dict[str, Any]:
        """Poll `loanflow status --json` until the loan is in `state`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            status = await self.json("status", loan)
            if status["state"] == state:
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{loan} is {status['state']}, expected {state}")
            await asyncio.sleep(0.3)


def application(loan_id: str, **overrides: Any) -> dict[str, Any]:
    """An application as the contract's JSON: $20,000 against 20 ETH for 90 days at 10%."""
    values: dict[str, Any] = {
        "loan_id": loan_id,
        "borrower": {"id": "B-7", "name": "Grace Hopper", "email": "grace@example.com",
                     "country": "US"},
        "principal_usd": "20000.00",
        "collateral_asset": "ETH",
        "collateral_amount": "20",
        "term_days": 90,
        "annual_rate": "0.10",
    }
    values.update(overrides)
    return values


def open_flags(app: dict[str, Any]) -> list[str]:
    """The `loanflow open` flags for an application."""
    b = app["borrower"]
    return ["open", "--loan-id", app["loan_id"], "--borrower-id", b["id"], "--name", b["name"],
            "--email", b["email"], "--country", b["country"],
            "--principal", app["principal_usd"], "--asset", app["collateral_asset"],
            "--collateral", app["collateral_amount"], "--term-days", str(app["term_days"]),
            "--rate", app["annual_rate"]]
