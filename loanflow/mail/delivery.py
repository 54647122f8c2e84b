"""Delivering borrower notices: record a notice, render its e-mail into the outbox, and deliver
it over SMTP exactly once per server acceptance. The `record_notice` activity
(`activities.notify`) and `loanflow mail resend` both work through `NoticeDelivery`.

Why a message goes out once, and where "once" has a limit
-----------------------------------------------------------
SMTP cannot be asked "did you already take this message?"; a message becomes the server's
responsibility at its 250 reply to the data, and nothing in the protocol is idempotent. So:

1. The notice and its rendered message are recorded in one transaction, keyed by the notice's
   idempotency key. A retry finds them and never renders or records twice.
2. An attempt claims the outbox row (`pending` -> `sending`, version + 1) before it connects.
   Claims use optimistic locking, so of two attempts racing (a retry overtaking a slow first
   attempt) only one holds the row at any time. An activity's first attempt records a new
   notice already claimed (`sending`, attempt 1, version 1, in the transaction of step 1):
   the one transaction that creates the row is its claim, as if no one could have come
   between; a retry or a duplicate finds the key taken and goes through steps 1-2 as above,
   claiming from the version it reads, which fences the first attempt out exactly as a claim
   would.
3. Just before the DATA command the attempt commits `data_started_at` (the point of no
   return), again conditional on its version. An attempt that was overtaken finds its version
   gone and hangs up without sending the data: before the data nothing was delivered, so the
   new holder may send.
4. Right after the server's 250 the row is marked `sent` with the server's reply. A retry that
   finds `sent` returns without sending.
5. A refused connection, a timeout before the data or any 4xx gives the row back (`pending`)
   and raises a retryable error: Temporal retries with backoff, and the message goes out once
   the server is back. A 5xx for the recipient or the message marks the row `failed`, logs an
   error line for operations and returns a receipt with status "failed": the loan goes on.

The residual window: between handing the data to the server and committing `sent` (a crash
of the worker, a lost connection while waiting for the 250, a database outage at that moment)
nobody can know whether the server accepted the message. A retry that finds such a row first
waits while the earlier attempt may still be alive (`in_flight_grace`), then:

- asks the `probe`, if there is one (the development sink keeps every message, so it can say
  whether it holds the Message-ID): accepted -> `sent` without sending; not there -> send;
- otherwise marks the row `unconfirmed` and logs an error for operations, who can check the
  relay's log for the message's Message-ID. The loan goes on; nothing is sent twice.

We never resend blindly: a second margin-call e-mail is a worse failure for a borrower than
asking a person to look. The window is a few milliseconds per message and needs a crash or a
network failure inside it; every copy of a notice carries the same Message-ID (derived from
the key), so even a copy resent by hand is recognisable as the same notice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timedelta
from typing import Protocol, Self

from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio.exceptions import ApplicationError

from loanflow.db import Database
from loanflow.effects import Notice
from loanflow.mail import outbox
from loanflow.mail.message import AddressError, build_message, message_id_for, to_bytes
from loanflow.mail.render import RenderError, render_notice
from loanflow.mail.smtp import (
    DeliveryAborted,
    PermanentDeliveryError,
    SmtpConfig,
    SmtpSession,
    TransientDeliveryError,
    UncertainDeliveryError,
    send,
)
from loanflow.notice_schema import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    UNCONFIRMED,
    OutboxRow,
)
from loanflow.settings import Settings
from loanflow.store.borrowers import find_contact

log = logging.getLogger("loanflow.notify")

# The error type Temporal sees for "not yet, try again later"; retried with backoff.
DEFERRED = "NoticeDeliveryDeferred"


class DeliveryProbe(Protocol):
    """Something that can tell whether the mail server already holds a message."""

    async def accepted(self, message_id: str) -> bool: ...


@dataclass
class _Hold:
    """An attempt's hold on an outbox row: the version it last wrote."""

    key: str
    version: int


