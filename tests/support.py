"""Helpers shared by the test suites (not fixtures): quiet settings, free ports, an inbox."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from loanflow.settings import Settings


def quiet_settings(**overrides: Any) -> Settings:
    """Built-in fakes without latency or random failures: tests decide every failure."""
    values: dict[str, Any] = {"fake_latency_ms": 0, "fake_failure_rate": Decimal(0), "fake_seed": 7}
    values.update(overrides)
    return Settings(**values)


class Inbox:
    """An aiosmtpd handler that keeps every message a real SMTP session delivered."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"
