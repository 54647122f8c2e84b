"""`loanflow stress`: what a historical crash would do to a book, on a private time-skipping
Temporal server and a private database (never the live desk). See README, "Stress-testing a
book"."""

from __future__ import annotations

import signal
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import typer

from loanflow.cli.errors import CliError, run
from loanflow.cli.params import AsJson

commands = typer.Typer()

PRICES_HELP = ("A CSV in the format of the shared price data (hourly bars: timestamp, open, "
               "high, low, close). Asset and venue come from the file name "
               "(btc-usd_2022-11_bitstamp_1h.csv) or are stated: BTC:venue=path. Repeat, or "
               "list several files after it. One venue per asset: that venue is the price.")


@commands.command(rich_help_panel="Desk")
def stress(
    window: str = typer.Option(None, "--window", metavar="NAME",
                               help="A window of the shared price data set (its manifest.csv), "
                                    "e.g. 2022-11 (FTX) or 2022-05-06 (Terra)."),
    prices: list[str] = typer.Option(None, "--prices", metavar="FILE", help=PRICES_HELP),
    more_prices: list[str] = typer.Argument(None, hidden=True, metavar="[FILE]..."),
    book: Path = typer.Option(None, "--book", metavar="FILE",
                              help="A book in the `loanflow book import` format (CSV or JSON) "
                                   "instead of a generated one."),
    ltv: str = typer.Option("0.40,0.50,0.60,0.65", "--ltv",
                            help="Generated book: LTV buckets at the window's first price."),
    assets: str = typer.Option(None, "--assets",
                               help="Generated book: collateral assets, e.g. BTC,ETH "
                                    "(default: every asset the prices cover)."),
    loans_per_bucket: int = typer.Option(2, "--loans-per-bucket", metavar="K", min=1,
                                         help="Generated book: loans per asset and LTV bucket."),
    seed: int = typer.Option(1, "--seed", metavar="S",
                             help="Draws the generated loans' rates and terms, and the fake "
                                  "exchange's noise: the same inputs give the same results."),
    principal: str = typer.Option("100000.00", "--principal", metavar="USD",
                                  help="Generated book: each loan's principal."),
    policy: list[Path] = typer.Option(None, "--policy", metavar="FILE",
                                      help="TOML or JSON with risk-policy fields to override "
                                           "(e.g. margin_call_ltv = 0.75). Repeat to compare "
                                           "policies side by side on the same book; the file "
                                           "name names the policy."),
    out: Path = typer.Option(Path("stress-results"), "--out", metavar="DIR",
                             help="Where results.json, report.md, report.html and the plots go."),
    workers: int = typer.Option(1, "--workers", metavar="N", min=1, max=16,
                                help="Worker processes (one per core helps a large book; "
                                     "the results do not depend on it)."),
    servers: int = typer.Option(None, "--servers", metavar="N", min=1, max=8,
                                help="Private test servers sharing the book (default: one per "
                                     "250 loans, at most 8; the results do not depend on it)."),
    keep_workdir: bool = typer.Option(False, "--keep-workdir",
                                      help="Keep the private database and mail for a look."),
    as_json: AsJson = False,
) -> None:
    """Run a book through a historical crash with the production loan and market workflows, on
    the window's own clock (cure deadlines, reminders, interest), and report what it did: calls,
    cures, sales by cause, collateral sold, bad debt, e-mails, no-price hours, per policy and LTV
    bucket. Example: `loanflow stress --window 2022-11 --loans-per-bucket 5`. With --json the
    progress stays on stderr and stdout gets one JSON summary: where the files are, and the
    figures per policy."""
    from loanflow.stress.book import BookSpecError
    from loanflow.stress.policies import PolicyFileError
    from loanflow.stress.prices import PriceError
    from loanflow.stress.session import StressOptions, execute, prepare

    options = StressOptions(
        window=window, price_files=[*(prices or []), *(more_prices or [])], book_file=book,
        ltvs=ltv, assets=assets, loans_per_bucket=loans_per_bucket, seed=seed,
        principal=_principal(principal), policy_files=policy or [], out=out,
        keep_workdir=keep_workdir, processes=workers, servers=servers,
    )
    try:
        prepared = prepare(options)  # every input checked before anything starts
    except (PriceError, BookSpecError, PolicyFileError) as err:
        raise CliError(str(err)) from None
    _stop_cleanly_on_sigterm()
    outcome = run(_with_progress(execute, prepared))
    if as_json:
        from loanflow.cli.output import print_json

        print_json(json_summary(out, outcome))
        return
    _print_outcome(outcome)


