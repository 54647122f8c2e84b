"""Loan commands: open a loan, its status, the list of loans, a loan's timeline.

Temporal's client and the database are imported by the commands that use them: every
command starts faster without the other."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from loanflow.cli.ids import WORKFLOW_TYPE, loan_id_of, workflow_id
from loanflow.cli.errors import CliError, run
from loanflow.cli.output import (
    DASH,
    fields,
    print_json,
    ratio,
    show,
    table,
    time_left,
    units,
    usd,
    when,
)
from loanflow.cli.params import AsJson, LoanRef
from loanflow.desk_policy import refusal, with_desk_policy
from loanflow.models import (
    LoanApplication,
    LoanState,
    LoanStatus,
    check_application,
    describe_validation_error,
)
from loanflow.settings import get_settings

if TYPE_CHECKING:
    from loanflow.cli.visibility import LoanRow

PANEL = "Loans"
commands = typer.Typer()

# Flags of `open` and where each goes in the application (the contract's field names).
APPLICATION_FLAGS: dict[str, tuple[str, ...]] = {
    "loan_id": ("loan_id",),
    "borrower_id": ("borrower", "id"),
    "name": ("borrower", "name"),
    "email": ("borrower", "email"),
    "country": ("borrower", "country"),
    "timezone": ("borrower", "timezone"),
    "principal": ("principal_usd",),
    "asset": ("collateral_asset",),
    "collateral": ("collateral_amount",),
    "term_days": ("term_days",),
    "rate": ("annual_rate",),
}

def flag(metavar: str, help: str) -> Any:
    """An optional text option."""
    return typer.Option(metavar=metavar, help=help, show_default=False)


@commands.command("open", rich_help_panel=PANEL)
def open_loan(
    file: Annotated[str | None, typer.Option(
        "--file", "-f", metavar="PATH",
        help="The application as a JSON object (the contract's LoanApplication); '-' reads "
             "stdin. Flags given too override its fields.")] = None,
    loan_id: Annotated[str | None, flag("ID", "New loan's id, e.g. L1.")] = None,
    borrower_id: Annotated[str | None, flag("ID", "Borrower's id (no personal data).")] = None,
    name: Annotated[str | None, flag("NAME", "Borrower's full name.")] = None,
    email: Annotated[str | None, flag("EMAIL", "Borrower's e-mail (notices go there).")] = None,
    country: Annotated[str | None, flag("CC", "ISO 3166-1 alpha-2 code, e.g. GB.")] = None,
    timezone: Annotated[str | None, flag("ZONE", "Borrower's IANA time zone.")] = None,
    principal: Annotated[str | None, flag("USD", "Principal in USD, e.g. 20000.00.")] = None,
    asset: Annotated[str | None, flag("ASSET", "Collateral asset: BTC or ETH.")] = None,
    collateral: Annotated[str | None, flag("UNITS", "Collateral pledged, in asset units.")] = None,
    term_days: Annotated[str | None, flag("DAYS", "Term in days.")] = None,
    rate: Annotated[str | None, flag("RATE", "Annual rate as a fraction: 0.12 is 12%.")] = None,
    as_json: AsJson = False,
) -> None:
    """Open a loan: start its workflow (`loan-<loan id>`) with an application from flags or a file.

    The desk's policy overrides (LOANFLOW_POLICY_*) are written into the application, under
    any it names itself.
    """
    flags = dict(loan_id=loan_id, borrower_id=borrower_id, name=name, email=email,
                 country=country, timezone=timezone, principal=principal, asset=asset,
                 collateral=collateral, term_days=term_days, rate=rate)
    raw = application_from(read_application(file) if file else {}, flags)
    application = validated_application(with_desk_policy(raw))
    opened = run(start_loan(application))
    if as_json:
        print_json(opened)
        return
    show(f"opened loan {opened['loan_id']}: workflow {opened['workflow_id']} on task queue "
         f"'{opened['task_queue']}'; follow it with `loanflow status {opened['loan_id']}`")


def read_application(file: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as err:
        raise typer.BadParameter(f"cannot read {file}: {err.strerror}", param_hint="--file")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise typer.BadParameter(f"{file} is not JSON: {err}", param_hint="--file") from None
    if not isinstance(raw, dict):
        raise typer.BadParameter(f"{file} must hold one JSON object", param_hint="--file")
    return raw


def application_from(base: dict[str, Any], flags: dict[str, str | None]) -> dict[str, Any]:
    """The file's application with the flags given on top (a pure function)."""
    application = {**base, "borrower": dict(base.get("borrower") or {})}
    for flag, value in flags.items():
        if value is None:
            continue
        *parents, leaf = APPLICATION_FLAGS[flag]
        target = application
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    if not application["borrower"] and "borrower" not in base:
        del application["borrower"]  # let the model report it missing by name
    return application


