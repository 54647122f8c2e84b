"""Names of the ledger's accounts. Debits are positive, credits negative; every entry sums to
zero per currency. USD accounts are the lender's books; collateral accounts are in asset units
and show what the custodian holds against what is owed back to each borrower."""

from __future__ import annotations

CASH = "cash"
INTEREST_INCOME = "income:interest"
LIQUIDATION_FEE_INCOME = "income:liquidation_fee"
SHORTFALL_LOSS = "loss:shortfall"


def receivable(loan_id: str) -> str:
    """What the borrower owes (USD): principal + posted interest + fees."""
    return f"loan:{loan_id}:receivable"


def collateral(loan_id: str) -> str:
    """Collateral held for the borrower (asset units; a credit balance)."""
    return f"loan:{loan_id}:collateral"


def custody(asset: str) -> str:
    """What the custodian holds of an asset across all loans."""
    return f"custody:{asset}"


def payable(borrower_id: str) -> str:
    """Money owed back to a borrower (surplus of a sale)."""
    return f"borrower:{borrower_id}:payable"
