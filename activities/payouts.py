"""Dollar payouts to borrowers: the loan itself (disbursement) and liquidation surpluses.
Each payout is sent once per key and booked in the ledger in the same transaction as its
record."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from functools import partial
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.support import FakeFaults, ServiceActivities, conflict, effect_once, refuse
from loanflow import ledger
from loanflow.effects import ActivityName, LedgerLine, PayoutReceipt, PayoutRequest
from loanflow.money import USD, decimal_text, fmt_usd
from loanflow.schema import Payout
from loanflow.store.ledger import balance, post_entry


class PayoutRail(Protocol):
    """A payment rail (wire, ACH). `send` must be idempotent by `key`, as bank payment APIs
    are by their idempotency key: sending the same key twice moves the money once."""

    async def send(self, key: str, borrower_id: str, amount_usd: Decimal) -> str:
        """Send the money; returns the rail's payment reference."""
        ...


class FakePayoutRail:
    """A stand-in payment rail: network-like delay, occasional failure before anything is
    sent, and a payment reference derived from the key (so a resend returns the same one)."""

    def __init__(self, faults: FakeFaults | None = None) -> None:
        self.faults = faults or FakeFaults()

    async def send(self, key: str, borrower_id: str, amount_usd: Decimal) -> str:
        await self.faults.call("payout rail", "send")
        return "pay_" + hashlib.sha256(f"payout:{key}".encode()).hexdigest()[:24]


class PayoutActivities(ServiceActivities[PayoutRail]):
    """Payouts through a payment rail (the service)."""

    @activity.defn(name=ActivityName.DISBURSE)
    async def disburse(self, request: PayoutRequest) -> PayoutReceipt:
        """Pay the borrower once per key.

        Ledger (USD): a disbursement debits `loan:<id>:receivable` (the borrower now owes it);
        a surplus debits `loan:<id>:payable` (the desk no longer owes it); both credit
        `cash`. A surplus larger than what the desk owes the borrower is refused.
        """
        _check_amount(request.amount_usd)

        async def lookup(session: AsyncSession) -> PayoutReceipt | None:
            found = await session.scalar(select(Payout).where(Payout.key == request.key))
            if found is None:
                return None
            stored = (found.loan_id, found.borrower_id, found.amount_usd, found.purpose)
            asked = (request.loan_id, request.borrower_id, request.amount_usd, request.purpose)
            if stored != asked:
                raise conflict(request.key, "payout")
            return _receipt(found, created=False)

        async def check(session: AsyncSession) -> None:
            if request.purpose == "surplus":
                await _check_payable(session, request)

        async def write(session: AsyncSession, reference: str) -> PayoutReceipt:
            payout = Payout(
                key=request.key,
                loan_id=request.loan_id,
                borrower_id=request.borrower_id,
                amount_usd=request.amount_usd,
                purpose=request.purpose,
                status="sent",
                reference=reference,
            )
            session.add(payout)
            await session.flush()
            await post_entry(
                session,
                key=request.key,
                loan_id=request.loan_id,
                memo=f"{request.purpose} of {fmt_usd(request.amount_usd)} to {request.borrower_id}",
                lines=payout_lines(request),
            )
            return _receipt(payout, created=True)

        sending = partial(self.service.send, request.key, request.borrower_id, request.amount_usd)
        return await effect_once(self.db, lookup, sending, write, check)


def payout_lines(request: PayoutRequest) -> list[LedgerLine]:
    """The booking of one payout (see `PayoutActivities.disburse`)."""
    if request.purpose == "disbursement":
        owed_by = ledger.receivable(request.loan_id)
    else:
        owed_by = ledger.payable(request.loan_id)
    return [
        ledger.debit(owed_by, "USD", request.amount_usd),
        ledger.credit(ledger.CASH, "USD", request.amount_usd),
    ]


def _check_amount(amount: Decimal) -> None:
    if not amount.is_finite() or amount <= 0:
        raise refuse(f"payout amount must be positive, got {decimal_text(amount)}", "InvalidAmount")
    if amount != amount.quantize(USD):
        raise refuse(f"payout amount {decimal_text(amount)} is not whole cents", "InvalidAmount")


async def _check_payable(session: AsyncSession, request: PayoutRequest) -> None:
    # The payable account has a credit balance: what the desk owes the borrower.
    owed = -await balance(session, ledger.payable(request.loan_id), "USD")
    if request.amount_usd > owed:
        raise refuse(
            f"surplus payout {fmt_usd(request.amount_usd)} to {request.borrower_id} exceeds "
            f"the {fmt_usd(owed)} the desk owes them",
            "InsufficientPayable",
        )


def _receipt(payout: Payout, *, created: bool) -> PayoutReceipt:
    return PayoutReceipt(
        key=payout.key,
        payout_id=payout.reference or f"payout-{payout.id}",
        amount_usd=payout.amount_usd.quantize(USD),
        created=created,
    )