class NoticeDelivery:
    """Records notices and delivers their e-mails (see the module's docstring for "once").
    Raises ApplicationError of type DEFERRED for "not yet": Temporal retries the activity."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        smtp: SmtpConfig | None = None,
        probe: DeliveryProbe | None = None,
        in_flight_grace: timedelta | None = None,
        clock: Callable[[], datetime] = outbox.utcnow,
    ) -> None:
        self.db = db
        self.settings = settings
        self.smtp = smtp or SmtpConfig.from_settings(settings)
        self.probe = probe
        # How long an attempt that passed the point of no return may still be alive: its
        # whole SMTP session is bounded by total_timeout.
        self.in_flight_grace = (
            in_flight_grace
            if in_flight_grace is not None
            else timedelta(seconds=self.smtp.total_timeout + 5)
        )
        self.clock = clock

    @classmethod
    def for_settings(cls, db: Database, settings: Settings) -> Self:
        """Wired to the local mail sink's probe when mail goes to this machine: the sink can
        tell whether a message whose reply was lost did arrive."""
        from loanflow.mail.sink import SinkProbe  # aiosmtpd: only where mail is delivered

        local = settings.smtp_host in ("127.0.0.1", "localhost")
        return cls(db, settings, probe=SinkProbe(settings.var_dir / "mail") if local else None)

    # --- recording -------------------------------------------------------------------------

    async def record(self, notice: Notice) -> bool:
        """Record the notice and its rendered message once; True if this call recorded it."""
        existing = await outbox.find(self.db, notice.key)
        if existing is not None:
            if (existing.kind, existing.loan_id) != (notice.kind, notice.loan_id):
                log.error(
                    "notice key %s reused for %s/%s (recorded as %s/%s); keeping the first",
                    notice.key,
                    notice.loan_id,
                    notice.kind,
                    existing.loan_id,
                    existing.kind,
                )
            return False
        return await self._insert(await self.addressed(notice), claimed=False) is not None

    async def record_for_relay(self, notice: Notice,
                               conn: AsyncConnection | None = None) -> bool:
        """Record a notice a loan's read-model write carries (`LoanRecord.notices`), `pending`
        for the relay; True if this call recorded it. Insert first: nearly every such notice is
        new, and a retried write finds the key taken. A notice that cannot be addressed is
        raised to operations and not recorded, rather than hold the loan's write: the loans
        that write their notices claimed their loan id first, so their application is the
        first snapshot's, written just before by the same write. On `conn`, in the caller's
        transaction (the write's own, on PostgreSQL), else in one of its own."""
        try:
            addressed = await self.addressed(notice, conn)
        except ApplicationError as err:
            _alert(notice.key, notice.loan_id, "<unaddressed>", err.message)
            return False
        return await self._insert(addressed, claimed=False, conn=conn) is not None

    async def record_and_deliver(self, notice: Notice) -> tuple[bool, str]:
        """`record`, then `deliver`, for a notice most likely new (an activity's first
        attempt): (created, status). The row is recorded already claimed, so a new notice
        costs no read before the insert and no separate claim (see the module's docstring).
        A notice recorded before (a retry, a duplicate) loses the insert and goes the way of
        `record` and `deliver`, exactly as it did without this shortcut."""
        row = await self._insert(await self.addressed(notice), claimed=True)
        if row is None:
            return await self.record(notice), await self.deliver(notice.key)
        if row.status != SENDING:  # recorded failed: it could not be rendered
            return True, row.status
        return True, await self._send(row, _Hold(row.notice_key, row.version))

    async def _insert(self, notice: Notice, *, claimed: bool,
                      conn: AsyncConnection | None = None) -> OutboxRow | None:
        """Render and record an addressed notice; the row as recorded, None if recorded
        before. A notice that cannot be rendered is recorded failed and raised to operations
        (once: only by the call that recorded it)."""
        rendered, error = None, None
        try:
            rendered = render_notice(notice, self.settings)
        except RenderError as err:
            error = f"cannot render: {err}"
        row = await outbox.insert(
            conn or self.db,
            notice,
            rendered=rendered,
            error=error,
            message_id=message_id_for(notice.key, self.settings.mail_from),
            now=self.clock(),
            claimed=claimed,
        )
        if row is not None and error is not None:
            _alert(notice.key, notice.loan_id, notice.borrower.email, error)
        return row

    async def addressed(self, notice: Notice, conn: AsyncConnection | None = None) -> Notice:
        """The notice with the contact details of its loan's own application (see
        `loanflow.store.borrowers`; a notice from a loan in flight since before borrower ids
        may still carry them itself); read on `conn` if given."""
        if notice.borrower is not None:
            return notice
        contact = await find_contact(conn or self.db, notice.loan_id)
        if contact is None:
            # The loan's first read-model write records them; it may land a moment later.
            raise _deferred(f"no contact details recorded yet for borrower {notice.borrower_id} "
                            f"(loan {notice.loan_id})")
        if contact.id != notice.borrower_id:
            # Only a loan id used again for another borrower's loan (a start with the stock
            # CLI after the first loan closed) gets here: its record is the first loan's.
            # Held, loudly, rather than sent to the other borrower.
            raise _deferred(f"loan {notice.loan_id} is recorded for borrower {contact.id}, not "
                            f"{notice.borrower_id}: notice {notice.key} not addressed")
        return notice.model_copy(update={"borrower": contact})

    # --- operations ------------------------------------------------------------------------

    async def resend(self, key: str, *, to_address: str | None = None) -> str:
        """For operations, outside any workflow: render a `failed` or `unconfirmed` notice
        again (today's templates, optionally a corrected address) and deliver it. Only for
        `unconfirmed` after the relay's log shows the message did not go out. Returns the new
        status; raises DEFERRED while the server is unavailable (call again later)."""
        row = await outbox.find(self.db, key)
        notice = await outbox.load_notice(self.db, key)
        if row is None or notice is None:
            raise LookupError(f"no notice {key!r}")
        if row.status in (FAILED, UNCONFIRMED):
            if to_address:
                notice.borrower = notice.borrower.model_copy(update={"email": to_address})
            try:
                rendered = render_notice(notice, self.settings)
            except RenderError as err:
                raise ValueError(f"notice {key} still cannot be rendered: {err}") from err
            if (
                await outbox.change(
                    self.db,
                    key,
                    row.version,
                    status=PENDING,
                    claimed_at=None,
                    data_started_at=None,
                    last_error=None,
                    to_address=notice.borrower.email,
                    subject=rendered.subject,
                    html=rendered.html,
                    text=rendered.text,
                )
                is None
            ):
                raise _deferred(f"notice {key} changed while being resent; try again")
            log.warning("notice %s queued again by operations (to %s)", key, notice.borrower.email)
        return await self.deliver(key)

    # --- delivering ------------------------------------------------------------------------

    async def deliver(self, key: str, session: SmtpSession | None = None) -> str:
        """Bring the outbox row to a final status, sending at most what is safe to send (on
        `session`'s connection if given, else on one of its own)."""
        for _ in range(5):  # each turn re-reads a row another attempt changed under us
            row = await outbox.find(self.db, key)
            if row is None:
                raise LookupError(f"no outbox row for notice {key!r}")
            if row.status in (SENT, FAILED, UNCONFIRMED):
                return row.status
            if row.status == SENDING and row.data_started_at is not None:
                status = await self._settle_unknown(row)
                if status is not None:
                    return status
                continue
            version = await outbox.change(
                self.db,
                key,
                row.version,
                status=SENDING,
                attempts=row.attempts + 1,
                claimed_at=self.clock(),
                data_started_at=None,
            )
            if version is not None:
                return await self._send(row, _Hold(key, version), session)
        raise _deferred(f"outbox row {key} keeps changing under concurrent attempts")

    async def deliver_claimed(self, row: OutboxRow, version: int,
                              session: SmtpSession | None = None) -> str:
        """Send a row the caller claimed (`outbox.claim`: it holds `version`), as `deliver`
        does once it has claimed a row."""
        return await self._send(row, _Hold(row.notice_key, version), session)

    async def _send(self, row: OutboxRow, hold: _Hold,
                    session: SmtpSession | None = None) -> str:
        try:
            message = build_message(
                notice_key=row.notice_key,
                subject=row.subject,
                text=row.text,
                html=row.html,
                to_name=row.to_name,
                to_address=row.to_address,
                settings=self.settings,
                date=row.created_at,
            )
            transmit = session.send if session is not None else partial(send, self.smtp)
            reply = await transmit(
                to_bytes(message),
                sender=self.settings.mail_from,
                recipient=row.to_address,
                commit=self._commit_hook(hold),
            )
        except (AddressError, PermanentDeliveryError) as err:
            return await self._fail(row, hold, str(err))
        except TransientDeliveryError as err:
            await outbox.change(
                self.db,
                hold.key,
                hold.version,
                status=PENDING,
                claimed_at=None,
                data_started_at=None,
                last_error=err.reason,
            )
            log.warning("notice %s not sent yet (will retry): %s", row.notice_key, err.reason)
            raise _deferred(_unaddressed(err.reason, row)) from None
        except UncertainDeliveryError as err:
            # Stays `sending` with the point of no return set; released, so the next attempt
            # settles it at once instead of waiting out the grace period.
            await outbox.change(
                self.db, hold.key, hold.version, claimed_at=None, last_error=err.reason
            )
            raise _deferred(_unaddressed(err.reason, row)) from None
        except DeliveryAborted as err:
            raise _deferred(err.reason) from err
        # The message is the server's now: record that before anything else can fail.
        if not await outbox.mark_sent(self.db, row.notice_key, reply, self.clock()):
            log.error(
                "notice %s was delivered twice (an overtaken attempt's message was "
                "accepted too); both copies carry Message-ID %s",
                row.notice_key,
                row.message_id,
            )
        return SENT

    def _commit_hook(self, hold: _Hold) -> Callable[[], Awaitable[bool]]:
        async def commit() -> bool:
            version = await outbox.change(
                self.db, hold.key, hold.version, data_started_at=self.clock()
            )
            if version is None:
                return False
            hold.version = version
            return True

        return commit

    async def _fail(self, row: OutboxRow, hold: _Hold, reason: str) -> str:
        await outbox.change(
            self.db,
            hold.key,
            hold.version,
            status=FAILED,
            claimed_at=None,
            data_started_at=None,
            last_error=reason,
        )
        _alert(row.notice_key, row.loan_id, row.to_address, reason)
        return FAILED

    async def _settle_unknown(self, row: OutboxRow) -> str | None:
        """A row past the point of no return without a `sent`: wait, ask the probe, or mark
        it unconfirmed. None means "given back to pending, go round again"."""
        started = row.data_started_at or self.clock()
        elapsed = self.clock() - started
        if row.claimed_at is not None and elapsed < self.in_flight_grace:
            raise _deferred(
                f"another attempt is sending notice {row.notice_key}",
                delay=self.in_flight_grace - elapsed,
            )
        if self.probe is None:
            reason = (
                f"delivery unknown: the connection ended after the message data was sent "
                f"({row.last_error or 'worker stopped'}); look up {row.message_id} in "
                "the relay's log before resending"
            )
            if (
                await outbox.change(
                    self.db,
                    row.notice_key,
                    row.version,
                    status=UNCONFIRMED,
                    claimed_at=None,
                    last_error=reason,
                )
                is None
            ):
                return None
            _alert(row.notice_key, row.loan_id, row.to_address, reason)
            return UNCONFIRMED
        if await self.probe.accepted(row.message_id):
            await outbox.mark_sent(
                self.db,
                row.notice_key,
                f"accepted (the server holds {row.message_id})",
                self.clock(),
            )
            return SENT
        await outbox.change(
            self.db,
            row.notice_key,
            row.version,
            status=PENDING,
            claimed_at=None,
            data_started_at=None,
        )
        return None


def _deferred(reason: str, delay: timedelta | None = None) -> ApplicationError:
    return ApplicationError(reason, type=DEFERRED, non_retryable=False, next_retry_delay=delay)


def _unaddressed(reason: str, row: OutboxRow) -> str:
    """The reason as Temporal may show it (an activity's failure is readable in the Web UI
    and not encrypted): a mail server's reply often quotes the recipient. The outbox row and
    the log keep the whole reply; the cause is not chained for the same reason."""
    for detail in (row.to_address, row.to_name):
        if detail:
            reason = reason.replace(detail, "<borrower>")
    return reason


def _alert(key: str, loan_id: str, to: str, reason: str) -> None:
    """One line operations can alert on: a notice the borrower did not (surely) get."""
    log.error("NOTICE NOT DELIVERED key=%s loan=%s to=%s: %s", key, loan_id, to, reason)
