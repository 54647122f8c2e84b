"""The MIME message of a notice: multipart/alternative (plain text first, then HTML).

The Message-ID is derived from the notice's idempotency key, so every copy of one notice has
the same id: a duplicate is detectable by anyone who sees two (and many mail stores fold
messages with the same id into one). `X-Loanflow-Notice-Key` carries the key itself, so
support can find the notice from a forwarded message.
"""

from __future__ import annotations

import email.policy
import hashlib
from datetime import datetime
from email.charset import QP, SHORTEST, Charset
from email.header import Header
from email.headerregistry import Address
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr

from loanflow.settings import Settings

NOTICE_KEY_HEADER = "X-Loanflow-Notice-Key"
# CRLF line ends, and 7 bits only (bodies quoted-printable, non-ASCII header words RFC 2047
# encoded), so the message passes any relay, 8BITMIME or not. Built with the email package's
# legacy (compat32) classes: its modern EmailMessage parsed and refolded every header and took
# 4.6 ms a message, the largest single cost of a notice in a crash; these take 1.5 ms for
# the same bytes on the wire, as a reader sees them (tests/notify/test_notice_render.py).
MAIL_POLICY = email.policy.compat32.clone(linesep="\r\n")
UTF8 = Charset("utf-8")
UTF8.header_encoding, UTF8.body_encoding = SHORTEST, QP


class AddressError(ValueError):
    """An address that cannot be put on an envelope (no retry can fix it)."""


def message_id_for(notice_key: str, mail_from: str) -> str:
    """`<notice.<sha256 of the key, 32 hex>@<sender's domain>>`: stable across retries and
    workers, and free of the characters a key may contain but a Message-ID may not."""
    digest = _digest(notice_key)
    domain = mail_from.rpartition("@")[2] or "loanflow.invalid"
    return f"<notice.{digest}@{domain}>"


def _digest(notice_key: str) -> str:
    return hashlib.sha256(notice_key.encode("utf-8")).hexdigest()[:32]


def mailbox(name: str, address: str) -> str:
    """A display name and address as a header value, checked: no line breaks, one @,
    something on both sides."""
    address = address.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise AddressError(f"not an e-mail address: {address!r}")
    if not address.isascii():
        # Internationalised addresses need SMTPUTF8 end to end; we do not rely on it.
        raise AddressError(f"non-ASCII e-mail address not supported: {address!r}")
    try:
        checked = Address(display_name=" ".join(name.split()), addr_spec=address)
    except (ValueError, IndexError) as err:  # the email package's own parser refused it
        raise AddressError(f"not an e-mail address: {address!r} ({err})") from None
    return formataddr((checked.display_name, checked.addr_spec), charset=UTF8)


def build_message(
    *,
    notice_key: str,
    subject: str,
    text: str,
    html: str,
    to_name: str,
    to_address: str,
    settings: Settings,
    date: datetime,
) -> Message:
    """The e-mail as it goes on the wire. `date` is when the notice was recorded, so a retry
    sends exactly the same message."""
    # A boundary from the key, not a random one: a retry sends byte-identical messages.
    msg = MIMEMultipart("alternative", boundary=f"=_loanflow_{_digest(notice_key)}",
                        policy=MAIL_POLICY)
    msg["Subject"] = _words("Subject", " ".join(subject.split()))
    msg["From"] = mailbox(settings.lender_name, settings.mail_from)
    msg["To"] = mailbox(to_name, to_address)
    msg["Reply-To"] = mailbox(settings.lender_name, settings.support_email)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id_for(notice_key, settings.mail_from)
    msg[NOTICE_KEY_HEADER] = _words(NOTICE_KEY_HEADER, " ".join(notice_key.split()))
    # RFC 3834: an automatic message; auto-responders must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    msg.attach(MIMEText(text, "plain", UTF8, policy=MAIL_POLICY))
    msg.attach(MIMEText(html, "html", UTF8, policy=MAIL_POLICY))
    return msg


def _words(name: str, value: str) -> str | Header:
    """A free-text header value: as it is in ASCII, RFC 2047 encoded words otherwise (folded
    to 78 characters a line, the header's name included)."""
    return value if value.isascii() else Header(value, UTF8, header_name=name)


def to_bytes(msg: Message) -> bytes:
    """The message as SMTP carries it (CRLF line ends)."""
    return msg.as_bytes(policy=MAIL_POLICY)
