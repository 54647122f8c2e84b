"""The loans read model and the audit trail.

`record_loan` is called whenever a loan changes. Activities can run twice and out of order (a
retry racing a slower first attempt, two workers), so both writes are single statements that
the database itself makes safe. No read-then-write race.

They run as local activities from inside a workflow task, and a task can fail after they ran
(issue 10: a 2 MB reason wrote an audit row and a snapshot, then the task failed with
PAYLOADS_TOO_LARGE). The retried task writes the same keys again with what the committed history
says, so the write of a key replaces what is there: a snapshot applies at its version or a newer
one (the same version re-written by the retried task wins), an audit entry is upserted by key.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from temporalio import activity

from activities.pricing import stored_price
from loanflow.db import Database, dialect_name
from loanflow.effects import (
    ActivityName,
    AuditEntry,
    LoanRecord,
    LoanSnapshot,
    Refreshed,
    RefreshRequest,
)
from loanflow.models import Borrower
from loanflow.risk import shown_ltv
from loanflow.schema import AuditRecord, BorrowerContact, Loan, utcnow


class StoreActivities:
    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name=ActivityName.RECORD_LOAN)
    async def record_loan(self, record: LoanRecord) -> None:
        """Publish a snapshot (ignored unless its version is newer than the stored one) and
        append its audit entries (each once by key); see `write`."""
        await self.write(record)

    @activity.defn(name=ActivityName.REFRESH_LOAN)
    async def refresh_loan(self, request: RefreshRequest) -> Refreshed:
        """A loan's daily look: read the newest stored observation (`stored_price`, as
        `latest_price` does), then publish the snapshot with its LTV at that price. One local
        activity where the daily wake-up ran two (the read, then the write): each cost a
        stress run's daily wave of 1,000 loans about 2.5 s of worker time. The read and the write are two transactions:
        in SQLite a read transaction that turns into a write fails at once, without waiting,
        if another writer committed in between."""
        observation = await stored_price(self.db, request.asset, request.now)
        record = request.record
        if observation is not None:
            snapshot = record.snapshot
            ltv = shown_ltv(snapshot.debt_usd, snapshot.collateral_amount, observation.price)
            record = record.model_copy(
                update={"snapshot": snapshot.model_copy(update={"ltv": ltv})})
        await self.write(record)
        return Refreshed(observation=observation)

    async def write(self, record: LoanRecord) -> None:
        """The snapshot, the borrower's contact (first snapshot) and the audit entries. On
        SQLite each is a lone upsert in autocommit (`Database.statement`), so that SQLite's
        single write lock is held only while a statement runs, not until a commit comes back
        through a busy worker's event loop; a record written in part (the worker died between
        two statements) is completed by the retry, which writes the same keys again and which
        the loan's local activity makes until it lands. On PostgreSQL one transaction."""
        snapshot, loan_id = record.snapshot, record.snapshot.loan_id
        if self.db.autocommit is None and (record.audit or snapshot.application is not None):
            async with self.db.transaction() as session:
                await upsert_snapshot(session, snapshot)
                await upsert_borrower(session, snapshot)
                await append_audit(session, loan_id, record.audit)
            return
        async with self.db.statement() as conn:
            await execute_snapshot_upsert(conn, snapshot)
        if snapshot.application is not None:
            async with self.db.statement() as conn:
                await upsert_borrower(conn, snapshot)
        if record.audit:
            async with self.db.statement() as conn:
                await append_audit(conn, loan_id, record.audit)


def _insert(dialect: str, table: Any) -> Any:
    """INSERT with ON CONFLICT support for the database (both spell it the same)."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"record_loan does not support {dialect}")


async def upsert_snapshot(session: AsyncSession, snapshot: LoanSnapshot) -> None:
    """Insert the loan, or update it unless the stored snapshot is newer than this one (the
    same version again is a retried workflow task re-writing it: it wins)."""
    await execute_snapshot_upsert(await session.connection(), snapshot)


async def execute_snapshot_upsert(conn: AsyncConnection, snapshot: LoanSnapshot) -> None:
    values = snapshot.model_dump()
    # JSON columns get JSON values (a Decimal inside the application would not serialise).
    values["application"] = snapshot.model_dump(mode="json")["application"]
    await conn.execute(_snapshot_upsert(dialect_name(conn), tuple(values)), values)


# Every loan publishes at each change and at its daily revaluation: building the statement
# (and going through the ORM's bulk-insert path) for each write was most of this activity's
# time. The statement depends only on the dialect and the snapshot's fields: built once each.
_SNAPSHOT_UPSERTS: dict[tuple[str, tuple[str, ...]], Any] = {}


def _snapshot_upsert(dialect: str, columns: tuple[str, ...]) -> Any:
    key = (dialect, columns)
    if key not in _SNAPSHOT_UPSERTS:
        insert = _insert(dialect, Loan)
        updated = {name: insert.excluded[name] for name in columns if name != "loan_id"}
        # Only the first snapshot carries the application: keep it when later ones do not.
        updated["application"] = func.coalesce(insert.excluded.application, Loan.application)
        _SNAPSHOT_UPSERTS[key] = insert.on_conflict_do_update(
            index_elements=[Loan.loan_id],
            set_=updated,
            where=Loan.version <= insert.excluded.version,
        )
    return _SNAPSHOT_UPSERTS[key]


async def append_audit(session: AsyncSession | AsyncConnection, loan_id: str,
                       entries: list[AuditEntry]) -> None:
    """Upsert the audit entries by key: a key written again comes from a retried workflow task
    and says what the committed history says, so it replaces an earlier attempt's row."""
    if not entries:
        return
    rows = [
        {
            "key": e.key,
            "loan_id": loan_id,
            "at": e.at,
            "kind": e.kind,
            "state": e.state,
            "detail": e.model_dump(mode="json")["detail"],
            "price": e.price,
            "observation_id": e.observation_id,
        }
        for e in entries
    ]
    insert = _insert(dialect_name(session), AuditRecord).values(rows)
    replaced = {name: insert.excluded[name] for name in rows[0] if name != "key"}
    await session.execute(
        insert.on_conflict_do_update(index_elements=[AuditRecord.key], set_=replaced)
    )


async def upsert_borrower(session: AsyncSession | AsyncConnection,
                          snapshot: LoanSnapshot) -> None:
    """Keep the borrower's contact details from the application a loan opens with (the first
    snapshot carries it): notices carry only the borrower id and are addressed from here.
    The same application written again changes nothing; a newer loan's details replace an
    older one's."""
    borrower = (snapshot.application or {}).get("borrower")
    if not isinstance(borrower, dict):
        return
    try:
        contact = Borrower.model_validate(borrower)
    except ValidationError:
        return  # the loan refuses such an application; its read-model write must not fail
    values = {"borrower_id": contact.id, "name": contact.name, "email": contact.email,
              "country": contact.country, "timezone": contact.timezone,
              "loan_id": snapshot.loan_id, "updated_at": utcnow()}
    insert = _insert(dialect_name(session), BorrowerContact).values(**values)
    await session.execute(insert.on_conflict_do_update(
        index_elements=[BorrowerContact.borrower_id],
        set_={name: insert.excluded[name] for name in values if name != "borrower_id"},
    ))
