"""Loan ids as operators type them, and the workflow ids of the contract (`loan-<loan_id>`)."""

from __future__ import annotations

from loanflow.cli.errors import CliError
from loanflow.models import WORKFLOW_PREFIX, WORKFLOW_TYPE, workflow_id

__all__ = ["WORKFLOW_PREFIX", "WORKFLOW_TYPE", "loan_id_of", "workflow_id"]


def loan_id_of(ref: str) -> str:
    """Operators type either the loan id (`L1`) or its workflow id (`loan-L1`)."""
    loan_id = ref.strip().removeprefix(WORKFLOW_PREFIX)
    if not loan_id:
        raise CliError("loan id: must not be empty (e.g. L1 or loan-L1)")
    return loan_id
