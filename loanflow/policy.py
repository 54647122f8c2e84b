"""The risk policy of a loan product: thresholds, periods and fees, all overridable per loan."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Upper bounds on periods: far beyond any product, far below what overflows a timedelta (a
# huge `cure_period_hours` would fail the loan's workflow task instead of being refused).
YEAR_HOURS = 24 * 366
MAX_LIST = 10


class RiskPolicy(BaseModel):
    """Defaults are the desk's standard product (DESIGN.md, "Default risk policy")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_initial_ltv: Decimal = Decimal("0.50")
    warning_ltv: Decimal = Decimal("0.65")
    margin_call_ltv: Decimal = Decimal("0.70")
    cure_target_ltv: Decimal = Decimal("0.60")
    liquidation_ltv: Decimal = Decimal("0.80")
    # Past this LTV a liquidation does not wait for a second observation: waiting costs more
    # than a wick could.
    hard_liquidation_ltv: Decimal = Decimal("0.90")
    post_liquidation_ltv: Decimal = Decimal("0.50")
    liquidation_fee: Decimal = Decimal("0.02")
    # Liquidations are sized as if the sale filled this much below the reference price, so that
    # the post-liquidation LTV is reached even after the exchange's slippage.
    liquidation_slippage_buffer: Decimal = Decimal("0.01")
    # A partial liquidation sells with a limit at reference x (1 - buffer) and lands LTV in
    # [target - 1 pp, target] for every fill up to reference x (1 + this): sales are sized so
    # that even such a fill does not take LTV below the band.
    liquidation_fill_upside: Decimal = Decimal("0.005")
    cure_period_hours: int = Field(default=48, gt=0, le=YEAR_HOURS)
    reminder_hours: tuple[int, ...] = Field(default=(24, 4), max_length=MAX_LIST)
    funding_deadline_hours: int = Field(default=72, gt=0, le=YEAR_HOURS)
    kyc_review_hours: int = Field(default=72, gt=0, le=YEAR_HOURS)
    price_staleness_minutes: int = Field(default=15, gt=0, le=24 * 60)
    maturity_grace_hours: int = Field(default=72, ge=0, le=YEAR_HOURS)
    maturity_reminder_days: tuple[int, ...] = Field(default=(7, 1), max_length=MAX_LIST)
    max_extension_hours: int = Field(default=168, gt=0, le=YEAR_HOURS)
    # A price more than this fraction away from the last accepted one is held until a later
    # observation confirms it (a 2030-dated or fat-fingered price once cured 50 margin calls).
    max_price_jump: Decimal = Field(default=Decimal("0.30"), gt=0, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> RiskPolicy:
        order = [
            ("post_liquidation_ltv", self.post_liquidation_ltv),
            ("cure_target_ltv", self.cure_target_ltv),
            ("margin_call_ltv", self.margin_call_ltv),
            ("liquidation_ltv", self.liquidation_ltv),
            ("hard_liquidation_ltv", self.hard_liquidation_ltv),
        ]
        for (lo_name, lo), (hi_name, hi) in zip(order, order[1:]):
            if not lo < hi:
                raise ValueError(f"{lo_name} ({lo}) must be below {hi_name} ({hi})")
        if not self.max_initial_ltv < self.margin_call_ltv:
            raise ValueError("max_initial_ltv must be below margin_call_ltv")
        if not self.cure_target_ltv <= self.warning_ltv <= self.margin_call_ltv:
            raise ValueError("warning_ltv must lie between cure_target_ltv and margin_call_ltv")
        if not Decimal(0) <= self.liquidation_fee < Decimal("0.2"):
            raise ValueError("liquidation_fee must be in [0, 0.2)")
        if not Decimal(0) <= self.liquidation_slippage_buffer < Decimal("0.2"):
            raise ValueError("liquidation_slippage_buffer must be in [0, 0.2)")
        if not Decimal(0) <= self.liquidation_fill_upside < Decimal("0.2"):
            raise ValueError("liquidation_fill_upside must be in [0, 0.2)")
        if self.hard_liquidation_ltv >= 1:
            raise ValueError("hard_liquidation_ltv must be below 1")
        if self.max_initial_ltv <= 0:
            raise ValueError("max_initial_ltv must be above 0")
        if any(not 0 < h <= self.cure_period_hours for h in self.reminder_hours):
            raise ValueError("reminder_hours must each lie in (0, cure_period_hours]")
        if any(not 0 < d <= 3650 for d in self.maturity_reminder_days):
            raise ValueError("maturity_reminder_days must each lie in (0, 3650]")
        return self


def new_loan_problem(policy: RiskPolicy) -> str | None:
    """What a new loan may not be opened with although `RiskPolicy` takes it (a running loan's
    policy must keep validating as it did when it started, so the check lives here and is
    asked where loans are opened: `loanflow open`, the LOANFLOW_POLICY_* settings, and the loan
    workflow's first step). None if nothing."""
    if policy.post_liquidation_ltv <= 0:
        return (f"post_liquidation_ltv ({policy.post_liquidation_ltv}) must be above 0: a sale "
                "sized to reach it would sell all the collateral")
    return None


class PolicyOverrides(BaseModel):
    """Per-loan overrides: any field of `RiskPolicy`; unknown names are an error."""

    model_config = ConfigDict(extra="forbid")

    max_initial_ltv: Decimal | None = None
    warning_ltv: Decimal | None = None
    margin_call_ltv: Decimal | None = None
    cure_target_ltv: Decimal | None = None
    liquidation_ltv: Decimal | None = None
    hard_liquidation_ltv: Decimal | None = None
    post_liquidation_ltv: Decimal | None = None
    liquidation_fee: Decimal | None = None
    liquidation_slippage_buffer: Decimal | None = None
    liquidation_fill_upside: Decimal | None = None
    cure_period_hours: int | None = None
    reminder_hours: tuple[int, ...] | None = None
    funding_deadline_hours: int | None = None
    kyc_review_hours: int | None = None
    price_staleness_minutes: int | None = None
    maturity_grace_hours: int | None = None
    maturity_reminder_days: tuple[int, ...] | None = None
    max_extension_hours: int | None = None
    max_price_jump: Decimal | None = None

    def apply(self, base: RiskPolicy) -> RiskPolicy:
        """The base policy with these overrides; raises ValueError naming a bad combination."""
        changes = self.model_dump(exclude_none=True)
        return RiskPolicy.model_validate({**base.model_dump(), **changes})
