"""The loan updates of the contract, one command each: KYC decisions, deposits, top-ups,
repayments and cure extensions.

Each request is checked against the contract's model before anything is sent (a bad amount
fails here, naming the field); the loan's own validator then decides (a reused tx id, the
wrong state, more than the debt) and its refusal is printed as it is.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from loanflow.cli import replies
from loanflow.cli.ids import loan_id_of
from loanflow.cli.errors import run
from loanflow.cli.output import print_json, show
from loanflow.cli.params import NUMBERS, AsJson, LoanRef, UnitsAmount, UsdAmount
from loanflow.models import (
    CollateralDeposit,
    CureExtension,
    KycDecision,
    LoanStatus,
    Repayment,
    parse_request,
)

PANEL = "Loan updates"
# How long a reply waits for the loan to act on an accepted update (a payout takes a second
# or two; a loan with no fresh price waits far longer, and the reply then says so).
SETTLE_SECONDS = 10.0
POLL_SECONDS = 0.2
commands = typer.Typer()
kyc = typer.Typer(help="Decide a loan waiting in manual KYC review.", no_args_is_help=True)
commands.add_typer(kyc, name="kyc", rich_help_panel=PANEL)

Reviewer = Annotated[str, typer.Option(help="Who decided (recorded in the audit trail).",
                                       show_default=False)]
Reason = Annotated[str, typer.Option(help="Why (recorded; a rejection's reason is sent to "
                                          "the borrower).", show_default=False)]
TxId = Annotated[str, typer.Option("--tx-id", help="On-chain transaction id; each counts once.",
                                   show_default=False)]


def send(loan: str, name: str, request: BaseModel, as_json: bool) -> None:
    """Run one update and print the loan's state once it has acted on it."""
    loan_id = loan_id_of(loan)

    async def update() -> tuple[LoanStatus, bool]:
        from loanflow.cli.client import Loan, connect_desk

        target = Loan(await connect_desk(), loan_id)
        await target.update(name, request)
        return await after_update(target, name)

    status, settled = run(update())
    if as_json:
        answer: dict[str, Any] = {"loan_id": status.loan_id, "update": name,
                                  "state": status.state, "settled": settled, "status": status}
        if name == "extend_cure":
            answer["cure_deadline"] = status.cure_deadline
        print_json(answer)
    else:
        show(replies.reply(name, request, status, settled, datetime.now(timezone.utc)))


async def after_update(loan: Any, name: str) -> tuple[LoanStatus, bool]:
    """The loan's status once it has acted on the update, and whether it had within
    SETTLE_SECONDS. An update answers when its handler is done; a deposit that funds the loan
    or a KYC approval is then carried on by the loan itself (a payout, an LTV check), so its
    reply would show the state from before that (issue 11)."""
    deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
    while True:
        status = await loan.status()
        if not replies.still_acting(name, status):
            return status, True
        if asyncio.get_running_loop().time() >= deadline:
            return status, False
        await asyncio.sleep(POLL_SECONDS)


@kyc.command()
def approve(loan: LoanRef, reviewer: Reviewer, reason: Reason, as_json: AsJson = False) -> None:
    """Approve the borrower after manual review (update kyc_decision)."""
    decision = parse_request(KycDecision, {"approved": True, "reviewer": reviewer, "reason": reason})
    send(loan, "kyc_decision", decision, as_json)


@kyc.command()
def reject(loan: LoanRef, reviewer: Reviewer, reason: Reason, as_json: AsJson = False) -> None:
    """Reject the borrower after manual review: the loan ends REJECTED (update kyc_decision)."""
    decision = parse_request(KycDecision, {"approved": False, "reviewer": reviewer, "reason": reason})
    send(loan, "kyc_decision", decision, as_json)


@commands.command(rich_help_panel=PANEL, context_settings=NUMBERS)
def deposit(loan: LoanRef, amount: UnitsAmount, tx_id: TxId, as_json: AsJson = False) -> None:
    """Confirm collateral received for a loan awaiting it (update confirm_deposit). Answers
    once the loan has acted on it: ACTIVE and paid out when funded."""
    request = parse_request(CollateralDeposit, {"amount": amount, "tx_id": tx_id})
    send(loan, "confirm_deposit", request, as_json)


@commands.command("top-up", rich_help_panel=PANEL, context_settings=NUMBERS)
def top_up(loan: LoanRef, amount: UnitsAmount, tx_id: TxId, as_json: AsJson = False) -> None:
    """Add collateral to an active loan, e.g. to cure a margin call (update top_up)."""
    request = parse_request(CollateralDeposit, {"amount": amount, "tx_id": tx_id})
    send(loan, "top_up", request, as_json)


@commands.command(rich_help_panel=PANEL, context_settings=NUMBERS)
def repay(
    loan: LoanRef,
    amount: UsdAmount,
    reference: Annotated[str, typer.Option(help="Payment reference (wire id); each counts once.",
                                           show_default=False)],
    as_json: AsJson = False,
) -> None:
    """Apply a repayment in USD: fees, then interest, then principal (update repay). Repaying
    the whole debt closes the loan and releases the collateral."""
    request = parse_request(Repayment, {"amount_usd": amount, "reference": reference})
    send(loan, "repay", request, as_json)


@commands.command(rich_help_panel=PANEL)
def extend(
    loan: LoanRef,
    hours: Annotated[str, typer.Option(help="Hours to add to the cure deadline.",
                                       show_default=False)],
    reason: Reason,
    operator: Annotated[str, typer.Option(help="Who extends it (recorded).", show_default=False)],
    as_json: AsJson = False,
) -> None:
    """Extend a margin call's cure deadline (update extend_cure) and print the new one; the
    borrower is told."""
    request = parse_request(CureExtension, {"hours": hours, "reason": reason, "operator": operator})
    send(loan, "extend_cure", request, as_json)
