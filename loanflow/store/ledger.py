"""The double-entry ledger's tables: posting entries, reading balances, checking the book.
(The chart of accounts and the rules of a balanced posting are `loanflow.ledger`, pure.)

The helpers take an open session so that an effect and its ledger entry commit together (a
deposit and its booking, a sale and its booking): `post_entry`, `find_entry`, `entry_lines`,
`account_balances`, `balance`, `check_book`. The activities book through them, and
`loanflow ledger check` reads the book through them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from loanflow.db import check_values, dialect_name
from loanflow.effects import LedgerLine
from loanflow.ledger import check_balanced
from loanflow.schema import LedgerEntry, LedgerLineRow


async def find_entry(session: AsyncSession, key: str) -> LedgerEntry | None:
    """The entry posted under `key`, with its lines, or None."""
    return await session.scalar(select(LedgerEntry).where(LedgerEntry.key == key))


async def post_entry(
    session: AsyncSession, *, key: str, loan_id: str, memo: str, lines: Iterable[LedgerLine]
) -> int:
    """Add one balanced entry in the open session's transaction; its id.

    Raises ValueError if the lines do not balance per currency (nothing is added then), or a
    string is longer than its column, and IntegrityError if an entry with this key exists: the
    key is unique, so a second posting can never slip in, and the caller decides what a
    duplicate means. Two Core INSERTs (the entry, then its lines in one executemany): every
    sale, deposit, payout and import books one, and the ORM's unit of work around the same
    rows cost a worker more than the statements (5% of an import's samples in its flush).
    """
    checked = check_balanced(lines)
    entries, rows = LedgerEntry.__table__, LedgerLineRow.__table__
    values = {"key": key, "loan_id": loan_id, "memo": memo}  # created_at: the column's default
    check_values(entries, values)
    lines_out = [{"account": x.account, "currency": x.currency, "amount": x.amount}
                 for x in checked]
    for line in lines_out:
        check_values(rows, line)
    inserted = await session.execute(insert(entries).values(values))
    entry_id = inserted.inserted_primary_key[0]
    await session.execute(insert(rows), [line | {"entry_id": entry_id} for line in lines_out])
    return int(entry_id)


def entry_lines(entry: LedgerEntry) -> list[LedgerLine]:
    """An entry's lines as the effects model."""
    return [
        LedgerLine(account=x.account, currency=x.currency, amount=x.amount) for x in entry.lines
    ]


async def account_balances(
    session: AsyncSession,
    *,
    accounts: Iterable[str] | None = None,
    prefix: str | None = None,
) -> dict[tuple[str, str], Decimal]:
    """Balances by (account, currency): debits minus credits. Filter by exact account names,
    by an account-name prefix (e.g. `loan:L1:`), or neither for the whole book."""
    where: list[ColumnElement[bool]] = []
    if accounts is not None:
        where.append(LedgerLineRow.account.in_(list(accounts)))
    if prefix is not None:
        where.append(LedgerLineRow.account.startswith(prefix, autoescape=True))
    rows = await _sums(session, (LedgerLineRow.account, LedgerLineRow.currency), where)
    return {(account, currency): total for (account, currency), total in rows.items()}


async def balance(session: AsyncSession, account: str, currency: str) -> Decimal:
    """One account's balance in one currency (0 if it never moved)."""
    balances = await account_balances(session, accounts=[account])
    return balances.get((account, currency), Decimal(0))


async def check_book(session: AsyncSession) -> list[str]:
    """Everything wrong with the book, one sentence each; an empty list means every entry
    balances in every currency (and so the whole book does)."""
    problems = []
    per_entry = await _sums(session, (LedgerLineRow.entry_id, LedgerLineRow.currency), [])
    for (entry_id, currency), total in sorted(per_entry.items()):
        if total != 0:
            problems.append(f"entry {entry_id} is off by {total} {currency}")
    empty = await session.scalars(select(LedgerEntry.key).where(~LedgerEntry.lines.any()))
    problems += [f"entry {key!r} has no lines" for key in empty]
    return problems


async def _sums(
    session: AsyncSession, group: tuple[Any, ...], where: list[ColumnElement[bool]]
) -> dict[tuple, Decimal]:
    """SUM(amount) grouped by `group`. PostgreSQL sums exact NUMERIC itself; SQLite keeps
    amounts as text (its numbers are binary floats), so there the sum is done in Decimal here."""
    if dialect_name(session) != "sqlite":
        query = select(*group, func.sum(LedgerLineRow.amount)).where(*where).group_by(*group)
        return {tuple(row[:-1]): Decimal(row[-1]) for row in await session.execute(query)}
    totals: dict[tuple, Decimal] = defaultdict(Decimal)
    for row in await session.execute(select(*group, LedgerLineRow.amount).where(*where)):
        totals[tuple(row[:-1])] += row[-1]
    return dict(totals)
