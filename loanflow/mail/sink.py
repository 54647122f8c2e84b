"""The local mail sink for development: an SMTP server (aiosmtpd) on loopback that keeps every
message it accepts as an `.eml` file, so a person can read what borrowers would have received.

    python -m loanflow.mail.sink serve            # 127.0.0.1:8025 -> var/mail/
    python -m loanflow.mail.sink list
    python -m loanflow.mail.sink show 3           # the 3rd message of `list` (or its id)
    python -m loanflow.mail.sink show 3 --html    # the HTML part instead of the text part

Each file is written completely (to a temporary name, then renamed) before the server answers
250, so a message the sink has accepted is always on disk: that is what lets `SinkProbe` tell
a retry whether an earlier attempt's message arrived. The sink keeps duplicates too; two files
with the same Message-ID are exactly what the exactly-once tests look for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys
import threading
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from functools import partial
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from loanflow.mail.message import NOTICE_KEY_HEADER
from loanflow.settings import get_settings

SUFFIX = ".eml"


# --- the server -------------------------------------------------------------------------------


class SinkHandler:
    """aiosmtpd handler: accept every recipient except those in `reject` (a 550, the way a
    real server refuses an unknown mailbox) and those in `defer` (a 451, the way a busy or
    greylisting server says "later"), and store every message."""

    def __init__(self, directory: Path, reject: Collection[str] = (),
                 defer: Collection[str] = ()) -> None:
        self.directory = Path(directory)
        self.reject = {address.lower() for address in reject}
        self.defer = {address.lower() for address in defer}
        self.directory.mkdir(parents=True, exist_ok=True)

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() in self.reject:
            return f"550 5.1.1 <{address}>: Recipient address rejected: mailbox unavailable"
        if address.lower() in self.defer:
            return f"451 4.7.1 <{address}>: Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        path = store(self.directory, raw, envelope.mail_from or "", envelope.rcpt_tos)
        return f"250 2.0.0 OK: queued as {path.stem}"


def store(directory: Path, raw: bytes, mail_from: str, rcpt_tos: Collection[str]) -> Path:
    """Write one received message, with its envelope as trace headers, atomically."""
    now = datetime.now(timezone.utc)
    stem = f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    trace = [f"Return-Path: <{mail_from}>"]
    trace += [f"Delivered-To: {rcpt}" for rcpt in rcpt_tos]
    trace.append(f"X-Sink-Received: {now.isoformat()}")
    tmp = directory / f".{stem}.tmp"
    tmp.write_bytes(("\r\n".join(trace) + "\r\n").encode("ascii", "replace") + raw)
    final = directory / f"{stem}{SUFFIX}"
    os.replace(tmp, final)
    return final


class _Authenticator:
    """AUTH PLAIN/LOGIN against a fixed table (for tests of SMTP credentials)."""

    def __init__(self, credentials: Mapping[str, str]) -> None:
        self.credentials = dict(credentials)

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str,
                 data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.credentials.get(
            data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, handled=False)


def _factory(
    handler: SinkHandler,
    *,
    starttls_context: ssl.SSLContext | None = None,
    credentials: Mapping[str, str] | None = None,
) -> SMTP:
    return SMTP(
        handler,
        hostname="loanflow-sink",  # never ask the resolver (getfqdn can take seconds)
        ident="loanflow mail sink",
        tls_context=starttls_context,
        require_starttls=starttls_context is not None,
        authenticator=_Authenticator(credentials) if credentials else None,
        auth_required=bool(credentials),
        auth_require_tls=starttls_context is not None,
    )


async def start_sink(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 8025,
    *,
    reject: Collection[str] = (),
    defer: Collection[str] = (),
    starttls_context: ssl.SSLContext | None = None,
    implicit_tls_context: ssl.SSLContext | None = None,
    credentials: Mapping[str, str] | None = None,
) -> asyncio.Server:
    """Start the sink on the running event loop; port 0 picks a free port (see
    `server.sockets[0].getsockname()[1]`). Stop it with `server.close()` and
    `await server.wait_closed()`. TLS and credentials are there to mimic a production relay."""
    handler = SinkHandler(directory, reject, defer)
    factory = partial(_factory, handler, starttls_context=starttls_context,
                      credentials=credentials)
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=host, port=port, ssl=implicit_tls_context)


class MailSink:
    """The sink on its own thread and event loop, for code that is not async (a dev launcher):
    `with MailSink(dir) as sink: ...` or `sink.start()` / `sink.stop()`."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 8025,
                 reject: Collection[str] = ()) -> None:
        self.directory, self.host, self.port, self.reject = Path(directory), host, port, reject
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None

    def start(self) -> MailSink:
        ready = threading.Event()
        errors: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run, args=(ready, errors), name="mail-sink", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        if errors:
            self.stop()
            raise errors[0]
        return self

    def _run(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                start_sink(self.directory, self.host, self.port, reject=self.reject)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as err:  # noqa: BLE001  (handed to start())
            errors.append(err)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        self._server.close()
        loop.run_until_complete(self._server.wait_closed())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = self._loop = self._server = None

    def __enter__(self) -> MailSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- reading what arrived -----------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMessage:
    """One message in the sink, from its headers."""

    id: str
    path: Path
    received_at: str
    mail_from: str
    rcpt_to: tuple[str, ...]
    to: str
    subject: str
    message_id: str
    notice_key: str | None


def list_messages(directory: Path) -> list[StoredMessage]:
    """Every stored message, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return [_summary(path) for path in sorted(directory.glob(f"*{SUFFIX}"))]


def find_messages(directory: Path, message_id: str) -> list[StoredMessage]:
    """The stored copies of one Message-ID (more than one is a duplicate delivery)."""
    return [m for m in list_messages(directory) if m.message_id == message_id.strip()]


def read_message(directory: Path, ref: str) -> EmailMessage:
    """A stored message by its position in `list_messages` (1-based), its id, a unique prefix
    of the id, or its Message-ID."""
    return _parse(_resolve(directory, ref).path)


def show_message(directory: Path, ref: str, *, html: bool = False) -> str:
    """A stored message for a person: the main headers, then the text (or HTML) part."""
    msg = read_message(directory, ref)
    lines = [f"{name}: {msg[name]}" for name in
             ("Date", "From", "To", "Subject", "Message-ID", NOTICE_KEY_HEADER) if msg[name]]
    body = msg.get_body(preferencelist=("html",) if html else ("plain",))
    content = body.get_content() if body is not None else "(no such part)"
    return "\n".join(lines) + "\n\n" + content


class SinkProbe:
    """Tells a retry whether the sink already holds a message: the one SMTP server the notice
    activity can ask. Only truthful when the activity sends to this sink."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    async def accepted(self, message_id: str) -> bool:
        return bool(await asyncio.to_thread(find_messages, self.directory, message_id))


def _summary(path: Path) -> StoredMessage:
    with path.open("rb") as fh:
        headers = BytesHeaderParser(policy=policy.default).parse(fh)
    return StoredMessage(
        id=path.stem,
        path=path,
        received_at=str(headers.get("X-Sink-Received", "")),
        mail_from=str(headers.get("Return-Path", "")).strip("<>"),
        rcpt_to=tuple(str(v) for v in headers.get_all("Delivered-To", [])),
        to=str(headers.get("To", "")),
        subject=str(headers.get("Subject", "")),
        message_id=str(headers.get("Message-ID", "")).strip(),
        notice_key=str(headers[NOTICE_KEY_HEADER]) if headers[NOTICE_KEY_HEADER] else None,
    )


def _parse(path: Path) -> EmailMessage:
    with path.open("rb") as fh:
        return BytesParser(policy=policy.default).parse(fh)  # type: ignore[return-value]


def _resolve(directory: Path, ref: str) -> StoredMessage:
    messages = list_messages(directory)
    ref = ref.strip()
    if ref.isdigit() and 1 <= int(ref) <= len(messages):
        return messages[int(ref) - 1]
    found = [m for m in messages if m.id == ref or m.message_id == ref]
    found = found or [m for m in messages if m.id.startswith(ref)]
    if len(found) != 1:
        problem = "no message" if not found else f"{len(found)} messages"
        raise LookupError(f"{problem} matching {ref!r} in {directory}")
    return found[0]


# --- command line -------------------------------------------------------------------------------


def default_directory() -> Path:
    return get_settings().var_dir / "mail"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    directory = Path(args.dir) if args.dir else default_directory()
    if args.command == "serve":
        return _serve(directory, args.host, args.port, args.reject)
    if args.command == "list":
        return _list(directory)
    try:
        print(show_message(directory, args.ref, html=args.html))
    except LookupError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loanflow.mail.sink",
                                     description="The local mail sink for development.")
    parser.add_argument("--dir", help="where messages are kept (default: $LOANFLOW_VAR_DIR/mail)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the SMTP sink until interrupted")
    settings = get_settings()
    serve.add_argument("--host", default=settings.smtp_host)
    serve.add_argument("--port", type=int, default=settings.smtp_port)
    serve.add_argument("--reject", action="append", default=[],
                       help="refuse this recipient with a 550 (repeatable)")
    sub.add_parser("list", help="list the messages received, oldest first")
    show = sub.add_parser("show", help="print one message")
    show.add_argument("ref", help="number from `list`, message id or Message-ID")
    show.add_argument("--html", action="store_true", help="print the HTML part")
    return parser


def _serve(directory: Path, host: str, port: int, reject: list[str]) -> int:
    async def run() -> None:
        server = await start_sink(directory, host, port, reject=reject)
        print(f"mail sink listening on {host}:{port}, keeping messages in {directory}",
              flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def _list(directory: Path) -> int:
    messages = list_messages(directory)
    if not messages:
        print(f"no messages in {directory}")
    for n, m in enumerate(messages, 1):
        print(f"{n:>4}  {m.received_at[:19]}  {m.to}  {m.subject}  [{m.id}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
