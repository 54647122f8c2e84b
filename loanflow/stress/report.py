"""report.md and report.html: the figures of results.json for a risk committee, per policy and
per LTV bucket, the no-price hours, the plots, and how long the run took (the one figure that
is not in results.json: it depends on the machine)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from loanflow.money import fmt_usd
from loanflow.stress.book import bucket_label

COLUMNS = ("loans", "warnings", "margin calls", "cures", "sales: deadline / confirmed / hard floor",
           "collateral sold", "sale proceeds", "LTV after sales: mean / min / max", "defaults",
           "bad debt", "e-mails sent")
PLOTS = (("prices.png", "Price per venue, the price the ticks formed, no-price hours shaded"),
         ("ltv.png", "Every loan's LTV with the policy's levels; calls, cures and sales marked"),
         ("outcomes.png", "Collateral sold and bad debt per policy and LTV bucket"))


def pct(value: str | None) -> str:
    return "-" if value is None else f"{Decimal(value) * 100:.2f}%"


def figures(t: Mapping[str, Any]) -> list[str]:
    """One row of the tables from a `tally` of results.json."""
    causes = t["sales_by_cause"]
    sold = ", ".join(f"{q} {a}" for a, q in t["collateral_sold"].items()) or "-"
    after = t["ltv_after_sales"]
    return [
        str(t["loans"]), str(t["warnings"]), str(t["margin_calls"]), str(t["cures"]),
        f"{t['sales']} ({causes['deadline']} / {causes['confirmed']} / {causes['hard_floor']})",
        sold, fmt_usd(Decimal(t["sale_proceeds_usd"])),
        f"{pct(after['mean'])} / {pct(after['min'])} / {pct(after['max'])}",
        str(t["defaults"]), fmt_usd(Decimal(t["bad_debt_usd"])), str(t["emails_sent"]),
    ]


def tables(results: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    summary = results["summary"]
    by_policy = [[p["policy"], *figures(p)] for p in summary["by_policy"]]
    by_bucket = [[b["policy"], f"{bucket_label(Decimal(b['ltv0']))}%", *figures(b)]
                 for b in summary["by_bucket"]]
    gaps = [[h["at"], h["asset"], "; ".join(h["reasons"])] for h in results["no_price_hours"]]
    return [
        ("Per policy", ["policy", *COLUMNS], by_policy),
        ("Per policy and LTV bucket (LTV at the window's first price)",
         ["policy", "LTV bucket", *COLUMNS], by_bucket),
        (f"No-price hours: {len(gaps)}", ["hour (UTC)", "asset", "why"], gaps),
    ]


def facts(results: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    window, summary = results["window"], results["summary"]
    venues = "; ".join(f"{a}: {', '.join(v)}" for a, v in summary["venues"].items())
    hours = summary["hours"]
    replay = run["seconds"].get("replay", 0.0)
    lines = [
        f"Window {window['start']} to {window['end']} ({hours} hourly ticks), "
        f"prices: {run['prices']}; venues {venues}; quorum {summary['quorum']}.",
        f"Book: {summary['loans']} loan(s) ({run['book']}); policies: "
        + ", ".join(p["name"] for p in results["policies"]) + ".",
        f"Run took {run['seconds'].get('total', 0.0):.0f} s: import "
        f"{run['seconds'].get('import', 0.0):.0f} s, replay {replay:.0f} s "
        f"({hours / replay if replay else 0:.1f} simulated hours per second).",
        "Production LoanWorkflow and MarketMonitor on a private time-skipping Temporal server "
        "and a private SQLite database; every timer ran on the window's clock.",
    ]
    for p in results["policies"]:
        if p["overrides"]:
            changed = ", ".join(f"{k} = {v}" for k, v in p["overrides"].items())
            lines.append(f"Policy {p['name']}: {changed} (the rest the desk's defaults).")
    if run.get("warning"):
        lines.append(f"Note: {run['warning']}")
    return lines


def write_markdown(results: Mapping[str, Any], run: Mapping[str, Any], file: Path) -> Path:
    out = ["# Stress test", ""]
    out += [f"- {line}" for line in facts(results, run)]
    for title, head, rows in tables(results):
        out += ["", f"## {title}", ""]
        if not rows:
            out.append("none")
            continue
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        out += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    out += ["", "## Plots", ""]
    out += [f"![{caption}]({name})\n" for name, caption in PLOTS]
    file.write_text("\n".join(out) + "\n")
    return file


def write_html(results: Mapping[str, Any], run: Mapping[str, Any], file: Path) -> Path:
    e = html.escape
    body = ["<h1>Stress test</h1>", "<ul>"]
    body += [f"<li>{e(line)}</li>" for line in facts(results, run)]
    body.append("</ul>")
    for title, head, rows in tables(results):
        body.append(f"<h2>{e(title)}</h2>")
        body.append(_html_table(head, rows) if rows else "<p>none</p>")
    body.append("<h2>Plots</h2>")
    body += [f'<figure><img src="{name}" alt="{e(c)}"><figcaption>{e(c)}</figcaption></figure>'
             for name, c in PLOTS]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
             "td{text-align:right}td:first-child{text-align:left}img{max-width:100%}")
    file.write_text("<!doctype html><html><head><meta charset='utf-8'><title>Stress test</title>"
                    f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    return file


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    e = html.escape
    cells = "".join(f"<th>{e(h)}</th>" for h in head)
    lines = [f"<table><tr>{cells}</tr>"]
    lines += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
    lines.append("</table>")
    return "\n".join(lines)
