"""`loanflow book import FILE`: migrate loans from another system into the desk, ACTIVE.

The file is validated whole before anything happens (`loanflow.book_import`); a bad row is
one line naming its line and field, and nothing of the file is imported. Importing the same
file again starts nothing new and says so per loan.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loanflow.cli.errors import CliError, run
from loanflow.cli.output import print_json, show
from loanflow.cli.params import AsJson
from loanflow.settings import get_settings

if TYPE_CHECKING:
    from loanflow.book_import import ImportPlan, ImportReport
    from loanflow.imported import ImportedLoan
    from loanflow.policy import PolicyOverrides

# Files with at least this many loans get a progress bar (on a terminal).
PROGRESS_FROM = 50


def import_file(
    file: Annotated[Path, typer.Argument(
        metavar="FILE", show_default=False,
        help="A .csv file (a header row of field names, one loan a row) or a .json file (a "
             "list of objects); see the README, Migrating a book.")],
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Validate the file and check it against the database; store and "
                          "start nothing.")] = False,
    as_json: AsJson = False,
) -> None:
    """Migrate ACTIVE loans from another system: their collateral, principal, accrued
    interest, origination and maturity. All or nothing per file; idempotent by loan id."""
    loans = read(file)
    if dry_run:
        outcome: Any = run(plan_loans(loans))
        done = {"file": str(file), "loans": len(loans), "dry_run": True,
                "new": outcome.new, "stored": outcome.stored}
    else:
        outcome = run(import_loans(loans))
        done = {"file": str(file), "loans": len(loans), "dry_run": False,
                "started": outcome.started, "already_present": outcome.already_present}
    if as_json:
        print_json(done)
    elif dry_run:
        say_plan(file, outcome)
    else:
        say_report(file, outcome)


def read(file: Path) -> list[ImportedLoan]:
    from loanflow.book_import import BookError, read_book

    try:
        return read_book(file)
    except BookError as err:
        raise CliError(str(err)) from None


def desk_overrides() -> PolicyOverrides | None:
    """The desk's policy overrides (LOANFLOW_POLICY_*), as `loanflow open` applies them."""
    from loanflow.desk_policy import desk_policy

    overrides = desk_policy()
    return overrides if overrides.model_dump(exclude_none=True) else None


async def plan_loans(loans: list[ImportedLoan]) -> ImportPlan:
    from loanflow.book_import import BookError, plan_book
    from loanflow.cli.database import database

    async with database() as db:
        try:
            return await plan_book(db, loans)
        except BookError as err:
            raise CliError(str(err)) from None


async def import_loans(loans: list[ImportedLoan]) -> ImportReport:
    from temporalio.service import RPCError

    from loanflow.book_import import BookError, import_book
    from loanflow.cli.client import connect_desk, unreachable
    from loanflow.cli.database import database

    client = await connect_desk()  # before anything is stored: no server, nothing done
    with progress_bar(len(loans)) as advance:
        async with database() as db:
            try:
                return await import_book(client, db, loans, task_queue=get_settings().task_queue,
                                         policy=desk_overrides(), on_progress=advance)
            except BookError as err:
                raise CliError(str(err)) from None
            except RPCError as err:
                where = unreachable(client.service_client.config.target_host)
                raise CliError(f"{where} ({err.message}); the loans' records are stored: run "
                               "the same import again to start the rest") from None


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for a big file on a terminal (else nothing); yields the
    function that moves it to the number of loans handled so far."""
    if total < PROGRESS_FROM or not sys.stderr.isatty():
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeElapsedColumn

    with Progress(TextColumn("starting loans"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("import", total=total)
        yield lambda done: bar.update(task, completed=done)


def say_report(file: Path, report: ImportReport) -> None:
    for loan_id in report.started:
        show(f"started {loan_id}: opens ACTIVE from its migration record")
    for loan_id in report.already_present:
        show(f"already present {loan_id}: imported before, nothing done")
    show(f"{file}: {len(report.started) + len(report.already_present)} loan(s): "
         f"{len(report.started)} started, {len(report.already_present)} already present")


def say_plan(file: Path, plan: ImportPlan) -> None:
    for loan_id in plan.new:
        show(f"would import {loan_id}")
    for loan_id in plan.stored:
        show(f"already imported {loan_id}: nothing to store (its loan is started only if it "
             "never was)")
    show(f"{file}: valid; {len(plan.new)} loan(s) to import, {len(plan.stored)} imported "
         "before (dry run: nothing stored or started)")
