"""The outbox in the database: recording a notice with its rendered e-mail, and moving the
outbox row through its states with optimistic locking (see `loanflow.notice_schema`).

Every change is one `UPDATE ... WHERE notice_key = :key AND version = :seen`: of two attempts
that saw the same row, exactly one moves it on; the other learns it lost and looks again.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from loanflow.db import Database
from loanflow.effects import Notice
from loanflow.mail.render import RenderedMessage
from loanflow.notice_schema import FAILED, PENDING, SENT, NoticeRow, OutboxRow


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def find(db: Database, key: str) -> OutboxRow | None:
    async with db.transaction() as session:
        return await session.get(OutboxRow, key)


async def insert(
    db: Database,
    notice: Notice,
    *,
    rendered: RenderedMessage | None,
    error: str | None,
    message_id: str,
    now: datetime,
) -> bool:
    """Record the notice and its outbox row in one transaction; False if the key was already
    recorded (by an earlier attempt or by a duplicate racing this one). Without a rendered
    message (`error` says why) the row is recorded as failed at once."""
    row = OutboxRow(
        notice_key=notice.key,
        loan_id=notice.loan_id,
        kind=notice.kind,
        to_name=notice.borrower.name,
        to_address=notice.borrower.email,
        subject=rendered.subject if rendered else "",
        html=rendered.html if rendered else "",
        text=rendered.text if rendered else "",
        message_id=message_id,
        status=PENDING if rendered else FAILED,
        attempts=0,
        version=0,
        last_error=error,
        created_at=now,
        updated_at=now,
    )
    payload = notice.model_dump(mode="json")
    try:
        async with db.transaction() as session:
            session.add(
                NoticeRow(
                    key=notice.key,
                    loan_id=notice.loan_id,
                    kind=notice.kind,
                    borrower_id=notice.borrower.id,
                    created_at=now,
                    data=payload["data"],
                    borrower=payload["borrower"],
                )
            )
            await session.flush()  # the notice first: the outbox row refers to it
            session.add(row)
    except IntegrityError:
        if await find(db, notice.key) is None:
            raise
        return False
    return True


async def change(db: Database, key: str, seen_version: int, **values: Any) -> int | None:
    """Apply `values` if the row is still at `seen_version`; the new version, or None if
    another attempt changed the row first."""
    values.setdefault("updated_at", utcnow())
    async with db.transaction() as session:
        result = await session.execute(
            update(OutboxRow)
            .where(OutboxRow.notice_key == key, OutboxRow.version == seen_version)
            .values(version=seen_version + 1, **values)
        )
        return seen_version + 1 if result.rowcount == 1 else None  # type: ignore[attr-defined]


async def mark_sent(db: Database, key: str, reply: str, now: datetime) -> bool:
    """Record the server's acceptance whatever the version: the message is out, and no later
    attempt may send it again. False if the row already said sent (a duplicate went out)."""
    async with db.transaction() as session:
        row = await session.get(OutboxRow, key, with_for_update=True)
        if row is None:
            raise LookupError(f"no outbox row {key!r}")
        already = row.status == SENT
        row.status, row.smtp_response, row.sent_at = SENT, reply, row.sent_at or now
        row.claimed_at, row.last_error = None, None
        row.version += 1
        row.updated_at = now
    return not already


async def load_notice(db: Database, key: str) -> Notice | None:
    """A recorded notice as the loan sent it."""
    async with db.transaction() as session:
        row = await session.get(NoticeRow, key)
    if row is None:
        return None
    return Notice(key=row.key, loan_id=row.loan_id, kind=row.kind, borrower=row.borrower,
                  data=row.data)


async def list_outbox(
    db: Database, *, status: str | None = None, loan_id: str | None = None, limit: int = 100
) -> list[OutboxRow]:
    """Outbox rows, newest first (for operations: failed and unconfirmed ones need a person)."""
    query = select(OutboxRow).order_by(OutboxRow.created_at.desc()).limit(limit)
    if status:
        query = query.where(OutboxRow.status == status)
    if loan_id:
        query = query.where(OutboxRow.loan_id == loan_id)
    async with db.transaction() as session:
        return list((await session.scalars(query)).all())


async def notices_of(db: Database, loan_id: str) -> list[NoticeRow]:
    """Every notice of one loan, oldest first."""
    query = select(NoticeRow).where(NoticeRow.loan_id == loan_id).order_by(NoticeRow.created_at)
    async with db.transaction() as session:
        return list((await session.scalars(query)).all())
