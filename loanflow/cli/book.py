"""`loanflow book`: the desk's view of the whole book, for people (tables and an LTV
histogram drawn in text) or scripts (JSON); `loanflow book import FILE` migrates loans from
another system (`loanflow.book_import`)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from loanflow.cli.book_import import import_file
from loanflow.cli.errors import run
from loanflow.cli.output import print_json, ratio, show, table, time_left, units, usd, when
from loanflow.cli.params import AsJson
from loanflow.policy import RiskPolicy

if TYPE_CHECKING:
    from loanflow.book import Book, Bucket

commands = typer.Typer()
# `loanflow book` shows the book; `import` migrates loans in, `reconcile` repairs its read model.
book_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)
commands.add_typer(book_app, name="book", rich_help_panel="Desk")
book_app.command("import")(import_file)
BAR_WIDTH = 40


@book_app.callback()
def book(ctx: typer.Context, as_json: AsJson = False) -> None:
    """The whole book at a glance: loans and debt by state, collateral by asset and its value,
    the LTV distribution, and the margin calls by deadline with their cure amounts (LTVs and
    cures at the latest stored price). `loanflow book import FILE` migrates loans in."""
    if ctx.invoked_subcommand is not None:
        return

    from loanflow.book import load_book
    from loanflow.cli.database import database

    async def load() -> Book:
        async with database() as db:
            return await load_book(db, datetime.now(timezone.utc))

    result = run(load())
    if as_json:
        print_json(result)
        return
    render(result)


def render(book: Book) -> None:
    show(Text(f"the book at {when(book.as_of)}: {book.loans} loan(s), debt {usd(book.debt_usd)}",
              style="bold"))
    show(table("by state", ["state", "loans", "debt"],
               [[s.state, s.loans, usd(s.debt_usd)] for s in book.states if s.loans],
               right=("loans", "debt")))
    show(table("collateral", ["asset", "loans", "amount", "price", "observed", "value"],
               [[c.asset, c.loans, units(c.asset, c.amount), usd(c.price), when(c.observed_at),
                 usd(c.value_usd)] for c in book.collateral],
               right=("loans", "amount", "price", "value")))
    show(histogram(book.histogram))
    if book.unpriced:
        show(f"{book.unpriced} open loan(s) have no price yet and no LTV")
    show(table(f"margin calls: {len(book.margin_calls)}, nearest deadline first",
               ["loan", "borrower", "LTV", "debt", "collateral", "deadline", "left",
                "to LTV", "cure: add", "or repay"],
               [[m.loan_id, m.borrower_id, ratio(m.ltv), usd(m.debt_usd),
                 units(m.asset, m.collateral), when(m.cure_deadline),
                 time_left(m.cure_deadline, book.as_of), ratio(m.cure_target_ltv),
                 units(m.asset, m.cure_top_up), usd(m.cure_repay_usd)]
                for m in book.margin_calls],
               right=("LTV", "debt", "collateral", "to LTV", "cure: add", "or repay"),
               drop=("to LTV", "borrower", "deadline")))


def histogram(buckets: list[Bucket]) -> Table:
    """Open loans per 5% LTV bucket as text bars, coloured by the default policy's levels."""
    most = max((b.loans for b in buckets), default=0)
    rows = []
    for b in buckets:
        width = round(BAR_WIDTH * b.loans / most) if most else 0
        rows.append([bucket_label(b), b.loans, usd(b.debt_usd),
                     Text("█" * width, style=level_style(b.low))])
    return table("open loans by LTV (at the latest price)", ["LTV", "loans", "debt", ""], rows,
                 right=("loans", "debt"))


def bucket_label(bucket: Bucket) -> str:
    low = f"{bucket.low * 100:.0f}%"
    return f"{low} and up" if bucket.high is None else f"{low}-{bucket.high * 100:.0f}%"


def level_style(low: Decimal, policy: RiskPolicy = RiskPolicy()) -> str:
    if low >= policy.liquidation_ltv:
        return "red"
    if low >= policy.margin_call_ltv:
        return "dark_orange"
    if low >= policy.warning_ltv:
        return "yellow"
    return "green"


@book_app.command("reconcile")
def reconcile(
    as_json: AsJson = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report drift, change nothing.")]
    = False,
) -> None:
    """Compare the loans read model with each loan's own `status` and repair the rows that
    drifted (state, collateral, principal, cure deadline, trigger prices). The market monitor
    picks its targets from these rows."""
    from loanflow.cli.client import connect_desk, status_or_none
    from loanflow.cli.database import database
    from loanflow.reconcile import Reconciliation
    from loanflow.reconcile import reconcile as run_reconcile

    async def go() -> Reconciliation:
        client = await connect_desk()
        async with database() as db:
            return await run_reconcile(db, lambda loan_id: status_or_none(client, loan_id),
                                       dry_run=dry_run)

    result = run(go())
    if as_json:
        print_json(result)
        return
    verb = "would repair" if dry_run else "repaired"
    show(Text(f"checked {result.checked} loan(s): {len(result.drifted)} drifted, "
              f"{verb} {sum(1 for d in result.drifted if d.repaired or dry_run)}", style="bold"))
    show(table("drift", ["loan", "field", "read model", "loan says"],
               [[d.loan_id, name, values[0], values[1]]
                for d in result.drifted for name, values in d.fields.items()], keep=("field",)))
    if result.unreachable:
        show(f"no status from: {', '.join(result.unreachable)}")
