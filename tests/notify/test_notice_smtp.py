"""The SMTP client against real servers on loopback: STARTTLS, implicit TLS, credentials, and
how each kind of failure is classified."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiosmtplib
import pytest
import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from activities.notify import NotifyActivities
from loanflow.db import Database
from loanflow.effects import Notice
from loanflow.mail import outbox
from loanflow.mail.preview import SAMPLE_BORROWER, sample_data
from loanflow.mail.smtp import (
    DeliveryAborted,
    PermanentDeliveryError,
    SmtpConfig,
    SmtpSession,
    TransientDeliveryError,
    UncertainDeliveryError,
    classify,
    send,
)
from loanflow.notice_schema import SENDING, UNCONFIRMED
from loanflow.ports import free_port

from .helpers import Sink, settings_for

MESSAGE = b"From: a@x.example\r\nTo: b@y.example\r\nSubject: hi\r\nMessage-ID: <m1@x>\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    # Debian ships openssl on every machine this runs on; a missing one is a broken set-up,
    # reported as a failure rather than a silently skipped TLS test.
    assert shutil.which("openssl"), "the TLS tests need the openssl command (apt-get install openssl)"
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def config(port: int, **kw: object) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=port, timeout=2, **kw)  # type: ignore[arg-type]


async def test_starttls_with_credentials(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    sink = await Sink(tmp_path / "mail", 0).start(
        starttls_context=server_context(cert, key), credentials={"desk": "s3cret"})
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        reply = await send(config(sink.port, security="starttls", username="desk",
                                  password="s3cret", tls_context=trust),
                           MESSAGE, sender="a@x.example", recipient="b@y.example")
        assert reply.startswith("250")
        with pytest.raises(TransientDeliveryError, match="authentication failed"):
            await send(config(sink.port, security="starttls", username="desk", password="nope",
                              tls_context=trust),
                       MESSAGE, sender="a@x.example", recipient="b@y.example")
        with pytest.raises(TransientDeliveryError):  # this server insists on STARTTLS
            await send(config(sink.port), MESSAGE, sender="a@x.example",
                       recipient="b@y.example")
    finally:
        await sink.stop()
    assert len(sink.messages()) == 1


async def test_implicit_tls(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    sink = await Sink(tmp_path / "mail", 0).start(implicit_tls_context=server_context(cert, key))
    try:
        trusted = config(sink.port, security="tls",
                         tls_context=ssl.create_default_context(cafile=str(cert)))
        assert (await send(trusted, MESSAGE, sender="a@x.example",
                           recipient="b@y.example")).startswith("250")
        with pytest.raises(TransientDeliveryError):  # an untrusted certificate is refused
            await send(config(sink.port, security="tls"), MESSAGE, sender="a@x.example",
                       recipient="b@y.example")
    finally:
        await sink.stop()
    assert len(sink.messages()) == 1


async def test_a_session_sends_many_messages_on_one_connection(sink: Sink) -> None:
    """The relay's lanes: one connection for message after message; once it is gone (closed
    after a failure, or by the server) the next message opens a new one."""
    session = SmtpSession(config(sink.port))
    try:
        for _ in range(3):
            assert (await session.send(MESSAGE, sender="a@x.example",
                                       recipient="b@y.example")).startswith("250")
        first = session._client
        assert first is not None and first.is_connected
        with pytest.raises(PermanentDeliveryError):  # a failure closes the connection
            await session.send(MESSAGE, sender="a@x.example", recipient="gone@example.com")
        assert session._client is None and not first.is_connected
        await session.send(MESSAGE, sender="a@x.example", recipient="b@y.example")
        assert session._client is not None and session._client is not first
    finally:
        await session.close()
    assert len(sink.messages()) == 4


async def test_a_refused_commit_sends_nothing(sink: Sink) -> None:
    async def refuse() -> bool:
        return False

    with pytest.raises(DeliveryAborted):
        await send(config(sink.port), MESSAGE, sender="a@x.example", recipient="b@y.example",
                   commit=refuse)
    assert sink.messages() == []


async def test_a_slow_commit_is_never_cancelled_half_way(sink: Sink) -> None:
    """The commit hook is a database write: a session timeout that cancelled it mid-way left
    a SQLite write lock held for good. It runs to its end, and the message goes out after."""
    finished = []

    async def slow_commit() -> bool:
        await asyncio.sleep(config(sink.port).total_timeout + 0.5)  # past the session's bound
        finished.append(True)
        return True

    reply = await send(config(sink.port), MESSAGE, sender="a@x.example",
                       recipient="b@y.example", commit=slow_commit)
    assert reply.startswith("250") and finished == [True]
    assert len(sink.messages()) == 1


@pytest.mark.parametrize(
    ("error", "past_commit", "expected"),
    [
        (aiosmtplib.SMTPRecipientRefused(550, "no such user", "b@y"), False,
         PermanentDeliveryError),
        (aiosmtplib.SMTPRecipientRefused(452, "mailbox full", "b@y"), False,
         TransientDeliveryError),
        (aiosmtplib.SMTPDataError(554, "spam"), True, PermanentDeliveryError),
        (aiosmtplib.SMTPDataError(451, "try later"), True, TransientDeliveryError),
        (aiosmtplib.SMTPSenderRefused(553, "not yours", "a@x"), False, TransientDeliveryError),
        (aiosmtplib.SMTPConnectError("refused"), False, TransientDeliveryError),
        (aiosmtplib.SMTPReadTimeoutError("slow"), False, TransientDeliveryError),
        (aiosmtplib.SMTPReadTimeoutError("slow"), True, UncertainDeliveryError),
        (aiosmtplib.SMTPServerDisconnected("gone"), True, UncertainDeliveryError),
        (TimeoutError(), True, UncertainDeliveryError),
    ],
)
def test_failures_are_classified_for_retries(
    error: Exception, past_commit: bool, expected: type
) -> None:
    assert isinstance(classify(error, past_commit=past_commit), expected)


def test_a_bug_is_not_mistaken_for_a_delivery_failure() -> None:
    bug = KeyError("oops")
    assert classify(bug, past_commit=False) is bug


# --- a server that hangs up after the data: the one case nobody can settle --------------------


@pytest_asyncio.fixture
async def hang_up_server() -> AsyncIterator[int]:
    """Speaks just enough SMTP to take the message data, then drops the connection without
    the 250 (a crash or a network cut at the worst moment)."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hang-up ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await reader.readuntil(b"\r\n.\r\n")
                break
            writer.write(b"221 bye\r\n" if verb == b"QUIT" else b"250 ok\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_a_lost_reply_after_the_data_becomes_unconfirmed_at_once(
    db: Database, hang_up_server: int, tmp_path: Path
) -> None:
    """The attempt that saw the connection drop gives the row back as "unknown"; the next
    attempt, with no probe to ask, marks it unconfirmed without waiting and without resending."""
    with pytest.raises(UncertainDeliveryError):
        await send(config(hang_up_server), MESSAGE, sender="a@x.example", recipient="b@y.example")

    acts = NotifyActivities(db, settings_for(Sink(tmp_path, hang_up_server), tmp_path),
                            in_flight_grace=timedelta(hours=1))
    notice = Notice(key="L9:notice:margin_call:1", loan_id="L9", kind="margin_call",
                    borrower=SAMPLE_BORROWER, data=sample_data("margin_call"))
    env = ActivityEnvironment()
    with pytest.raises(Exception, match="connection lost after the message data"):
        await env.run(acts.record_notice, notice)
    row = await outbox.find(db, notice.key)
    assert row is not None and row.status == SENDING and row.claimed_at is None

    receipt = await env.run(acts.record_notice, notice)
    assert receipt.status == UNCONFIRMED


async def test_nothing_listening_is_transient() -> None:
    with pytest.raises(TransientDeliveryError, match="SMTP server unavailable"):
        await send(config(free_port()), MESSAGE, sender="a@x.example", recipient="b@y.example")
