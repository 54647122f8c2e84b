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
Amount = Annotated[str, typer.Argument(metavar="AMOUNT", show_default=False)]
