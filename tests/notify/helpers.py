"""Helpers of the notice tests: a real SMTP sink on loopback and settings pointing at it."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from loanflow.mail.sink import StoredMessage, list_messages, start_sink
from loanflow.settings import Settings


@dataclass
class Sink:
    """A real aiosmtpd server on 127.0.0.1 that keeps what it receives in `directory`."""

    directory: Path
    port: int
    reject: Collection[str] = ()
    defer: Collection[str] = ()
    server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self, **tls: object) -> Sink:
        self.server = await start_sink(self.directory, "127.0.0.1", self.port,
                                       reject=self.reject, defer=self.defer, **tls)  # type: ignore[arg-type]
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def messages(self) -> list[StoredMessage]:
        return list_messages(self.directory)

    def parsed(self) -> list[EmailMessage]:
        return [BytesParser(policy=policy.default).parsebytes(m.path.read_bytes())  # type: ignore[misc]
                for m in self.messages()]


def settings_for(sink: Sink, tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        var_dir=tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=sink.port,
        smtp_security="none",
        smtp_timeout_seconds=2,
        lender_name="Northwind Credit",
        support_email="help@northwind.example",
        mail_footer="Northwind Credit Ltd., 1 Harbour St. Loans secured by crypto can be liquidated.",
        mail_from="notices@northwind.example",
        **extra,  # type: ignore[arg-type]
    )
