"""Previews of every notice with realistic sample data, written as HTML and text files.

    python -m loanflow.mail.preview                       # every kind -> var/preview/
    python -m loanflow.mail.preview margin_call --out /tmp/p --timezone America/New_York

The sample data follows one loan through a crash: 10 BTC pledged for $250,000 at $50,000,
then BTC falling to $35,400 (margin call) and $31,000 (liquidation). Every figure comes from
the risk math (`loanflow.risk`), so a preview shows what a real loan would send.
"""

from __future__ import annotations

import argparse
import html
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from loanflow import risk
from loanflow.effects import Notice, effect_key
from loanflow.mail.kinds import KINDS
from loanflow.mail.render import RenderedMessage, render_notice, template_kinds
from loanflow.models import Borrower
from loanflow.money import units_down, usd_up
from loanflow.policy import RiskPolicy
from loanflow.settings import Settings, get_settings

SAMPLE_BORROWER = Borrower(
    id="B-1007", name="Ada Lovelace", email="ada@example.com", country="GB",
    timezone="Asia/Tokyo",
)
LOAN_ID = "L-2024-0042"
DEPOSIT_ADDRESS = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"


def text(value: Decimal) -> str:
    """A Decimal as the workflow sends it: a plain string."""
    return format(value, "f")


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class SampleLoan:
    """A loan state with consistent figures; `debt_on(day)` is principal plus interest."""

    asset: str = "BTC"
    collateral: Decimal = Decimal("10")
    principal: Decimal = Decimal("250000.00")
    annual_rate: Decimal = Decimal("0.11")
    term_days: int = 180
    applied_at: datetime = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)
    disbursed_at: datetime = datetime(2024, 3, 2, 10, 0, tzinfo=timezone.utc)
    policy: RiskPolicy = RiskPolicy()

    def balances(self, day: int) -> risk.Balances:
        interest = risk.daily_interest(self.principal, self.annual_rate) * day
        return risk.Balances(principal=self.principal, interest=interest, fees=Decimal(0))

    def debt_on(self, day: int) -> Decimal:
        return self.balances(day).total

    def at(self, day: int, hour: int = 0) -> datetime:
        return self.disbursed_at + timedelta(days=day, hours=hour)

    @property
    def maturity(self) -> datetime:
        return self.disbursed_at + timedelta(days=self.term_days)


def margin_call_data(loan: SampleLoan, day: int, price: Decimal, amount: Decimal,
                     observed_at: datetime, deadline: datetime) -> dict[str, str]:
    """The figures of a margin call, exactly as `status` would show them."""
    p, debt = loan.policy, loan.debt_on(day)
    return {
        "ltv": text(risk.ltv(debt, amount, price)),  # type: ignore[arg-type]
        "margin_call_ltv": text(p.margin_call_ltv),
        "cure_target_ltv": text(p.cure_target_ltv),
        "liquidation_ltv": text(p.liquidation_ltv),
        "hard_liquidation_ltv": text(p.hard_liquidation_ltv),
        "price": text(price),
        "observed_at": iso(observed_at),
        "collateral_asset": loan.asset,
        "collateral_amount": text(amount),
        "debt_usd": text(debt),
        "cure_deadline": iso(deadline),
        "cure_top_up": text(risk.cure_top_up(loan.asset, debt, amount, price,
                                             p.cure_target_ltv)),
        "cure_repay_usd": text(risk.cure_repay(debt, amount, price, p.cure_target_ltv)),
        "liquidation_price": text(risk.trigger_price(debt, amount, p.liquidation_ltv)),  # type: ignore[arg-type]
        "post_liquidation_ltv": text(p.post_liquidation_ltv),
        "liquidation_fee": text(p.liquidation_fee),
        "address": DEPOSIT_ADDRESS,
    }


