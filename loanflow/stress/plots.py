"""The run's pictures (PNG, matplotlib's Agg backend: no display needed):

prices.png    each asset's price per venue, the price the ticks formed, no-price hours shaded
ltv.png       every loan's LTV over time per policy and asset, the policy's levels drawn,
              margin calls, cures and sales marked
outcomes.png  collateral sold (USD proceeds) and bad debt per policy and LTV bucket
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from loanflow.stress.book import bucket_label  # noqa: E402
from loanflow.stress.paths import PricePath, ltv_path  # noqa: E402
from loanflow.stress.prices import PriceSet  # noqa: E402

HOUR = timedelta(hours=1)
MARKERS = {"margin_call": ("v", "tab:orange", "margin call"), "cured": ("^", "tab:green", "cured"),
           "liquidation": ("X", "tab:red", "sale"), "default": ("s", "black", "default")}
LEVELS = (("warning_ltv", "warning", "gold"), ("margin_call_ltv", "margin call", "tab:orange"),
          ("cure_target_ltv", "cure target", "tab:green"),
          ("liquidation_ltv", "liquidation", "tab:red"),
          ("hard_liquidation_ltv", "hard floor", "darkred"),
          ("post_liquidation_ltv", "after sale", "tab:blue"))


def draw_all(results: dict[str, Any], prices: PriceSet, path: PricePath, out: Path) -> list[Path]:
    return [draw_prices(results, prices, path, out / "prices.png"),
            draw_ltv(results, prices, path, out / "ltv.png"),
            draw_outcomes(results, out / "outcomes.png")]


def _parse(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


def _time_axis(ax: Any) -> None:
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)


def draw_prices(results: dict[str, Any], prices: PriceSet, path: PricePath, file: Path) -> Path:
    assets = prices.assets()
    fig, axes = plt.subplots(len(assets), 1, figsize=(12, 3.6 * len(assets)), squeeze=False)
    start, end = prices.start, prices.last_tick
    for ax, asset in zip(axes[:, 0], assets):
        for series in (s for s in prices.series if s.asset == asset):
            shown = [c for c in series.candles if start <= c.open_at + series.step <= end]
            ax.plot([c.open_at + series.step for c in shown], [float(c.close) for c in shown],
                    lw=0.8, label=f"{series.venue} ({series.currency})")
        formed = path.get(asset, [])
        ax.step([t for t, _ in formed], [float(p) for _, p in formed], where="post", lw=1.2,
                color="black", alpha=0.6, label="price formed by the ticks")
        gaps = [_parse(h["at"]) for h in results["no_price_hours"] if h["asset"] == asset]
        for i, at in enumerate(gaps):
            ax.axvspan(at, at + HOUR, color="red", alpha=0.25, lw=0,
                       label="no price" if i == 0 else None)
        ax.set_title(f"{asset}: venue closes, the desk's price; {len(gaps)} no-price hour(s)")
        ax.set_ylabel("USD")
        _time_axis(ax)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)
    return file


def draw_ltv(results: dict[str, Any], prices: PriceSet, path: PricePath, file: Path) -> Path:
    policies = [p["name"] for p in results["policies"]]
    levels = {p["name"]: p["policy"] for p in results["policies"]}
    assets = prices.assets()
    fig, axes = plt.subplots(len(policies), len(assets), figsize=(7 * len(assets), 4.2 * len(policies)),
                             squeeze=False)
    for row, policy in enumerate(policies):
        for col, asset in enumerate(assets):
            ax = axes[row][col]
            loans = [x for x in results["loans"] if x["policy"] == policy and x["asset"] == asset]
            for loan in loans:
                line = ltv_path(loan, path.get(asset, []), prices.start)
                ax.plot([t for t, _ in line], [v for _, v in line], lw=0.6, alpha=0.5)
            _mark_events(ax, loans)
            for key, label, colour in LEVELS:
                ax.axhline(float(Decimal(levels[policy][key])), color=colour, ls="--", lw=0.8,
                           label=label)
            ax.set_title(f"{policy} · {asset}: LTV of {len(loans)} loan(s)")
            ax.set_ylim(0, 1.05)
            _time_axis(ax)
            ax.legend(loc="upper left", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)
    return file


def _mark_events(ax: Any, loans: list[dict[str, Any]]) -> None:
    for kind, (marker, colour, label) in MARKERS.items():
        points = [(_parse(e["at"]), float(Decimal(e["ltv"]))) for loan in loans
                  for e in loan["events"] if e["kind"] == kind and e["ltv"] is not None]
        if points:
            ax.scatter([t for t, _ in points], [v for _, v in points], marker=marker,
                       color=colour, edgecolors="black", linewidths=0.4, s=36, zorder=5,
                       label=f"{label} ({len(points)})")


def draw_outcomes(results: dict[str, Any], file: Path) -> Path:
    rows = results["summary"]["by_bucket"]
    labels = [f"{r['policy']}\n{bucket_label(Decimal(r['ltv0']))}%" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.1 * len(rows) + 4), 4.5), squeeze=False)
    panels = (("sale_proceeds_usd", "collateral sold: sale proceeds (USD)", "tab:blue"),
              ("bad_debt_usd", "bad debt written off (USD)", "tab:red"))
    for ax, (key, title, colour) in zip(axes[0], panels):
        values = [float(r[key]) for r in rows]
        bars = ax.bar(range(len(rows)), values, color=colour)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=7)
        ax.set_xticks(range(len(rows)), labels, fontsize=7)
        ax.set_title(title)
        ax.set_ylim(0, max(values, default=0) * 1.1 or 1)  # zero is a result: show it as one
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("per policy and LTV bucket")
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)
    return file
