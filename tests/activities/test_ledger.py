"""The ledger: balanced postings only, once per key, exact balances on both databases."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError
from temporalio.exceptions import ApplicationError

from activities.ledger import LedgerActivities
from bench.notice import counting
from loanflow import ledger
from loanflow.db import ValueTooLong
from loanflow.effects import LedgerLine, LedgerPosting
from loanflow.schema import LedgerEntry, LedgerLineRow
from loanflow.store.ledger import account_balances, balance, check_book, post_entry

D = Decimal


def interest(key: str = "L1:interest:1", amount: str = "12.34", loan: str = "L1") -> LedgerPosting:
    return LedgerPosting(
        key=key,
        loan_id=loan,
        memo="interest",
        lines=[
            ledger.debit(ledger.receivable(loan), "USD", D(amount)),
            ledger.credit("income:interest", "USD", D(amount)),
        ],
    )


# --- pure rules ---------------------------------------------------------------------------------


def test_balanced_entry_in_two_currencies_passes() -> None:
    lines = [
        ledger.debit(ledger.collateral("L1"), "BTC", D("0.5")),
        ledger.credit(ledger.custody("BTC"), "BTC", D("0.5")),
        ledger.debit(ledger.CASH, "USD", D("10000.00")),
        ledger.credit(ledger.receivable("L1"), "USD", D("10000.00")),
    ]
    assert ledger.check_balanced(lines) == lines
    assert ledger.totals_by_currency(lines) == {"BTC": 0, "USD": 0}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([ledger.debit("cash", "USD", D(1))], "at least two lines"),
        (
            [ledger.debit("cash", "USD", D(1)), ledger.credit("x", "USD", D("0.99"))],
            "USD off by 0.01",
        ),
        # Dollars never balance bitcoin.
        ([ledger.debit("cash", "USD", D(1)), ledger.credit("x", "BTC", D(1))], "unbalanced"),
        (
            [ledger.debit("cash", "USD", D("0.001")), ledger.credit("x", "USD", D("0.001"))],
            "finer than",
        ),
        ([ledger.debit("a", "BTC", D("1e-9")), ledger.credit("b", "BTC", D("1e-9"))], "finer than"),
        ([ledger.debit("cash", "EUR", D(1)), ledger.credit("x", "EUR", D(1))], "unknown currency"),
        ([ledger.debit("cash", "USD", D(0)), ledger.credit("x", "USD", D(0))], "non-zero"),
    ],
)
def test_bad_entries_are_rejected_with_the_reason(lines: list[LedgerLine], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ledger.check_balanced(lines)


def test_account_names() -> None:
    assert ledger.receivable("L1") == "loan:L1:receivable"
    assert ledger.collateral("L1") == "loan:L1:collateral"
    assert ledger.payable("L1") == "loan:L1:payable"
    assert ledger.custody("ETH") == "custody:ETH"
    assert ledger.credit("cash", "USD", D(5)).amount == D(-5)


# --- the activity -------------------------------------------------------------------------------


async def test_posting_is_recorded_once_per_key(db, env, count, balances, book_is_balanced) -> None:
    acts = LedgerActivities(db)
    first = await env.run(acts.post_ledger, interest())
    again = await env.run(acts.post_ledger, interest())
    assert (first.created, again.created) == (True, False)
    assert await count(LedgerEntry) == 1
    assert await count(LedgerLineRow) == 2
    assert await balances() == {
        ("loan:L1:receivable", "USD"): D("12.34"),
        ("income:interest", "USD"): D("-12.34"),
    }
    assert await book_is_balanced()


async def test_a_new_posting_is_two_statements_in_one_commit(db, env) -> None:
    """The entry and its lines (one executemany), no lookup before them: the unique key finds
    a duplicate (the test above). It was four statements in two commits: a lookup in a
    transaction of its own, then the ORM's flush of the entry and of each line."""
    acts = LedgerActivities(db)
    await env.run(acts.post_ledger, interest("L1:interest:0"))  # warm: the dialect's first queries
    with counting(db) as counts:
        assert (await env.run(acts.post_ledger, interest())).created
    assert counts == {"statements": 2, "commits": 1}


async def test_a_memo_too_long_for_its_column_is_refused_and_writes_nothing(db, count) -> None:
    with pytest.raises(ValueTooLong, match="ledger_entries.memo: 501 characters, at most 500"):
        async with db.transaction() as session:
            await post_entry(session, key="k", loan_id="L1", memo="m" * 501,
                             lines=interest().lines)
    assert await count(LedgerEntry) == 0


