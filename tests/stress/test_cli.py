"""`loanflow stress` as an operator runs it: the real command in a subprocess, a one-venue
price file named on the command line, files in --out; bad input is one line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.support import Cli


async def test_stress_command_writes_results_and_report(crafted_prices: Path,
                                                         tmp_path: Path) -> None:
    cli = Cli(cwd=tmp_path)
    out = tmp_path / "out"
    printed = await cli.ok("stress", "--prices", str(crafted_prices), "--ltv", "0.60",
                           "--assets", "BTC", "--loans-per-bucket", "1", "--out", str(out))
    results = json.loads((out / "results.json").read_text())
    [loan] = results["loans"]
    assert [e["kind"] for e in loan["events"]] == ["margin_call", "liquidation", "liquidation"]
    assert ("default: 1 loans, 1 margin calls, 0 cured, 2 sales (1 at the deadline, 1 "
            "confirmed, 0 hard floor), 0 defaults, bad debt $0.00") in printed
    for name in ("report.md", "report.html", "prices.png", "ltv.png", "outcomes.png"):
        assert (out / name).stat().st_size > 0
        assert str(out / name) in printed


async def test_stress_command_in_json(crafted_prices: Path, tmp_path: Path) -> None:
    """Issue 11: `--json` on every command: one JSON summary on stdout (the progress bar
    stays on stderr), naming the files and giving the figures per policy."""
    cli = Cli(cwd=tmp_path)
    out = tmp_path / "out"
    summary = await cli.json("stress", "--prices", str(crafted_prices), "--ltv", "0.60",
                             "--assets", "BTC", "--loans-per-bucket", "1", "--out", str(out))
    assert summary["out"] == str(out) and summary["results"] == str(out / "results.json")
    assert summary["reports"] == [str(out / "report.md"), str(out / "report.html")]
    assert {Path(p).name for p in summary["plots"]} == {"prices.png", "ltv.png", "outcomes.png"}
    assert summary["loans"] == 1 and summary["workdir"] is None
    [row] = summary["by_policy"]
    assert (row["policy"], row["margin_calls"], row["sales"], row["bad_debt_usd"]) == (
        "default", 1, 2, "0.00")
    assert row["sales_by_cause"]["deadline"] == 1


async def test_stress_command_refuses_bad_input_in_one_line(crafted_prices: Path,
                                                            tmp_path: Path) -> None:
    cli = Cli(cwd=tmp_path)
    assert "no window 'nope'" in await cli.error("stress", "--window", "nope")
    assert "either --window or --prices" in await cli.error(
        "stress", "--window", "2022-11", "--prices", str(crafted_prices))
    assert await cli.error("stress", "--prices", str(crafted_prices), "--assets", "ETH") == (
        "--assets: no ETH prices in the window")
    bad = tmp_path / "p.toml"
    bad.write_text("margin_call_ltv = 'x'\n")
    line = await cli.error("stress", "--prices", str(crafted_prices), "--policy", str(bad))
    assert line.startswith(f"--policy {bad}: margin_call_ltv:"), line
    assert not (tmp_path / "stress-results").exists()  # nothing half-done


async def test_stress_progress_reaches_a_log(crafted_prices: Path, tmp_path: Path) -> None:
    """Piped into a log the bar draws nothing: plain progress lines say how far it got."""
    cli = Cli(cwd=tmp_path)
    done = await cli.run("stress", "--prices", str(crafted_prices), "--ltv", "0.60",
                         "--assets", "BTC", "--loans-per-bucket", "1",
                         "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    phases = [line.split()[0] for line in done.stderr.splitlines() if line.strip()]
    assert "import" in phases and "replay" in phases, done.stderr
    assert any(line.startswith("replay") and "/" in line for line in done.stderr.splitlines())
