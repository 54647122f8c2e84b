"""A notice's own cost, two ways: the notice activity (loans started before notices rode with
their write: N fresh margin-call notices recorded and delivered one after another), and the
relay's path (N notices of N loans recorded with the loans' writes, then mailed by one
pass of the notice relay, four lanes; each loan's write is a margin call's, snapshot and
audit entry with the notice); each to the local SMTP sink (a separate process, so its
CPU is not counted).

    python -m bench.notice --notices 300                       # SQLite in a temporary dir
    python -m bench.notice --notices 300 --db postgresql+psycopg://postgres@127.0.0.1:5432/x

Prints, for each path (`activity`; `relay`: the loan's `write` with its notice, and `send`),
wall seconds and this process's CPU seconds per notice (the worker's share of a notice:
rendering, the database driver, SQLAlchemy, SMTP; the database server's own CPU is not in
it), and the SQL statements and transactions one notice cost. The database must be empty or
new: the tables are created, the keys are fresh per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from activities.store import StoreActivities
from bench.stack import start_sink_process, wait_for_port
from loanflow.db import Database
from loanflow.effects import AuditEntry, LoanRecord, LoanSnapshot, Notice
from loanflow.mail.delivery import NoticeDelivery
from loanflow.mail.preview import SAMPLE_BORROWER, sample_data
from loanflow.mail.relay import NoticeRelay
from loanflow.mail.sink import list_messages
from loanflow.ports import free_port
from loanflow.models import Borrower
from loanflow.schema import Loan
from loanflow.settings import Settings


@contextmanager
def counting(db: Database) -> Iterator[dict[str, int]]:
    """SQL statements and commits the database engine ran inside the block (the database work,
    not its wall time)."""
    counts = {"statements": 0, "commits": 0}

    def statement(*_: Any) -> None:
        counts["statements"] += 1

    def commit(*_: Any) -> None:
        counts["commits"] += 1

    # A statement in autocommit (`Database.statement`, SQLite) is a commit of its own.
    listeners = [(engine.sync_engine, "before_cursor_execute", statement) for engine in db.engines]
    listeners.append((db.engine.sync_engine, "commit", commit))
    if db.autocommit is not None:
        listeners.append((db.autocommit.sync_engine, "before_cursor_execute", commit))
    for target, name, fn in listeners:
        event.listen(target, name, fn)
    try:
        yield counts
    finally:
        for target, name, fn in listeners:
            event.remove(target, name, fn)


def opened_loan(loan_id: str, borrower: Borrower) -> Loan:
    """The read model's row of a loan as its first write leaves it: notices are addressed from
    the application it holds."""
    return Loan(loan_id=loan_id, version=1, borrower_id=borrower.id, state="ACTIVE",
                collateral_asset="BTC", collateral_amount=Decimal("1"),
                principal_usd=Decimal("20000"), debt_usd=Decimal("20000"), ltv=None,
                updated_at=datetime.now(timezone.utc),
                application={"loan_id": loan_id, "borrower": borrower.model_dump(mode="json")})


async def run(notices: int, url: str | None, var_dir: Path) -> dict[str, Any]:
    port = free_port()
    mail = var_dir / "mail"
    sink = start_sink_process(mail, port, var_dir / "sink.log")
    db = Database(url or f"sqlite+aiosqlite:///{var_dir / 'bench.db'}")
    try:
        await db.create_all()
        await wait_for_port(port)
        settings = Settings(var_dir=var_dir, smtp_host="127.0.0.1", smtp_port=port,
                            smtp_security="none", mail_from="notices@northwind.example")
        activity_path = await _activity_path(NotifyActivities(db, settings), notices)
        relay_path = await _relay_path(NoticeDelivery(db, settings), notices)
        delivered = len(list_messages(mail))
    finally:
        await db.dispose()
        sink.terminate()
        sink.wait()
    return {"notices": notices, "database": db.engine.dialect.name,
            "delivered": delivered, "activity": activity_path, "relay": relay_path}


async def _opened(db: Database, loans: int) -> tuple[list[str], Borrower]:
    """`loans` fresh loans in the read model, as their first writes leave them."""
    borrower = SAMPLE_BORROWER.model_copy(update={"id": f"B-{uuid.uuid4().hex[:8]}"})
    run_id = uuid.uuid4().hex[:8]
    loan_ids = [f"bench-{run_id}-{i}" for i in range(loans)]
    async with db.transaction() as session:
        session.add_all(opened_loan(loan_id, borrower) for loan_id in loan_ids)
    return loan_ids, borrower


def _margin_call(loan_id: str, borrower: Borrower, n: int) -> Notice:
    return Notice(key=f"{loan_id}:notice:margin_call:{n}", loan_id=loan_id, kind="margin_call",
                  borrower_id=borrower.id, data=sample_data("margin_call"))


async def _activity_path(acts: NotifyActivities, notices: int) -> dict[str, float]:
    """The notice activity, one notice after another (the first 5 warm up: templates,
    statement caches, the pool)."""
    (loan_id,), borrower = await _opened(acts.db, 1)
    batch = [_margin_call(loan_id, borrower, i) for i in range(notices + 5)]
    env = ActivityEnvironment()
    for notice in batch[:5]:
        await env.run(acts.record_notice, notice)
    async with _measured(acts.db, notices) as figures:
        for notice in batch[5:]:
            receipt = await env.run(acts.record_notice, notice)
            assert receipt.status == "sent", receipt
    return figures


async def _relay_path(delivery: NoticeDelivery, notices: int) -> dict[str, dict[str, float]]:
    """Each of `notices` loans makes its margin-call write (`record_loan`: the snapshot, an
    audit entry and the notice, as a loan's margin call writes them), then one relay pass
    mails them all; after a warm-up of 5 the same way."""
    loan_ids, borrower = await _opened(delivery.db, notices + 5)
    writes = [_margin_call_write(loan_id, borrower) for loan_id in loan_ids]
    store, env = StoreActivities(delivery.db, delivery), ActivityEnvironment()
    relay = NoticeRelay(delivery)
    for write in writes[:5]:
        await env.run(store.record_loan, write)
    await relay.relay_due()
    async with _measured(delivery.db, notices) as record:
        for write in writes[5:]:
            await env.run(store.record_loan, write)
    async with _measured(delivery.db, notices) as send:
        assert await relay.relay_due()
    return {"write": record, "send": send}


def _margin_call_write(loan_id: str, borrower: Borrower) -> LoanRecord:
    """The read-model write of a margin call: the loan's new state, its audit entry, its
    notice."""
    now = datetime.now(timezone.utc)
    snapshot = LoanSnapshot(
        loan_id=loan_id, version=2, borrower_id=borrower.id, state="MARGIN_CALL",
        collateral_asset="BTC", collateral_amount=Decimal("1"), principal_usd=Decimal("20000"),
        debt_usd=Decimal("20004.11"), ltv=Decimal("0.7412"), cure_deadline=now,
        warning_price=Decimal("30000"), margin_call_price=Decimal("28000"),
        liquidation_price=Decimal("25000"), cure_price=Decimal("33000"), updated_at=now)
    audit = AuditEntry(key=f"{loan_id}:audit:margin_call:1", at=now, kind="margin_call",
                       state="MARGIN_CALL", detail={"ltv": "0.7412"}, price=Decimal("26985.5"))
    return LoanRecord(snapshot=snapshot, audit=[audit],
                      notices=[_margin_call(loan_id, borrower, 0)])


@asynccontextmanager
async def _measured(db: Database, notices: int) -> AsyncIterator[dict[str, float]]:
    """Wall and CPU ms, statements and commits per notice of the block, into the dict."""
    figures: dict[str, float] = {}
    with counting(db) as counts:
        wall, cpu = time.perf_counter(), time.process_time()
        yield figures
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    figures.update({
        "wall_ms_per_notice": round(wall / notices * 1000, 2),
        "cpu_ms_per_notice": round(cpu / notices * 1000, 2),
        "statements_per_notice": round(counts["statements"] / notices, 2),
        "commits_per_notice": round(counts["commits"] / notices, 2),
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notices", type=int, default=300)
    parser.add_argument("--db", help="an async database URL (default: SQLite in a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-notice-") as tmp:
        result = asyncio.run(run(args.notices, args.db, Path(tmp)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
