"""The book import as a picture (`python -m bench.book_import` writes it beside its JSON): how
the loans came onto the desk over time, against the 5-minute target, and where the machine's
CPU went meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Issue 12's target for 10,000 loans.
TARGET_SECONDS = 300
LINES = {"active": "ACTIVE in the read model", "noticed": "import notice recorded",
         "mailed": "import notice mailed"}


def plot_import(path: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (pace, cpu) = plt.subplots(2, 1, figsize=(8, 6.5),
                                       gridspec_kw={"height_ratios": [3, 1.2]})
    _pace(pace, results)
    _cpu(cpu, results["import"]["cpu_share"]["import"])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _pace(axis: Any, results: dict[str, Any]) -> None:
    """Loans over seconds from the command's start, one line per count."""
    imported, n = results["import"], results["config"]["loans"]
    progress = imported["progress"]
    for name, label in LINES.items():
        axis.plot(progress["seconds"], progress[name], label=label)
    exits = imported["command"]["seconds"]
    axis.axvline(exits, color="grey", linestyle=":", label=f"the command exits ({exits:.0f} s)")
    if n >= 10_000:  # the target is for 10,000 loans
        axis.axvline(TARGET_SECONDS, color="red", linestyle="--", label="5 minutes (target)")
    done = imported["to_active_and_notices"]["seconds"]
    ended = f"all {n:,} ACTIVE with their notice after {done:.1f} s" if done else "not complete"
    axis.set_title(f"loanflow book import of {n:,} loans: {ended}")
    axis.set_xlabel("seconds from the start of `loanflow book import`")
    axis.set_ylabel("loans")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)


def _cpu(axis: Any, share: dict[str, Any]) -> None:
    """CPU seconds per process kind over the import, stacked, against what the cores had."""
    kinds = sorted(share["by_kind"].items(), key=lambda kv: -kv[1]["cpu_seconds"])
    left = 0.0
    for kind, figures in kinds:
        seconds = figures["cpu_seconds"]
        axis.barh([0], [seconds], left=left, label=f"{kind} {seconds:.0f} s")
        left += seconds
    capacity = share["wall_seconds"] * (share["cores"] or 1)
    axis.axvline(capacity, color="black", linestyle="--",
                 label=f"{share['cores']} cores x {share['wall_seconds']:.0f} s")
    axis.set_yticks([])
    axis.set_xlabel("CPU seconds over the import, by process")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=4, fontsize=7)
