"""`loanflow mail outbox` and `mail resend`: the operator's way to see which borrower e-mails
did not surely arrive and to deliver them again. The real command against a real database and
a real SMTP server on loopback (no Temporal needed: notices are in the database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from loanflow.db import Database
from loanflow.effects import Notice
from loanflow.mail.preview import SAMPLE_BORROWER, sample_data
from tests.cli.support import Cli
from tests.notify.helpers import Sink, settings_for


@dataclass
class MailDesk:
    cli: Cli
    db: Database
    sink: Sink
    notify: NotifyActivities

    async def send(self, loan_id: str, email: str) -> str:
        """A margin-call notice of `loan_id` sent the way a loan sends it; its key."""
        borrower = SAMPLE_BORROWER.model_copy(update={"email": email})
        notice = Notice(key=f"{loan_id}:notice:margin_call:1", loan_id=loan_id,
                        kind="margin_call", borrower=borrower, data=sample_data("margin_call"))
        await ActivityEnvironment().run(self.notify.record_notice, notice)
        return notice.key


@pytest_asyncio.fixture(loop_scope="session")
async def desk(tmp_path: Path) -> AsyncIterator[MailDesk]:
    sink = await Sink(tmp_path / "mail", 0, reject={"gone@example.com"}).start()
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'loanflow.db'}")
    await db.create_all()
    settings = settings_for(sink, tmp_path)
    cli = Cli(tmp_path, {"DATABASE_URL": f"sqlite:///{tmp_path / 'loanflow.db'}",
                         "LOANFLOW_VAR_DIR": str(tmp_path), "SMTP_PORT": str(sink.port),
                         "LOANFLOW_MAIL_FROM": settings.mail_from})
    yield MailDesk(cli, db, sink, NotifyActivities(db, settings))
    await db.dispose()
    await sink.stop()


async def test_outbox_shows_what_needs_a_person(desk: MailDesk) -> None:
    sent = await desk.send("L1", "ada@example.com")
    failed = await desk.send("L2", "gone@example.com")

    everything = await desk.cli.json("mail", "outbox")
    assert {(r["key"], r["status"]) for r in everything} == {(sent, "sent"), (failed, "failed")}
    [row] = await desk.cli.json("mail", "outbox", "--status", "failed")
    assert row["key"] == failed and row["loan_id"] == "L2" and row["to"] == "gone@example.com"
    assert "550" in row["last_error"]
    assert [r["key"] for r in await desk.cli.json("mail", "outbox", "--loan", "loan-L1")] == [sent]
    table = await desk.cli.ok("mail", "outbox", "--status", "failed")
    assert failed in table and "gone@example.com" in table


async def test_resend_delivers_a_failed_notice_once_to_a_corrected_address(desk: MailDesk) -> None:
    key = await desk.send("L2", "gone@example.com")
    assert desk.sink.messages() == []

    out = await desk.cli.ok("mail", "resend", key, "--to", "ada.new@example.com")
    assert out.startswith(f"notice {key}: sent (250")
    [message] = desk.sink.messages()
    assert message.rcpt_to == ("ada.new@example.com",) and message.notice_key == key

    again = await desk.cli.error("mail", "resend", key)
    assert again == f"notice {key} is sent, not failed or unconfirmed: nothing to resend"
    assert len(desk.sink.messages()) == 1


async def test_resend_refusals_name_the_problem(desk: MailDesk) -> None:
    key = await desk.send("L2", "gone@example.com")
    assert "no notice 'L9:notice:x' in the outbox" in await desk.cli.error(
        "mail", "resend", "L9:notice:x")
    assert await desk.cli.error("mail", "resend", key, "--to", "nobody") == \
        "to: 'nobody' is not an e-mail address"
    assert (await desk.cli.error("mail", "outbox", "--status", "lost")).startswith(
        "status: unknown status 'lost'")
    # Resent to the same refused address: still failed, said so, exit code 1.
    done = await desk.cli.run("mail", "resend", key)
    assert done.returncode == 1 and f"notice {key}: failed" in done.stdout
    assert desk.sink.messages() == []


async def test_outbox_table_keeps_the_notice_key_whole_at_80_and_120_columns(
        desk: MailDesk) -> None:
    """Issue 11: at 120 columns the key `mail resend` needs was cut (`L-2024-0042:notice:m…`)."""
    key = await desk.send("L-2024-0042-REFINANCED", "gone@example.com")
    for columns in ("80", "120"):
        shown = await desk.cli.ok("mail", "outbox", COLUMNS=columns)
        assert key in shown and "failed" in shown, f"cut at {columns} columns:\n{shown}"
        assert "…" not in shown
    [row] = await desk.cli.json("mail", "outbox")
    assert row["updated_at"].endswith("Z")
