"""The notice kinds a loan sends and the figures each one states.

`Notice.data` travels as JSON: Decimals as strings, datetimes as ISO 8601 UTC strings. A kind's
required figures must be there (a notice without them is a bug in the sender and fails
loudly); optional ones may be missing and then read "n/a" or leave their sentence out.
Unknown keys are ignored, so the workflow may send more than a template shows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NoticeKind:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()


_MARGIN_CALL = NoticeKind(
    required=(
        "ltv", "price", "collateral_asset", "collateral_amount", "debt_usd",
        "cure_deadline", "cure_top_up", "cure_repay_usd",
    ),
    optional=(
        "margin_call_ltv", "cure_target_ltv", "liquidation_ltv", "observed_at",
        "liquidation_price", "post_liquidation_ltv", "liquidation_fee", "address",
        "hard_liquidation_ltv",
    ),
)

KINDS: dict[str, NoticeKind] = {
    "application_received": NoticeKind(
        ("principal_usd", "collateral_asset", "collateral_amount", "term_days", "annual_rate"),
    ),
    "kyc_approved": NoticeKind(),
    "kyc_rejected": NoticeKind(optional=("reason",)),
    "application_rejected": NoticeKind(optional=("reason",)),
    "deposit_instructions": NoticeKind(
        ("address", "collateral_asset", "amount_required", "funding_deadline"),
    ),
    "collateral_received": NoticeKind(
        ("collateral_asset", "amount_received", "total_received", "amount_required"),
        ("tx_id",),
    ),
    "loan_disbursed": NoticeKind(
        ("principal_usd", "collateral_asset", "collateral_amount"),
        ("ltv", "price", "maturity", "annual_rate"),
    ),
    "loan_migrated": NoticeKind(
        ("principal_usd", "collateral_asset", "collateral_amount", "debt_usd"),
        ("interest_usd", "annual_rate", "originated_at", "maturity", "address"),
    ),
    "ltv_warning": NoticeKind(
        ("ltv", "price", "collateral_asset", "collateral_amount", "debt_usd"),
        ("warning_ltv", "margin_call_ltv", "margin_call_price"),
    ),
    "margin_call": _MARGIN_CALL,
    "margin_call_reminder": NoticeKind(
        _MARGIN_CALL.required, _MARGIN_CALL.optional + ("hours_left",)
    ),
    "margin_call_cured": NoticeKind(("ltv",), ("how", "price")),
    "cure_extended": NoticeKind(("cure_deadline",), ("previous_deadline", "hours", "reason")),
    "liquidation_executed": NoticeKind(
        (
            "quantity_sold", "collateral_asset", "fill_price", "gross_usd", "fee_usd",
            "applied_usd", "collateral_left", "debt_usd",
        ),
        ("surplus_usd", "ltv_after", "reason", "cause", "price", "observed_at", "ltv_before",
         "margin_call_ltv", "liquidation_ltv", "hard_liquidation_ltv", "cure_deadline",
         "closed_out"),
    ),
    "loan_defaulted": NoticeKind(
        ("shortfall_usd",), ("quantity_sold", "collateral_asset", "applied_usd")
    ),
    "maturity_reminder": NoticeKind(("maturity", "debt_usd"), ("days_left",)),
    "repayment_received": NoticeKind(
        ("amount_usd", "debt_usd"), ("reference", "principal_usd", "interest_usd", "fees_usd")
    ),
    "loan_closed": NoticeKind(
        ("collateral_asset",),
        (
            "collateral_released", "total_interest_usd", "total_fees_usd",
            "total_repaid_usd", "closed_at",
        ),
    ),
    "loan_cancelled": NoticeKind(
        optional=("reason", "collateral_returned", "collateral_asset")
    ),
}

# How a figure is shown, by its name. Tests use this to find every figure in both bodies.
USD_FIELDS = frozenset(
    {
        "principal_usd", "debt_usd", "cure_repay_usd", "gross_usd", "fee_usd", "applied_usd",
        "surplus_usd", "shortfall_usd", "amount_usd", "interest_usd", "fees_usd",
        "total_interest_usd", "total_fees_usd", "total_repaid_usd",
        "price", "fill_price", "margin_call_price", "liquidation_price",
    }
)
UNITS_FIELDS = frozenset(
    {
        "collateral_amount", "amount_required", "amount_received", "total_received",
        "cure_top_up", "quantity_sold", "collateral_left", "collateral_released",
        "collateral_returned",
    }
)
RATIO_FIELDS = frozenset(
    {
        "ltv", "warning_ltv", "margin_call_ltv", "cure_target_ltv", "liquidation_ltv",
        "post_liquidation_ltv", "ltv_after", "annual_rate", "liquidation_fee",
        "ltv_before", "hard_liquidation_ltv",
    }
)
TIME_FIELDS = frozenset(
    {"funding_deadline", "maturity", "observed_at", "cure_deadline", "previous_deadline",
     "closed_at", "originated_at"}
)
