"""The read model: newer snapshots win whatever order they arrive in, audit entries are kept
once, amounts and times come back exact and in UTC, trigger prices answer range queries."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select

from activities.store import StoreActivities
from loanflow.effects import AuditEntry, ClaimRequest, LoanRecord, LoanSnapshot
from loanflow.schema import AuditRecord, Loan

D = Decimal
T0 = datetime(2022, 11, 9, 23, 0, tzinfo=timezone.utc)


def snapshot(version: int, loan: str = "L1", state: str = "ACTIVE", **changes) -> LoanSnapshot:
    values = dict(
        loan_id=loan,
        version=version,
        borrower_id="B1",
        state=state,
        collateral_asset="BTC",
        collateral_amount=D("2.5"),
        principal_usd=D("50000.00"),
        debt_usd=D("50012.35"),
        ltv=D("0.4975"),
        cure_deadline=None,
        warning_price=D("30774.61"),
        margin_call_price=D("28578.50"),
        liquidation_price=D("25006.18"),
        cure_price=D("33341.57"),
        updated_at=T0 + timedelta(minutes=version),
        application={"loan_id": loan, "principal_usd": "50000.00"} if version == 1 else None,
    )
    return LoanSnapshot(**{**values, **changes})


def audit(key: str, kind: str = "state", **detail) -> AuditEntry:
    return AuditEntry(
        key=key,
        at=T0,
        kind=kind,
        state="ACTIVE",
        detail=detail,
        price=D("20123.45"),
        observation_id=7,
    )


async def stored(db, loan: str = "L1") -> Loan:
    async with db.transaction() as session:
        return await session.get(Loan, loan)


async def test_snapshot_round_trips_exactly(db, env) -> None:
    deadline = datetime(2022, 11, 11, 23, 0, tzinfo=timezone(timedelta(hours=2)))
    snap = snapshot(
        1,
        collateral_amount=D("12.000000000000000001"),
        cure_deadline=deadline,
        ltv=D("0.712345678901234567"),
    )
    await env.run(StoreActivities(db).record_loan, LoanRecord(snapshot=snap))
    row = await stored(db)
    assert row.collateral_amount == D("12.000000000000000001")
    assert row.ltv == D("0.712345678901234567") and row.debt_usd == D("50012.35")
    assert row.liquidation_price == D("25006.18")
    # Any zone in, UTC out (also on SQLite, which keeps no zone).
    assert row.cure_deadline == deadline and row.cure_deadline.tzinfo == timezone.utc
    assert row.updated_at.utcoffset() == timedelta(0)
    assert row.application == {"loan_id": "L1", "principal_usd": "50000.00"}


async def test_older_versions_never_apply_and_a_rewritten_version_wins(db, env) -> None:
    record = StoreActivities(db).record_loan
    await env.run(record, LoanRecord(snapshot=snapshot(2, state="MARGIN_CALL")))
    await env.run(record, LoanRecord(snapshot=snapshot(1, state="AWAITING_COLLATERAL")))
    assert (await stored(db)).state == "MARGIN_CALL"
    # The same version again comes from a retried workflow task whose first attempt failed
    # after writing (issue 10, item 5): the committed history's version replaces the false one.
    await env.run(record, LoanRecord(snapshot=snapshot(2, state="ACTIVE")))
    assert (await stored(db)).state == "ACTIVE"
    await env.run(record, LoanRecord(snapshot=snapshot(3, state="MARGIN_CALL", warning_price=None)))
    row = await stored(db)
    assert (row.version, row.state, row.warning_price) == (3, "MARGIN_CALL", None)


async def test_audit_entry_of_a_failed_task_is_replaced_by_the_retried_one(db, env, count) -> None:
    record = StoreActivities(db).record_loan
    false = audit("L1:audit:4", kind="cure_extended", reason="x" * 500)
    await env.run(record, LoanRecord(snapshot=snapshot(4, state="MARGIN_CALL"), audit=[false]))
    true = audit("L1:audit:4", kind="state", new="ACTIVE")
    await env.run(record, LoanRecord(snapshot=snapshot(4, state="ACTIVE"), audit=[true]))
    async with db.transaction() as session:
        [row] = (await session.scalars(select(AuditRecord))).all()
    assert (row.kind, row.detail) == ("state", {"new": "ACTIVE"})
    assert (await stored(db)).state == "ACTIVE"


async def test_audit_entries_are_kept_once(db, env, count) -> None:
    record = StoreActivities(db).record_loan
    entries = [
        audit("L1:audit:1", new="ACTIVE"),
        audit("L1:audit:2", kind="margin_call", ltv="0.71"),
    ]
    await env.run(record, LoanRecord(snapshot=snapshot(1), audit=entries))
    # A retry, and an older snapshot carrying an entry already kept: nothing is duplicated,
    # and the entry still lands even though the snapshot is stale.
    await env.run(record, LoanRecord(snapshot=snapshot(1), audit=entries))
    await env.run(
        record, LoanRecord(snapshot=snapshot(0), audit=[entries[1], audit("L1:audit:3")])
    )
    assert await count(AuditRecord) == 3
    async with db.transaction() as session:
        rows = (await session.scalars(select(AuditRecord).order_by(AuditRecord.key))).all()
    assert rows[1].detail == {"ltv": "0.71"} and rows[1].kind == "margin_call"
    assert rows[0].price == D("20123.45") and rows[0].observation_id == 7
    assert rows[0].at == T0 and rows[0].at.tzinfo == timezone.utc


async def test_decimals_in_audit_detail_are_stored_as_json(db, env) -> None:
    entry = audit("L1:audit:1", ltv=D("0.7125"), amounts=[D("1.5")])
    await env.run(StoreActivities(db).record_loan, LoanRecord(snapshot=snapshot(1), audit=[entry]))
    async with db.transaction() as session:
        row = await session.scalar(select(AuditRecord))
    assert row.detail == {"ltv": "0.7125", "amounts": ["1.5"]}


async def test_concurrent_records_end_at_the_newest(db, env, count) -> None:
    record = StoreActivities(db).record_loan
    records = [LoanRecord(snapshot=snapshot(v), audit=[audit(f"L1:audit:{v}")]) for v in (1, 2, 3)]
    # Every version twice, newest first: duplicates and reordering at once.
    await asyncio.gather(*(env.run(record, r) for r in reversed(records + records)))
    assert (await stored(db)).version == 3
    assert await count(AuditRecord) == 3


async def test_trigger_prices_answer_range_queries(db, env) -> None:
    record = StoreActivities(db).record_loan
    for loan, liquidation in (("L1", "25006.18"), ("L2", "18000.00"), ("L3", "16000.00")):
        await env.run(
            record, LoanRecord(snapshot=snapshot(1, loan=loan, liquidation_price=D(liquidation)))
        )
    await env.run(
        record,
        LoanRecord(
            snapshot=snapshot(1, loan="E1", collateral_asset="ETH", liquidation_price=D("17000.00"))
        ),
    )
    # BTC fell from 21,400 to 15,600: whose liquidation price did the move cross?
    query = (
        select(Loan.loan_id)
        .where(
            Loan.collateral_asset == "BTC", Loan.liquidation_price.between(D("15600"), D("21400"))
        )
        .order_by(Loan.loan_id)
    )
    async with db.transaction() as session:
        assert (await session.scalars(query)).all() == ["L2", "L3"]


async def test_a_loan_id_is_held_by_the_first_run_that_claims_it(db) -> None:
    store = StoreActivities(db)
    first = ClaimRequest(loan_id="L9", run_id="run-a", borrower_id="B1")
    assert (await store.claim_loan_id(first)).run_id == "run-a"
    # The same run again (a retried task): still its own. Another run: the first one's.
    assert (await store.claim_loan_id(first)).run_id == "run-a"
    other = ClaimRequest(loan_id="L9", run_id="run-b", borrower_id="B2")
    assert (await store.claim_loan_id(other)).run_id == "run-a"
    # Claimed side by side by two runs: one of them holds it, and both are told which.
    racing = await asyncio.gather(*(store.claim_loan_id(
        ClaimRequest(loan_id="L10", run_id=f"run-{n}", borrower_id="B1")) for n in range(5)))
    assert len({claim.run_id for claim in racing}) == 1


async def test_a_write_claims_the_id_of_a_loan_that_never_claimed_it(db) -> None:
    # A loan started before claims were kept sends its first run with its next write.
    store = StoreActivities(db)
    await store.record_loan(LoanRecord(snapshot=snapshot(7, loan="L11"), claim_run="run-old"))
    again = ClaimRequest(loan_id="L11", run_id="run-new", borrower_id="B2")
    assert (await store.claim_loan_id(again)).run_id == "run-old"
    # A write of a loan whose id is held changes no claim.
    await store.record_loan(LoanRecord(snapshot=snapshot(8, loan="L11"), claim_run="run-other"))
    assert (await store.claim_loan_id(again)).run_id == "run-old"
