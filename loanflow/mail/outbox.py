"""The outbox in the database: recording a notice with its rendered e-mail, and moving the
outbox row through its states with optimistic locking (see `loanflow.notice_schema`).

Every change is one `UPDATE ... WHERE notice_key = :key AND version = :seen`: of two attempts
that saw the same row, exactly one moves it on; the other learns it lost and looks again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Table, Update, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from loanflow.db import Database, check_values, dialect_name, inserts_of_new_rows
from loanflow.effects import Notice
from loanflow.mail.render import RenderedMessage
from loanflow.notice_schema import FAILED, PENDING, SENDING, SENT, NoticeRow, OutboxRow


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def find(db: Database, key: str) -> OutboxRow | None:
    """The outbox row of notice `key` as it is now (detached: read it, change it through
    `change`). A Core SELECT: every delivery reads its row, and an ORM session's set-up and
    commit cost more CPU than the read."""
    async with db.engine.connect() as conn:
        found = (await conn.execute(_FIND, {"key": key})).mappings().first()
    return None if found is None else OutboxRow(**found)


async def insert(
    target: Database | AsyncConnection,
    notice: Notice,
    *,
    rendered: RenderedMessage | None,
    error: str | None,
    message_id: str,
    now: datetime,
    claimed: bool = False,
) -> OutboxRow | None:
    """Record the notice and its outbox row in one transaction (a transaction of its own on a
    Database, else the caller's on its connection: a loan's write records its notices with
    its rows) and return the row as recorded; None if the key was already recorded (by an
    earlier attempt or by a duplicate racing this one): nothing is written then, and no error
    aborts the caller's transaction. Without a rendered message (`error` says why) the row
    is recorded as failed at once. `claimed`: the row is recorded already held by the caller
    (`sending`, attempt 1, version 1, as if claimed right after), so a new notice's first
    attempt needs no read and no claim of its own; its hold is `CLAIMED_VERSION`."""
    claim = claimed and rendered is not None
    row = {
        "notice_key": notice.key,
        "loan_id": notice.loan_id,
        "kind": notice.kind,
        "to_name": notice.borrower.name,
        "to_address": notice.borrower.email,
        "subject": rendered.subject if rendered else "",
        "html": rendered.html if rendered else "",
        "text": rendered.text if rendered else "",
        "message_id": message_id,
        "status": (SENDING if claim else PENDING) if rendered else FAILED,
        "attempts": 1 if claim else 0,
        "version": CLAIMED_VERSION if claim else 0,
        "last_error": error,
        "smtp_response": None,
        "created_at": now,
        "updated_at": now,
        "claimed_at": now if claim else None,
        "data_started_at": None,
        "sent_at": None,
    }
    payload = notice.model_dump(mode="json")
    recorded = {
        "key": notice.key,
        "loan_id": notice.loan_id,
        "kind": notice.kind,
        "borrower_id": notice.borrower.id,
        "created_at": now,
        "data": payload["data"],
        "borrower": payload["borrower"],
    }
    # Core statements on a plain connection: every notice comes through here, and the ORM's
    # unit of work cost more CPU than the two INSERTs themselves. The length check its flush
    # made is made here.
    check_values(_NOTICES, recorded)
    check_values(_OUTBOX, row)
    if isinstance(target, Database):
        async with target.engine.begin() as conn:
            return await _insert_rows(conn, recorded, row)
    return await _insert_rows(target, recorded, row)


async def _insert_rows(conn: AsyncConnection, recorded: dict[str, Any],
                       row: dict[str, Any]) -> OutboxRow | None:
    """The notice (first: the outbox row refers to it), then its outbox row unless the notice
    was there already."""
    new = await conn.execute(_INSERT_NEW_NOTICE[dialect_name(conn)], recorded)
    if new.first() is None:  # (RETURNING: psycopg's rowcount is -1 for such an INSERT)
        return None
    await conn.execute(_INSERT_OUTBOX, row)
    return OutboxRow(**row)


# The version an outbox row is recorded with when `insert` records it claimed.
CLAIMED_VERSION = 1
_NOTICES: Table = NoticeRow.__table__  # type: ignore[assignment]
_OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]
_INSERT_NEW_NOTICE = {dialect: insert.returning(_NOTICES.c.key) for dialect, insert
                      in inserts_of_new_rows(_NOTICES, _NOTICES.c.key).items()}
_INSERT_OUTBOX = _OUTBOX.insert()
_FIND = select(_OUTBOX).where(_OUTBOX.c.notice_key == bindparam("key"))


async def change(db: Database, key: str, seen_version: int, **values: Any) -> int | None:
    """Apply `values` if the row is still at `seen_version`; the new version, or None if
    another attempt changed the row first."""
    values.setdefault("updated_at", utcnow())
    params = {f"new_{name}": value for name, value in values.items()}
    async with db.statement() as conn:  # one UPDATE, atomic by itself
        result = await conn.execute(
            _change_statement(tuple(values)),
            {"key": key, "seen": seen_version, "next": seen_version + 1, **params},
        )
        return seen_version + 1 if result.rowcount == 1 else None


# One UPDATE per set of changed columns, built once (the commit before DATA and the claim run
# for every e-mail): Core, on a connection, without the ORM's bulk-update bookkeeping.
_CHANGES: dict[tuple[str, ...], Update] = {}


def _change_statement(columns: tuple[str, ...]) -> Update:
    if columns not in _CHANGES:
        _CHANGES[columns] = (
            _OUTBOX.update()
            .where(_OUTBOX.c.notice_key == bindparam("key"),
                   _OUTBOX.c.version == bindparam("seen"))
            .values(version=bindparam("next"),
                    **{name: bindparam(f"new_{name}", type_=_OUTBOX.c[name].type)
                       for name in columns})
        )
    return _CHANGES[columns]


async def mark_sent(db: Database, key: str, reply: str, now: datetime) -> bool:
    """Record the server's acceptance whatever the version: the message is out, and no later
    attempt may send it again. False if the row already said sent (a duplicate went out)."""
    async with db.statement() as conn:
        # The usual case in one statement: the row is not marked sent yet. Row-locking, so of
        # two attempts marking at once the second finds it sent and goes the long way below.
        marked = await conn.execute(_MARK_SENT, {"key": key, "reply": reply, "now": now})
        if marked.rowcount == 1:
            return True
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


_NOW = bindparam("now", type_=_OUTBOX.c.sent_at.type)
_MARK_SENT = (
    _OUTBOX.update()
    .where(_OUTBOX.c.notice_key == bindparam("key"), _OUTBOX.c.status != SENT)
    .values(status=SENT, smtp_response=bindparam("reply"),
            sent_at=func.coalesce(_OUTBOX.c.sent_at, _NOW),
            claimed_at=None, last_error=None, version=_OUTBOX.c.version + 1,
            updated_at=_NOW)
)


async def due(db: Database, *, claimed_before: datetime, stale_before: datetime,
              limit: int, after: OutboxRow | None = None) -> list[OutboxRow]:
    """The rows the relay should bring to a final status, oldest first (and only those after
    `after`, so a pass moves on past rows it had to leave): every `pending` row; every
    `sending` row not past its point of no return claimed before `claimed_before` (its holder
    is slow or gone, say a worker killed mid-send; if it is alive, the claim's version fences it
    out before the data, so taking it over is safe); and every `sending` row past it that no
    live attempt holds (released, or claimed before `stale_before`). Whole rows, as `find`
    reads them: a pending row is sent as read (`claim` checks its version)."""
    sending, claimed = _OUTBOX.c.status == SENDING, _OUTBOX.c.claimed_at
    created, key = _OUTBOX.c.created_at, _OUTBOX.c.notice_key
    query = (
        select(_OUTBOX)
        .where((_OUTBOX.c.status == PENDING)
               | (sending & claimed.is_(None))
               | (sending & _OUTBOX.c.data_started_at.is_(None) & (claimed < claimed_before))
               | (sending & (claimed < stale_before)))
        .order_by(created, key)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(created, key) > tuple_(after.created_at, after.notice_key))
    async with db.engine.connect() as conn:
        return [OutboxRow(**row) for row in (await conn.execute(query)).mappings()]


async def claim(db: Database, rows: list[OutboxRow], now: datetime) -> dict[str, int]:
    """Claim these `pending` rows for one sender at once, each as `change` would (`sending`,
    one more attempt, at its version as read): the version each now holds, by key. A row
    another attempt changed since it was read is not claimed (nor in the answer). One
    statement where a claim each cost a commit each."""
    if not rows:
        return {}
    async with db.statement() as conn:
        claimed = await conn.execute(
            _OUTBOX.update()
            .where(_OUTBOX.c.status == PENDING,
                   _at_versions((row.notice_key, row.version) for row in rows))
            .values(status=SENDING, attempts=_OUTBOX.c.attempts + 1, claimed_at=now,
                    data_started_at=None, version=_OUTBOX.c.version + 1, updated_at=now)
            .returning(_OUTBOX.c.notice_key, _OUTBOX.c.version))
        return {key: version for key, version in claimed}


async def release(db: Database, claimed: dict[str, int], now: datetime) -> None:
    """Give back rows `claim` took and nobody tried (their loan held back, the pass stopped):
    `pending` again, the attempt not counted. A row that moved on meanwhile is left alone."""
    if not claimed:
        return
    async with db.statement() as conn:
        await conn.execute(
            _OUTBOX.update()
            .where(_OUTBOX.c.status == SENDING, _OUTBOX.c.data_started_at.is_(None),
                   _at_versions(claimed.items()))
            .values(status=PENDING, attempts=_OUTBOX.c.attempts - 1, claimed_at=None,
                    version=_OUTBOX.c.version + 1, updated_at=now))


def _at_versions(versions: Iterable[tuple[str, int]]) -> Any:
    """The rows of these keys, each only while at its version."""
    return tuple_(_OUTBOX.c.notice_key, _OUTBOX.c.version).in_(list(versions))


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
