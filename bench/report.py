"""Progress bars, figures, the results JSON and the latency plot."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, is_dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(soft_wrap=True)  # figures stay one line each, also in a log


class Bar:
    """Named progress bars (rich), one per phase of the run."""

    def __init__(self, enabled: bool = True) -> None:
        self.progress = Progress(TextColumn("{task.description:<34}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                 disable=not enabled)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def add(self, name: str, total: int) -> None:
        self.tasks[name] = self.progress.add_task(name, total=total)

    def advance(self, name: str, amount: int = 1) -> None:
        if name in self.tasks:
            self.progress.advance(self.tasks[name], amount)

    def set(self, name: str, completed: int) -> None:
        if name in self.tasks:
            self.progress.update(self.tasks[name], completed=completed)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted or unsorted values (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(int(-(-p * len(ordered) // 100)) - 1, 0)  # ceil(p/100 * n) - 1
    return ordered[min(rank, len(ordered) - 1)]


def spread(values: list[float]) -> dict[str, float]:
    return {f"p{p}": round(percentile(values, p), 3) for p in (50, 95, 99)} | {
        "max": round(max(values, default=0.0), 3)}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "temporal": _temporal_version(),
    }


def _temporal_version() -> str:
    from loanflow.binaries import temporal_cli

    try:
        out = subprocess.run([temporal_cli(), "--version"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load() -> list[float]:
    """The 1/5/15-minute load averages: anything else running on the machine skews the run."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def quiet_logs(path: Path, fresh: bool = True) -> None:
    """Warnings go to a log file, not over the progress bars: the built-in fakes fail on purpose
    (each failure is a logged, retried activity) and the SDK core warns about slow workflow
    tasks, which is worth keeping for reading after the run. The driver empties the file
    (`fresh`); it and the worker processes all append to it, so no one overwrites another."""
    import logging

    from temporalio.runtime import (LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig,
                                    TelemetryFilter)

    path.parent.mkdir(parents=True, exist_ok=True)
    if fresh:
        path.write_text("")
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    core = logging.getLogger("temporalio.core")
    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="WARN"),
            forwarding=LogForwardingConfig(logger=core)))),
        error_if_already_set=False,
    )


def count_in_log(path: Path, text: str) -> int:
    try:
        return path.read_text(errors="replace").count(text)
    except OSError:
        return 0


def jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(results), indent=2) + "\n")


def plot(path: Path, series: dict[str, list[float]], title: str) -> None:
    """The per-item latency distributions as cumulative curves (one line per scenario)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for label, values in series.items():
        if not values:
            continue
        ordered = sorted(values)
        share = [(i + 1) / len(ordered) * 100 for i in range(len(ordered))]
        axis.step(ordered, share, where="post", label=f"{label} (n={len(ordered)})")
    axis.set_xlabel("seconds from the tick (baseline: from the first signal)")
    axis.set_ylabel("% of loans with their notice stored")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
