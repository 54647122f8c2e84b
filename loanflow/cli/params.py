"""Parameters shared by many commands, so they read and behave the same everywhere."""

from __future__ import annotations

from typing import Annotated

import typer

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]

LoanRef = Annotated[
    str, typer.Argument(metavar="LOAN_ID", help="The loan id (L1) or its workflow id (loan-L1).",
                        show_default=False)
]

# Amounts are taken as text and parsed by the contract's models, so a bad amount is reported
# with the field's name and the model's own reason.
UnitsAmount = Annotated[str, typer.Argument(
    metavar="AMOUNT", show_default=False,
    help="Collateral in the loan's asset units, e.g. 1.5 (BTC) or 20 (ETH).")]
UsdAmount = Annotated[str, typer.Argument(
    metavar="AMOUNT", show_default=False, help="US dollars, e.g. 5000.00.")]

# For commands taking an amount or a price as an argument: `top-up L1 -1` must reach the
# validator ("amount: must be a positive ...") instead of being read as an unknown option -1.
NUMBERS = {"ignore_unknown_options": True}