def validated_application(raw: dict[str, Any]) -> LoanApplication:
    """The contract's model and its business checks; errors name the field."""
    if raw.get("resume") is not None:
        raise CliError("resume: set by the workflow itself when it continues as new; never send it")
    if raw.get("origin") is not None:
        raise CliError("origin: migrated loans come in with `loanflow book import FILE`, which "
                       "stores their figures first")
    try:
        application = LoanApplication.model_validate(raw)
    except ValidationError as err:
        raise CliError(describe_validation_error(err)) from None
    check_application(application)
    # The loan would reject a policy RiskPolicy refuses at once: say so before it starts.
    problem = refusal(application.policy) if application.policy is not None else None
    if problem:
        raise CliError(f"policy: {problem}")
    return application


async def start_loan(application: LoanApplication) -> dict[str, str]:
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from loanflow.cli.client import connect_desk
    from loanflow.loan_metadata import start_metadata

    client = await connect_desk()
    queue = get_settings().task_queue
    wid = workflow_id(application.loan_id)
    try:
        # A loan id is never reused: effects are keyed by it, so a second loan under the same
        # id would find the first one's effects already done.
        handle = await client.start_workflow(
            WORKFLOW_TYPE, application, id=wid, task_queue=queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            **start_metadata(application),  # the Web UI's summary of the loan
        )
    except WorkflowAlreadyStartedError:
        raise CliError(f"loan {application.loan_id} already exists (workflow {wid}); "
                       "loan ids are never reused") from None
    return {"loan_id": application.loan_id, "workflow_id": wid,
            "run_id": handle.result_run_id or "", "task_queue": queue}


@commands.command(rich_help_panel=PANEL)
def status(loan: LoanRef, as_json: AsJson = False) -> None:
    """A loan's status: state, LTV, debt, collateral, price, cure deadline and amounts."""

    loan_id = loan_id_of(loan)

    async def query() -> LoanStatus:
        from loanflow.cli.client import Loan, connect_desk

        return await Loan(await connect_desk(), loan_id).status()

    result = run(query())
    if as_json:
        print_json(result)
        return
    show(fields(f"loan {result.loan_id}", status_lines(result, datetime.now(timezone.utc))))


def status_lines(s: LoanStatus, now: datetime) -> list[tuple[str, str]]:
    """The status for people: what is known, in the order an operator reads it."""
    asset = s.collateral_asset
    lines = [("state", s.state.value)]
    if s.reason:
        lines.append(("reason", s.reason))
    lines.append(("kyc", s.kyc_status))
    lines.append(("collateral", f"{units(asset, s.collateral_amount)} of "
                                f"{units(asset, s.required_collateral)} required"))
    if s.price is not None:
        fresh = "fresh" if s.price_fresh else "STALE"
        observed = when(s.price_observed_at)
        lines.append(("price", f"{usd(s.price)} per {asset} at {observed} ({fresh})"))
    lines.append(("LTV", ratio(s.ltv)))
    lines.append(("debt", debt_line(s)))
    if s.cure_deadline:
        left = time_left(s.cure_deadline, now)
        lines.append(("cure deadline", f"{when(s.cure_deadline)} ({left})"))
    if s.cure_top_up is not None or s.cure_repay_usd is not None:
        cures = f"add {units(asset, s.cure_top_up)} or repay {usd(s.cure_repay_usd)}"
        lines.append(("cures", cures))
    triggers = {k: v for k, v in s.trigger_prices.items() if v is not None}
    if triggers:
        lines.append(("trigger prices", ", ".join(f"{k} {usd(v)}" for k, v in triggers.items())))
    optional = [("deposit address", s.deposit_address), ("funding deadline", s.funding_deadline),
                ("disbursed", s.disbursed_at), ("maturity", s.maturity)]
    lines += [(k, when(v) if isinstance(v, datetime) else v) for k, v in optional if v]
    return lines


