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

from activities.pricing import check_asset, stored_price
from loanflow.db import Database, dialect_name
from loanflow.effects import (
    ActivityName,
    AuditEntry,
    Claim,
    ClaimRequest,
    LoanRecord,
    LoanSnapshot,
    Refreshed,
    RefreshRequest,
)
from loanflow.mail import relay
from loanflow.mail.delivery import NoticeDelivery
from loanflow.models import Borrower, PriceUpdate
from loanflow.risk import shown_ltv
from loanflow.schema import AuditRecord, BorrowerContact, Loan, utcnow
from loanflow.store.claims import claim, hold
from loanflow.store.prices import observation_at


class StoreActivities:
    def __init__(self, db: Database, notices: NoticeDelivery | None = None) -> None:
        self.db = db
        # Records the notices a write carries (`LoanRecord.notices`) for the relay.
        self.notices = notices

    @activity.defn(name=ActivityName.RECORD_LOAN)
    async def record_loan(self, record: LoanRecord) -> None:
        """Publish a snapshot (ignored unless its version is newer than the stored one) and
        append its audit entries (each once by key); see `write`."""
        await self.write(record)

    @activity.defn(name=ActivityName.CLAIM_LOAN_ID)
    async def claim_loan_id(self, request: ClaimRequest) -> Claim:
        """Claim the loan id for the new workflow asking (`loanflow.store.claims`); the run
        that holds it, which is not the asker's if an earlier loan had the id."""
        async with self.db.statement() as conn:
            holder = await claim(conn, request.loan_id, request.run_id, request.borrower_id)
        return Claim(run_id=holder)

    @activity.defn(name=ActivityName.REFRESH_LOAN)
    async def refresh_loan(self, request: RefreshRequest) -> Refreshed:
        """A loan's daily look: read the newest stored observation (`stored_price`, as
        `latest_price` does), then publish the snapshot with its LTV at that price. One local
        activity where the daily wake-up ran two (the read, then the write): each cost a
        stress run's daily wave of 1,000 loans about 2.5 s of worker time. On PostgreSQL the
        read and the write are one transaction on one connection (every imported loan and
        every daily look comes here). On SQLite they are two: there a read transaction that
        turns into a write fails at once, without waiting, if another writer committed in
        between."""
        if self.db.autocommit is None:
            check_asset(request.asset)
            async with self.db.statement() as conn:
                observation = await observation_at(conn, request.asset, request.now)
                await write_rows(conn, at_price(request.record, observation))
                await self.record_notices(request.record, conn)
            ring_for(request.record)
            return Refreshed(observation=observation)
        observation = await stored_price(self.db, request.asset, request.now)
        await self.write(at_price(request.record, observation))
        return Refreshed(observation=observation)

    async def write(self, record: LoanRecord) -> None:
        """The snapshot, the borrower's contact (first snapshot) and the audit entries. On
        PostgreSQL one transaction. On SQLite each is a lone upsert in autocommit
        (`Database.statement`), so that SQLite's single write lock is held only while a
        statement runs, not until a commit comes back through a busy worker's event loop; a
        record written in part (the worker died between two statements) is completed by the
        retry, which writes the same keys again and which the loan's local activity makes
        until it lands."""
        if self.db.autocommit is None:
            async with self.db.statement() as conn:
                await write_rows(conn, record)
                await self.record_notices(record, conn)
            ring_for(record)
            return
        snapshot = record.snapshot
        async with self.db.statement() as conn:
            await execute_snapshot_upsert(conn, snapshot)
        if records_contact(record):
            async with self.db.statement() as conn:
                await upsert_borrower(conn, snapshot)
        if record.claim_run is not None:
            async with self.db.statement() as conn:
                await hold_claim(conn, record)
        if record.audit:
            async with self.db.statement() as conn:
                await append_audit(conn, snapshot.loan_id, record.audit)
        await self.record_notices(record)
        ring_for(record)

    async def record_notices(self, record: LoanRecord, conn: AsyncConnection | None = None) -> None:
        """Record the record's notices in the outbox, after its rows (the first snapshot
        records the contact details they are addressed from): on PostgreSQL in the write's
        own transaction (`conn`), so a loan's rows and its notices land together, at the cost
        of one commit; on SQLite each in a transaction of its own. Each once by its key: a
        retried write records nothing twice."""
        if not record.notices:
            return
        if self.notices is None:
            raise RuntimeError("this worker records no notices: build StoreActivities with them")
        for notice in record.notices:
            await self.notices.record_for_relay(notice, conn)