async def test_unbalanced_posting_is_refused_and_writes_nothing(db, env, count) -> None:
    posting = interest()
    posting.lines[1].amount = D("-12.33")
    with pytest.raises(ApplicationError) as err:
        await env.run(LedgerActivities(db).post_ledger, posting)
    assert err.value.non_retryable and err.value.type == "UnbalancedPosting"
    assert "USD off by 0.01" in str(err.value)
    assert await count(LedgerEntry) == 0


async def test_key_reused_for_other_lines_is_refused(db, env, count) -> None:
    acts = LedgerActivities(db)
    await env.run(acts.post_ledger, interest(amount="12.34"))
    with pytest.raises(ApplicationError) as err:
        await env.run(acts.post_ledger, interest(amount="99.00"))
    assert err.value.non_retryable and err.value.type == "IdempotencyConflict"
    assert await count(LedgerEntry) == 1


async def test_same_lines_in_another_order_are_the_same_posting(db, env) -> None:
    acts = LedgerActivities(db)
    posting = interest()
    await env.run(acts.post_ledger, posting)
    posting.lines.reverse()
    assert (await env.run(acts.post_ledger, posting)).created is False


async def test_concurrent_duplicates_post_once(db, env, count, balances) -> None:
    acts = LedgerActivities(db)
    receipts = await asyncio.gather(*(env.run(acts.post_ledger, interest()) for _ in range(4)))
    assert sorted(r.created for r in receipts) == [False, False, False, True]
    assert await count(LedgerEntry) == 1
    assert (await balances())[("income:interest", "USD")] == D("-12.34")


async def test_wei_and_large_amounts_stay_exact(db, env, balances) -> None:
    wei = D("1234.000000000000000001")
    big = D("987654321012.34")
    posting = LedgerPosting(
        key="L1:x",
        loan_id="L1",
        memo="exactness",
        lines=[
            ledger.debit("custody:ETH", "ETH", wei),
            ledger.credit("loan:L1:collateral", "ETH", wei),
            ledger.debit("cash", "USD", big),
            ledger.credit("loan:L1:receivable", "USD", big),
        ],
    )
    await env.run(LedgerActivities(db).post_ledger, posting)
    await env.run(LedgerActivities(db).post_ledger, interest("L1:y", "0.01"))
    got = await balances()
    assert got[("custody:ETH", "ETH")] == wei
    assert got[("loan:L1:receivable", "USD")] == -big + D("0.01")


# --- helpers for other modules --------------------------------------------------------------------


async def test_post_entry_raises_value_error_and_adds_nothing(db, count) -> None:
    with pytest.raises(ValueError, match="unbalanced"):
        async with db.transaction() as session:
            await post_entry(
                session,
                key="k",
                loan_id="L1",
                memo="m",
                lines=[ledger.debit("cash", "USD", D(2)), ledger.credit("x", "USD", D(1))],
            )
    assert await count(LedgerEntry) == 0


async def test_post_entry_refuses_a_second_entry_with_the_key(db) -> None:
    lines = interest().lines
    async with db.transaction() as session:
        await post_entry(session, key="k", loan_id="L1", memo="m", lines=lines)
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await post_entry(session, key="k", loan_id="L1", memo="m", lines=lines)


async def test_balances_by_prefix_treat_wildcards_literally(db, env) -> None:
    acts = LedgerActivities(db)
    await env.run(acts.post_ledger, interest("a", "1.00", loan="L_1"))
    await env.run(acts.post_ledger, interest("b", "2.00", loan="LX1"))
    async with db.transaction() as session:
        mine = await account_balances(session, prefix="loan:L_1:")
        assert mine == {("loan:L_1:receivable", "USD"): D("1.00")}
        assert await balance(session, "loan:LX1:receivable", "USD") == D("2.00")
        assert await balance(session, "loan:none:receivable", "USD") == 0


async def test_check_book_names_an_entry_that_does_not_balance(db, env) -> None:
    await env.run(LedgerActivities(db).post_ledger, interest())
    # Corrupt the book behind the ledger's back, as a bad migration or manual edit could.
    async with db.transaction() as session:
        entry = LedgerEntry(key="bad", loan_id="L9", memo="manual edit")
        entry.lines = [LedgerLineRow(account="cash", currency="USD", amount=D("5.00"))]
        session.add(entry)
        session.add(LedgerEntry(key="empty", loan_id="L9", memo="no lines"))
    async with db.transaction() as session:
        problems = await check_book(session)
    assert len(problems) == 2
    assert "off by 5" in problems[0] and "USD" in problems[0]
    assert "'empty' has no lines" in problems[1]