def liquidation_data(loan: SampleLoan, day: int, price: Decimal,
                     amount: Decimal) -> dict[str, str]:
    """A partial liquidation down to the post-liquidation LTV, fee taken from the proceeds: the
    orders `risk.sale_step` plans, each filled 0.4% below the mark."""
    p, debt = loan.policy, loan.debt_on(day)
    fill = (price * Decimal("0.996")).quantize(Decimal("0.01"))
    sold = gross = fee = applied = Decimal(0)
    left, debt_after = amount, debt
    for _ in range(risk.MAX_SALE_STEPS):
        current = risk.ltv(debt_after, left, price)
        if left <= 0 or current is None or current <= p.post_liquidation_ltv:
            break
        step = risk.sale_step(loan.asset, debt_after, left, price, p.post_liquidation_ltv,
                              p.liquidation_fee, p.liquidation_slippage_buffer,
                              p.liquidation_fill_upside)
        proceeds = risk.sale_proceeds(step.quantity, fill, p.liquidation_fee)
        sold, gross, fee = sold + step.quantity, gross + proceeds.gross, fee + proceeds.fee
        applied += min(proceeds.net, debt_after)
        left, debt_after = left - step.quantity, debt_after - min(proceeds.net, debt_after)
    return {
        "quantity_sold": text(sold), "collateral_asset": loan.asset,
        "fill_price": text(fill), "gross_usd": text(gross),
        "fee_usd": text(fee), "applied_usd": text(applied),
        "surplus_usd": text(gross - fee - applied),
        "ltv_after": text(risk.ltv(debt_after, left, price)),  # type: ignore[arg-type]
        "collateral_left": text(left), "debt_usd": text(debt_after),
        "reason": "cure deadline passed", "cause": "cure_deadline",
        "cure_deadline": "2024-04-05T00:00:00Z", "price": text(price),
        "ltv_before": text(risk.ltv(debt, amount, price)),  # type: ignore[arg-type]
    }


def sample_data(kind: str, loan: SampleLoan | None = None) -> dict[str, str]:
    """Realistic figures for one notice kind (every kind in `KINDS`)."""
    loan = loan or SampleLoan()
    p, asset, amount = loan.policy, loan.asset, loan.collateral
    open_price = Decimal("50000.00")
    call_at = loan.at(31, 14)
    deadline = call_at + timedelta(hours=p.cure_period_hours)
    call = margin_call_data(loan, 31, Decimal("35400.00"), amount, call_at, deadline)
    top_up = Decimal(call["cure_top_up"])
    if kind == "application_received":
        return {"principal_usd": text(loan.principal), "collateral_asset": asset,
                "collateral_amount": text(amount), "term_days": str(loan.term_days),
                "annual_rate": text(loan.annual_rate)}
    if kind == "kyc_approved":
        return {}
    if kind == "kyc_rejected":
        return {"reason": "the identity document has expired"}
    if kind == "application_rejected":
        return {"reason": "the requested LTV of 55.00% is above the maximum initial LTV "
                          "of 50.00%"}
    if kind == "deposit_instructions":
        return {"address": DEPOSIT_ADDRESS,
                "collateral_asset": asset, "amount_required": text(amount),
                "funding_deadline": iso(loan.applied_at + timedelta(
                    hours=p.funding_deadline_hours))}
    if kind == "collateral_received":
        return {"collateral_asset": asset, "amount_received": "6.25",
                "total_received": "6.25", "amount_required": text(amount),
                "tx_id": "5e0b8f0c3d1f4a9b8e7c6d5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"}
    if kind == "loan_disbursed":
        return {"principal_usd": text(loan.principal), "collateral_asset": asset,
                "collateral_amount": text(amount), "price": text(open_price),
                "ltv": text(risk.ltv(loan.principal, amount, open_price)),  # type: ignore[arg-type]
                "maturity": iso(loan.maturity), "annual_rate": text(loan.annual_rate)}
    if kind == "loan_migrated":
        interest = usd_up(loan.balances(40).interest)
        return {"principal_usd": text(loan.principal), "interest_usd": text(interest),
                "debt_usd": text(loan.principal + interest), "collateral_asset": asset,
                "collateral_amount": text(amount), "annual_rate": text(loan.annual_rate),
                "originated_at": iso(loan.disbursed_at), "maturity": iso(loan.maturity),
                "address": DEPOSIT_ADDRESS}
    if kind == "ltv_warning":
        price, debt = Decimal("37500.00"), loan.debt_on(30)
        return {"ltv": text(risk.ltv(debt, amount, price)),  # type: ignore[arg-type]
                "warning_ltv": text(p.warning_ltv), "margin_call_ltv": text(p.margin_call_ltv),
                "price": text(price), "collateral_asset": asset,
                "collateral_amount": text(amount), "debt_usd": text(debt),
                "margin_call_price": text(risk.trigger_price(debt, amount,  # type: ignore[arg-type]
                                                             p.margin_call_ltv))}
    if kind == "margin_call":
        return call
    if kind == "margin_call_reminder":
        later = call_at + timedelta(hours=p.cure_period_hours - 24)
        data = margin_call_data(loan, 32, Decimal("35100.00"), amount, later, deadline)
        return {**data, "hours_left": "24"}
    if kind == "margin_call_cured":
        cured = amount + top_up
        return {"ltv": text(risk.ltv(loan.debt_on(32), cured, Decimal("35400.00"))),  # type: ignore[arg-type]
                "how": "top_up", "price": "35400.00"}
    if kind == "cure_extended":
        return {"cure_deadline": iso(deadline + timedelta(hours=24)),
                "previous_deadline": iso(deadline), "hours": "24",
                "reason": "the borrower's bank transfer is on its way"}
    if kind == "liquidation_executed":
        return liquidation_data(loan, 33, Decimal("31000.00"), amount)
    if kind == "loan_defaulted":
        return default_data(loan)
    if kind == "maturity_reminder":
        day = loan.term_days - 7
        return {"maturity": iso(loan.maturity), "debt_usd": text(loan.debt_on(day)),
                "days_left": "7"}
    if kind == "repayment_received":
        balances = loan.balances(60)
        paid = Decimal("50000.00")
        share = risk.allocate_payment(balances, paid)
        after = risk.after_payment(balances, share)
        return {"amount_usd": text(paid), "reference": "WIRE-2024-05-01-7731",
                "debt_usd": text(after.total), "principal_usd": text(share.principal),
                "interest_usd": text(share.interest), "fees_usd": text(share.fees)}
    if kind == "loan_closed":
        interest = usd_up(loan.balances(loan.term_days).interest)
        return {"collateral_released": text(amount), "collateral_asset": asset,
                "total_interest_usd": text(interest), "total_fees_usd": "0.00",
                "total_repaid_usd": text(loan.principal + interest),
                "closed_at": iso(loan.maturity - timedelta(days=2))}
    if kind == "loan_cancelled":
        return {"reason": "the collateral did not arrive by the funding deadline",
                "collateral_returned": "6.25", "collateral_asset": asset}
    raise KeyError(f"no sample data for notice kind {kind!r}")