def debt_line(s: LoanStatus) -> str:
    """What is owed; a defaulted loan owes nothing more because its shortfall was written off,
    which the operator must see beside the $0.00."""
    parts = (f"principal {usd(s.principal_usd)}, interest {usd(s.interest_usd)}, "
             f"fees {usd(s.fees_usd)}")
    if s.state == LoanState.DEFAULTED and s.shortfall_usd:
        return f"{usd(s.debt_usd)} after {usd(s.shortfall_usd)} written off as a loss ({parts})"
    return f"{usd(s.debt_usd)} ({parts})"


@commands.command("list", rich_help_panel=PANEL)
def list_loans(
    state: Annotated[list[str] | None, typer.Option(
        "--state", metavar="STATE", show_default=False,
        help="Only loans in this state (repeat for several), e.g. MARGIN_CALL.")] = None,
    asset: Annotated[str | None, flag("ASSET", "Only loans secured by BTC or ETH.")] = None,
    borrower: Annotated[str | None, flag("ID", "Only this borrower's loans.")] = None,
    ltv_min: Annotated[str | None, flag("LTV", "LTV at least: 0.7 or 70%.")] = None,
    ltv_max: Annotated[str | None, flag("LTV", "LTV at most: 0.7 or 70%.")] = None,
    running: Annotated[bool, typer.Option("--running", help="Only loans still running.")] = False,
    limit: Annotated[int, typer.Option(min=1, metavar="N",
                                       help="At most this many, newest first.")] = 100,
    as_json: AsJson = False,
) -> None:
    """List loans, filtered on the search attributes (a Temporal visibility query: the same
    filter works in the Web UI)."""
    from loanflow.cli.visibility import find_loans, list_query, make_filters

    filters = make_filters(states=state or [], asset=asset, borrower=borrower, ltv_min=ltv_min,
                           ltv_max=ltv_max, running_only=running)
    query = list_query(filters)

    async def find() -> list[LoanRow]:
        from loanflow.cli.client import connect_desk

        return await find_loans(await connect_desk(), query, limit)

    rows = run(find())
    if as_json:
        print_json({"query": query, "loans": rows})
        return
    now = datetime.now(timezone.utc)
    show(table(f"{len(rows)} loan(s) where {query}",
               ["loan", "state", "asset", "LTV", "debt", "borrower", "cure deadline", "workflow",
                "started"],
               [list_row(row, now) for row in rows], right=("LTV", "debt"),
               keep=("state", "asset"), drop=("started", "workflow", "borrower")))


def list_row(row: LoanRow, now: datetime) -> list[str]:
    deadline = row.cure_deadline
    return [row.loan_id, row.state or DASH, row.collateral_asset or DASH, ratio(row.ltv),
            usd(row.debt_usd), row.borrower_id or DASH,
            f"{when(deadline)} ({time_left(deadline, now)})" if deadline else DASH,
            row.workflow_status.lower(), when(row.started_at)]


@commands.command(rich_help_panel=PANEL)
def timeline(loan: LoanRef, as_json: AsJson = False) -> None:
    """A loan's timeline from the database: decisions, notices and ledger entries, in order."""
    from loanflow.cli.database import database
    from loanflow.timeline import load_timeline

    loan_id = loan_id_of(loan)

    async def load() -> list[Any]:
        async with database() as db:
            events = await load_timeline(db, loan_id)
        if events is None:
            raise CliError(f"unknown loan {loan_id}")
        return events

    events = run(load())
    if as_json:
        print_json({"loan_id": loan_id, "events": events})
        return
    show(table(f"loan {loan_id}: {len(events)} event(s)", ["time", "source", "kind", "what"],
               [[when(e.at, seconds=True), e.source, e.kind, e.summary] for e in events],
               keep=("kind",)))
