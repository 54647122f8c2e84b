"""Sending one message over SMTP (aiosmtplib), and what a failure means for a retry.

SMTP has no idempotency: the only moment a message becomes the server's responsibility is its
250 reply to the message data. So `send` lets the caller mark the point of no return (the
`commit` hook, called just before DATA) and sorts every failure into one of:

- TransientDeliveryError: nothing was accepted (refused connection, timeout before the data,
  any 4xx, a definite refusal of the data); retrying later is safe.
- PermanentDeliveryError: a 5xx for this recipient or this message; no retry will help.
- UncertainDeliveryError: the connection was lost or timed out after the data went out; the
  server may or may not have accepted the message.
- DeliveryAborted: the commit hook refused (another attempt owns the message); nothing sent.

Problems of our own set-up (authentication, sender refused, TLS) count as transient: the
message goes out once operations fix the settings, and meanwhile the activity's retries show
the error in the Temporal UI.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib

from loanflow.settings import Settings

CommitHook = Callable[[], Awaitable[bool]]


class DeliveryError(Exception):
    """Why a message did not (certainly) go out; `reason` is one line for the outbox row."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientDeliveryError(DeliveryError):
    pass


class ConnectionDeliveryError(TransientDeliveryError):
    """No connection, or it failed before the data: nothing was sent."""


class PermanentDeliveryError(DeliveryError):
    pass


class UncertainDeliveryError(DeliveryError):
    pass


class DeliveryAborted(DeliveryError):
    pass


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str = "none"  # none | starttls | tls
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    # Trust for the server's certificate; None means the system's CAs (tests pass their own).
    tls_context: ssl.SSLContext | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SmtpConfig:
        values: dict[str, object] = dict(
            host=settings.smtp_host,
            port=settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password,
            timeout=settings.smtp_timeout_seconds,
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def total_timeout(self) -> float:
        """A bound on one whole SMTP session (connect to the data's reply), so an attempt ends
        well inside the activity's start-to-close timeout."""
        return self.timeout * 4


async def send(
    config: SmtpConfig,
    payload: bytes,
    *,
    sender: str,
    recipient: str,
    commit: CommitHook | None = None,
) -> str:
    """Send one message to one recipient on a connection of its own; return the server's reply
    to the data, e.g. "250 2.0.0 Ok: queued as 4F2A1". Raises a DeliveryError subclass (see
    the module doc)."""
    client = _client(config)
    try:
        return await _transaction(client, config, payload, sender, recipient, commit)
    finally:
        await _close(client)


class SmtpSession:
    """One connection kept open for many messages sent one after another (a lane of the notice
    relay): a message's own connect, EHLO and QUIT were most of its SMTP round trips. After any
    failure the connection is closed and the next message opens a new one. A message that
    finds its reused connection gone (the server drops idle ones) before anything was sent is
    tried once more on a new connection."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._client: aiosmtplib.SMTP | None = None

    async def send(self, payload: bytes, *, sender: str, recipient: str,
                   commit: CommitHook | None = None) -> str:
        """As `send`, on the session's connection."""
        reused = self._client is not None and self._client.is_connected
        try:
            return await self._send(payload, sender, recipient, commit)
        except ConnectionDeliveryError:
            if not reused:
                raise
        return await self._send(payload, sender, recipient, commit)

    async def _send(self, payload: bytes, sender: str, recipient: str,
                    commit: CommitHook | None) -> str:
        if self._client is None or not self._client.is_connected:
            self._client = _client(self.config)
        try:
            return await _transaction(self._client, self.config, payload, sender, recipient,
                                      commit)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _close(client)


async def _transaction(client: aiosmtplib.SMTP, config: SmtpConfig, payload: bytes,
                       sender: str, recipient: str, commit: CommitHook | None) -> str:
    """One message on `client` (connected first if it is not), bounded by total_timeout."""
    past_commit = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.total_timeout
    try:
        async with asyncio.timeout_at(deadline):
            if not client.is_connected:
                await client.connect()
            await client.mail(sender)
            await client.rcpt(recipient)
        # The commit is a database write and runs outside the timeout: a timeout that cancelled
        # it half-way left a SQLite write transaction open with its lock held, and every other
        # writer of the desk then failed with "database is locked" (a 1,000-loan stress run
        # stood still at a crash hour). The data still gets its own share of time after it.
        if commit is not None and not await commit():
            raise DeliveryAborted("another attempt took over this message; not sent")
        past_commit = True
        async with asyncio.timeout_at(max(deadline, loop.time() + config.timeout)):
            reply = await client.data(payload)
    except DeliveryError:
        raise
    except Exception as err:  # noqa: BLE001  (sorted below; anything unknown is re-raised)
        raise classify(err, past_commit=past_commit) from err
    return f"{reply.code} {reply.message}".strip()


def classify(err: Exception, *, past_commit: bool) -> Exception:
    """The DeliveryError that `err` amounts to; other errors (bugs) are returned unchanged."""
    if isinstance(err, aiosmtplib.SMTPRecipientRefused):
        return _by_code(err, f"recipient refused: {err.code} {err.message}")
    if isinstance(err, aiosmtplib.SMTPDataError):
        # A definite reply: the message was not accepted, whatever the stage.
        return _by_code(err, f"message refused: {err.code} {err.message}")
    if isinstance(err, aiosmtplib.SMTPSenderRefused):
        return TransientDeliveryError(
            f"sender refused (check LOANFLOW_MAIL_FROM): {err.code} {err.message}"
        )
    if isinstance(err, aiosmtplib.SMTPAuthenticationError):
        return TransientDeliveryError(
            f"authentication failed (check SMTP_USERNAME/SMTP_PASSWORD): {err.code} {err.message}"
        )
    if not isinstance(err, (aiosmtplib.SMTPException, OSError, TimeoutError)):
        return err
    what = f"{type(err).__name__}: {err}".rstrip(": ")
    if past_commit:
        return UncertainDeliveryError(f"connection lost after the message data was sent ({what})")
    return ConnectionDeliveryError(f"SMTP server unavailable ({what})")


def _by_code(err: aiosmtplib.SMTPResponseException, reason: str) -> DeliveryError:
    if err.code >= 500:
        return PermanentDeliveryError(reason)
    return TransientDeliveryError(reason)


def _client(config: SmtpConfig) -> aiosmtplib.SMTP:
    implicit = config.security == "tls"
    return aiosmtplib.SMTP(
        hostname=config.host,
        port=config.port,
        username=config.username or None,
        password=config.password or None,
        timeout=config.timeout,
        use_tls=implicit,
        # "none" never upgrades (a sink on loopback); "starttls" insists on it.
        start_tls=True if config.security == "starttls" else False,
        tls_context=config.tls_context,
        local_hostname="loanflow.localdomain",
    )


async def _close(client: aiosmtplib.SMTP) -> None:
    """Say goodbye if we can; a failed QUIT changes nothing about the message."""
    if not client.is_connected:
        return
    try:
        await client.quit(timeout=2)
    except Exception:  # noqa: BLE001
        client.close()