def default_data(loan: SampleLoan) -> dict[str, str]:
    """At maturity, unpaid, after a crash: everything is sold and does not cover the debt."""
    p, debt = loan.policy, loan.debt_on(loan.term_days)
    price, left = Decimal("21000.00"), units_down(loan.asset, Decimal("5.71234567"))
    proceeds = risk.sale_proceeds(left, price, p.liquidation_fee)
    return {"shortfall_usd": text(debt - proceeds.net), "quantity_sold": text(left),
            "collateral_asset": loan.asset, "applied_usd": text(proceeds.net)}


def sample_notice(kind: str, borrower: Borrower | None = None) -> Notice:
    return Notice(key=effect_key(LOAN_ID, f"notice:{kind}", 1), loan_id=LOAN_ID, kind=kind,
                  borrower=borrower or SAMPLE_BORROWER, data=sample_data(kind))


def write_preview(kind: str, out: Path, settings: Settings,
                  borrower: Borrower | None = None) -> RenderedMessage:
    """Render one kind with sample data to `<out>/<kind>.html` and `<out>/<kind>.txt` (the
    text file starts with the subject line)."""
    rendered = render_notice(sample_notice(kind, borrower), settings)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{kind}.html").write_text(rendered.html, encoding="utf-8")
    (out / f"{kind}.txt").write_text(f"Subject: {rendered.subject}\n\n{rendered.text}",
                                     encoding="utf-8")
    return rendered


def write_index(out: Path, rendered: dict[str, RenderedMessage]) -> Path:
    items = "\n".join(
        f'<li><a href="{k}.html">{html.escape(k)}</a> (<a href="{k}.txt">text</a>): '
        f"{html.escape(r.subject)}</li>" for k, r in sorted(rendered.items())
    )
    path = out / "index.html"
    path.write_text(f"<!DOCTYPE html><meta charset=utf-8><title>Notice previews</title>"
                    f"<h1>Notice previews</h1><ul>\n{items}\n</ul>\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loanflow.mail.preview",
                                     description="Render notices with sample data to files.")
    parser.add_argument("kinds", nargs="*", help=f"notice kinds (default: all {len(KINDS)})")
    parser.add_argument("--out", help="directory (default: $LOANFLOW_VAR_DIR/preview)")
    parser.add_argument("--timezone", default=SAMPLE_BORROWER.timezone,
                        help="the borrower's IANA time zone ('' for none)")
    args = parser.parse_args(argv)
    settings = get_settings()
    out = Path(args.out) if args.out else settings.var_dir / "preview"
    borrower = SAMPLE_BORROWER.model_copy(update={"timezone": args.timezone or None})
    kinds = args.kinds or sorted(KINDS)
    unknown = [k for k in kinds if k not in KINDS and k not in template_kinds()]
    if unknown:
        parser.error(f"unknown notice kind(s): {', '.join(unknown)}")
    rendered = {}
    for kind in kinds:
        rendered[kind] = write_preview(kind, out, settings, borrower)
        print(f"{kind:<22} {out / (kind + '.html')}  {out / (kind + '.txt')}")
    print(f"index: {write_index(out, rendered)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
