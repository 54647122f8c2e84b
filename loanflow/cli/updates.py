"""The loan updates of the contract, one command each: KYC decisions, deposits, top-ups,
repayments and cure extensions.

Each request is checked against the contract's model before anything is sent (a bad amount
fails here, naming the field); the loan's own validator then decides (a reused tx id, the
wrong state, more than the debt) and its refusal is printed as it is.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from pydantic import BaseModel

from loanflow.cli.ids import loan_id_of
from loanflow.cli.errors import run
from loanflow.cli.output import print_json, show
from loanflow.cli.params import Amount, AsJson, LoanRef
from loanflow.models import CollateralDeposit, CureExtension, KycDecision, Repayment, parse_request

PANEL = "Loan updates"
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
    """Run one update and print the loan's state after it."""
    loan_id = loan_id_of(loan)

    async def update() -> dict[str, Any]:
        from loanflow.cli.client import Loan, connect_desk

        target = Loan(await connect_desk(), loan_id)
        state = await target.update(name, request)
        return {"loan_id": target.loan_id, "update": name, "state": state}

    result = run(update())
    if as_json:
        print_json(result)
    else:
        show(f"{name} accepted: loan {result['loan_id']} is {result['state']}")


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


@commands.command(rich_help_panel=PANEL)
def deposit(loan: LoanRef, amount: Amount, tx_id: TxId, as_json: AsJson = False) -> None:
    """Confirm collateral received for a loan awaiting it (update confirm_deposit). AMOUNT is
    in the collateral's units, e.g. 1.5 (BTC)."""
    request = parse_request(CollateralDeposit, {"amount": amount, "tx_id": tx_id})
    send(loan, "confirm_deposit", request, as_json)


@commands.command("top-up", rich_help_panel=PANEL)
def top_up(loan: LoanRef, amount: Amount, tx_id: TxId, as_json: AsJson = False) -> None:
    """Add collateral to an active loan, e.g. to cure a margin call (update top_up). AMOUNT is
    in the collateral's units."""
    request = parse_request(CollateralDeposit, {"amount": amount, "tx_id": tx_id})
    send(loan, "top_up", request, as_json)


@commands.command(rich_help_panel=PANEL)
def repay(
    loan: LoanRef,
    amount: Amount,
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
    """Extend a margin call's cure deadline (update extend_cure); the borrower is told."""
    request = parse_request(CureExtension, {"hours": hours, "reason": reason, "operator": operator})
    send(loan, "extend_cure", request, as_json)
