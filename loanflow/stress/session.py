"""A whole stress run from options to files: prices, book, policies -> the private run ->
results.json, report.md, report.html and the plots in the output directory."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from loanflow.stress import book as books
from loanflow.stress import importing, plots, report, results
from loanflow.stress.paths import price_path
from loanflow.stress.policies import NamedPolicy, load_policies
from loanflow.stress.prices import PriceSet, from_files, from_window, parse_price_arg
from loanflow.stress.runner import Progress, run


@dataclass(frozen=True)
class StressOptions:
    window: str | None = None
    price_files: Sequence[str] = ()
    book_file: Path | None = None
    ltvs: str = "0.40,0.50,0.60,0.65"
    assets: str | None = None  # every asset the prices cover
    loans_per_bucket: int = 2
    seed: int = 1
    principal: Decimal = books.DEFAULT_PRINCIPAL
    policy_files: Sequence[Path] = ()
    out: Path = Path("stress-results")
    keep_workdir: bool = False
    processes: int = 1
    servers: int | None = None  # private test servers; None: one per 250 loans, at most 8


@dataclass
class StressRun:
    results: dict[str, Any]
    files: list[Path]
    seconds: dict[str, float]
    workdir: Path | None


def describe_prices(options: StressOptions) -> str:
    return f"window {options.window}" if options.window else ", ".join(options.price_files)


def load_prices(options: StressOptions, workdir: Path) -> PriceSet:
    if options.window and options.price_files:
        raise books.BookSpecError("give either --window or --prices, not both")
    if options.window:
        return from_window(options.window)
    if not options.price_files:
        raise books.BookSpecError("say what to price the book with: --window NAME or --prices FILE")
    return from_files([parse_price_arg(p) for p in options.price_files], workdir / "prices")


def load_book(options: StressOptions, prices: PriceSet) -> tuple[list[books.BookLoan], str]:
    first = {a: prices.first_price(a) for a in prices.assets()}
    if options.book_file is not None:
        loans = importing.read(options.book_file, first)
        return loans, f"from {options.book_file}"
    assets = books.parse_assets(options.assets) if options.assets else prices.assets()
    missing = [a for a in assets if a not in first]
    if missing:
        raise books.BookSpecError(f"--assets: no {missing[0]} prices in the window")
    ltvs = books.parse_ltvs(options.ltvs)
    loans = books.generate(assets, ltvs, options.loans_per_bucket, options.seed, first,
                           prices.start, options.principal)
    label = (f"generated: {options.loans_per_bucket} per bucket, LTV "
             f"{', '.join(books.bucket_label(x) + '%' for x in ltvs)}, {', '.join(assets)}, "
             f"${options.principal:,} each, seed {options.seed}")
    return loans, label


@dataclass
class Prepared:
    """Checked inputs, before anything starts: a bad option costs nothing."""

    options: StressOptions
    workdir: Path
    prices: PriceSet
    book: list[books.BookLoan]
    book_label: str
    policies: list[NamedPolicy]


def prepare(options: StressOptions) -> Prepared:
    workdir = Path(tempfile.mkdtemp(prefix="loanflow-stress-"))
    try:
        prices = load_prices(options, workdir)
        book, label = load_book(options, prices)
        return Prepared(options, workdir, prices, book, label, load_policies(options.policy_files))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


async def execute(prepared: Prepared,
                  on_progress: Callable[[Progress], None] = lambda p: None) -> StressRun:
    options, prices, policies = prepared.options, prepared.prices, prepared.policies
    started = time.monotonic()
    try:
        options.out.mkdir(parents=True, exist_ok=True)
        outcome = await run(prices, prepared.book, policies, seed=options.seed,
                            workdir=prepared.workdir, on_progress=on_progress,
                            processes=options.processes, servers=options.servers)
        try:
            found = await results.collect(outcome.db, outcome.clock, prices, outcome.loans,
                                          policies)
            path = await price_path(outcome.db, outcome.clock)
        finally:
            await outcome.db.dispose()
        on_progress(Progress("report"))
        results.write(found, options.out / "results.json")
        seconds = {**outcome.seconds, "total": time.monotonic() - started}
        run_facts = {"seconds": seconds, "prices": describe_prices(options),
                     "book": prepared.book_label, "warning": outcome.warning}
        files = [options.out / "results.json",
                 report.write_markdown(found, run_facts, options.out / "report.md"),
                 report.write_html(found, run_facts, options.out / "report.html"),
                 *plots.draw_all(found, prices, path, options.out)]
        return StressRun(found, files, seconds, prepared.workdir if options.keep_workdir else None)
    finally:
        if not options.keep_workdir:
            shutil.rmtree(prepared.workdir, ignore_errors=True)


async def stress(options: StressOptions,
                 on_progress: Callable[[Progress], None] = lambda p: None) -> StressRun:
    """The whole run: inputs checked, then the book through the window, then the files."""
    return await execute(prepare(options), on_progress)