def json_summary(out: Path, outcome: Any) -> dict[str, Any]:
    """`stress --json`: the files (results.json has every loan's events) and the summary
    figures, as results.json states them (amounts in USD to the cent, as strings)."""
    results, files = outcome.results, [Path(f) for f in outcome.files]
    summary = results["summary"]
    return {
        "out": out,
        "results": next((f for f in files if f.name == "results.json"), None),
        "reports": [f for f in files if f.suffix in (".md", ".html")],
        "plots": [f for f in files if f.suffix == ".png"],
        "workdir": outcome.workdir,
        "seconds": round(outcome.seconds["total"], 1),
        "loans": summary["loans"],
        "hours": summary["hours"],
        "no_price_hours": len(results["no_price_hours"]),
        "by_policy": summary["by_policy"],
    }


def _principal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CliError(f"--principal: {text!r} is not an amount") from None
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
        raise CliError("--principal: must be a positive amount in whole cents")
    return value


def _stop_cleanly_on_sigterm() -> None:
    """A terminated run stops its private server too (like Ctrl-C), leaving nothing behind."""
    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


async def _with_progress(execute: Any, prepared: Any) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

    from loanflow.stress.runner import StressError

    # The time-skipping server cannot advertise every capability; the SDK core would warn
    # about it at every start. Keep its log to errors.
    Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(
        filter=TelemetryFilter(core_level="ERROR", other_level="WARN")))),
        error_if_already_set=False)
    console = Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    lines = PlainProgress(console)
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("starting", total=None, rate="")
        started: dict[str, float] = {}

        def show(p: Any) -> None:
            started.setdefault(p.phase, time.monotonic())
            rate = ""
            if p.phase == "replay" and p.done:
                per_second = p.done / max(time.monotonic() - started["replay"], 1e-9)
                rate = f"{per_second:.1f} simulated h/s"
            at = f" {p.window_at:%Y-%m-%d %H:%M}" if p.window_at else ""
            bar.update(task, description=f"{p.phase}{at}", completed=p.done,
                       total=p.total or None, rate=rate)
            if not console.is_terminal:
                lines.show(p.phase, f"{p.phase}{at} {p.done}/{p.total or '?'} {rate}".rstrip())

        try:
            return await execute(prepared, show)
        except StressError as err:
            raise CliError(str(err)) from None


class PlainProgress:
    """Progress for a log, not a terminal (`make stress | tee log`, CI): the bar draws nothing
    there, and a 1,000-loan run is 20 silent minutes. One line at each new phase, then at most
    one every `every` seconds."""

    def __init__(self, console: Any, every: float = 15.0) -> None:
        self.console, self.every = console, every
        self.phase, self.last = "", 0.0

    def show(self, phase: str, line: str) -> None:
        now = time.monotonic()
        if phase == self.phase and now - self.last < self.every:
            return
        self.phase, self.last = phase, now
        self.console.print(line, markup=False, highlight=False)


def _print_outcome(outcome: Any) -> None:
    from loanflow.money import fmt_usd

    summary = outcome.results["summary"]
    for row in summary["by_policy"]:
        causes = row["sales_by_cause"]
        typer.echo(f"{row['policy']}: {row['loans']} loans, {row['margin_calls']} margin calls, "
                   f"{row['cures']} cured, {row['sales']} sales ({causes['deadline']} at the "
                   f"deadline, {causes['confirmed']} confirmed, {causes['hard_floor']} hard "
                   f"floor), {row['defaults']} defaults, bad debt "
                   f"{fmt_usd(Decimal(row['bad_debt_usd']))}")
    typer.echo(f"{len(outcome.results['no_price_hours'])} no-price hour(s); "
               f"run took {outcome.seconds['total']:.0f} s")
    for path in outcome.files:
        typer.echo(f"  {path}")
    if outcome.workdir is not None:
        typer.echo(f"private database and mail kept in {outcome.workdir}")