def ring_for(record: LoanRecord) -> None:
    """Once a write's notices are committed: the relay in this process looks now."""
    if record.notices:
        relay.ring()


def at_price(record: LoanRecord, observation: PriceUpdate | None) -> LoanRecord:
    """The record with its snapshot's LTV at the observation's price (as sent if none)."""
    if observation is None:
        return record
    snapshot = record.snapshot
    ltv = shown_ltv(snapshot.debt_usd, snapshot.collateral_amount, observation.price)
    return record.model_copy(update={"snapshot": snapshot.model_copy(update={"ltv": ltv})})


def records_contact(record: LoanRecord) -> bool:
    """Does this record carry contact details to keep (a first snapshot's, not refused)?"""
    return record.contact and record.snapshot.application is not None


async def write_rows(conn: AsyncConnection, record: LoanRecord) -> None:
    """Every row of a record, in the caller's transaction."""
    await execute_snapshot_upsert(conn, record.snapshot)
    if records_contact(record):
        await upsert_borrower(conn, record.snapshot)
    await hold_claim(conn, record)
    await append_audit(conn, record.snapshot.loan_id, record.audit)


async def hold_claim(conn: AsyncConnection, record: LoanRecord) -> None:
    """Claim the loan id for the record's first run, if it carries one (`LoanRecord.claim_run`)."""
    if record.claim_run is not None:
        snapshot = record.snapshot
        await hold(conn, snapshot.loan_id, record.claim_run, snapshot.borrower_id)


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
    await execute_snapshot_upsert(await _connection(session), snapshot)


async def execute_snapshot_upsert(conn: AsyncConnection, snapshot: LoanSnapshot) -> None:
    values = snapshot.model_dump()
    # JSON columns get JSON values (a Decimal inside the application would not serialise).
    values["application"] = snapshot.model_dump(mode="json")["application"]
    await conn.execute(_snapshot_upsert(dialect_name(conn), tuple(values)), values)


# Every loan publishes at each change and at its daily revaluation: building a statement with
# its values inlined (and SQLAlchemy's cache key for it) for each write was most of these
# activities' time. Each upsert depends only on the dialect, the table and the columns written:
# built once each, executed with the values as parameters (a list of them: one executemany).
_UPSERTS: dict[tuple[str, str, tuple[str, ...]], Any] = {}


def _upsert(dialect: str, model: Any, key: str, columns: tuple[str, ...],
            *, keep: tuple[str, ...] = (), newer_only: bool = False) -> Any:
    """INSERT, or on a conflict of `key` UPDATE every other column; `keep` columns are kept
    when the new value is NULL; `newer_only`: not over a row of a higher `version`."""
    cache_key = (dialect, model.__tablename__, columns)
    if cache_key not in _UPSERTS:
        insert = _insert(dialect, model)
        updated = {name: insert.excluded[name] for name in columns if name != key}
        for name in keep:
            updated[name] = func.coalesce(insert.excluded[name], getattr(model, name))
        _UPSERTS[cache_key] = insert.on_conflict_do_update(
            index_elements=[getattr(model, key)], set_=updated,
            where=(model.version <= insert.excluded.version) if newer_only else None)
    return _UPSERTS[cache_key]


def _snapshot_upsert(dialect: str, columns: tuple[str, ...]) -> Any:
    # Only the first snapshot carries the application: keep it when later ones do not.
    return _upsert(dialect, Loan, "loan_id", columns, keep=("application",), newer_only=True)


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
    conn = await _connection(session)
    await conn.execute(_upsert(dialect_name(conn), AuditRecord, "key", tuple(rows[0])), rows)


async def upsert_borrower(session: AsyncSession | AsyncConnection,
                          snapshot: LoanSnapshot) -> None:
    """Keep the borrower's contact details from the application a loan opens with (the first
    snapshot carries it): the borrower's latest details, for a loan whose record holds no
    application (`loanflow.store.borrowers`; every other loan's notices are addressed from its
    own). The same application written again changes nothing; a newer loan's details replace
    an older one's."""
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
    conn = await _connection(session)
    await conn.execute(_upsert(dialect_name(conn), BorrowerContact, "borrower_id", tuple(values)),
                       values)


async def _connection(target: AsyncSession | AsyncConnection) -> AsyncConnection:
    """The connection (a session's, in its transaction): Core statements skip the ORM's bulk
    path, which a list of parameters would otherwise take."""
    return target if isinstance(target, AsyncConnection) else await target.connection()
