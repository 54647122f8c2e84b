"""The chart of accounts and the rules of a balanced posting: pure functions, no database.

Sign convention: a debit is a positive amount, a credit a negative one; so every entry sums to
zero in each currency, and so does the whole book. Collateral is booked in its own units
(currency "BTC" or "ETH"), dollars in "USD": a currency never balances against another.

Accounts (the desk's point of view):

- `cash`                       dollars the desk holds (debit = money in)
- `custody:<ASSET>`            collateral held at the custodian (debit = units in)
- `loan:<id>:collateral`       collateral owed back to the borrower of loan <id> (a credit balance)
- `loan:<id>:receivable`       dollars the borrower owes (a debit balance)
- `loan:<id>:payable`          dollars owed to the borrower of loan <id> (a liquidation surplus)
- `income:liquidation_fee`     the desk's fee income from liquidations
- `income:interest`            interest earned (posted as it is charged to a loan)
- `loss:shortfall`             debt written off when a loan's collateral ran out first
- `equity:opening_balances`    the other side of a migrated loan's opening receivable (what the
                               system it came from lent and accrued, `loanflow book import`)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from decimal import ROUND_DOWN, Decimal

from loanflow.effects import LedgerLine
from loanflow.money import ASSETS, QUANTUM, USD, WIDE

CURRENCIES: tuple[str, ...] = ("USD", *ASSETS)

CASH = "cash"
LIQUIDATION_FEE_INCOME = "income:liquidation_fee"
INTEREST_INCOME = "income:interest"
SHORTFALL_LOSS = "loss:shortfall"
OPENING_BALANCES = "equity:opening_balances"


def custody(asset: str) -> str:
    """Collateral held at the custodian, all loans together."""
    return f"custody:{asset}"


def collateral(loan_id: str) -> str:
    """Collateral the desk holds for one loan and owes back once the loan is repaid."""
    return f"loan:{loan_id}:collateral"


def receivable(loan_id: str) -> str:
    """What the borrower of one loan owes in dollars."""
    return f"loan:{loan_id}:receivable"


def payable(loan_id: str) -> str:
    """Dollars the desk owes the borrower of one loan (a liquidation surplus waiting to be paid
    out). Kept per loan: a sale knows its loan, not its borrower (`SaleRequest`)."""
    return f"loan:{loan_id}:payable"


def debit(account: str, currency: str, amount: Decimal) -> LedgerLine:
    """A debit of `amount` (> 0) to `account`."""
    return LedgerLine(account=account, currency=currency, amount=amount)


def credit(account: str, currency: str, amount: Decimal) -> LedgerLine:
    """A credit of `amount` (> 0) to `account`, stored as a negative amount."""
    return LedgerLine(account=account, currency=currency, amount=-amount)


def smallest_unit(currency: str) -> Decimal:
    """A cent for USD, a satoshi for BTC, a wei for ETH."""
    if currency == "USD":
        return USD
    if currency in QUANTUM:
        return QUANTUM[currency]
    raise ValueError(f"unknown currency {currency!r}: expected one of {', '.join(CURRENCIES)}")


def totals_by_currency(lines: Iterable[LedgerLine]) -> dict[str, Decimal]:
    """The sum of the lines in each currency (all zero for a balanced entry)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        totals[line.currency] += line.amount
    return dict(totals)


def check_balanced(lines: Iterable[LedgerLine]) -> list[LedgerLine]:
    """Validate one entry's lines; return them as a list. Raises ValueError naming the problem:
    no lines, an unknown currency, a zero or fractional-unit amount, or a currency whose lines do
    not sum to zero."""
    lines = list(lines)
    if len(lines) < 2:
        raise ValueError("a ledger entry needs at least two lines")
    for line in lines:
        _check_line(line)
    unbalanced = {c: t for c, t in totals_by_currency(lines).items() if t != 0}
    if unbalanced:
        detail = ", ".join(f"{c} off by {t}" for c, t in sorted(unbalanced.items()))
        raise ValueError(f"unbalanced ledger entry: {detail}")
    return lines


def _check_line(line: LedgerLine) -> None:
    if not line.account.strip():
        raise ValueError("a ledger line needs an account")
    unit = smallest_unit(line.currency)
    if not line.amount.is_finite() or line.amount == 0:
        raise ValueError(f"{line.account}: amount must be a non-zero number, got {line.amount}")
    # Amounts below a cent or a satoshi cannot move; a posting that has them is a rounding bug.
    if line.amount != line.amount.quantize(unit, rounding=ROUND_DOWN, context=WIDE):
        raise ValueError(f"{line.account}: {line.amount} {line.currency} is finer than {unit}")


def same_lines(a: Iterable[LedgerLine], b: Iterable[LedgerLine]) -> bool:
    """True if two postings have the same lines, in any order (amounts compared exactly)."""

    def canon(lines: Iterable[LedgerLine]) -> list[tuple[str, str, Decimal]]:
        return sorted((x.account, x.currency, x.amount) for x in lines)

    return canon(a) == canon(b)


def imbalances(totals: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """The currencies whose total is not zero (empty when the book balances)."""
    return {currency: total for currency, total in totals.items() if total != 0}
