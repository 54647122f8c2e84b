"""Tables of the borrower notices: what each notice said (`notices`) and the delivery of its
e-mail (`outbox`), both keyed by the notice's idempotency key.

The outbox row is the state machine that makes an e-mail go out once (see
`loanflow.mail.delivery` for the whole argument):

    pending --claim--> sending --server's 250--> sent
       ^                  |  \\--5xx recipient/message--> failed
       |                  |   \\--lost after the data, nobody can tell--> unconfirmed
       +--4xx/outage------+

`version` grows with every change and fences concurrent attempts: an attempt only moves the row
on if it is still the version that attempt saw. `data_started_at` marks the point of no return
(written just before the message data goes to the server); before it, a retry may always send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from loanflow.db import Base
from loanflow.schema import UtcDateTime

NOTICE_KEY = String(200)

# Outbox statuses. `unconfirmed` is the honest name for "the connection died after the message
# data was sent and before the server's answer": operations must look it up in the relay's log.
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
UNCONFIRMED = "unconfirmed"
STATUSES = (PENDING, SENDING, SENT, FAILED, UNCONFIRMED)


class NoticeRow(Base):
    """One notice as the loan sent it: the figures, before any rendering."""

    __tablename__ = "notices"

    key: Mapped[str] = mapped_column(NOTICE_KEY, primary_key=True)
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    borrower_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The borrower as the notice named them (name, e-mail, time zone), so operations can
    # render the notice again, e.g. to resend it to a corrected address.
    borrower: Mapped[dict[str, Any]] = mapped_column(JSON)


class OutboxRow(Base):
    """The e-mail of one notice, rendered once and sent at most once per server acceptance."""

    __tablename__ = "outbox"

    notice_key: Mapped[str] = mapped_column(
        NOTICE_KEY, ForeignKey("notices.key"), primary_key=True
    )
    loan_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    to_name: Mapped[str] = mapped_column(String(256))
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    smtp_response: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Set while an attempt holds the row (cleared when it gives the row back).
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The point of no return: set just before the message data is handed to the server.
    data_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
