"""Where the machine's CPU goes during one phase of the benchmark: the CPU seconds of each
process of the stack (worker processes, Temporal dev server, SMTP sink, PostgreSQL backends,
the driver) from /proc, and optionally a py-spy profile of each worker process.

The CPU seconds are kernel accounting (utime + stime), so they cost nothing to read and are
taken on every run; py-spy only with `--profile DIR` (it slows the sampled processes a little,
so a profiled run's timings are not the figures of merit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.stack import Stack
from loanflow.db import Database

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Long enough for py-spy to attach before the clock starts (it reads the target's memory maps).
ATTACH_SECONDS = 1.0


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process so far; None if it is gone or not ours to see (another
    machine's PostgreSQL, another container's)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


@dataclass
class Processes:
    """The processes to account for, by kind. `find_more` is asked again at the end of the
    phase, for processes that come and go (PostgreSQL's backends follow the pools)."""

    kinds: dict[str, list[int]]
    find_more: Callable[[], Awaitable[dict[str, list[int]]]] | None = None
    notes: list[str] = field(default_factory=list)

    async def current(self) -> dict[str, list[int]]:
        found = dict(self.kinds)
        if self.find_more is not None:
            for kind, pids in (await self.find_more()).items():
                found[kind] = sorted(set(found.get(kind, [])) | set(pids))
        return found


def snapshot(kinds: dict[str, list[int]]) -> dict[int, float]:
    readings = {pid: cpu_seconds(pid) for pids in kinds.values() for pid in pids}
    return {pid: seconds for pid, seconds in readings.items() if seconds is not None}


def cpu_share(kinds: dict[str, list[int]], before: dict[int, float], after: dict[int, float],
              wall: float, ended: dict[str, float] | None = None) -> dict[str, Any]:
    """Per kind: CPU seconds in the phase, share of all the CPU measured, and cores kept busy.
    A process that started during the phase counts from zero; one that ended is lost (its
    last reading is gone with it) unless its CPU seconds are given in `ended`, by kind (a
    child started and reaped within the phase: its rusage), one process each."""
    spent = {kind: sum(after[p] - before.get(p, 0.0) for p in pids if p in after)
             for kind, pids in kinds.items()}
    counts = {kind: sum(1 for p in kinds[kind] if p in after) for kind in kinds}
    for kind, seconds in (ended or {}).items():
        spent[kind] = spent.get(kind, 0.0) + seconds
        counts[kind] = counts.get(kind, 0) + 1
    total = sum(spent.values()) or 1.0
    return {kind: {"processes": counts[kind],
                   "cpu_seconds": round(seconds, 3),
                   "share": round(seconds / total, 3),
                   "cores_busy": round(seconds / wall, 3) if wall > 0 else None}
            for kind, seconds in spent.items()}


@dataclass
class CpuTrail:
    """Every process's CPU seconds, read every few tenths of a second through a phase
    (`trail`), so that a window ending at an instant known only afterwards can be cut out."""

    kinds: dict[str, list[int]]
    samples: list[tuple[float, dict[int, float]]]  # (wall clock, readings)

    def report(self, start: float, end: float) -> dict[str, Any]:
        """CPU per kind (as `measured` reports it) from the last reading at or before `start`
        to the first at or after `end`: the window, widened by at most one interval a side."""
        before = max((s for s in self.samples if s[0] <= start), key=lambda s: s[0],
                     default=self.samples[0])
        after = min((s for s in self.samples if s[0] >= end), key=lambda s: s[0],
                    default=self.samples[-1])
        wall = after[0] - before[0]
        return {"wall_seconds": round(wall, 3), "cores": os.cpu_count(),
                "by_kind": cpu_share(self.kinds, before[1], after[1], wall), "notes": []}


@contextlib.asynccontextmanager
async def trail(processes: Processes, every: float = 0.1) -> AsyncIterator[CpuTrail]:
    """Read every process's CPU seconds every `every` seconds while inside (a few /proc files:
    the driver's cost is negligible and counted as its own)."""
    kinds = await processes.current()
    found = CpuTrail(kinds, [(time.time(), snapshot(kinds))])

    async def sample() -> None:
        while True:
            await asyncio.sleep(every)
            found.samples.append((time.time(), snapshot(kinds)))

    sampler = asyncio.create_task(sample())
    try:
        yield found
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        found.samples.append((time.time(), snapshot(kinds)))


def py_spy() -> str | None:
    """py-spy from this interpreter's environment (the bench extras), else from PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_py_spy(pids: dict[str, int], out: Path, rate: int = 100) -> list[subprocess.Popen[bytes]]:
    """One `py-spy record` per process, raw (collapsed) stacks: `bench.profile_summary` reads
    them, and flamegraph.pl or speedscope open them as they are. Only samples of the thread
    holding the GIL (`--gil`): a worker process is bound by its interpreter lock, and py-spy's
    idle detection let through thread-pool threads blocked on their queue (88% of a run)."""
    tool = py_spy()
    if tool is None:
        raise RuntimeError("py-spy is not installed: make .venv/.installed (the bench extras)")
    out.mkdir(parents=True, exist_ok=True)

    def spawn(name: str, pid: int) -> subprocess.Popen[bytes]:
        with open(out / f"{name}.log", "wb") as log:  # py-spy's own messages
            return subprocess.Popen([tool, "record", "--pid", str(pid), "--format", "raw", "--gil",
                                     "--rate", str(rate), "--output", str(out / f"{name}.txt")],
                                    stdout=subprocess.DEVNULL, stderr=log)

    return [spawn(name, pid) for name, pid in pids.items()]


async def stop_py_spy(procs: list[subprocess.Popen[bytes]], grace: float = 30) -> None:
    """SIGINT is py-spy's Ctrl-C: it writes its file and exits."""
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for proc in procs:
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if proc.poll() is None:
            proc.kill()


@contextlib.asynccontextmanager
async def measured(processes: Processes, workers: dict[str, int],
                   profile: Path | None) -> AsyncIterator[dict[str, Any]]:
    """Around one phase: yields a dict that holds, after the block, the CPU share per kind
    (and the profile files, when `profile` is a directory)."""
    spies = start_py_spy(workers, profile) if profile else []
    if spies:
        await asyncio.sleep(ATTACH_SECONDS)
    # py-spy's own CPU is reported too: what the profile cost the machine.
    spy_kind = {"py-spy": [p.pid for p in spies]} if spies else {}
    kinds = await processes.current() | spy_kind
    before, began = snapshot(kinds), time.monotonic()
    report: dict[str, Any] = {}
    try:
        yield report
    finally:
        wall = time.monotonic() - began
        kinds = await processes.current() | spy_kind
        after = snapshot(kinds)
        await stop_py_spy(spies)
        report.update({"wall_seconds": round(wall, 3), "cores": os.cpu_count(),
                       "by_kind": cpu_share(kinds, before, after, wall),
                       "notes": processes.notes})
        if profile:
            report["profile"] = {"dir": str(profile),
                                 "files": sorted(str(p) for p in profile.glob("*.txt"))}


def share_line(report: dict[str, Any], phase: str = "the one-tick crash") -> str:
    """One line: each kind's share of the CPU during the phase, busiest first."""
    kinds = sorted(report["by_kind"].items(), key=lambda kv: -kv[1]["cpu_seconds"])
    parts = [f"{kind} {v['share']:.0%} ({v['cpu_seconds']:g} s, {v['cores_busy']} cores)"
             for kind, v in kinds if v["processes"]]
    return (f"CPU during {phase} ({report['wall_seconds']} s on {report['cores']} "
            f"cores): " + ", ".join(parts))


async def pg_backends(db: Database) -> dict[str, list[int]]:
    """The PostgreSQL backends serving the bench's database now (workers' and driver's pools)."""
    async with db.transaction() as s:
        rows = await s.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))
        pids = [int(r[0]) for r in rows]
    # A server in a container reports pids of its own namespace: keep only our postgres.
    return {"postgresql": sorted(p for p in pids if _command(p).startswith("postgres"))}


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def stack_processes(stack: Stack, workers: list[int]) -> Processes:
    """Every process of the bench's stack that this machine lets us see."""
    assert stack.server.process is not None
    kinds = {"worker": workers, "temporal_server": [stack.server.process.pid],
             "smtp_sink": [stack.sink_pid], "driver": [os.getpid()]}
    if stack.db.is_sqlite:
        return Processes(kinds, notes=["SQLite: the database's CPU is in the processes using it"])
    return Processes(kinds, find_more=lambda: pg_backends(stack.db), notes=[
        "postgresql: backends of the bench database at the start and end of the phase; one "
        "that ended within it is missing, one that started counts from zero"])


def resident_mib(pid: int) -> float | None:
    """VmRSS of a process, in MiB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def worker_names(workers: list[int]) -> dict[str, int]:
    """The benchmark's worker processes by name (`worker-0`, ...), as the reports show them."""
    return {f"worker-{i}": pid for i, pid in enumerate(workers)}


def worker_rss(workers: list[int]) -> dict[str, float | None]:
    """Each worker process's VmRSS in MiB, by name."""
    return {name: resident_mib(pid) for name, pid in worker_names(workers).items()}
