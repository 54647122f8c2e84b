"""The notice activity alone: N fresh margin-call notices recorded and delivered to the local
SMTP sink (a separate process, so its CPU is not counted), one after another.

    python -m bench.notice --notices 300                       # SQLite in a temporary dir
    python -m bench.notice --notices 300 --db postgresql+psycopg://postgres@127.0.0.1:5432/x

Prints wall seconds and this process's CPU seconds per notice (the worker's share of a notice:
rendering, the database driver, SQLAlchemy, SMTP; the database server's own CPU is not in it),
and the SQL statements and transactions one notice cost. The database must be empty or new:
the tables are created, the keys are fresh per run.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from bench.stack import start_sink_process, wait_for_port
from loanflow.db import Database
from loanflow.effects import Notice
from loanflow.mail.preview import SAMPLE_BORROWER, sample_data
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
        acts = NotifyActivities(db, settings)
        borrower = SAMPLE_BORROWER.model_copy(update={"id": f"B-{uuid.uuid4().hex[:8]}"})
        run_id = uuid.uuid4().hex[:8]
        loan_id = f"bench-{run_id}"
        async with db.transaction() as session:
            session.add(opened_loan(loan_id, borrower))
        batch = [Notice(key=f"{loan_id}:notice:margin_call:{i}", loan_id=loan_id,
                        kind="margin_call", borrower_id=borrower.id,
                        data=sample_data("margin_call")) for i in range(notices + 5)]
        env = ActivityEnvironment()
        for notice in batch[:5]:  # warm-up: templates, statement caches, the pool
            await env.run(acts.record_notice, notice)
        with counting(db) as counts:
            wall, cpu = time.perf_counter(), time.process_time()
            for notice in batch[5:]:
                receipt = await env.run(acts.record_notice, notice)
                assert receipt.status == "sent", receipt
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        delivered = len(list_messages(mail))
    finally:
        await db.dispose()
        sink.terminate()
        sink.wait()
    return {
        "notices": notices,
        "database": db.engine.dialect.name,
        "delivered": delivered,
        "wall_ms_per_notice": round(wall / notices * 1000, 2),
        "cpu_ms_per_notice": round(cpu / notices * 1000, 2),
        "statements_per_notice": round(counts["statements"] / notices, 2),
        "commits_per_notice": round(counts["commits"] / notices, 2),
    }


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
